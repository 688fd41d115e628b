/**
 * Python's repr() of decoded JSON-like values, for the strings Celery peers read as text: the
 * `argsrepr`/`kwargsrepr` headers, event fields (`result`, `exception`) and error messages. Close to
 * CPython for what the wire can carry (str quoting and escapes, None/True/False, nan/inf, big ints,
 * bytes, lists, dicts).
 */
/** A Python string literal, as repr() writes it (single quotes unless the text holds only `'`). */
export function pyStr(s: string): string {
  const q = s.includes("'") && !s.includes('"') ? '"' : "'";
  const body = s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/\r/g, '\\r').replace(/\t/g, '\\t').replace(new RegExp(q, 'g'), `\\${q}`);
  return `${q}${body}${q}`;
}

/** repr() of a value; nesting deeper than 8 prints `...` (reprs are for people, not parsers). */
export function pyRepr(value: unknown, depth = 0): string {
  if (value === null || value === undefined) return 'None';
  if (value === true) return 'True';
  if (value === false) return 'False';
  if (typeof value === 'string') return pyStr(value);
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : Number.isNaN(value) ? 'nan' : value > 0 ? 'inf' : '-inf';
  if (typeof value === 'bigint') return String(value);
  if (value instanceof Uint8Array)
    return `b'${[...value].map((c) => (c >= 0x20 && c < 0x7f && c !== 0x27 && c !== 0x5c ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`)).join('')}'`;
  if (depth > 8) return '...';
  if (Array.isArray(value)) return `[${value.map((v) => pyRepr(v, depth + 1)).join(', ')}]`;
  if (value instanceof Date) return pyStr(value.toISOString());
  if (typeof value === 'object') {
    return `{${Object.entries(value as Record<string, unknown>)
      .map(([k, v]) => `${pyStr(k)}: ${pyRepr(v, depth + 1)}`)
      .join(', ')}}`;
  }
  return String(value);
}

/** repr() truncated to `max` characters, as Celery's saferepr with `resultrepr_maxsize` (1024). */
export function pyReprLimited(value: unknown, max = 1024): string {
  const text = pyRepr(value);
  return text.length > max ? `${text.slice(0, max - 3)}...` : text;
}
