/**
 * Celery's monitoring events on the wire (spec §6): a flat JSON object per event, published to
 * the `celeryev` exchange with routing key `type` with `-` turned into `.` (`task.succeeded`,
 * `worker.heartbeat`), headers `{hostname}` and delivery_mode 1. Batched task events travel as a
 * JSON array with routing key `task.multi` (spec §6.5). Timestamps are epoch seconds (floats).
 */
import { ProtocolError } from '../errors.js';
import { deserialize } from './serializers.js';
import type { WireMessage } from './wire-message.js';

export const EVENT_EXCHANGE = 'celeryev';

/** Fields every event carries (spec §6.2), plus the fields of its type. */
export interface CeleryEvent {
  readonly type: string;
  readonly hostname: string;
  readonly timestamp: number;
  readonly utcoffset: number;
  readonly pid: number;
  readonly clock: number;
  readonly [field: string]: unknown;
}

/** Task events (group `task`), sent only while task events are enabled (spec §6.3). */
export type TaskEventType =
  'task-sent' | 'task-received' | 'task-started' | 'task-succeeded' | 'task-failed' | 'task-retried' | 'task-rejected' | 'task-revoked';
/** Worker events (group `worker`), sent by every worker (spec §6.4). */
export type WorkerEventType = 'worker-online' | 'worker-heartbeat' | 'worker-offline';

/** The event's group: the part of its type before the first `-` (`task`, `worker`). */
export function eventGroup(type: string): string {
  const i = type.indexOf('-');
  return i < 0 ? type : type.slice(0, i);
}

/** The routing key of an event type: `task-succeeded` -> `task.succeeded`. */
export function eventRoutingKey(type: string): string {
  return type.replace(/-/g, '.');
}

/**
 * Hours west of UTC, floored, as Python's `time.timezone // 3600` (altzone under DST): UTC 0,
 * CEST -2, IST -6.
 */
export function utcOffsetHours(now = new Date()): number {
  return Math.floor(now.getTimezoneOffset() / 60);
}

/**
 * One event, or a batch of events of one group (routing key `<group>.multi`), as a message for
 * broker.broadcast(EVENT_EXCHANGE, message, routingKey).
 */
export function encodeEvents(events: CeleryEvent | readonly CeleryEvent[]): { message: WireMessage; routingKey: string } {
  const one = !Array.isArray(events) ? (events as CeleryEvent) : null;
  const list = events as readonly CeleryEvent[];
  const first = one ?? list[0];
  if (!first) throw new ProtocolError('encodeEvents: no event to encode');
  return {
    routingKey: one ? eventRoutingKey(one.type) : `${eventGroup(first.type)}.multi`,
    message: {
      body: Buffer.from(JSON.stringify(events), 'utf8'),
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      headers: { hostname: first.hostname },
      properties: { delivery_mode: 1, priority: 0 },
    },
  };
}

const ACCEPTED = new Set(['application/json', 'application/x-msgpack', 'application/x-yaml']);

/**
 * The events in a message (a single object or a batch array). Throws ProtocolError when the body
 * is not an event or a list of events (every event needs a string `type`).
 */
export function decodeEvents(m: WireMessage): CeleryEvent[] {
  const body = deserialize(m.body, m.contentType, ACCEPTED);
  const list = Array.isArray(body) ? body : [body];
  for (const e of list) {
    if (e === null || typeof e !== 'object' || typeof (e as { type?: unknown }).type !== 'string') {
      throw new ProtocolError(`Event message is not an event: ${JSON.stringify(e)?.slice(0, 200)}`);
    }
  }
  return list as CeleryEvent[];
}
