/**
 * amqplib, loaded with a field-table decoder that reads every AMQP 0-9-1 tag py-amqp writes (and a
 * faster encoder with the same output), basic.publish built in one buffer (encodePublish), a
 * frame reader that does not copy every chunk received (fastRecvFrame) and the frames of every
 * channel written to the socket together once per event-loop turn (FrameWriter).
 *
 * Why (spec §4.7): py-amqp writes Python ints outside ±2^31 with the tag `L` (signed 64-bit).
 * amqplib 0.10 throws `Unexpected type tag "L"` while parsing the frame and drops the whole
 * connection, so one Python message with a large header value (a stamp, a user header holding an
 * id) would take a celeriac worker down, over and over on every redelivery. The replacement below is
 * amqplib's decoder plus `L` (int64), `U` (int16) and `l` kept as int64; a tag it still cannot
 * read ends that table early (its length is known) with `x-celeriac-undecodable-header` naming the
 * key, instead of killing the connection.
 *
 * amqplib's generated defs.js copies `codec.decodeFields` when it loads, so the codec is patched
 * before amqplib is first required; if something loaded amqplib earlier, its modules are loaded
 * afresh. Import amqplib only from here.
 */
import { createRequire } from 'node:module';
import type * as AmqplibModule from 'amqplib';
import { DEFAULT_LIMITS, TOO_DEEP_HEADER } from '../protocol/limits.js';
import { TASK_HEADER_KEYS } from '../protocol/task-message.js';

/**
 * A publish option (ignored by amqplib) set when `headers` is a table encodeTask built: encodePublish
 * then writes it with encodeTaskHeaders.
 */
export const TASK_HEADERS_OPTION = 'celeriacTaskHeaders';

const require = createRequire(import.meta.url);

