/**
 * The AMQP field-table decoder that replaces amqplib's: py-amqp's `L` (signed int64) and the other
 * tags of AMQP 0-9-1, and no throw on an unknown tag. Bytes are built as py-amqp writes them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createRequire } from 'node:module';
import { decodeFields } from '../../../../runtime/src/brokers/amqp-codec.js';

/** One table entry: short key, tag, value bytes. */
function entry(key: string, tag: string, value: Buffer): Buffer {
  return Buffer.concat([Buffer.from([key.length]), Buffer.from(key), Buffer.from(tag), value]);
}
const int64 = (n: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(n);
  return b;
};
const longstr = (s: string) => {
  const b = Buffer.from(s);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length);
  return Buffer.concat([len, b]);
};

describe('AMQP field-table decoder', () => {
  it("reads py-amqp's L tag as a signed 64-bit integer", () => {
    const table = Buffer.concat([
      entry('big', 'L', int64(2n ** 40n)),
      entry('neg', 'L', int64(-(2n ** 33n))),
      entry('task', 'S', longstr('proj.tasks.add')),
    ]);
    assert.deepEqual(decodeFields(table), { big: 2 ** 40, neg: -(2 ** 33), task: 'proj.tasks.add' });
  });

  it('reads L inside arrays and nested tables', () => {
    const inner = entry('id', 'L', int64(9007199254740991n));
    const innerLen = Buffer.alloc(4);
    innerLen.writeUInt32BE(inner.length);
    const arrItem = Buffer.concat([Buffer.from('L'), int64(-5n)]);
    const arrLen = Buffer.alloc(4);
    arrLen.writeUInt32BE(arrItem.length);
    const table = Buffer.concat([
      entry('stamps', 'F', Buffer.concat([innerLen, inner])),
      entry('ids', 'A', Buffer.concat([arrLen, arrItem])),
    ]);
    assert.deepEqual(decodeFields(table), { stamps: { id: 9007199254740991 }, ids: [-5] });
  });

  it('keeps what it read and names the key when a tag is unknown, instead of throwing', () => {
    const table = Buffer.concat([entry('ok', 't', Buffer.from([1])), entry('weird', 'Z', Buffer.from([1, 2, 3]))]);
    assert.deepEqual(decodeFields(table), { ok: true, 'x-celeriac-undecodable-header': 'weird' });
  });

  it('is the decoder amqplib uses once the broker driver is loaded', () => {
    const require = createRequire(import.meta.url);
    const codec = require('amqplib/lib/codec.js') as { decodeFields: unknown };
    assert.equal(codec.decodeFields, decodeFields);
  });
});
