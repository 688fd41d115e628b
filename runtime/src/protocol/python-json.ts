/**
 * JSON as Python's `json.dumps` writes it with its defaults (what kombu's json serializer gives):
 * `", "` and `": "` separators and every non-ASCII character escaped (`ensure_ascii`). Needed
 * where Celery compares or sorts encoded text rather than values: a chord join's sorted set
 * orders members of equal score by their bytes, so a member a TypeScript worker adds must be
 * the bytes a Python worker would add for the same outcome.
 */
import { stringifyJson } from './json.js';

/** `json.dumps(value)`: the wire encoding (big integers, NaN, bytes, dates) with Python's spacing. */
export function pythonJsonDumps(value: unknown, dateTags = false): string {
  const text = stringifyJson(value, dateTags);
  let out = '';
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') {
        out += c + text[++i];
        continue;
      }
      if (c === '"') inString = false;
      const code = text.charCodeAt(i);
      // ensure_ascii: lower-case hex, surrogates as their pairs (UTF-16 units).
      out += code > 0x7f ? `\\u${code.toString(16).padStart(4, '0')}` : c;
      continue;
    }
    if (c === '"') inString = true;
    out += c === ',' ? ', ' : c === ':' ? ': ' : c;
  }
  return out;
}