type Fields = Record<string, unknown>;

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Decodes one field table (the slice holds exactly the table's bytes). Never throws on a tag.
 * Tables and arrays nested deeper than the input limit (DEFAULT_LIMITS.maxNestingDepth) are not
 * decoded: their bytes are skipped, and TOO_DEEP_HEADER on the top table names the header, so the
 * worker refuses the message (a DecodeError stored for the caller) and nothing recurses further.
 */
export function decodeFields(slice: Buffer): Fields {
  return decodeFieldsAt(slice, 0, slice.length);
}

/** decodeFields of the table at buf[from, to). */
function decodeFieldsAt(buf: Buffer, from: number, to: number): Fields {
  const r: Reader = { buf, at: from, val: undefined, key: '', tooDeep: null };
  const fields = decodeTable(r, to, 1);
  if (r.tooDeep !== null) fields[TOO_DEEP_HEADER] = r.tooDeep;
  return fields;
}

/**
 * Where decoding is: one object for a whole table and its nested values (a task's ~20 headers
 * decoded through closures and sub-buffers cost a worker ~5% of its CPU).
 */
interface Reader {
  readonly buf: Buffer;
  at: number;
  /** The value decodeValue read last. */
  val: unknown;
  /** The key being decoded (named when a nested value is too deep). */
  key: string;
  tooDeep: string | null;
}

/**
 * The names of the last top-level table, by position: Celery's headers come in the same order in
 * every message, and reusing the string V8 already interned spares a string-table lookup per key.
 */
const lastKeys: string[] = [];

/**
 * True when buf[from, to) is ASCII and spells `text`. ASCII only: a cached non-ASCII string could
 * equal other bytes char by char.
 */
function sameAscii(buf: Buffer, from: number, to: number, text: string): boolean {
  if (text.length !== to - from) return false;
  for (let i = from, j = 0; i < to; i++, j++) if (buf[i] !== text.charCodeAt(j) || buf[i]! > 127) return false;
  return true;
}

/** The key at buf[from, to), the cached one when its bytes are the same. */
function readKey(buf: Buffer, from: number, to: number, index: number): string {
  if (index < 0) return buf.toString('utf8', from, to);
  const cached = lastKeys[index];
  if (cached !== undefined && sameAscii(buf, from, to, cached)) return cached;
  const key = buf.toString('utf8', from, to);
  if (index < 64) lastKeys[index] = key;
  return key;
}

function decodeTable(r: Reader, end: number, depth: number): Fields {
  const fields: Fields = {};
  const { buf } = r;
  let index = depth === 1 ? 0 : -1;
  while (r.at < end) {
    const keyLen = buf[r.at]!;
    const key = readKey(buf, r.at + 1, r.at + 1 + keyLen, index);
    if (index >= 0) index++;
    r.at += 1 + keyLen;
    r.key = key;
    const wasTooDeep = r.tooDeep !== null;
    const ok = decodeValue(r, depth);
    if (depth === 1 && !wasTooDeep && r.tooDeep !== null) r.tooDeep = key; // name the top-level header
    if (!ok) {
      // The value's length is unknown: keep what was read and say which key was cut.
      fields['x-celeriac-undecodable-header'] = key;
      r.at = end;
      break;
    }
    fields[key] = r.val;
  }
  return fields;
}

/** Reads one value (tag and bytes) into r.val; false for a tag it does not know. */
function decodeValue(r: Reader, level: number): boolean {
  const { buf } = r;
  const tag = buf[r.at++]!;
  let len: number;
  switch (tag) {
    case 0x62: // b
      r.val = buf.readInt8(r.at);
      r.at += 1;
      break;
    case 0x42: // B
      r.val = buf[r.at]!;
      r.at += 1;
      break;
    case 0x73: // s
    case 0x55: // U
      r.val = buf.readInt16BE(r.at);
      r.at += 2;
      break;
    case 0x75: // u
      r.val = buf.readUInt16BE(r.at);
      r.at += 2;
      break;
    case 0x49: // I
      r.val = buf.readInt32BE(r.at);
      r.at += 4;
      break;
    case 0x69: // i
      r.val = buf.readUInt32BE(r.at);
      r.at += 4;
      break;
    // py-amqp writes large Python ints as 'L' with a signed 64-bit value; RabbitMQ uses 'l'.
    // Beyond 2^53 a BigInt, exact, as in a body (docs/values.md).
    case 0x4c: // L
    case 0x6c: {
      // l
      const n = buf.readBigInt64BE(r.at);
      r.val = n >= MIN_SAFE && n <= MAX_SAFE ? Number(n) : n;
      r.at += 8;
      break;
    }
    case 0x66: // f
      r.val = buf.readFloatBE(r.at);
      r.at += 4;
      break;
    case 0x64: // d
      r.val = buf.readDoubleBE(r.at);
      r.at += 8;
      break;
    case 0x74: // t
      r.val = buf[r.at] !== 0;
      r.at += 1;
      break;
    case 0x56: // V
      r.val = null;
      break;
    case 0x53: // S
      len = buf.readUInt32BE(r.at);
      r.at += 4;
      r.val = buf.toString('utf8', r.at, r.at + len);
      r.at += len;
      break;
    case 0x78: // x
      len = buf.readUInt32BE(r.at);
      r.at += 4;
      r.val = buf.subarray(r.at, r.at + len);
      r.at += len;
      break;
    case 0x44: {
      // D
      const places = buf[r.at]!;
      const digits = buf.readUInt32BE(r.at + 1);
      r.at += 5;
      r.val = { '!': 'decimal', value: { places, digits } };
      break;
    }
    case 0x54: // T
      r.val = { '!': 'timestamp', value: Number(buf.readBigUInt64BE(r.at)) };
      r.at += 8;
      break;
    case 0x46: {
      // F
      len = buf.readUInt32BE(r.at);
      r.at += 4;
      const until = r.at + len;
      if (level + 1 > DEFAULT_LIMITS.maxNestingDepth) {
        r.tooDeep ??= r.key;
        r.val = null;
      } else {
        const key = r.key;
        r.val = decodeTable(r, until, level + 1);
        r.key = key;
      }
      r.at = until;
      break;
    }
    case 0x41: {
      // A
      len = buf.readUInt32BE(r.at);
      r.at += 4;
      const until = r.at + len;
      const vals: unknown[] = [];
      if (level + 1 > DEFAULT_LIMITS.maxNestingDepth) {
        r.tooDeep ??= r.key;
        r.at = until;
      }
      while (r.at < until) {
        if (!decodeValue(r, level + 1)) {
          r.at = until;
          break;
        }
        vals.push(r.val);
      }
      r.val = vals;
      break;
    }
    default:
      return false;
  }
  return true;
}

// amqplib's number rules: floats (and anything >= 2^63) as double; integers by size.
function isFloatingPoint(n: number): boolean {
  return n >= 0x8000000000000000 || (Math.abs(n) < 0x4000000000000 && Math.floor(n) !== n);
}

/**
 * Copies a short ASCII string byte by byte (cheaper than a call into Buffer#write for the ~20
 * short names and values of Celery headers); returns -1, writing nothing useful, for non-ASCII.
 */
function writeAscii(buf: Buffer, s: string, offset: number): number {
  const n = s.length;
  if (n > 64 || offset + n > buf.length) return -1;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c > 127) return -1;
    buf[offset + i] = c;
  }
  return n;
}

