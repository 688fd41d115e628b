/**
 * JSON as Python's `json.dumps` writes it with its defaults (what kombu's json serializer gives):
 * `", "` and `": "` separators and every non-ASCII character escaped (`ensure_ascii`). Needed
 * where Celery compares or sorts encoded text rather than values: a chord join's sorted set
 * orders members of equal score by their bytes, so a member a TypeScript worker adds must be
 * the bytes a Python worker would add for the same outcome.
 */

/** `json.dumps(value)` of a JSON value. */
export function pythonJsonDumps(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'string') return asciiOnly(JSON.stringify(value));
  if (Array.isArray(value)) return `[${value.map(pythonJsonDumps).join(', ')}]`;
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    return `{${entries.map(([k, v]) => `${asciiOnly(JSON.stringify(k))}: ${pythonJsonDumps(v)}`).join(', ')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** `\uXXXX` for every UTF-16 unit above 0x7F, as Python's ensure_ascii (lower-case hex, surrogates as pairs). */
function asciiOnly(json: string): string {
  return json.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
