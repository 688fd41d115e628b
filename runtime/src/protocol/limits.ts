/**
 * Input limits, checked before any recursive work so that no message can exhaust the stack or
 * memory (issue 16): a body's size, and the nesting depth of JSON/YAML text (scanned byte by
 * byte, no recursion) or of a decoded value (walked with an explicit stack).
 */
import { DecodeError } from '../errors.js';

export interface InputLimits {
  /** Largest body in bytes, before and after decompression. */
  readonly maxMessageBytes: number;
  /** Deepest nesting of lists and maps. */
  readonly maxNestingDepth: number;
}

/** The defaults of config keys maxMessageBytes and maxNestingDepth. */
export const DEFAULT_LIMITS: InputLimits = Object.freeze({ maxMessageBytes: 64 * 1024 * 1024, maxNestingDepth: 1000 });

/** Throws DecodeError when `size` bytes of `what` are over the limit. */
export function checkSize(size: number, limits: InputLimits, what: string): void {
  if (size > limits.maxMessageBytes) {
    throw new DecodeError(`${what} is ${size} bytes, over the limit of ${limits.maxMessageBytes} (config maxMessageBytes)`);
  }
}

/**
 * Set by a broker's header decoder (AMQP field tables) on a message whose headers nest deeper than
 * the limit: the value names the header, whose deep part was not decoded. decodeTask refuses it.
 */
export const TOO_DEEP_HEADER = 'x-celeriac-too-deep-header';

function tooDeep(what: string, max: number): DecodeError {
  return new DecodeError(`${what} is nested deeper than ${max} levels (config maxNestingDepth)`);
}

const OPEN_SQUARE = 0x5b;
const OPEN_CURLY = 0x7b;
const CLOSE_SQUARE = 0x5d;
const CLOSE_CURLY = 0x7d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Throws DecodeError when JSON text nests brackets deeper than `max`. Brackets inside strings do
 * not count. For YAML flow style it is an upper bound (a plain scalar's brackets count too).
 */
export function checkTextDepth(text: Buffer | string, max: number, what: string): void {
  if (text.length <= max) return; // each level needs at least one byte
  // Brackets, quotes and backslashes are ASCII: UTF-16 code units and UTF-8 bytes both work.
  if (typeof text === 'string') checkCodesDepth(text, max, what);
  else checkBytesDepth(text, max, what);
}

/**
 * checkTextDepth over bytes, read directly: no call per byte (every body a worker takes and every
 * result a client reads is scanned). A string is skipped whole: its closing quote is found by
 * TypedArray indexOf (native), then taken for the close only after an even run of backslashes
 * (an odd run escapes it), which is the byte-by-byte walk's answer at a fraction of its cost.
 */
function checkBytesDepth(text: Uint8Array, max: number, what: string): void {
  const n = text.length;
  let depth = 0;
  for (let i = 0; i < n; i++) {
    const c = text[i]!;
    if (c === QUOTE) {
      i = closingQuoteByte(text, i);
      if (i < 0) return; // an unterminated string: nothing after it nests (the parser refuses it)
    } else if (c === OPEN_SQUARE || c === OPEN_CURLY) {
      if (++depth > max) throw tooDeep(what, max);
    } else if (c === CLOSE_SQUARE || c === CLOSE_CURLY) depth--;
  }
}

/** checkTextDepth over UTF-16 code units, strings skipped as checkBytesDepth does. */
function checkCodesDepth(text: string, max: number, what: string): void {
  const n = text.length;
  let depth = 0;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      i = closingQuoteCode(text, i);
      if (i < 0) return; // an unterminated string: nothing after it nests (the parser refuses it)
    } else if (c === OPEN_SQUARE || c === OPEN_CURLY) {
      if (++depth > max) throw tooDeep(what, max);
    } else if (c === CLOSE_SQUARE || c === CLOSE_CURLY) depth--;
  }
}

const typedIndexOf = Uint8Array.prototype.indexOf;

/**
 * The index of the quote closing the string opened at `open`, or -1 when it is not closed: the
 * first quote after it preceded by an even run of backslashes (zero included). V8's TypedArray
 * indexOf (a builtin), not Buffer's (a call into C++ per string).
 */
function closingQuoteByte(text: Uint8Array, open: number): number {
  let q: number = typedIndexOf.call(text, QUOTE, open + 1);
  while (q > 0) {
    let b = q - 1;
    while (text[b] === BACKSLASH) b--; // stops at the opening quote at the latest
    if ((q - 1 - b) % 2 === 0) return q;
    q = typedIndexOf.call(text, QUOTE, q + 1);
  }
  return -1;
}

/** closingQuoteByte over UTF-16 code units. */
function closingQuoteCode(text: string, open: number): number {
  let q = text.indexOf('"', open + 1);
  while (q > 0) {
    let b = q - 1;
    while (text.charCodeAt(b) === BACKSLASH) b--; // stops at the opening quote at the latest
    if ((q - 1 - b) % 2 === 0) return q;
    q = text.indexOf('"', q + 1);
  }
  return -1;
}

/** Throws DecodeError when a decoded value nests arrays/objects deeper than `max` (no recursion). */
export function checkValueDepth(value: unknown, max: number, what: string): void {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object' || ArrayBuffer.isView(v) || v instanceof Date) continue;
    if (depth + 1 > max) throw tooDeep(what, max);
    for (const child of Array.isArray(v) ? v : v instanceof Map ? [...v.keys(), ...v.values()] : Object.values(v)) {
      if (child !== null && typeof child === 'object') stack.push([child, depth + 1]);
    }
  }
}
