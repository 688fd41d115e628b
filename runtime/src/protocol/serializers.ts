/**
 * Body serializers by Celery name and content type: json (Celery's default), msgpack, yaml.
 * Pickle is never decoded (ContentDisallowedError). Values map as docs/values.md tables them:
 * JSON as Python's json with kombu's tags (protocol/json.ts), msgpack as kombu's msgpack-python.
 * celeriac writes plain values so that Celery 5.2 peers can read them (spec §2.2), except bytes,
 * which have no plain JSON form.
 */
import { isUtf8 } from 'node:buffer';
import { createRequire } from 'node:module';
import { ContentDisallowedError, DecodeError, EncodeError, ProtocolError } from '../errors.js';
import { parseJson, stringifyJson } from './json.js';
import { AUTH_CONTENT_TYPE } from './signing.js';
import { checkTextDepth, checkValueDepth, DEFAULT_LIMITS } from './limits.js';

export type SerializerName = 'json' | 'msgpack' | 'yaml';

export interface Serializer {
  readonly name: SerializerName;
  readonly contentType: string;
  readonly contentEncoding: 'utf-8' | 'binary';
  /** `dateTags`: json writes a Date as kombu 5.3+'s datetime tag instead of ISO text (protocol/json.ts). */
  dumps(value: unknown, opts?: { dateTags?: boolean }): Buffer;
  loads(body: Buffer): unknown;
}

// msgpack and yaml are loaded on their first use: most workers only ever see JSON, and a worker
// that never loads them stays lighter (both are CommonJS too, so `require` keeps loads() synchronous).
const requireLib = createRequire(import.meta.url);
let msgpackLib: typeof import('@msgpack/msgpack') | undefined;
let yamlLib: typeof import('yaml') | undefined;
const msgpackOf = () => (msgpackLib ??= requireLib('@msgpack/msgpack') as typeof import('@msgpack/msgpack'));
const yamlOf = () => (yamlLib ??= requireLib('yaml') as typeof import('yaml'));

export const PICKLE_CONTENT_TYPE = 'application/x-python-serialize';

const json: Serializer = {
  name: 'json',
  contentType: 'application/json',
  contentEncoding: 'utf-8',
  dumps: (value, opts) => Buffer.from(stringifyJson(value, opts?.dateTags), 'utf8'),
  loads: (body) => parseJson(body.toString('utf8')),
};

const INT64_MIN = -(2n ** 63n);
const UINT64_MAX = 2n ** 64n - 1n;
const SAFE_MIN = BigInt(Number.MIN_SAFE_INTEGER);
const SAFE_MAX = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * The value as kombu's msgpack (msgpack-python, `use_bin_type=True`) can read it: a Date becomes
 * an ISO string (msgpack-python gives a Timestamp that Celery cannot use; kombu has no datetime
 * hook), and an integer beyond 32 bits a BigInt, so that it is written as msgpack int64/uint64
 * (the library writes such numbers as floats once BigInt support is on). Copies only what changes.
 */
function toMsgpackValue(value: unknown, depth = 0): unknown {
  if (typeof value === 'number') return Number.isInteger(value) && Math.abs(value) > 0xffffffff && Number.isSafeInteger(value) ? BigInt(value) : value;
  if (typeof value === 'bigint') {
    if (value < INT64_MIN || value > UINT64_MAX)
      throw new EncodeError(`Integer ${value} is out of msgpack's 64-bit range (Python's msgpack refuses it too); send it with the json serializer`);
    return value;
  }
  if (value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) return value;
  if (value instanceof Date) return value.toJSON();
  if (depth > DEFAULT_LIMITS.maxNestingDepth) throw new EncodeError(`Value is nested deeper than ${DEFAULT_LIMITS.maxNestingDepth} levels`);
  if (Array.isArray(value)) {
    let out: unknown[] | null = null;
    value.forEach((v, i) => {
      const w = toMsgpackValue(v, depth + 1);
      if (!Object.is(w, v)) (out ??= value.slice())[i] = w;
    });
    return out ?? value;
  }
  let out: Record<string, unknown> | null = null;
  for (const [k, v] of Object.entries(value)) {
    const w = toMsgpackValue(v, depth + 1);
    if (!Object.is(w, v)) (out ??= { ...value })[k] = w;
  }
  return out ?? value;
}

/**
 * Decoded msgpack as celeriac's values: int64/uint64 that fit in a double's integers become
 * numbers (the rest stay BigInt), bin becomes a Buffer; a Timestamp is already a Date. Walked with
 * an explicit stack, changing the decoder's fresh containers in place.
 */
