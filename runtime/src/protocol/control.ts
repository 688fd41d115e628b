/**
 * Remote control ("pidbox") messages as Celery sends them (spec §7, TV8): a request body
 * `{method, arguments, destination, pattern, matcher, ticket, reply_to}` broadcast on the fanout
 * exchange `celery.pidbox`, and a reply body `{<nodename>: <value>}` published to the direct
 * exchange `reply.celery.pidbox` with the client's id as routing key and headers `{ticket, clock}`.
 */
import { randomUUID } from 'node:crypto';
import type { WireMessage } from './wire-message.js';
import { ProtocolError } from '../errors.js';
import { deserialize } from './serializers.js';

/** Celery's `control_exchange` + `.pidbox`: the fanout exchange requests are broadcast on. */
export const CONTROL_EXCHANGE = 'celery.pidbox';
/** The direct exchange replies go to (kombu's `reply.<exchange>`). */
export const REPLY_EXCHANGE = 'reply.celery.pidbox';

/** The reply queue of the client with id `oid` (bound to REPLY_EXCHANGE with key `oid`). */
export function replyQueueName(oid: string): string {
  return `${oid}.${REPLY_EXCHANGE}`;
}

export interface ControlRequest {
  method: string;
  arguments: Record<string, unknown>;
  destination: string[] | null;
  pattern: string | null;
  matcher: string | null;
  /** Present only when a reply is wanted. */
  ticket: string | null;
  reply_to: { exchange: string; routing_key: string } | null;
}

export interface EncodeControlOptions {
  /** Only these nodenames run the command (null: every worker). */
  readonly destination?: readonly string[] | null;
  /** Where to reply: the client's id (the reply routing key); absent: fire and forget. */
  readonly replyTo?: string | null;
  /** The ticket replies carry; a fresh one when omitted. */
  readonly ticket?: string;
  /** Sent as the `expires` header (now + timeout); default 1000. */
  readonly timeoutMs?: number;
  /** The sender's Lamport clock value. */
  readonly clock?: number;
}

/** A request; with `replyTo`, carries the ticket and `reply_to` that ask for replies. */
export function encodeControl(method: string, args: Record<string, unknown>, o: EncodeControlOptions = {}): WireMessage {
  const reply = o.replyTo ? { ticket: o.ticket ?? randomUUID(), reply_to: { exchange: REPLY_EXCHANGE, routing_key: o.replyTo } } : {};
  const body = { method, arguments: args, destination: o.destination ? [...o.destination] : null, pattern: null, matcher: null, ...reply };
  return {
    body: Buffer.from(JSON.stringify(body)),
    contentType: 'application/json',
    contentEncoding: 'utf-8',
    headers: { clock: o.clock ?? 0, expires: (Date.now() + (o.timeoutMs ?? 1000)) / 1000 },
    properties: { delivery_mode: 2, priority: 0 },
  };
}

/** Reads a request (JSON, or msgpack/yaml when a Python client is set up so); throws ProtocolError. */
export function decodeControl(m: WireMessage, accepted: ReadonlySet<string> = JSON_ONLY): ControlRequest {
  const raw = deserialize(m.body, m.contentType, accepted) as Partial<ControlRequest> | null;
  if (typeof raw?.method !== 'string') throw new ProtocolError('Control message has no "method"');
  const args = raw.arguments;
  return {
    method: raw.method,
    arguments: args && typeof args === 'object' && !Array.isArray(args) ? args : {},
    destination: Array.isArray(raw.destination) ? raw.destination.map(String) : null,
    pattern: typeof raw.pattern === 'string' ? raw.pattern : null,
    matcher: typeof raw.matcher === 'string' ? raw.matcher : null,
    ticket: typeof raw.ticket === 'string' ? raw.ticket : null,
    reply_to: raw.reply_to && typeof raw.reply_to.routing_key === 'string' ? raw.reply_to : null,
  };
}

const JSON_ONLY: ReadonlySet<string> = new Set(['application/json']);

