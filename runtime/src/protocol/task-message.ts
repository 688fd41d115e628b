/**
 * Celery task messages, protocol v2 (written and read) and v1/hybrid (read only); spec §1.
 * Everything about header names, body layout and Celery's units lives here and nowhere else.
 */
import type { WireMessage } from './wire-message.js';
import { DecodeError, ProtocolError, SecurityError } from '../errors.js';
import { compress, decompress, type CompressionName } from './compression.js';
import { acceptedContentTypes, deserialize, SERIALIZER_NAMES, serializerByName, type TaskSerializerName } from './serializers.js';
import { AUTH_CONTENT_ENCODING, AUTH_CONTENT_TYPE, type MessageSigner } from './signing.js';
import { checkSize, DEFAULT_LIMITS, TOO_DEEP_HEADER, type InputLimits } from './limits.js';
import { stringifyJson } from './json.js';

/** Every content type celeriac decodes (the inner body of a verified signed message). */
const ANY_SERIALIZER = acceptedContentTypes(SERIALIZER_NAMES);
import { pyRepr } from './py-repr.js';

/** A signature as Celery's canvas writes it (spec §1.4). */
export interface SignatureDict {
  task: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  options: Record<string, unknown>;
  subtask_type: string | null;
  immutable: boolean;
  [extra: string]: unknown;
}

/** The third element of a v2 body. */
export interface Embed {
  callbacks: SignatureDict[] | null;
  errbacks: SignatureDict[] | null;
  chain: SignatureDict[] | null;
  chord: SignatureDict | null;
}

/** What a client asks to send. Times are absolute; countdown is resolved by the caller. */
export interface TaskMessageInput {
  id: string;
  name: string;
  args: readonly unknown[];
  kwargs: Record<string, unknown>;
  eta?: Date | null;
  expires?: Date | null;
  retries?: number;
  /** `[hard, soft]` in seconds, as Celery orders them. */
  timelimit?: [number | null, number | null];
  rootId?: string | null;
  parentId?: string | null;
  group?: string | null;
  groupIndex?: number | null;
  shadow?: string | null;
  origin: string;
  ignoreResult?: boolean;
  replyTo?: string;
  priority?: number;
  /** User headers, merged into the header table. */
  headers?: Record<string, unknown>;
  callbacks?: SignatureDict[] | null;
  errbacks?: SignatureDict[] | null;
  chain?: SignatureDict[] | null;
  chord?: SignatureDict | null;
  serializer: TaskSerializerName;
  compression?: CompressionName | null;
  /** Signs the body when `serializer` is auth. */
  signer?: MessageSigner | null;
  /** JSON bodies: Dates as kombu 5.3+'s datetime tag (config jsonDateTags). */
  dateTags?: boolean;
}

/** A decoded task message, whatever protocol version it came in. */
export interface TaskRequest {
  readonly protocol: 1 | 2;
  readonly id: string;
  /** The registered name to execute (`task` header). */
  readonly name: string;
  /** Display name (`shadow` header), or the name. */
  readonly displayName: string;
  readonly args: unknown[];
  readonly kwargs: Record<string, unknown>;
  readonly embed: Embed;
  readonly eta: Date | null;
  readonly expires: Date | null;
  readonly retries: number;
  readonly timelimit: [number | null, number | null];
  readonly rootId: string;
  readonly parentId: string | null;
  readonly group: string | null;
  readonly groupIndex: number | null;
  readonly origin: string | null;
  readonly ignoreResult: boolean;
  readonly replyTo: string | null;
  readonly correlationId: string;
  readonly priority: number | null;
  readonly argsrepr: string;
  readonly kwargsrepr: string;
  /** The raw header table (user headers included). */
  readonly headers: Record<string, unknown>;
}

const EMPTY_EMBED: Embed = Object.freeze({ callbacks: null, errbacks: null, chain: null, chord: null }) as Embed;

/** Celery's ISO form of an aware UTC datetime: `2025-01-01T12:00:10.815867+00:00`. */
export function isoUtc(d: Date): string {
  const s = d.toISOString(); // always ends in Z
  return `${s.slice(0, -1)}000+00:00`;
}

/** Parses an ISO time; a naive value is UTC (spec §1.2). */
export function parseIsoTime(value: unknown, field: string): Date | null {
  if (value === null || value === undefined || value === '') return null;
  if (value instanceof Date) return value;
  if (typeof value !== 'string') throw new ProtocolError(`Header "${field}" must be an ISO-8601 string, got ${JSON.stringify(value)}`);
  const naive = !/(Z|[+-]\d\d:?\d\d)$/.test(value);
  // JS Dates keep milliseconds: drop Python's extra microsecond digits.
  const text = value.replace(/(\.\d{3})\d+/, '$1');
  const d = new Date(naive ? `${text}Z` : text);
  if (Number.isNaN(d.getTime())) throw new ProtocolError(`Header "${field}" is not a valid ISO-8601 time: "${value}"`);
  return d;
}