/** Writes a long string (tag S) and returns the new offset. */
function writeLongString(buf: Buffer, s: string, offset: number): number {
  const ascii = writeAscii(buf, s, offset + 4);
  if (ascii >= 0) {
    buf.writeUInt32BE(ascii, offset);
    return offset + 4 + ascii;
  }
  const len = Buffer.byteLength(s, 'utf8');
  if (offset + 4 + len > buf.length) throw new RangeError(`AMQP header table larger than ${buf.length} bytes`);
  buf.writeUInt32BE(len, offset);
  buf.write(s, offset + 4, 'utf8');
  return offset + 4 + len;
}

/** Writes one field value (tag and bytes) and returns the new offset. amqplib's types, integers as py-amqp's. */
function encodeValue(buf: Buffer, value: unknown, offset: number): number {
  let type: string = typeof value;
  let val = value as never as number;
  if (value !== null && type === 'object' && Object.prototype.hasOwnProperty.call(value, '!')) {
    type = (value as { '!': string })['!'];
    val = (value as { value: number }).value;
  }
  if (type === 'number') {
    if (isFloatingPoint(val)) type = 'double';
    // Integers go as py-amqp writes them ('I', else 'l'), not amqplib's narrowest type: py-amqp
    // before 5.2 (Debian's Celery 5.2) reads 's' as a short string and 'b' as unsigned, so a
    // header such as a Lamport clock of 200 sent as 's' killed the Python worker ("Unrecoverable
    // error: UnicodeDecodeError").
    else if (val >= -0x80000000 && val < 0x80000000) type = 'int';
    else type = 'long';
  }
  switch (type) {
    case 'bigint':
      buf[offset++] = 0x6c; // 'l'
      return buf.writeBigInt64BE(value as bigint, offset); // throws a RangeError beyond 64 bits
    case 'string':
      buf[offset++] = 0x53; // 'S'
      return writeLongString(buf, value as string, offset);
    case 'boolean':
      buf[offset++] = 0x74; // 't'
      buf[offset] = value ? 1 : 0;
      return offset + 1;
    case 'object': {
      if (value === null) {
        buf[offset++] = 0x56; // 'V'
        return offset;
      }
      if (Array.isArray(value)) {
        buf[offset++] = 0x41; // 'A'
        const start = offset;
        offset += 4;
        for (const v of value) offset = encodeValue(buf, v, offset);
        buf.writeUInt32BE(offset - start - 4, start);
        return offset;
      }
      if (Buffer.isBuffer(value)) {
        buf[offset++] = 0x78; // 'x'
        buf.writeUInt32BE(value.length, offset);
        value.copy(buf, offset + 4);
        return offset + 4 + value.length;
      }
      buf[offset++] = 0x46; // 'F'
      return offset + encodeTable(buf, value as Record<string, unknown>, offset);
    }
    case 'double':
    case 'float64':
      buf[offset++] = 0x64; // 'd'
      return buf.writeDoubleBE(val, offset);
    case 'byte':
    case 'int8':
      buf[offset++] = 0x62; // 'b'
      return buf.writeInt8(val, offset);
    case 'unsignedbyte':
    case 'uint8':
      buf[offset++] = 0x42; // 'B'
      return buf.writeUInt8(val, offset);
    case 'short':
    case 'int16':
      buf[offset++] = 0x73; // 's'
      return buf.writeInt16BE(val, offset);
    case 'unsignedshort':
    case 'uint16':
      buf[offset++] = 0x75; // 'u'
      return buf.writeUInt16BE(val, offset);
    case 'int':
    case 'int32':
      buf[offset++] = 0x49; // 'I'
      return buf.writeInt32BE(val, offset);
    case 'unsignedint':
    case 'uint32':
      buf[offset++] = 0x69; // 'i'
      return buf.writeUInt32BE(val, offset);
    case 'long':
    case 'int64':
      buf[offset++] = 0x6c; // 'l'
      return buf.writeBigInt64BE(BigInt(Math.trunc(val)), offset);
    case 'timestamp':
      buf[offset++] = 0x54; // 'T'
      return buf.writeBigUInt64BE(BigInt(Math.trunc(val)), offset);
    case 'float':
      buf[offset++] = 0x66; // 'f'
      return buf.writeFloatBE(val, offset);
    case 'decimal': {
      const d = val as unknown as { places?: number; digits?: number };
      if (d && typeof d.places === 'number' && typeof d.digits === 'number' && d.places >= 0 && d.places < 256) {
        buf[offset++] = 0x44; // 'D'
        buf[offset] = d.places;
        return buf.writeUInt32BE(d.digits, offset + 1);
      }
      throw new TypeError(`Decimal value must be {'places': 0..255, 'digits': uint32}, got ${JSON.stringify(d)}`);
    }
    default:
      throw new TypeError(`Unknown type to encode: ${type}`);
  }
}

/**
 * Encodes a field table at `offset` and returns its size: amqplib's encoder with the same type
 * rules, without its per-byte string writes (a Celery task has ~20 headers; amqplib's version was
 * 12% of a producer's CPU).
 */
