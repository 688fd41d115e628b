/**
 * JSON as Python's `json` module and kombu's encoder read and write it (value table: docs/values.md).
 *
 * - `NaN`, `Infinity` and `-Infinity` are read and written, as Python does by default.
 * - An integer outside ±(2^53 - 1) is read as a BigInt, without loss; a BigInt is written as a JSON
 *   integer. Every other number stays a `number`.
 * - kombu >= 5.3 tags (`{"__type__": T, "__value__": V}`) are read: datetime becomes a Date, bytes
 *   and base64 a Buffer; a Uint8Array or Buffer is written as kombu 5.3 writes bytes.
 *
 * Why our own parser: `JSON.parse` rounds large integers and refuses NaN, and Node 20 has no
 * reviver source text. Of the libraries, lossless-json and json-bigint are not installed here,
 * lossless-json refuses NaN/Infinity, and json-bigint is unmaintained. So `JSON.parse` stays the
 * fast path, and this parser runs only when the text may hold a token it would get wrong: a run of
 * 16 digits, `NaN`, `Infinity` or a `"__type__"` key (measured in the issue 16 report).
 */
import { isUtf8 } from 'node:buffer';
import { DecodeError, EncodeError } from '../errors.js';

/** A token JSON.parse would misread or a tag to decode: only then does the slow parser run. */
const NEEDS_FULL_PARSE = /\d{16}|NaN|Infinity|"__type__"/;

/** Parses JSON text as Python's json.loads with kombu's object hook (see the file header). */
export function parseJson(text: string): unknown {
  return NEEDS_FULL_PARSE.test(text) ? new FullParser(text).parse() : JSON.parse(text);
}

/**
 * JSON text of `value` as Python's json.dumps with kombu's encoder would write it (see the file
 * header). A Date is ISO text, which every Celery reads as a str; with `dateTags`, kombu 5.3+'s
 * datetime tag, which Celery 5.3+ reads as a datetime (and 5.2 as a dict).
 */
export function stringifyJson(value: unknown, dateTags = false): string {
  // Most values (a task's result meta) hold nothing a replacer must see: written without one,
  // which V8 does several times faster.
  if (isPlainJson(value)) return JSON.stringify(value);
  let special = false;
  let text: string | undefined;
  try {
    // The replacer only notices what JSON.stringify would get wrong; the rare value that has some
    // is written again by writeJson.
    text = JSON.stringify(value, replacer);
  } catch (err) {
    // A cycle (TypeError) or a throwing toJSON: kombu wraps what its encoder refuses the same way.
    if (err instanceof EncodeError) throw err;
    throw new EncodeError(`Value is not JSON serializable: ${firstLine(err)}`, { cause: err });
  }
  if (!special) return text ?? 'null';
  const out: string[] = [];
  writeJson(value, '', out, dateTags);
  return out.join('');

  function replacer(this: Record<string, unknown>, key: string, v: unknown): unknown {
    // Python's json refuses what it cannot write; JSON.stringify would drop it silently (a wrong answer).
    if (typeof v === 'function' || typeof v === 'symbol') {
      throw new EncodeError(`Object of type ${typeof v} is not JSON serializable${key === '' ? '' : ` (key ${JSON.stringify(key)})`}`);
    }
    if (dateTags && typeof v === 'string' && this[key] instanceof Date) {
      special = true;
      return v;
    }
    // A Buffer reaches the replacer as its toJSON() ({type: 'Buffer'}), a Uint8Array as itself.
    const bytes =
      typeof v === 'object' && v !== null && (ArrayBuffer.isView(v) || ((v as { type?: unknown }).type === 'Buffer' && ArrayBuffer.isView(this[key])));
    if (bytes || typeof v === 'bigint' || (typeof v === 'number' && !Number.isFinite(v))) {
      special = true;
      return null;
    }
    return v;
  }
}

/** How many values plainJson() looks at before it gives up (the replacer path is then as fast). */
const PLAIN_BUDGET = 64;

/**
 * plainJson() of `v`, or false when reading `v` throws (a getter, a revoked Proxy): the replacer
 * path then reads it again and reports an EncodeError, which the worker stores as the task's
 * FAILURE; any other error is taken for the backend's, and the result would never be stored.
 */
function isPlainJson(v: unknown): boolean {
  try {
    return plainJson(v, { budget: PLAIN_BUDGET });
  } catch {
    return false; // not swallowed: the replacer path meets the same error and throws EncodeError
  }
}