function argsRepr(args: readonly unknown[]): string {
  const inner = args.map((a) => pyRepr(a)).join(', ');
  return (args.length === 1 ? `(${inner},)` : `(${inner})`).slice(0, 1024);
}

/** Printable ASCII but `"` and `\`: JSON text is the string between quotes. */
const PLAIN_ASCII = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/** JSON.stringify(v) for one header value, `"…"` without a call for a plain ASCII string. */
function jsonValue(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'string') return v.length <= 256 && PLAIN_ASCII.test(v) ? `"${v}"` : JSON.stringify(v);
  const text = JSON.stringify(v) as string | undefined;
  if (text === undefined) throw new TypeError('undefined header value'); // never built: the caller falls back
  return text;
}

/**
 * True when `m.headers` is a table encodeTask built with no user headers (its keys, in its order:
 * TASK_HEADER_KEYS). No code changes an outgoing message's headers in place (beforeTaskPublish
 * and tracing copy them), so such a table may be written from a template. (A marker on the
 * message, not a WeakSet of tables: adding to a WeakSet cost ~0.2 us per task.)
 */
export function isBuiltTaskHeaders(m: WireMessage): boolean {
  return m.taskHeaders !== undefined && m.taskHeaders === m.headers;
}

/**
 * The keys of a table encodeTask builds, in order (after `lang: 'py'` and before the constant
 * `replaced_task_nesting: 0, stamped_headers: null, stamps: {}`).
 */
export const TASK_HEADER_KEYS = [
  'task',
  'id',
  'shadow',
  'eta',
  'expires',
  'group',
  'group_index',
  'retries',
  'timelimit',
  'root_id',
  'parent_id',
  'argsrepr',
  'kwargsrepr',
  'origin',
  'ignore_result',
] as const;

/**
 * `JSON.stringify(m.headers)`, the same text; for a table encodeTask built (isBuiltTaskHeaders),
 * written from a template (a third of JSON.stringify's time, which walks the 19 keys generically).
 */
export function taskHeadersJson(m: WireMessage): string {
  const headers = m.headers;
  if (!isBuiltTaskHeaders(m)) return JSON.stringify(headers);
  const h = headers;
  try {
    const tl = h.timelimit;
    const timelimit = Array.isArray(tl) && tl.length === 2 && tl[0] === null && tl[1] === null ? '[null,null]' : jsonValue(tl);
    return (
      `{"lang":"py","task":${jsonValue(h.task)},"id":${jsonValue(h.id)},"shadow":${jsonValue(h.shadow)},"eta":${jsonValue(h.eta)},` +
      `"expires":${jsonValue(h.expires)},"group":${jsonValue(h.group)},"group_index":${jsonValue(h.group_index)},"retries":${jsonValue(h.retries)},` +
      `"timelimit":${timelimit},"root_id":${jsonValue(h.root_id)},"parent_id":${jsonValue(h.parent_id)},"argsrepr":${jsonValue(h.argsrepr)},` +
      `"kwargsrepr":${jsonValue(h.kwargsrepr)},"origin":${jsonValue(h.origin)},"ignore_result":${jsonValue(h.ignore_result)},` +
      `"replaced_task_nesting":0,"stamped_headers":null,"stamps":{}}`
    );
  } catch {
    return JSON.stringify(headers); // a value the template cannot write (undefined): the generic form
  }
}

/** `,<embed>]`: how a JSON body `[args, kwargs, embed]` ends when the embed is all nulls. */
const NULL_EMBED_JSON = ',{"callbacks":null,"errbacks":null,"chain":null,"chord":null}]';