export function encodeTable(buf: Buffer, val: Record<string, unknown>, offset: number): number {
  const start = offset;
  offset += 4;
  // The keys for-in would visit, in its order, each read from the object that owns it: amqplib
  // passes headers as Object.create(userHeaders), and reads through that prototype are slow.
  let seen: Set<string> | null = null;
  for (
    let holder: Record<string, unknown> | null = val;
    holder !== null && holder !== Object.prototype;
    holder = Object.getPrototypeOf(holder) as Record<string, unknown> | null
  ) {
    const keys = Object.keys(holder);
    const deeper = Object.getPrototypeOf(holder) !== null && Object.getPrototypeOf(holder) !== Object.prototype;
    if (deeper || seen) seen ??= new Set();
    for (const key of keys) {
      if (seen) {
        if (seen.has(key)) continue;
        seen.add(key);
      }
      const v = holder[key];
      if (v === undefined) continue;
      let len = writeAscii(buf, key, offset + 1);
      if (len < 0) {
        len = Buffer.byteLength(key, 'utf8');
        if (len > 255) throw new TypeError(`AMQP header name longer than 255 bytes: ${key.slice(0, 40)}…`);
        buf.write(key, offset + 1, 'utf8');
      }
      buf[offset] = len;
      offset = encodeValue(buf, v, offset + 1 + len);
    }
  }
  buf.writeUInt32BE(offset - start - 4, start);
  return offset - start;
}

/** Table bytes: `[name length, ...name]`. */
const nameBytes = (name: string): Buffer => Buffer.concat([Buffer.from([name.length]), Buffer.from(name, 'latin1')]);
/** `lang: 'py'` as a table entry. */
const TASK_HEAD = Buffer.concat([nameBytes('lang'), Buffer.from([0x53, 0, 0, 0, 2]), Buffer.from('py', 'latin1')]);
const TASK_NAMES = TASK_HEADER_KEYS.map(nameBytes);
/** `replaced_task_nesting: 0` (I), `stamped_headers: null` (V), `stamps: {}` (F, empty). */
const TASK_TAIL = Buffer.concat([
  nameBytes('replaced_task_nesting'),
  Buffer.from([0x49, 0, 0, 0, 0]),
  nameBytes('stamped_headers'),
  Buffer.from([0x56]),
  nameBytes('stamps'),
  Buffer.from([0x46, 0, 0, 0, 0]),
]);

function copyBytes(buf: Buffer, from: Buffer, offset: number): number {
  if (offset + from.length > buf.length) throw new RangeError(`AMQP header table larger than ${buf.length} bytes`);
  for (let i = 0; i < from.length; i++) buf[offset + i] = from[i]!;
  return offset + from.length;
}

/**
 * encodeTable() of a table encodeTask built (task-message.ts isBuiltTaskHeaders): the same bytes,
 * its known names and constant entries copied from bytes made once, without walking its keys.
 */
export function encodeTaskHeaders(buf: Buffer, h: Record<string, unknown>, offset: number): number {
  const start = offset;
  offset = copyBytes(buf, TASK_HEAD, offset + 4);
  for (let i = 0; i < TASK_HEADER_KEYS.length; i++) {
    const v = h[TASK_HEADER_KEYS[i]!];
    if (v === undefined) continue;
    offset = encodeValue(buf, v, copyBytes(buf, TASK_NAMES[i]!, offset));
  }
  offset = copyBytes(buf, TASK_TAIL, offset);
  buf.writeUInt32BE(offset - start - 4, start);
  return offset - start;
}

/** AMQP 0-9-1 ids: basic.publish (class 60, method 40) and the basic content class. */
const BASIC_PUBLISH = 0x003c0028;
const BASIC_CLASS = 60;
const FRAME_END = 0xce;
/** Where a publish is built before it is copied out at its exact size (amqplib's own limit for one chunk). */
const PUBLISH_SCRATCH = Buffer.alloc(2048);

/** The short-string properties of basic.publish after the header table, in wire order with their flag bits. */
const SHORT_AFTER_PRIORITY: readonly (readonly [string, number])[] = [
  ['correlationId', 0x0400],
  ['replyTo', 0x0200],
  ['expiration', 0x0100],
  ['messageId', 0x0080],
];
const SHORT_AFTER_TIMESTAMP: readonly (readonly [string, number])[] = [
  ['type', 0x0020],
  ['userId', 0x0010],
  ['appId', 0x0008],
  ['clusterId', 0x0004],
];

