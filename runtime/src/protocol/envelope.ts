/**
 * kombu's JSON message envelope (spec §3.1), used by the Redis transport and by celeriac's file
 * broker, so that a message on disk reads exactly like one in a Redis list.
 */
import { isUtf8 } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import { rawMessage, type WireMessage } from './wire-message.js';
import { DecodeError } from '../errors.js';
import { checkTextDepth, DEFAULT_LIMITS } from './limits.js';
import { taskHeadersJson } from './task-message.js';

export interface Envelope {
  body: string;
  'content-encoding': string;
  'content-type': string;
  headers: Record<string, unknown>;
  properties: Record<string, unknown> & {
    delivery_info?: { exchange?: string; routing_key?: string; redelivered?: boolean };
    body_encoding?: string;
    delivery_tag?: string;
  };
}

/** Wraps a message for `routingKey` on `exchange` ('' = the default exchange). */
export function toEnvelope(m: WireMessage, exchange: string, routingKey: string): Envelope {
  return {
    body: m.body.toString('base64'),
    'content-encoding': m.contentEncoding,
    'content-type': m.contentType,
    headers: m.headers,
    properties: {
      ...m.properties,
      delivery_info: { exchange, routing_key: routingKey },
      body_encoding: 'base64',
      delivery_tag: randomUUID(),
    },
  };
}

/**
 * `JSON.stringify(toEnvelope(m, exchange, routingKey))`, the same text (a message that has any of
 * the three properties toEnvelope() sets is wrapped the generic way), written without building
 * the envelope object (a producer's hot path: base64 needs no escaping, the properties only get
 * three keys appended).
 */
export function envelopeText(m: WireMessage, exchange: string, routingKey: string): string {
  const props = m.properties;
  const own = JSON.stringify(props);
  if (own === undefined || own[own.length - 1] !== '}' || 'delivery_info' in props || 'body_encoding' in props || 'delivery_tag' in props)
    return JSON.stringify(toEnvelope(m, exchange, routingKey));
  const info = `"delivery_info":{"exchange":${JSON.stringify(exchange)},"routing_key":${JSON.stringify(routingKey)}},"body_encoding":"base64","delivery_tag":"${randomUUID()}"}`;
  const type = m.contentType === 'application/json' ? '"application/json"' : JSON.stringify(m.contentType);
  const encoding = m.contentEncoding === 'utf-8' ? '"utf-8"' : JSON.stringify(m.contentEncoding);
  return (
    `{"body":"${m.body.toString('base64')}","content-encoding":${encoding},"content-type":${type},` +
    `"headers":${taskHeadersJson(m)},"properties":${own.length === 2 ? '{' : `${own.slice(0, -1)},`}${info}}`
  );
}

/**
 * Parses an envelope's JSON text (nesting checked first, so that no later step recurses into a
 * poison header); throws DecodeError naming what is wrong.
 */
export function parseEnvelope(text: string): Envelope {
  checkTextDepth(text, DEFAULT_LIMITS.maxNestingDepth, 'Message envelope');
  let e: unknown;
  try {
    e = JSON.parse(text);
  } catch (err) {
    throw new DecodeError(`Message envelope is not JSON: ${(err as Error).message}`, { cause: err });
  }
  if (e === null || typeof e !== 'object' || typeof (e as Envelope).body !== 'string') {
    throw new DecodeError('Message envelope has no string "body"');
  }
  const env = e as Envelope;
  env.headers ??= {};
  env.properties ??= {};
  return env;
}

/** The message inside an envelope (base64 body decoded when `body_encoding` says so). */
export function fromEnvelope(e: Envelope): WireMessage {
  const p = e.properties;
  // The properties but the transport's three, copied by a loop (rest destructuring is a slow
  // runtime call, and every message a worker takes comes through here).
  const properties: Record<string, unknown> = {};
  for (const k in p) {
    if (k === 'delivery_info' || k === 'body_encoding' || k === 'delivery_tag' || !Object.hasOwn(p, k)) continue;
    // A key named __proto__ stays a plain key (as JSON.parse and rest destructuring keep it).
    if (k === '__proto__') Object.defineProperty(properties, k, { value: p[k], enumerable: true, writable: true, configurable: true });
    else properties[k] = p[k];
  }
  const body = p.body_encoding === 'base64' ? Buffer.from(e.body, 'base64') : Buffer.from(e.body, 'utf8');
  return {
    body,
    contentType: e['content-type'] ?? 'application/json',
    contentEncoding: e['content-encoding'] ?? 'utf-8',
    headers: e.headers,
    properties,
  };
}

/**
 * The one place drivers read a stored envelope (Redis lists, file broker): the envelope and its
 * message, or, when `raw` is not an envelope, the raw bytes with why (rawMessage), for the worker
 * to dead-letter byte-exact.
 */
export function readEnvelope(raw: string | Buffer): { env: Envelope; message: WireMessage } | { env: null; message: WireMessage; err: Error } {
  try {
    // kombu's envelope is JSON text: bytes that are not UTF-8 are not one (and would lose bytes to U+FFFD).
    if (typeof raw !== 'string' && !isUtf8(raw)) throw new DecodeError('Message envelope is not valid UTF-8');
    const env = parseEnvelope(typeof raw === 'string' ? raw : raw.toString('utf8'));
    return { env, message: fromEnvelope(env) };
  } catch (err) {
    return { env: null, message: rawMessage(raw, `not a kombu envelope: ${(err as Error).message}`), err: err as Error };
  }
}