/**
 * True when JSON.stringify writes `v` exactly as Python's json would and stringifyJson's replacer
 * would change nothing: null, booleans, strings, finite numbers, and arrays and plain objects
 * (no toJSON) of those, within `left.budget` values. False is always safe.
 */
function plainJson(v: unknown, left: { budget: number }): boolean {
  if (--left.budget < 0) return false;
  if (v === null) return true;
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(v);
    case 'object':
      break;
    default:
      return false; // undefined, bigint, function, symbol
  }
  if (Array.isArray(v)) {
    // An own toJSON: its value must pass the replacer's checks (as an object's does below).
    if (Object.getPrototypeOf(v) !== Array.prototype || 'toJSON' in v) return false;
    for (let i = 0; i < v.length; i++) if (!plainJson(v[i], left)) return false;
    return true;
  }
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return false; // Date, Buffer, Map, class instances
  const o = v as Record<string, unknown>;
  if ('toJSON' in o) return false;
  // (An own getter is read here and again by JSON.stringify, as the replacer path reads it once:
  // a plain result object with getters is rare, and a getter is not expected to change its answer.)
  for (const k in o) if (!Object.hasOwn(o, k) || !plainJson(o[k], left)) return false;
  return true;
}

const firstLine = (err: unknown): string => (err instanceof Error ? err.message : String(err)).split('\n')[0]!;

/** kombu 5.3's form of bytes: text when it is UTF-8, else base64. */
function bytesTag(b: Uint8Array): { __type__: 'bytes' | 'base64'; __value__: string } {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  return isUtf8(buf) ? { __type__: 'bytes', __value__: buf.toString('utf8') } : { __type__: 'base64', __value__: buf.toString('base64') };
}