/** Writes a short string (length byte, bytes); -1 when it is not a string of at most 255 bytes. */
function writeShortString(buf: Buffer, s: unknown, offset: number): number {
  if (typeof s !== 'string') return -1;
  let len = writeAscii(buf, s, offset + 1);
  if (len < 0) {
    len = Buffer.byteLength(s, 'utf8');
    if (len > 255 || offset + 1 + len > buf.length) return -1;
    buf.write(s, offset + 1, 'utf8');
  }
  buf[offset] = len;
  return offset + 1 + len;
}

/** An octet property (delivery mode, priority); -1 when it is not an integer 0..255. */
function writeOctet(buf: Buffer, n: unknown, offset: number): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 255) return -1;
  buf[offset] = n;
  return offset + 1;
}

/**
 * basic.publish's three frames (method, content header, one body frame) in one buffer: the same
 * bytes as amqplib's Connection#sendMessage, which builds three buffers and copies them into a
 * fourth. Null when this publish is not the common case (a timestamp, a value of the wrong type, a
 * body that needs several frames, more than 2 KiB in all): amqplib then sends it (and throws its
 * own errors).
 */
export function encodePublish(
  channel: number,
  fields: Record<string, unknown>,
  props: Record<string, unknown>,
  content: Buffer,
  frameMax: number,
): Buffer | null {
  const buf = PUBLISH_SCRATCH;
  if (props.timestamp !== undefined || content.length + 8 > frameMax || content.length >= buf.length) return null;
  try {
    // Method frame: type 1, channel, size, class+method, ticket, exchange, routing key, bits.
    buf[0] = 1;
    buf.writeUInt16BE(channel, 1);
    buf.writeUInt32BE(BASIC_PUBLISH, 7);
    const ticket = fields.ticket ?? 0;
    if (typeof ticket !== 'number' || !Number.isInteger(ticket) || ticket < 0 || ticket > 0xffff) return null;
    buf.writeUInt16BE(ticket, 11);
    let at = writeShortString(buf, fields.exchange ?? '', 13);
    if (at < 0) return null;
    at = writeShortString(buf, fields.routingKey ?? '', at);
    if (at < 0) return null;
    buf[at++] = (fields.mandatory ? 1 : 0) + (fields.immediate ? 2 : 0);
    buf[at] = FRAME_END;
    buf.writeUInt32BE(at - 7, 3);
    at++;

    // Content header frame: type 2, channel, size, class, weight 0, body size, flags, properties.
    const header = at;
    buf[at] = 2;
    buf.writeUInt16BE(channel, at + 1);
    buf.writeUInt16BE(BASIC_CLASS, at + 7);
    buf.writeUInt16BE(0, at + 9);
    buf.writeUInt32BE(0, at + 11); // body size, high 32 bits
    buf.writeUInt32BE(content.length, at + 15);
    const flagsAt = at + 19;
    at += 21;
    let flags = 0;
    const short = (name: string, bit: number) => {
      const v = props[name];
      if (v === undefined || v === null) return;
      flags += bit;
      at = at < 0 ? at : writeShortString(buf, v, at);
    };
    short('contentType', 0x8000);
    short('contentEncoding', 0x4000);
    if (at < 0) return null;
    const headers = props.headers;
    if (headers !== undefined && headers !== null) {
      if (typeof headers !== 'object') return null;
      flags += 0x2000;
      // publishOptions() (amqp.ts) says when these are encodeTask's own headers (isBuiltTaskHeaders).
      const table = props[TASK_HEADERS_OPTION] === true ? encodeTaskHeaders : encodeTable;
      at += table(buf, headers as Record<string, unknown>, at);
    }
    for (const [name, bit] of [
      ['deliveryMode', 0x1000],
      ['priority', 0x0800],
    ] as const) {
      const v = props[name];
      if (v === undefined || v === null) continue;
      flags += bit;
      at = writeOctet(buf, v, at);
      if (at < 0) return null;
    }
    for (const [name, bit] of SHORT_AFTER_PRIORITY) short(name, bit);
    for (const [name, bit] of SHORT_AFTER_TIMESTAMP) short(name, bit);
    if (at < 0 || at + 9 + content.length >= buf.length) return null;
    buf.writeUInt16BE(flags, flagsAt);
    buf[at] = FRAME_END;
    buf.writeUInt32BE(at - header - 7, header + 3);
    at++;

    // Body frame (none for an empty body, as amqplib).
    if (content.length > 0) {
      buf[at] = 3;
      buf.writeUInt16BE(channel, at + 1);
      buf.writeUInt32BE(content.length, at + 3);
      content.copy(buf, at + 7);
      at += 7 + content.length;
      buf[at++] = FRAME_END;
    }
    const out = Buffer.allocUnsafe(at);
    buf.copy(out, 0, 0, at);
    return out;
  } catch (err) {
    // Out of scratch space (RangeError) or a header amqplib's encoder refuses too (TypeError):
    // amqplib's path encodes it, or throws its own error for the caller.
    if (err instanceof RangeError || err instanceof TypeError) return null;
    throw err;
  }
}