function fromMsgpackValue(value: unknown): unknown {
  const fix = (v: unknown): unknown => {
    if (typeof v === 'bigint') return v >= SAFE_MIN && v <= SAFE_MAX ? Number(v) : v;
    if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    return v;
  };
  const root = fix(value);
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const c = stack.pop();
    if (c === null || typeof c !== 'object' || ArrayBuffer.isView(c) || c instanceof Date) continue;
    const o = c as Record<string, unknown>;
    for (const k of Object.keys(o)) {
      const v = o[k];
      if (typeof v === 'bigint' || v instanceof Uint8Array) o[k] = fix(v);
      else if (v !== null && typeof v === 'object') stack.push(v);
    }
  }
  return root;
}

/** Runs a library encoder; what it refuses (a function, a symbol, a cycle) becomes kombu's EncodeError. */
function encoding<T>(serializer: SerializerName, encode: () => T): T {
  try {
    return encode();
  } catch (err) {
    if (err instanceof EncodeError) throw err;
    throw new EncodeError(`Value cannot be written by the ${serializer} serializer: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

const msgpack: Serializer = {
  name: 'msgpack',
  contentType: 'application/x-msgpack',
  contentEncoding: 'binary',
  dumps: (value) => {
    const bytes = encoding('msgpack', () => msgpackOf().encode(toMsgpackValue(value), { ignoreUndefined: true, useBigInt64: true }));
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  },
  loads: (body) => fromMsgpackValue(msgpackOf().decode(body, { useBigInt64: true })),
};

const yaml: Serializer = {
  name: 'yaml',
  contentType: 'application/x-yaml',
  contentEncoding: 'utf-8',
  dumps: (value) =>
    Buffer.from(
      encoding('yaml', () => yamlOf().stringify(value)),
      'utf8',
    ),
  loads: (body) => yamlOf().parse(body.toString('utf8')),
};

const byName = new Map<string, Serializer>([
  ['json', json],
  ['msgpack', msgpack],
  ['yaml', yaml],
]);
const byContentType = new Map<string, Serializer>([
  ['application/json', json],
  ['application/x-msgpack', msgpack],
  ['application/msgpack', msgpack],
  ['application/x-yaml', yaml],
  ['application/yaml', yaml],
]);

export const SERIALIZER_NAMES: readonly SerializerName[] = ['json', 'msgpack', 'yaml'];

/** What a task can be sent with: a serializer, or `auth` (json, signed: protocol/signing.ts). */
export type TaskSerializerName = SerializerName | 'auth';
export const TASK_SERIALIZER_NAMES: readonly TaskSerializerName[] = [...SERIALIZER_NAMES, 'auth'];

/** The serializer for a Celery name (`json`, `msgpack`, `yaml`). */
export function serializerByName(name: string): Serializer {
  const s = byName.get(name);
  if (!s) {
    if (name === 'pickle') throw new ContentDisallowedError(PICKLE_CONTENT_TYPE, SERIALIZER_NAMES);
    throw new ProtocolError(`Unknown serializer "${name}" (known: ${SERIALIZER_NAMES.join(', ')})`);
  }
  return s;
}

/** The Celery name of a content type's serializer, if celeriac has one. */
export function serializerForContentType(contentType: string): SerializerName | null {
  return byContentType.get(contentType)?.name ?? null;
}

/** Content types allowed by an accept list of names or content types (Celery's accept_content). */
export function acceptedContentTypes(accept: readonly string[]): Set<string> {
  const out = new Set<string>();
  for (const a of accept) {
    if (a === 'auth' || a === AUTH_CONTENT_TYPE) out.add(AUTH_CONTENT_TYPE);
    const s = byName.get(a) ?? byContentType.get(a);
    if (s) for (const [ct, v] of byContentType) if (v === s) out.add(ct);
  }
  return out;
}

/**
 * Decodes a body after checking its content type against `accepted`, and its nesting against
 * `maxDepth` before any recursive work (text is scanned before parsing; msgpack's decoder keeps
 * its own stack, so its value is walked after).
 */
export function deserialize(body: Buffer, contentType: string, accepted: ReadonlySet<string>, maxDepth = DEFAULT_LIMITS.maxNestingDepth): unknown {
  const s = accepted.has(contentType) ? byContentType.get(contentType) : undefined;
  if (!s) throw new ContentDisallowedError(contentType, [...accepted]);
  const what = `${contentType} body`;
  if (s.contentEncoding !== 'binary') {
    // Python decodes text bodies strictly: invalid UTF-8 is a DecodeError there, not U+FFFD.
    if (!isUtf8(body)) throw new DecodeError(`Cannot decode ${what}: it is not valid UTF-8`);
    checkTextDepth(body, maxDepth, what);
  }
  let value: unknown;
  try {
    value = s.loads(body);
  } catch (err) {
    if (err instanceof ProtocolError) throw err;
    throw new DecodeError(`Cannot decode ${what}: ${(err as Error).message}`, { cause: err });
  }
  if (s.contentEncoding === 'binary' && body.length > maxDepth) checkValueDepth(value, maxDepth, what);
  return value;
}