/** Writes `v` as JSON.stringify would, plus BigInt, NaN/Infinity and bytes; `undefined` when it has no JSON form. */
function writeJson(value: unknown, key: string, out: string[], dateTags: boolean): boolean {
  let v = value;
  if (ArrayBuffer.isView(v)) v = bytesTag(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  else if (dateTags && v instanceof Date && !Number.isNaN(v.getTime())) v = { __type__: 'datetime', __value__: v.toISOString().replace(/Z$/, '+00:00') };
  else if (v !== null && typeof v === 'object' && typeof (v as { toJSON?: unknown }).toJSON === 'function')
    v = (v as { toJSON(k: string): unknown }).toJSON(key);
  if (v instanceof Number || v instanceof String || v instanceof Boolean) v = v.valueOf();
  switch (typeof v) {
    case 'bigint':
      out.push(v.toString());
      return true;
    case 'number':
      out.push(Number.isFinite(v) ? String(v) : Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity');
      return true;
    case 'string':
      out.push(JSON.stringify(v));
      return true;
    case 'boolean':
      out.push(v ? 'true' : 'false');
      return true;
    case 'object':
      break;
    default:
      return false; // undefined: left out, as JSON.stringify does (functions and symbols were refused)
  }
  if (v === null) {
    out.push('null');
    return true;
  }
  if (Array.isArray(v)) {
    out.push('[');
    v.forEach((item, i) => {
      if (i > 0) out.push(',');
      if (!writeJson(item, String(i), out, dateTags)) out.push('null');
    });
    out.push(']');
    return true;
  }
  out.push('{');
  let first = true;
  for (const [k, item] of Object.entries(v)) {
    const at = out.length;
    out.push(first ? '' : ',', JSON.stringify(k), ':');
    if (writeJson(item, k, out, dateTags)) first = false;
    else out.length = at;
  }
  out.push('}');
  return true;
}

/** Decodes a kombu >= 5.3 tag, as kombu's object_hook does (an unknown tag is an error there too). */
function untag(type: unknown, v: unknown): unknown {
  switch (type) {
    case 'datetime': {
      // A naive datetime is UTC in Celery; JavaScript would read it as local time.
      const iso = String(v);
      const d = new Date(/(?:[zZ]|[+-]\d\d:?\d\d)$/.test(iso) ? iso : `${iso}Z`);
      if (Number.isNaN(d.getTime())) throw new DecodeError(`Bad datetime "${iso}" in a JSON type tag`);
      return d;
    }
    case 'date':
    case 'time':
    case 'decimal':
      return String(v);
    case 'uuid': {
      const hex = String((v as { hex?: unknown } | null)?.hex ?? v);
      return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
    }
    case 'bytes':
      return Buffer.from(String(v), 'utf8');
    case 'base64':
      return Buffer.from(String(v), 'base64');
    default:
      throw new DecodeError(`Unknown JSON type tag "${String(type)}" in message body`);
  }
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const INTEGER = /^-?\d+$/;
const WHITESPACE = /[ \t\n\r]*/y;

/** One open container of the iterative parser. */
type Frame = { array: unknown[]; obj?: undefined; key?: undefined } | { array?: undefined; obj: Record<string, unknown>; key: string | null };

/**
 * Strict JSON (RFC 8259) plus Python's NaN/Infinity/-Infinity, with an explicit stack: no input
 * depth can overflow the call stack. Strings are read with JSON.parse, so escapes (lone
 * surrogates included) mean exactly what they mean on the fast path.
 */
class FullParser {
  private pos = 0;
  constructor(private readonly text: string) {}

  parse(): unknown {
    const stack: Frame[] = [];
    let result: unknown;
    for (;;) {
      this.skipWhitespace();
      let value: unknown;
      const c = this.text[this.pos];
      if (c === '[') {
        this.pos++;
        this.skipWhitespace();
        if (this.text[this.pos] === ']') {
          this.pos++;
          value = [];
        } else {
          stack.push({ array: [] });
          continue;
        }
      } else if (c === '{') {
        this.pos++;
        this.skipWhitespace();
        if (this.text[this.pos] === '}') {
          this.pos++;
          value = {};
        } else {
          stack.push({ obj: {}, key: this.readKey() });
          continue;
        }
      } else value = this.readScalar();
      // Close every container this value completes.
      for (;;) {
        const top = stack[stack.length - 1];
        if (!top) {
          result = value;
          this.skipWhitespace();
          if (this.pos !== this.text.length) throw this.error('Unexpected data after the JSON value');
          return result;
        }
        if (top.array) top.array.push(value);
        else defineKey(top.obj, top.key!, value);
        this.skipWhitespace();
        const sep = this.text[this.pos++];
        if (sep === ',') {
          if (top.obj) top.key = this.readKey();
          break;
        }
        if (top.array ? sep !== ']' : sep !== '}') throw this.error(`Expected ',' or '${top.array ? ']' : '}'}'`, this.pos - 1);
        stack.pop();
        value = top.array ?? (isTag(top.obj) ? untag(top.obj.__type__, top.obj.__value__) : top.obj);
      }
    }
  }

  private readKey(): string {
    this.skipWhitespace();
    if (this.text[this.pos] !== '"') throw this.error('Expected a string key');
    const key = this.readString();
    this.skipWhitespace();
    if (this.text[this.pos++] !== ':') throw this.error("Expected ':'", this.pos - 1);
    return key;
  }

  private readScalar(): unknown {
    const t = this.text;
    const c = t[this.pos];
    if (c === '"') return this.readString();
    for (const [word, value] of WORDS) {
      if (t.startsWith(word, this.pos)) {
        this.pos += word.length;
        return value;
      }
    }
    NUMBER.lastIndex = this.pos;
    const m = NUMBER.exec(t);
    if (!m) throw this.error('Unexpected token');
    this.pos += m[0].length;
    const n = Number(m[0]);
    return INTEGER.test(m[0]) && !Number.isSafeInteger(n) ? BigInt(m[0]) : n;
  }

  private readString(): string {
    const t = this.text;
    let i = this.pos + 1;
    for (;;) {
      const q = t.indexOf('"', i);
      if (q < 0) throw this.error('Unterminated string');
      let backslashes = 0;
      for (let j = q - 1; t[j] === '\\'; j--) backslashes++;
      if (backslashes % 2 === 0) {
        const s = JSON.parse(t.slice(this.pos, q + 1)) as string;
        this.pos = q + 1;
        return s;
      }
      i = q + 1;
    }
  }

  private skipWhitespace(): void {
    WHITESPACE.lastIndex = this.pos;
    WHITESPACE.exec(this.text);
    this.pos = WHITESPACE.lastIndex;
  }

  private error(what: string, at = this.pos): DecodeError {
    return new DecodeError(`${what} at position ${at} of JSON text`);
  }
}

const WORDS: readonly (readonly [string, unknown])[] = [
  ['true', true],
  ['false', false],
  ['null', null],
  ['NaN', NaN],
  ['Infinity', Infinity],
  ['-Infinity', -Infinity],
];

function isTag(o: Record<string, unknown>): boolean {
  const keys = Object.keys(o);
  return keys.length === 2 && '__type__' in o && '__value__' in o;
}

/** Sets a parsed key as JSON.parse does: "__proto__" becomes an own property, not the prototype. */
function defineKey(o: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(o, key, { value, enumerable: true, configurable: true, writable: true });
  else o[key] = value;
}