interface ConnectionInternals {
  frameMax: number;
  sentSinceLastCheck: boolean;
  channels: ({ buffer: { write(b: Buffer): boolean } } | null)[];
}
type SendMessage = (
  this: ConnectionInternals,
  channel: number,
  method: number,
  fields: Record<string, unknown>,
  pclass: number,
  props: Record<string, unknown>,
  content: Buffer,
) => boolean;

/** amqplib's Connection#sendMessage with basic.publish built by encodePublish. */
export function fastSendMessage(original: SendMessage): SendMessage {
  return function sendMessage(this: ConnectionInternals, channel, method, fields, pclass, props, content) {
    if (method !== BASIC_PUBLISH || pclass !== BASIC_CLASS || !Buffer.isBuffer(content))
      return original.call(this, channel, method, fields, pclass, props, content);
    const frames = encodePublish(channel, fields, props, content, this.frameMax);
    if (frames === null) return original.call(this, channel, method, fields, pclass, props, content);
    this.sentSinceLastCheck = true;
    return this.channels[channel]!.buffer.write(frames);
  };
}

/** amqplib's Connection fields read by fastRecvFrame (`restAt` is ours). */
interface ReceivingConnection {
  rest: Buffer;
  restAt?: number;
  recvSinceLastCheck: boolean;
  stream: { read(): Buffer | null };
}
/** A frame as amqplib's decodeFrame takes it. */
interface RawFrame {
  type: number;
  channel: number;
  size: number;
  payload: Buffer;
}

/** basic.deliver (class 60, method 60). */
const BASIC_DELIVER = 0x003c003c;

/**
 * The short strings of the frames of the last delivery, by slot: a consumer's tag, exchange,
 * routing key, content type and encoding, reply-to are the same message after message, and
 * reusing the string made for the last one spares an allocation each.
 */
const lastStrings: string[] = [];

/** The short string at buf[from, to): the one in `slot` when its bytes are the same (ASCII). */
function cachedString(buf: Buffer, from: number, to: number, slot: number): string {
  const cached = lastStrings[slot];
  if (cached !== undefined && sameAscii(buf, from, to, cached)) return cached;
  const s = buf.toString('utf8', from, to);
  lastStrings[slot] = s;
  return s;
}

/** Slots in lastStrings. */
const S_CONSUMER_TAG = 0;
const S_EXCHANGE = 1;
const S_ROUTING_KEY = 2;
const S_CONTENT_TYPE = 3;
const S_CONTENT_ENCODING = 4;
const S_REPLY_TO = 5;

/**
 * A basic.deliver method frame or a basic content header frame decoded as amqplib's decodeFrame
 * decodes it (the same objects), reading the received bytes in place; null for any other frame or
 * one whose fields do not fit its payload (amqplib's decoder then reads it, and fails as it fails).
 */
