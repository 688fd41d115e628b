/**
 * Remote control ("pidbox") requests as Celery sends them (spec §7): a JSON body
 * `{method, arguments, destination, pattern, matcher, ticket, reply_to}` broadcast on the fanout
 * exchange `celery.pidbox`.
 */
import { randomUUID } from 'node:crypto';
import type { WireMessage } from './wire-message.js';
import { ProtocolError } from '../errors.js';

export const CONTROL_EXCHANGE = 'celery.pidbox';

export interface ControlRequest {
  method: string;
  arguments: Record<string, unknown>;
  destination: string[] | null;
  pattern: string | null;
  matcher: string | null;
  ticket: string;
  reply_to: { exchange: string; routing_key: string } | null;
}

let clock = 0;

export function encodeControl(method: string, args: Record<string, unknown>, destination: string[] | null = null, timeoutMs = 1000): WireMessage {
  const req: ControlRequest = { method, arguments: args, destination, pattern: null, matcher: null, ticket: randomUUID(), reply_to: null };
  return {
    body: Buffer.from(JSON.stringify(req)),
    contentType: 'application/json',
    contentEncoding: 'utf-8',
    headers: { clock: ++clock, expires: (Date.now() + timeoutMs) / 1000 },
    properties: { delivery_mode: 2, priority: 0 },
  };
}

export function decodeControl(m: WireMessage): ControlRequest {
  if (m.contentType !== 'application/json') throw new ProtocolError(`Control message has content type ${m.contentType}, expected application/json`);
  const req = JSON.parse(m.body.toString('utf8')) as ControlRequest;
  if (typeof req?.method !== 'string') throw new ProtocolError('Control message has no "method"');
  req.arguments ??= {};
  return req;
}