/** Builds a protocol v2 message (spec §1.1-1.3, TV1). */
export function encodeTask(t: TaskMessageInput): WireMessage {
  const serializer = serializerByName(t.serializer === 'auth' ? 'json' : t.serializer);
  const headers: Record<string, unknown> = {
    lang: 'py',
    task: t.name,
    id: t.id,
    shadow: t.shadow ?? null,
    eta: t.eta ? isoUtc(t.eta) : null,
    expires: t.expires ? isoUtc(t.expires) : null,
    group: t.group ?? null,
    group_index: t.groupIndex ?? null,
    retries: t.retries ?? 0,
    timelimit: t.timelimit ?? [null, null],
    root_id: t.rootId ?? t.id,
    parent_id: t.parentId ?? null,
    argsrepr: argsRepr(t.args),
    kwargsrepr: pyRepr(t.kwargs).slice(0, 1024),
    origin: t.origin,
    ignore_result: t.ignoreResult ?? false,
    replaced_task_nesting: 0,
    stamped_headers: null,
    stamps: {},
  };
  if (t.headers) Object.assign(headers, t.headers);
  let body: Buffer;
  if (serializer.name === 'json' && !t.callbacks && !t.errbacks && !t.chain && !t.chord) {
    // The common call: the embed is all nulls, its text a constant (the same bytes dumps() writes).
    const text = stringifyJson([t.args, t.kwargs], t.dateTags);
    body = Buffer.from(`${text.slice(0, -1)}${NULL_EMBED_JSON}`, 'utf8');
  } else {
    const embed: Embed = {
      callbacks: t.callbacks ?? null,
      errbacks: t.errbacks ?? null,
      chain: t.chain ?? null,
      chord: t.chord ?? null,
    };
    body = serializer.dumps([t.args, t.kwargs, embed], { dateTags: t.dateTags });
  }
  let { contentType, contentEncoding }: { contentType: string; contentEncoding: string } = serializer;
  if (t.serializer === 'auth') {
    if (!t.signer) throw new SecurityError('The auth serializer needs securityKey and securityCertificate');
    body = t.signer.sign({ body, contentType, contentEncoding });
    contentType = AUTH_CONTENT_TYPE;
    contentEncoding = AUTH_CONTENT_ENCODING;
  }
  if (t.compression) {
    const c = compress(body, t.compression);
    body = c.body;
    headers.compression = c.header;
  }
  const properties: Record<string, unknown> = {
    correlation_id: t.id,
    reply_to: t.replyTo ?? '',
    delivery_mode: 2,
    priority: t.priority ?? 0,
  };
  if (t.expires) properties.expiration = String(Math.max(0, t.expires.getTime() - Date.now()));
  return { body, contentType, contentEncoding, headers, properties, taskHeaders: t.headers || t.compression ? undefined : headers };
}

function asRecord(v: unknown, what: string): Record<string, unknown> {
  if (v === null || v === undefined) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new ProtocolError(`${what} must be a mapping, got ${JSON.stringify(v)?.slice(0, 80)}`);
  return v as Record<string, unknown>;
}

function asArgs(v: unknown): unknown[] {
  if (v === null || v === undefined) return [];
  if (!Array.isArray(v)) throw new ProtocolError(`Task args must be a list, got ${JSON.stringify(v)?.slice(0, 80)}`);
  return v;
}

function optString(v: unknown): string | null {
  return typeof v === 'string' && v !== '' ? v : null;
}