export function decodeDeliveryFrame(type: number, channel: number, buf: Buffer, from: number, to: number): unknown {
  if (type === 1) {
    if (to - from < 4 || buf.readUInt32BE(from) !== BASIC_DELIVER) return null;
    let at = from + 4;
    let len = buf[at++]!;
    if (at + len + 9 > to) return null;
    const consumerTag = cachedString(buf, at, at + len, S_CONSUMER_TAG);
    at += len;
    const high = buf.readUInt32BE(at);
    const deliveryTag = high * 0x100000000 + buf.readUInt32BE(at + 4);
    const redelivered = (buf[at + 8]! & 1) === 1;
    at += 9;
    if (at >= to) return null;
    len = buf[at++]!;
    if (at + len >= to) return null;
    const exchange = cachedString(buf, at, at + len, S_EXCHANGE);
    at += len;
    len = buf[at++]!;
    if (at + len > to) return null;
    const routingKey = cachedString(buf, at, at + len, S_ROUTING_KEY);
    return { id: BASIC_DELIVER, channel, fields: { consumerTag, deliveryTag, redelivered, exchange, routingKey } };
  }
  if (type !== 2 || to - from < 14 || buf.readUInt16BE(from) !== BASIC_CLASS) return null;
  const size = buf.readInt32BE(from + 4) * 0x100000000 + buf.readUInt32BE(from + 8); // signed, as amqplib reads it
  const flags = buf.readUInt16BE(from + 12);
  if (flags === 0) return { id: BASIC_CLASS, channel, size, fields: {} };
  // Bits amqplib's decoder does not read (0x0002: continuation, 0x0001): its own behaviour.
  if ((flags & 0x0003) !== 0) return null;
  const fields: Record<string, unknown> = {
    contentType: undefined,
    contentEncoding: undefined,
    headers: undefined,
    deliveryMode: undefined,
    priority: undefined,
    correlationId: undefined,
    replyTo: undefined,
    expiration: undefined,
    messageId: undefined,
    timestamp: undefined,
    type: undefined,
    userId: undefined,
    appId: undefined,
    clusterId: undefined,
  };
  let at = from + 14;
  /** A short string, or undefined when it does not fit (`at` is then past `to`). */
  const short = (slot: number): string | undefined => {
    if (at >= to) {
      at = to + 1;
      return undefined;
    }
    const len = buf[at++]!;
    if (at + len > to) {
      at = to + 1;
      return undefined;
    }
    const s = slot < 0 ? buf.toString('utf8', at, at + len) : cachedString(buf, at, at + len, slot);
    at += len;
    return s;
  };
  if (flags & 0x8000) fields.contentType = short(S_CONTENT_TYPE);
  if (flags & 0x4000) fields.contentEncoding = short(S_CONTENT_ENCODING);
  if (flags & 0x2000) {
    if (at + 4 > to) return null;
    const len = buf.readUInt32BE(at);
    at += 4;
    if (at + len > to) return null;
    fields.headers = decodeFieldsAt(buf, at, at + len);
    at += len;
  }
  if (flags & 0x1000) {
    if (at >= to) return null;
    fields.deliveryMode = buf[at++];
  }
  if (flags & 0x0800) {
    if (at >= to) return null;
    fields.priority = buf[at++];
  }
  if (flags & 0x0400) fields.correlationId = short(-1);
  if (flags & 0x0200) fields.replyTo = short(S_REPLY_TO);
  if (flags & 0x0100) fields.expiration = short(-1);
  if (flags & 0x0080) fields.messageId = short(-1);
  if (flags & 0x0040) {
    if (at + 8 > to) return null;
    fields.timestamp = buf.readUInt32BE(at) * 0x100000000 + buf.readUInt32BE(at + 4);
    at += 8;
  }
  if (flags & 0x0020) fields.type = short(-1);
  if (flags & 0x0010) fields.userId = short(-1);
  if (flags & 0x0008) fields.appId = short(-1);
  if (flags & 0x0004) fields.clusterId = short(-1);
  if (at > to) return null;
  return { id: BASIC_CLASS, channel, size, fields };
}

/**
 * amqplib's Connection#recvFrame (the next whole frame read, decoded; false when none is), reading
 * frames at an offset into the bytes received: amqplib copied what was left together with every
 * chunk read (Buffer.concat, so all input was copied once more) and made a Buffer of the rest after
 * each frame. Now only a frame cut by a chunk boundary is copied, with the chunk after it.
 */
export function fastRecvFrame(decodeFrame: (frame: RawFrame) => unknown): (this: ReceivingConnection) => unknown {
  return function recvFrame(this: ReceivingConnection) {
    for (;;) {
      const buf = this.rest;
      const at = this.restAt ?? 0;
      const left = buf.length - at;
      if (left >= 7) {
        const size = buf.readUInt32BE(at + 3);
        if (left >= size + 8) {
          if (buf[at + 7 + size] !== FRAME_END) throw new Error('Invalid frame');
          this.restAt = at + size + 8;
          const channel = buf.readUInt16BE(at + 1);
          const type = buf[at]!;
          if (type === 3) return { channel, content: buf.subarray(at + 7, at + 7 + size) }; // body, as amqplib's
          return (
            decodeDeliveryFrame(type, channel, buf, at + 7, at + 7 + size) ?? decodeFrame({ type, channel, size, payload: buf.subarray(at + 7, at + 7 + size) })
          );
        }
      }
      const incoming = this.stream.read();
      if (incoming === null) return false;
      this.recvSinceLastCheck = true;
      this.rest = left === 0 ? incoming : Buffer.concat([buf.subarray(at), incoming]);
      this.restAt = 0;
    }
  };
}

/** What frameWriter uses of amqplib's Connection (the socket as `stream`). */
interface WritingConnection {
  stream: {
    write(b: Buffer): boolean;
    readonly writableLength: number;
    readonly writableEnded: boolean;
    readonly destroyed: boolean;
    on(event: 'drain' | 'close', listener: () => void): unknown;
  };
  frames?: FrameWriter;
}

/**
 * Past this many bytes waiting (in the writer and in the socket) a channel's write returns false
 * and its 'drain' comes once the socket has written everything: a publisher that honours it waits.
 * Above the socket's own high-water mark, so the socket emits that 'drain'.
 */
const WAITING_LIMIT = 1 << 20;

/**
 * The frames of every channel of one connection, written to the socket together, one write per
 * event-loop turn (setImmediate, as amqplib's Mux read its channel streams), in the order they
 * were sent. amqplib gave each channel an object-mode PassThrough that its Mux read on
 * setImmediate and wrote frame by frame to the socket: per frame a stream write, a read and a
 * socket write with its callback, a third of a producer's work around each publish.
 */