/** A worker's reply: `{nodename: value}` with the request's ticket (spec §7.3, TV8). */
export function encodeReply(nodename: string, value: unknown, ticket: string | null, clock: number): WireMessage {
  return {
    body: Buffer.from(JSON.stringify({ [nodename]: value ?? null })),
    contentType: 'application/json',
    contentEncoding: 'utf-8',
    headers: { ticket, clock },
    properties: { delivery_mode: 1, priority: 0 },
  };
}

/** A reply as a client reads it: its ticket and the `{nodename: value}` body. */
export function decodeReply(
  m: WireMessage,
  accepted: ReadonlySet<string> = JSON_ONLY,
): { ticket: string | null; clock: number; body: Record<string, unknown> } {
  const body = deserialize(m.body, m.contentType, accepted);
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new ProtocolError('Control reply is not a {nodename: value} object');
  const ticket = m.headers.ticket;
  return { ticket: typeof ticket === 'string' ? ticket : null, clock: Number(m.headers.clock) || 0, body: body as Record<string, unknown> };
}

/** Whether a request is meant for `nodename` (spec §7.2 step 2: destination, else glob pattern). */
export function isAddressedTo(req: ControlRequest, nodename: string): boolean {
  if (req.destination && req.destination.length > 0) return req.destination.includes(nodename);
  if (req.pattern && req.matcher) {
    // kombu's matchers: `pcre` is Python's re.match (anchored at the start), `glob` is fnmatch.
    if (req.matcher === 'pcre') return new RegExp(`^(?:${req.pattern})`).test(nodename);
    const glob = req.pattern
      .replace(/[.+^${}()|\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.');
    return new RegExp(`^${glob}$`).test(nodename);
  }
  return true;
}

/** What Celery's `Request.info()` gives (`active`, `reserved`, `scheduled`, `query_task`). */
export interface RequestInfo {
  id: string;
  name: string;
  args: unknown;
  kwargs: unknown;
  type: string;
  hostname: string;
  /** Epoch seconds when the task started, null until then. */
  time_start: number | null;
  acknowledged: boolean;
  delivery_info: { exchange: string; routing_key: string; priority: number | null; redelivered: boolean };
  worker_pid: number | null;
}

/** An element of the `scheduled` reply. */
export interface ScheduledInfo {
  eta: string | null;
  priority: number;
  request: RequestInfo;
}

/** kombu's `Queue.as_dict(recurse=True)`, an element of `active_queues` (TV10). */
export interface QueueInfo {
  name: string;
  exchange: { name: string; type: string; arguments: null; durable: boolean; passive: boolean; auto_delete: boolean; delivery_mode: null; no_declare: boolean };
  routing_key: string;
  queue_arguments: Record<string, unknown> | null;
  binding_arguments: null;
  consumer_arguments: null;
  durable: boolean;
  exclusive: boolean;
  auto_delete: boolean;
  no_ack: boolean;
  alias: null;
  bindings: [];
  no_declare: null;
  expires: null;
  message_ttl: null;
  max_length: null;
  max_length_bytes: null;
  max_priority: number | null;
}

/** The `active_queues` element of a task queue consumed with Celery's defaults (TV10). */
export function queueInfo(name: string, maxPriority: number | null = null): QueueInfo {
  return {
    name,
    exchange: { name, type: 'direct', arguments: null, durable: true, passive: false, auto_delete: false, delivery_mode: null, no_declare: false },
    routing_key: name,
    queue_arguments: maxPriority === null ? null : { 'x-max-priority': maxPriority },
    binding_arguments: null,
    consumer_arguments: null,
    durable: true,
    exclusive: false,
    auto_delete: false,
    no_ack: false,
    alias: null,
    bindings: [],
    no_declare: null,
    expires: null,
    message_ttl: null,
    max_length: null,
    max_length_bytes: null,
    max_priority: maxPriority,
  };
}

/** `{ok: text}` or `{error: text}`: the reply of most control commands. */
export type OkReply = { ok: string } | { error: string };