function optInt(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

function timelimitOf(v: unknown): [number | null, number | null] {
  if (!Array.isArray(v)) return [null, null];
  return [optInt(v[0]), optInt(v[1])];
}

function embedOf(v: unknown): Embed {
  if (v === null || v === undefined) return EMPTY_EMBED;
  const e = asRecord(v, 'Task embed');
  return {
    callbacks: (e.callbacks as SignatureDict[] | null) ?? null,
    errbacks: (e.errbacks as SignatureDict[] | null) ?? null,
    chain: (e.chain as SignatureDict[] | null) ?? null,
    chord: (e.chord as SignatureDict | null) ?? null,
  };
}

/**
 * The task id a message names in its headers (`id`, else the `correlation_id` property), read
 * without decoding its body: a message that cannot be run still gets its FAILURE stored under it.
 */
export function taskIdOf(m: WireMessage): string | null {
  return optString(m.headers?.id) ?? optString(m.properties?.correlation_id);
}

/**
 * Decodes a task message within `limits` (checked before any recursive work). Throws
 * ContentDisallowedError for a content type not in `accepted` (pickle always), DecodeError for a
 * body that cannot be decoded or is over a limit, and ProtocolError for anything else malformed;
 * each names the reason.
 */
export function decodeTask(
  m: WireMessage,
  accepted: ReadonlySet<string>,
  limits: InputLimits = DEFAULT_LIMITS,
  signer: MessageSigner | null = null,
): TaskRequest {
  if (m.unreadable !== undefined) throw new DecodeError(`Message is ${m.unreadable}`);
  const h = m.headers ?? {};
  if (h[TOO_DEEP_HEADER] !== undefined) {
    throw new DecodeError(`Header "${String(h[TOO_DEEP_HEADER])}" is nested deeper than ${DEFAULT_LIMITS.maxNestingDepth} levels (the broker's header limit)`);
  }
  let body = m.body;
  checkSize(body.length, limits, 'Task body');
  const compression = h.compression;
  if (typeof compression === 'string' && compression !== '') body = decompress(body, compression, limits.maxMessageBytes);
  let decoded: unknown;
  if (m.contentType === AUTH_CONTENT_TYPE && accepted.has(AUTH_CONTENT_TYPE)) {
    // Celery's auth serializer: verified first, then the inner body decoded whatever its type
    // (Celery loads it with force=True: the signature is the trust).
    if (!signer) throw new SecurityError('A signed (auth) message arrived, but no securityCertStore is configured to verify it');
    const inner = signer.verify(body);
    decoded = deserialize(inner.body, inner.contentType, ANY_SERIALIZER, limits.maxNestingDepth);
  } else decoded = deserialize(body, m.contentType, accepted, limits.maxNestingDepth);
  const props = m.properties ?? {};

  if (typeof h.task === 'string') {
    if (!Array.isArray(decoded) || decoded.length < 2) {
      throw new ProtocolError(`Task body must be [args, kwargs, embed], got ${JSON.stringify(decoded)?.slice(0, 120)}`);
    }
    const id = h.id;
    if (typeof id !== 'string' || id === '') throw new ProtocolError(`Task message for "${h.task}" has no "id" header`);
    const shadow = optString(h.shadow);
    const args = asArgs(decoded[0]);
    const kwargs = asRecord(decoded[1], 'Task kwargs');
    return {
      protocol: 2,
      id,
      name: h.task,
      displayName: shadow ?? h.task,
      args,
      kwargs,
      embed: embedOf(decoded[2]),
      eta: parseIsoTime(h.eta, 'eta'),
      expires: parseIsoTime(h.expires, 'expires'),
      retries: optInt(h.retries) ?? 0,
      timelimit: timelimitOf(h.timelimit),
      rootId: optString(h.root_id) ?? id,
      parentId: optString(h.parent_id),
      group: optString(h.group),
      groupIndex: optInt(h.group_index),
      origin: optString(h.origin),
      ignoreResult: h.ignore_result === true,
      replyTo: optString(props.reply_to),
      correlationId: optString(props.correlation_id) ?? id,
      priority: optInt(props.priority),
      // Celery's Request: the header, or the repr of the values when a client sent none (celery-node).
      argsrepr: typeof h.argsrepr === 'string' && h.argsrepr !== '' ? h.argsrepr : argsRepr(args),
      kwargsrepr: typeof h.kwargsrepr === 'string' && h.kwargsrepr !== '' ? h.kwargsrepr : pyRepr(kwargs).slice(0, 1024),
      headers: h,
    };
  }

  // Protocol v1 (dict body, empty headers) or hybrid (headers merged over the body; spec §1.6).
  if (decoded === null || typeof decoded !== 'object' || Array.isArray(decoded) || typeof (decoded as { task?: unknown }).task !== 'string') {
    throw new ProtocolError('Unknown message: no "task" header and the body is not a protocol v1 task');
  }
  const b = { ...(decoded as Record<string, unknown>), ...h };
  const id = b.id;
  if (typeof id !== 'string' || id === '') throw new ProtocolError(`Protocol v1 task "${String(b.task)}" has no "id"`);
  const name = String(b.task);
  const args = asArgs(b.args);
  const kwargs = asRecord(b.kwargs, 'Task kwargs');
  return {
    protocol: 1,
    id,
    name,
    displayName: name,
    args,
    kwargs,
    embed: {
      callbacks: (b.callbacks as SignatureDict[] | null) ?? null,
      errbacks: (b.errbacks as SignatureDict[] | null) ?? null,
      chain: null,
      chord: (b.chord as SignatureDict | null) ?? null,
    },
    eta: parseIsoTime(b.eta, 'eta'),
    expires: parseIsoTime(b.expires, 'expires'),
    retries: optInt(b.retries) ?? 0,
    timelimit: timelimitOf(b.timelimit),
    rootId: optString(b.root_id) ?? id,
    parentId: optString(b.parent_id),
    group: optString(b.group) ?? optString(b.taskset),
    groupIndex: optInt(b.group_index),
    origin: null,
    ignoreResult: false,
    replyTo: optString(props.reply_to),
    correlationId: optString(props.correlation_id) ?? id,
    priority: optInt(props.priority),
    argsrepr: argsRepr(args),
    kwargsrepr: pyRepr(kwargs),
    headers: h,
  };
}
