/**
 * fast-check values for wire round trips (json and msgpack), and what each reads back as
 * (docs/values.md).
 */
import fc from 'fast-check';

/**
 * Values a task can send or return; numbers include every special value, integers every size the
 * format carries (msgpack: 64 bits, as Python's msgpack).
 */
export const wireValue = (format: 'json' | 'msgpack') =>
  fc.letrec((tie) => ({
    leaf: fc.oneof(
      fc.double(),
      fc.integer(),
      format === 'json' ? fc.bigInt({ min: -(2n ** 80n), max: 2n ** 80n }) : fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }),
      fc.string(),
      fc.boolean(),
      fc.constant(null),
      fc.uint8Array({ maxLength: 16 }),
      fc.date({ noInvalidDate: true }),
    ),
    node: fc.oneof(
      { depthSize: 'small' },
      tie('leaf'),
      fc.array(tie('node'), { maxLength: 4 }),
      fc.dictionary(
        // msgpack refuses a `__proto__` key (docs/values.md); JSON keeps it as an own key.
        fc.string().filter((k) => k !== '__type__' && (format === 'json' || k !== '__proto__')),
        tie('node'),
        { maxKeys: 4 },
      ),
    ),
  })).node;

/**
 * What a value reads back as (docs/values.md): safe BigInts as numbers, -0 as 0, bytes as Buffer,
 * Date as its ISO text; a number that is an integer beyond 2^53 is written as digits by JSON (so it
 * reads back as a BigInt, as Python reads it as an int) and as a float by msgpack.
 */
export function expectedAfterTrip(v: unknown, format: 'json' | 'msgpack'): unknown {
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) && BigInt(Number(v)) === v ? Number(v) : v;
  if (Object.is(v, -0)) return 0;
  if (format === 'json' && typeof v === 'number' && Number.isInteger(v) && !Number.isSafeInteger(v) && Math.abs(v) < 1e21) return BigInt(String(v)); // the digits JSON.stringify writes
  if (v instanceof Uint8Array) return Buffer.from(v);
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) return v.map((x) => expectedAfterTrip(x, format));
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, expectedAfterTrip(x, format)]));
  return v;
}
