/**
 * Body serializers: msgpack as kombu's msgpack-python writes and reads it, results with the
 * messages' JSON encoder, and fast-check round trips TypeScript -> msgpack/json -> TypeScript.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { acceptedContentTypes, deserialize, serializerByName } from '../../../../runtime/src/protocol/serializers.js';
import { DecodeError, EncodeError } from '../../../../runtime/src/errors.js';
import { expectedAfterTrip, wireValue } from '../../../support/wire-values.js';

const msgpack = serializerByName('msgpack');
const accepted = acceptedContentTypes(['json', 'msgpack']);
const fromPython = (hex: string) => deserialize(Buffer.from(hex.replace(/ /g, ''), 'hex'), 'application/x-msgpack', accepted);

describe('msgpack as Celery writes and reads it', () => {
  it("reads msgpack-python's int64/uint64 exactly: numbers when safe, BigInts beyond 2^53", () => {
    // packb([2**40, 2**53+1, 2**64-1, -2**63]) in Python
    assert.deepEqual(fromPython('94 cf 0000010000000000 cf 0020000000000001 cf ffffffffffffffff d3 8000000000000000'), [
      2 ** 40,
      2n ** 53n + 1n,
      2n ** 64n - 1n,
      -(2n ** 63n),
    ]);
  });

  it('writes integers beyond 32 bits as int64/uint64 (never as floats), BigInts included', () => {
    assert.equal(msgpack.dumps([2 ** 40, -(2 ** 40), 2n ** 64n - 1n]).toString('hex'), '93cf0000010000000000d3ffffff0000000000cfffffffffffffffff');
    assert.throws(() => msgpack.dumps(2n ** 64n), EncodeError);
    assert.throws(() => msgpack.dumps({ f: () => 1 }), EncodeError);
    assert.throws(() => msgpack.dumps([-(2n ** 63n) - 1n]), EncodeError);
  });

  it('reads a msgpack Timestamp (what Python sends for msgpack.Timestamp) as a Date, and bin as a Buffer', () => {
    // packb([Timestamp(1704164645, 678000000), b"\xff\x00"], use_bin_type=True)
    assert.deepEqual(fromPython('92 d7ffa1a5d60065937d25 c402ff00'), [new Date(1704164645_678), Buffer.from([0xff, 0])]);
  });

  it('writes a Date as its ISO text (kombu has no datetime hook; a Timestamp is useless to a Celery task)', () => {
    const d = new Date('2024-01-02T03:04:05.678Z');
    assert.deepEqual(msgpack.loads(msgpack.dumps({ d })), { d: '2024-01-02T03:04:05.678Z' });
  });

  it('keeps NaN and infinities as floats', () => {
    const back = msgpack.loads(msgpack.dumps([NaN, Infinity, -Infinity])) as number[];
    assert.ok(Number.isNaN(back[0]));
    assert.deepEqual(back.slice(1), [Infinity, -Infinity]);
  });
});

describe('a __proto__ key', () => {
  it('JSON keeps it as an own key; msgpack refuses the map with DecodeError (never a prototype)', () => {
    const v = JSON.parse('{"__proto__": 1, "a": 2}') as Record<string, unknown>;
    const json = serializerByName('json');
    const [back] = deserialize(json.dumps([v]), json.contentType, accepted) as [Record<string, unknown>];
    assert.deepEqual(Object.keys(back), ['__proto__', 'a']);
    assert.equal(Object.getPrototypeOf(back), Object.prototype);
    const msgpack = serializerByName('msgpack');
    assert.throws(
      () => deserialize(msgpack.dumps([v]), msgpack.contentType, accepted),
      (e) => e instanceof DecodeError && /__proto__/.test(e.message),
    );
  });
});

describe('TypeScript -> wire -> TypeScript (fast-check)', () => {
  for (const format of ['json', 'msgpack'] as const) {
    it(`${format}: every value comes back as the value table says`, () => {
      const s = serializerByName(format);
      fc.assert(
        fc.property(wireValue(format), (v) => {
          assert.deepStrictEqual(deserialize(s.dumps([v]), s.contentType, accepted), [expectedAfterTrip(v, format)]);
        }),
        { numRuns: 1000 },
      );
    });
  }

  it('msgpack: 64-bit integers come back exact', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }), (n) => {
        assert.deepStrictEqual(msgpack.loads(msgpack.dumps([n])), [expectedAfterTrip(n, 'msgpack')]);
      }),
    );
  });
});