export class FrameWriter {
  private frames: Buffer[] = [];
  private bytes = 0;
  private scheduled = false;
  private before: (() => void)[] = [];
  /** Channels told to wait (a write returned false), told again on the socket's 'drain'. */
  private readonly waiting = new Set<{ onBufferDrain(): void }>();

  constructor(private readonly stream: WritingConnection['stream']) {
    const drained = () => {
      const told = [...this.waiting];
      this.waiting.clear();
      for (const ch of told) ch.onBufferDrain();
    };
    stream.on('drain', drained);
    // A closed socket never drains: nobody waits for it (the channels are closed with it).
    stream.on('close', drained);
  }

  /** Queues one frame (or several in one buffer); false: past WAITING_LIMIT, wait for the channel's 'drain'. */
  write(frame: Buffer, channel: { onBufferDrain(): void }): boolean {
    this.frames.push(frame);
    this.bytes += frame.length;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
    if (this.bytes + this.stream.writableLength < WAITING_LIMIT) return true;
    this.waiting.add(channel);
    return false;
  }

  /**
   * Runs `send` once, just before the next write, so the frames it sends go out in that write
   * (after every frame queued before them): a consumer's acks of a turn with the results it
   * published in that turn.
   */
  beforeWrite(send: () => void): void {
    this.before.push(send);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  /** Writes what is queued, in one buffer; dropped once the socket is ended (as a closed connection drops them). */
  readonly flush = (): void => {
    if (this.before.length > 0) {
      // Still scheduled: what these send joins this write.
      const before = this.before;
      this.before = [];
      for (const send of before) send();
    }
    this.scheduled = false;
    const frames = this.frames;
    const bytes = this.bytes;
    this.frames = [];
    this.bytes = 0;
    if (frames.length === 0 || this.stream.writableEnded || this.stream.destroyed) return;
    this.stream.write(frames.length === 1 ? frames[0]! : Buffer.concat(frames, bytes));
  };
}

/** amqplib's Connection fields freshChannel uses. */
interface ChannelAllocating extends WritingConnection {
  freeChannels: { nextClearBit(from: number): number; set(i: number): void };
  channelMax: number;
  channels: ({ channel: { onBufferDrain(): void }; buffer: { write(b: Buffer): boolean; end(): void } } | null)[];
}

/**
 * amqplib's Connection#freshChannel with the channel's frames going to the connection's
 * FrameWriter instead of a PassThrough piped into the Mux. Channel 0 (the connection's own
 * methods, heartbeats) still writes to the socket directly, as before.
 */
export function freshChannel(this: ChannelAllocating, channel: { onBufferDrain(): void }): number {
  const next = this.freeChannels.nextClearBit(1);
  if (next < 0 || next > this.channelMax) throw new Error('No channels left to allocate');
  this.freeChannels.set(next);
  const frames = (this.frames ??= new FrameWriter(this.stream));
  this.channels[next] = {
    channel,
    buffer: {
      write: (b: Buffer) => frames.write(b, channel),
      end: () => undefined, // releaseChannel: its frames already queued still go out
    },
  };
  return next;
}

function loadPatched(): typeof AmqplibModule {
  const codecPath = require.resolve('amqplib/lib/codec.js');
  const defsPath = require.resolve('amqplib/lib/defs.js');
  if (require.cache[defsPath]) {
    // Loaded before this module (with the original decoder captured): load amqplib afresh.
    const dir = codecPath.slice(0, codecPath.lastIndexOf('/lib/') + 1);
    for (const k of Object.keys(require.cache)) if (k.startsWith(dir)) delete require.cache[k];
  }
  const codec = require(codecPath) as { decodeFields: typeof decodeFields; encodeTable: typeof encodeTable };
  codec.decodeFields = decodeFields;
  codec.encodeTable = encodeTable;
  const { Connection } = require(require.resolve('amqplib/lib/connection.js')) as {
    Connection: {
      prototype: { sendMessage: SendMessage; recvFrame: (this: ReceivingConnection) => unknown; freshChannel: typeof freshChannel };
    };
  };
  Connection.prototype.sendMessage = fastSendMessage(Connection.prototype.sendMessage);
  Connection.prototype.freshChannel = freshChannel;
  const { decodeFrame } = require(require.resolve('amqplib/lib/frame.js')) as { decodeFrame: (frame: RawFrame) => unknown };
  Connection.prototype.recvFrame = fastRecvFrame(decodeFrame);
  return require('amqplib') as typeof AmqplibModule;
}

/** amqplib's promise API, with the patched field-table decoder. */
export const amqplib = loadPatched();
