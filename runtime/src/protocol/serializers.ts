/**
 * Body serializers by Celery name and content type: json (Celery's default), msgpack, yaml.
 * Pickle is never decoded (ContentDisallowedError). kombu >= 5.3 JSON tags
 * (`{"__type__", "__value__"}`) are decoded; celeriac writes plain values so that Celery 5.2 peers
 * can read them (spec §2.2), except bytes, which have no plain JSON form.
 */
import { isUtf8 } from 'node:buffer';
import { encode as msgpackEncode, decode as msgpackDecode } from '@msgpack/msgpack';
import { parse as yamlParse, stringify as yamlStringify } from 'yaml';
import { ContentDisallowedError, DecodeError, ProtocolError } from '../errors.js';
import { checkTextDepth, checkValueDepth, DEFAULT_LIMITS } from './limits.js';

export type SerializerName = 'json' | 'msgpack' | 'yaml';

export interface Serializer {
  readonly name: SerializerName;
  readonly contentType: string;
  readonly contentEncoding: 'utf-8' | 'binary';
  dumps(value: unknown): Buffer;
  loads(body: Buffer): unknown;
}

export const PICKLE_CONTENT_TYPE = 'application/x-python-serialize';

function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  if (value !== null && typeof value === 'object' && (value as { type?: unknown }).type === 'Buffer' && Array.isArray((value as { data?: unknown }).data)) {
    // Buffer.toJSON() already ran: bytes only have a tagged form (kombu >= 5.3 reads it).
    return { __type__: 'base64', __value__: Buffer.from((value as { data: number[] }).data).toString('base64') };
  }
  return value;
}

/** Decodes kombu >= 5.3 tagged objects; any other object is kept as it is. */
function jsonReviver(_key: string, value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  const o = value as Record<string, unknown>;
  if (!('__type__' in o) || !('__value__' in o) || Object.keys(o).length !== 2) return value;
  const v = o.__value__;
  switch (o.__type__) {
    case 'datetime':
      return new Date(String(v));
    case 'date':
    case 'time':
    case 'decimal':
    case 'bytes':
      return String(v);
    case 'uuid': {
      const hex = String((v as { hex?: unknown } | null)?.hex ?? v);
      return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
    }
    case 'base64':
      return Buffer.from(String(v), 'base64');
    default:
      throw new DecodeError(`Unknown JSON type tag "${String(o.__type__)}" in message body`);
  }
}

const json: Serializer = {
  name: 'json',
  contentType: 'application/json',
  contentEncoding: 'utf-8',
  dumps: (value) => Buffer.from(JSON.stringify(value, jsonReplacer) ?? 'null', 'utf8'),
  loads: (body) => {
    const text = body.toString('utf8');
    // The reviver is slow; only pay for it when a tag can be present.
    return text.includes('"__type__"') ? JSON.parse(text, jsonReviver) : JSON.parse(text);
  },
};

const msgpack: Serializer = {
  name: 'msgpack',
  contentType: 'application/x-msgpack',
  contentEncoding: 'binary',
  dumps: (value) => {
    const bytes = msgpackEncode(value, { ignoreUndefined: true });
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  },
  loads: (body) => msgpackDecode(body),
};

const yaml: Serializer = {
  name: 'yaml',
  contentType: 'application/x-yaml',
  contentEncoding: 'utf-8',
  dumps: (value) => Buffer.from(yamlStringify(value), 'utf8'),
  loads: (body) => yamlParse(body.toString('utf8')),
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
