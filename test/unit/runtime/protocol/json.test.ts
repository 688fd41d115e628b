/**
 * JSON as Python's json and kombu read and write it (protocol/json.ts): the texts Python writes,
 * and fast-check round trips TypeScript -> text -> TypeScript.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseJson, stringifyJson } from '../../../../runtime/src/protocol/json.js';
import { DecodeError, EncodeError } from '../../../../runtime/src/errors.js';
import { expectedAfterTrip, wireValue } from '../../../support/wire-values.js';

describe('parseJson reads what Python json.dumps writes', () => {
  it('integers beyond 2^53 as exact BigInts, the rest as numbers', () => {
    assert.deepEqual(parseJson('[9007199254740993, 18446744073709551616, -9223372036854775808, 9007199254740991, 1e400, 2.5]'), [
      2n ** 53n + 1n,
      2n ** 64n,
      -(2n ** 63n),
      2 ** 53 - 1,
      Infinity,
      2.5,
    ]);
    // 16 digits but a float, or safe: numbers.
    assert.deepEqual(parseJson('[0.30000000000000004, 1000000000000000, 12345678901234567.0]'), [0.30000000000000004, 1e15, 12345678901234568]);
  });

  it('NaN, Infinity and -Infinity', () => {
    const v = parseJson('{"a": NaN, "b": [Infinity, -Infinity]}') as { a: number; b: number[] };
    assert.ok(Number.isNaN(v.a));
    assert.deepEqual(v.b, [Infinity, -Infinity]);
  });

  it("kombu 5.3's tags: datetime as Date (naive is UTC), bytes and base64 as Buffer, uuid, decimal and date as strings", () => {
    const v = parseJson(
      '[{"__type__": "datetime", "__value__": "2024-01-02T03:04:05.000678+00:00"}, {"__type__": "datetime", "__value__": "2024-01-02T03:04:05"},' +
        ' {"__type__": "bytes", "__value__": "h\\u00e9"}, {"__type__": "base64", "__value__": "/wA="}, {"__type__": "uuid", "__value__": {"hex": "12345678123456781234567812345678"}},' +
        ' {"__type__": "decimal", "__value__": "1.10"}, {"__type__": "date", "__value__": "2024-01-02"}, {"__type__": "x", "__value__": 1, "y": 2}]',
    ) as unknown[];
    assert.deepEqual(v[0], new Date('2024-01-02T03:04:05.000Z'));
    assert.deepEqual(v[1], new Date('2024-01-02T03:04:05Z'));
    assert.deepEqual(v[2], Buffer.from('hé'));
    assert.deepEqual(v[3], Buffer.from([0xff, 0]));
    assert.deepEqual(v.slice(4), ['12345678-1234-5678-1234-567812345678', '1.10', '2024-01-02', { __type__: 'x', __value__: 1, y: 2 }]);
    assert.throws(() => parseJson('{"__type__": "pickle", "__value__": 1}'), DecodeError);
  });

  it('refuses what Python refuses, as a DecodeError', () => {
    for (const bad of ['[1,]', '{"a" 1}', '01', 'NaNa', '[1', '"\\x"', '{"a":1}}', '[Infinity 1]']) {
      assert.throws(
        () => parseJson(`${bad} 9007199254740993`),
        (e) => e instanceof DecodeError || e instanceof SyntaxError,
        bad,
      );
    }
  });

  it('keeps lone surrogates and a "__proto__" key as data, as JSON.parse does', () => {
    const v = parseJson('{"__proto__": {"x": NaN}, "s": "\\ud800"}') as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(v), Object.prototype);
    assert.ok(Object.hasOwn(v, '__proto__'));
    assert.equal(v.s, '\ud800');
  });

  it('parses nesting far deeper than the call stack allows (no recursion)', () => {
    const deep = `${'['.repeat(200_000)}NaN${']'.repeat(200_000)}`;
    let v = parseJson(deep);
    for (let i = 0; i < 200_000; i++) v = (v as unknown[])[0];
    assert.ok(Number.isNaN(v));
  });
});

describe('stringifyJson writes what Python json.loads and kombu read', () => {
  it("refuses a function, a symbol or a cycle with kombu's EncodeError, as Python's json does (never drops them silently)", () => {
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    for (const v of [() => 1, { a: [1, () => 1] }, Symbol('s'), { s: Symbol('s') }, cycle]) {
      assert.throws(
        () => stringifyJson(v),
        (err: unknown) => err instanceof EncodeError && err.excModule === 'kombu.exceptions',
      );
    }
    assert.equal(stringifyJson({ a: undefined, b: 1 }), '{"b":1}');
    assert.equal(stringifyJson(undefined), 'null');
  });

  it('BigInt as an integer, NaN and Infinity as Python writes them', () => {
    assert.equal(stringifyJson({ a: 2n ** 64n, b: [NaN, -Infinity, Infinity], c: 5n }), '{"a":18446744073709551616,"b":[NaN,-Infinity,Infinity],"c":5}');
  });

  it("bytes as kombu 5.3 writes them (text when UTF-8, else base64), never Node's {type: 'Buffer'}", () => {
    assert.equal(
      stringifyJson([Buffer.from('hé'), new Uint8Array([0xff, 0]), { b: Buffer.alloc(0) }]),
      '[{"__type__":"bytes","__value__":"hé"},{"__type__":"base64","__value__":"/wA="},{"b":{"__type__":"bytes","__value__":""}}]',
    );
  });

  it("with dateTags, a Date as kombu 5.3's datetime tag (+00:00, which Python < 3.11 also reads), and back as a Date", () => {
    const d = new Date('2024-01-02T03:04:05.678Z');
    const text = stringifyJson({ d, at: [d] }, true);
    assert.equal(
      text,
      '{"d":{"__type__":"datetime","__value__":"2024-01-02T03:04:05.678+00:00"},"at":[{"__type__":"datetime","__value__":"2024-01-02T03:04:05.678+00:00"}]}',
    );
    assert.deepEqual(parseJson(text), { d, at: [d] });
    assert.equal(stringifyJson({ d }), '{"d":"2024-01-02T03:04:05.678Z"}', 'without dateTags: ISO text');
  });

  it('leaves out undefined as JSON.stringify does, also on the slow path', () => {
    const v = { u: undefined, d: new Date(0), a: [undefined, NaN], n: 1n };
    assert.equal(stringifyJson(v), '{"d":"1970-01-01T00:00:00.000Z","a":[null,NaN],"n":1}');
  });

  it('writes the same text whether a value is found plain at once or only past the look-ahead budget', () => {
    // Plain values skip the replacer; a special one found late (past 64 values) goes the full way.
    const plain = { status: 'SUCCESS', result: [1, 'two', { three: null, four: true }], children: [], task_id: 'x' };
    assert.equal(stringifyJson(plain), JSON.stringify(plain));
    const late = { many: Array.from({ length: 100 }, (_, i) => i), big: 2n ** 64n, nan: NaN, bytes: Buffer.from('hi') };
    assert.equal(
      stringifyJson(late),
      `{"many":${JSON.stringify(late.many)},"big":18446744073709551616,"nan":NaN,"bytes":{"__type__":"bytes","__value__":"hi"}}`,
    );
    const fnLate = { many: Array.from({ length: 100 }, (_, i) => i), f: () => 1 };
    assert.throws(() => stringifyJson(fnLate), EncodeError);
  });

  it('a value that throws while it is read (a getter, a revoked Proxy) is an EncodeError on the plain path too', () => {
    // Anything else thrown by the store is taken for a backend failure: logged, the result never
    // stored, and get() waits on PENDING forever. The worker stores FAILURE(EncodeError) instead.
    const getter = {
      ok: 1,
      get broken(): number {
        throw new Error('lazy field failed');
      },
    };
    const { proxy, revoke } = Proxy.revocable({}, {});
    revoke();
    for (const v of [getter, [getter], { nested: proxy }, proxy]) {
      assert.throws(
        () => stringifyJson(v),
        (err: unknown) => err instanceof EncodeError && /lazy field failed|revoked/.test(err.message),
      );
    }
  });

  it('an array with its own toJSON is written as the slow path writes it (its toJSON value checked)', () => {
    const arr = Object.assign([1], { toJSON: () => NaN });
    assert.equal(stringifyJson({ a: arr }), '{"a":NaN}');
  });
});

describe('TypeScript -> JSON -> TypeScript (fast-check)', () => {
  it('every value comes back as the value table says', () => {
    fc.assert(
      fc.property(wireValue('json'), (v) => {
        assert.deepStrictEqual(parseJson(stringifyJson(v)), expectedAfterTrip(v, 'json'));
      }),
      { numRuns: 2000 },
    );
  });

  it('integers come back exact, as numbers when safe and BigInts otherwise', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(2n ** 200n), max: 2n ** 200n }), (n) => {
        const back = parseJson(stringifyJson([n]));
        assert.deepStrictEqual(back, [expectedAfterTrip(n, 'json')]);
      }),
    );
  });
});
