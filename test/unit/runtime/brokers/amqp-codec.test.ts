/**
 * The AMQP field-table decoder that replaces amqplib's: py-amqp's `L` (signed int64) and the other
 * tags of AMQP 0-9-1, and no throw on an unknown tag. Bytes are built as py-amqp writes them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createRequire } from 'node:module';
import {
  decodeDeliveryFrame,
  decodeFields,
  encodePublish,
  encodeTable,
  encodeTaskHeaders,
  FrameWriter,
  freshChannel,
} from '../../../../runtime/src/brokers/amqp-codec.js';
import { EventEmitter } from 'node:events';
import { sendPublish } from '../../../../runtime/src/brokers/amqp.js';
import { encodeTask, type TaskMessageInput } from '../../../../runtime/src/protocol/task-message.js';

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
  it('does not decode tables nested past the limit: no recursion past it, and the header is named', () => {
    // {id: 'x', stamp: {a: {a: ... 100,000 levels}}}, written flat (the encoder would recurse).
    const n = 100_000;
    const level = 7; // key length, "a", "F", uint32 length
    const head = Buffer.from([2, 0x69, 0x64, 0x53, 0, 0, 0, 1, 0x78, 5, ...Buffer.from('stamp'), 0x46, 0, 0, 0, 0]);
    const table = Buffer.alloc(head.length + (n - 1) * level);
    head.copy(table);
    table.writeUInt32BE((n - 1) * level, head.length - 4);
    for (let i = 0, at = head.length; i < n - 1; i++, at += level) {
      table.set([1, 0x61, 0x46], at);
      table.writeUInt32BE((n - 2 - i) * level, at + 3);
    }
    const fields = decodeFields(table);
    assert.equal(fields.id, 'x');
    assert.equal(fields['x-celeriac-too-deep-header'], 'stamp');
    let depth = 1;
    for (let t = fields.stamp as Record<string, unknown> | null; t !== null && typeof t === 'object'; t = t.a as Record<string, unknown> | null) depth++;
    assert.equal(depth, 1000, 'decoded down to the limit, not below');
  });

  it("reads py-amqp's L tag as a signed 64-bit integer", () => {
    const table = Buffer.concat([entry('big', 'L', int64(2n ** 40n)), entry('neg', 'L', int64(-(2n ** 33n))), entry('task', 'S', longstr('proj.tasks.add'))]);
    assert.deepEqual(decodeFields(table), { big: 2 ** 40, neg: -(2 ** 33), task: 'proj.tasks.add' });
  });

  it('reads 64-bit integers beyond 2^53 exactly, as BigInt, and writes a BigInt back as int64', () => {
    const table = Buffer.concat([entry('id', 'L', int64(2n ** 53n + 1n)), entry('min', 'l', int64(-(2n ** 63n)))]);
    const fields = decodeFields(table);
    assert.deepEqual(fields, { id: 2n ** 53n + 1n, min: -(2n ** 63n) });
    const buf = Buffer.alloc(256);
    const len = encodeTable(buf, fields, 0); // the table with its 4-byte length first
    assert.deepEqual(decodeFields(buf.subarray(4, len)), fields);
  });

  it('reads L inside arrays and nested tables', () => {
    const inner = entry('id', 'L', int64(9007199254740991n));
    const innerLen = Buffer.alloc(4);
    innerLen.writeUInt32BE(inner.length);
    const arrItem = Buffer.concat([Buffer.from('L'), int64(-5n)]);
    const arrLen = Buffer.alloc(4);
    arrLen.writeUInt32BE(arrItem.length);
    const table = Buffer.concat([entry('stamps', 'F', Buffer.concat([innerLen, inner])), entry('ids', 'A', Buffer.concat([arrLen, arrItem]))]);
    assert.deepEqual(decodeFields(table), { stamps: { id: 9007199254740991 }, ids: [-5] });
  });

  it('keeps what it read and names the key when a tag is unknown, instead of throwing', () => {
    const table = Buffer.concat([entry('ok', 't', Buffer.from([1])), entry('weird', 'Z', Buffer.from([1, 2, 3]))]);
    assert.deepEqual(decodeFields(table), { ok: true, 'x-celeriac-undecodable-header': 'weird' });
  });

  it("reads every tag amqplib reads as amqplib's own decoder does, UTF-8 names and texts included", () => {
    const require = createRequire(import.meta.url);
    const path = require.resolve('amqplib/lib/codec.js');
    const patched = require.cache[path];
    delete require.cache[path];
    const original = require(path) as { decodeFields: (b: Buffer) => unknown; encodeTable: (b: Buffer, v: unknown, o: number) => number };
    require.cache[path] = patched;
    const table = {
      lang: 'py',
      'ünï-name': 'ünïcode-✓',
      long: 'x'.repeat(300),
      shadow: null,
      int: -2_000_000_000,
      u32: { '!': 'uint32', value: 4_000_000_000 },
      i8: { '!': 'int8', value: -3 },
      u8: { '!': 'uint8', value: 200 },
      i16: { '!': 'int16', value: -300 },
      u16: { '!': 'uint16', value: 60_000 },
      long64: 2 ** 40,
      float: { '!': 'float', value: 1.5 },
      double: 2.25,
      ok: true,
      no: false,
      bytes: Buffer.from([0, 255]),
      typed: { '!': 'timestamp', value: 1735732800 },
      dec: { '!': 'decimal', value: { places: 2, digits: 110 } },
      nested: { a: [100_000, 'two', { b: null }], c: 'c' },
    };
    const buf = Buffer.alloc(4096);
    const n = original.encodeTable(buf, table, 0);
    const bytes = buf.subarray(4, n);
    assert.deepEqual(decodeFields(bytes), original.decodeFields(bytes));
    // Twice: the second pass reads the names through the cache of the last table's names.
    assert.deepEqual(decodeFields(bytes), original.decodeFields(bytes));
  });

  it("reads a name with the same chars but other bytes than the last table's name as it is, not as the cached one", () => {
    // UTF-8 c3 a9: the one char U+00E9.
    assert.deepEqual(decodeFields(Buffer.concat([Buffer.from([2, 0xc3, 0xa9]), Buffer.from('t'), Buffer.from([1])])), { é: true });
    // One byte e9 (invalid UTF-8) at the same position: U+FFFD, as Buffer decodes it, not "é".
    assert.deepEqual(decodeFields(Buffer.concat([Buffer.from([1, 0xe9]), Buffer.from('t'), Buffer.from([1])])), { '\ufffd': true });
    // Names in other positions: each table is read as it is.
    assert.deepEqual(decodeFields(Buffer.concat([entry('b', 't', Buffer.from([1])), entry('a', 't', Buffer.from([0]))])), { b: true, a: false });
    assert.deepEqual(decodeFields(Buffer.concat([entry('a', 't', Buffer.from([1])), entry('b', 't', Buffer.from([0]))])), { a: true, b: false });
  });

  it('is the decoder amqplib uses once the broker driver is loaded', () => {
    const require = createRequire(import.meta.url);
    const codec = require('amqplib/lib/codec.js') as { decodeFields: unknown };
    assert.equal(codec.decodeFields, decodeFields);
  });
});

describe('AMQP field-table encoder', () => {
  it("writes encodeTask's headers (from bytes made once) as it writes any table with the same entries", () => {
    const task = (o: Partial<TaskMessageInput>) =>
      encodeTask({ id: 'a-1', name: 'proj.add', args: [1, 2], kwargs: {}, origin: 'gen1@h', serializer: 'json', ...o }).headers;
    for (const h of [
      task({}),
      task({
        eta: new Date(0),
        expires: new Date(1e12),
        group: 'g',
        groupIndex: 3,
        retries: 2 ** 40,
        timelimit: [10, 0.5],
        parentId: 'p',
        shadow: 'ü',
        ignoreResult: true,
      }),
      task({ name: 'ü"'.repeat(40), args: ['é'], kwargs: { k: [null, { a: 1.5 }] } }),
      task({ retries: undefined, groupIndex: undefined }),
    ]) {
      const [built, copy] = [Buffer.alloc(4096), Buffer.alloc(4096)];
      const n = encodeTaskHeaders(built, h, 3);
      assert.equal(n, encodeTable(copy, h, 3));
      assert.deepEqual(built, copy);
    }
    // Too large for the buffer: a RangeError, as for any table (encodePublish then lets amqplib send it).
    assert.throws(() => encodeTaskHeaders(Buffer.alloc(64), task({}), 0), RangeError);
  });

  it("writes exactly the bytes amqplib's own encoder writes (integers aside: next test)", () => {
    // A pristine copy of amqplib's codec, loaded beside the patched one.
    const require = createRequire(import.meta.url);
    const path = require.resolve('amqplib/lib/codec.js');
    const patched = require.cache[path];
    delete require.cache[path];
    const original = (require(path) as { encodeTable: (b: Buffer, v: unknown, o: number) => number }).encodeTable;
    require.cache[path] = patched;
    const headers = {
      lang: 'py',
      task: 'proj.tasks.add',
      id: 'ünïcode-✓',
      shadow: null,
      eta: '2025-01-01T12:00:10+00:00',
      // Plain integers only where amqplib also writes 'I' or 'l' (below 16 bits we write 'I': next test).
      retries: 100_000,
      timelimit: [null, 300_000],
      int: -2_000_000_000,
      long: 2 ** 40,
      float: 1.5,
      big: 2 ** 64,
      ok: true,
      no: false,
      nested: { a: [100_000, 'two', { b: null }], c: Buffer.from([1, 2]) },
      skipped: undefined,
      typed: { '!': 'timestamp', value: 1735732800 },
      u8: { '!': 'uint8', value: 200 },
      dec: { '!': 'decimal', value: { places: 2, digits: 110 } },
    };
    // amqplib hands the encoder Object.create(headers): the keys are inherited.
    const inherited = Object.create(headers) as Record<string, unknown>;
    const a = Buffer.alloc(4096);
    const b = Buffer.alloc(4096);
    assert.deepEqual(a.subarray(0, encodeTable(a, inherited, 0)), b.subarray(0, original(b, inherited, 0)));
    const mine = Buffer.alloc(4096);
    const theirs = Buffer.alloc(4096);
    const n = encodeTable(mine, headers, 7);
    assert.equal(n, original(theirs, headers, 7));
    assert.deepEqual(mine.subarray(0, 7 + n), theirs.subarray(0, 7 + n));
    assert.deepEqual(decodeFields(mine.subarray(11, 7 + n)).nested, { a: [100_000, 'two', { b: null }], c: Buffer.from([1, 2]) });
  });

  it("writes int32-range integers as 'I', as py-amqp does: py-amqp 5.1 (Celery 5.2) misreads 's' and 'b'", () => {
    const buf = Buffer.alloc(256);
    const n = encodeTable(buf, { small: -100, clock: 200, short: 30_000 }, 0);
    const int32 = (v: number) => {
      const b = Buffer.alloc(4);
      b.writeInt32BE(v);
      return b;
    };
    const body = Buffer.concat([entry('small', 'I', int32(-100)), entry('clock', 'I', int32(200)), entry('short', 'I', int32(30_000))]);
    assert.deepEqual(buf.subarray(4, n), body);
    assert.deepEqual(decodeFields(buf.subarray(4, n)), { small: -100, clock: 200, short: 30_000 });
  });

  it('refuses a table that does not fit instead of truncating it', () => {
    assert.throws(() => encodeTable(Buffer.alloc(64), { big: 'x'.repeat(100) }, 0), RangeError);
  });
});

describe('AMQP basic.publish encoder', () => {
  type Send = (this: unknown, ch: number, method: number, fields: object, pclass: number, props: object, content: Buffer) => boolean;
  /** amqplib's own Connection#sendMessage (a pristine copy of its modules) and the patched one. */
  function senders(): { original: Send; patched: Send } {
    const require = createRequire(import.meta.url);
    const path = require.resolve('amqplib/lib/connection.js');
    const dir = path.slice(0, path.lastIndexOf('/') + 1);
    const saved = Object.keys(require.cache).filter((k) => k.startsWith(dir));
    const kept = new Map(saved.map((k) => [k, require.cache[k]]));
    const patched = (require(path) as { Connection: { prototype: { sendMessage: Send } } }).Connection.prototype.sendMessage;
    for (const k of saved) delete require.cache[k];
    const original = (require(path) as { Connection: { prototype: { sendMessage: Send } } }).Connection.prototype.sendMessage;
    for (const [k, m] of kept) require.cache[k] = m;
    return { original, patched };
  }
  /** The bytes a send writes on channel 3 of a connection with this frameMax (or what it throws). */
  function bytes(send: Send, frameMax: number, fields: object, props: object, content: Buffer): Buffer | string {
    const out: Buffer[] = [];
    const conn = { frameMax, sentSinceLastCheck: false, channels: [null, null, null, { buffer: { write: (b: Buffer) => out.push(Buffer.from(b)) > 0 } }] };
    try {
      send.call(conn, 3, 0x003c0028, fields, 60, props, content);
    } catch (err) {
      return `${(err as Error).name}: ${(err as Error).message}`;
    }
    assert.equal(conn.sentSinceLastCheck, true);
    return Buffer.concat(out);
  }

  it('writes exactly the frames amqplib writes, and leaves the cases it does not cover to amqplib', () => {
    const { original, patched } = senders();
    assert.notEqual(original, patched);
    // Integers only where both encoders pick the same tag (see the encoder tests above).
    const headers = { lang: 'js', task: 'proj.add', id: 'ünïcode-✓', shadow: null, retries: 100_000, timelimit: [null, 300_000], stamps: {}, ok: false };
    const celery = {
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      headers,
      deliveryMode: 2,
      priority: 0,
      correlationId: 'c-1',
      replyTo: 'r-1',
      messageId: 'm-1',
    };
    const body = Buffer.from('[[1, 2], {}, {"callbacks": null}]');
    const cases: [string, number, object, object, Buffer][] = [
      ['a Celery task', 131_072, { exchange: '', routingKey: 'celery', mandatory: false, immediate: false, ticket: 0 }, celery, body],
      [
        'no headers, empty body, mandatory, UTF-8 names',
        131_072,
        { exchange: 'exç', routingKey: 'kéy', mandatory: true },
        { deliveryMode: 1 },
        Buffer.alloc(0),
      ],
      [
        'every short property',
        131_072,
        { exchange: 'x', routingKey: 'k', immediate: true },
        { type: 't', userId: 'guest', appId: 'a', clusterId: 'c', expiration: '60000', replyTo: 'r', contentType: 'text/plain' },
        body,
      ],
      ['null properties are absent', 131_072, { routingKey: 'k' }, { contentType: null, headers: null, priority: undefined }, body],
      ['a timestamp (amqplib encodes it)', 131_072, { routingKey: 'k' }, { timestamp: 1735732800, headers: {} }, body],
      ['a body past one chunk', 131_072, { routingKey: 'k' }, celery, Buffer.alloc(5_000, 7)],
      ['a body past frameMax', 4_096, { routingKey: 'k' }, celery, Buffer.alloc(4_090, 7)],
      ['headers past the scratch buffer', 131_072, { routingKey: 'k' }, { headers: { big: 'é'.repeat(1_500), small: 'x'.repeat(1_100) } }, body],
      ['a delivery mode of the wrong type', 131_072, { routingKey: 'k' }, { deliveryMode: 'two' }, body],
      ['a delivery mode out of range', 131_072, { routingKey: 'k' }, { deliveryMode: 300 }, body],
      ['a routing key over 255 bytes', 131_072, { routingKey: 'é'.repeat(200) }, {}, body],
      ['a header that cannot be encoded', 131_072, { routingKey: 'k' }, { headers: { f: () => 1 } }, body],
    ];
    for (const [name, frameMax, fields, props, content] of cases) {
      assert.deepEqual(bytes(patched, frameMax, fields, props, content), bytes(original, frameMax, fields, props, content), name);
    }
  });

  it("sendPublish (the broker's publish) writes what amqplib's ConfirmChannel#publish writes, and queues the confirm callback the same way", () => {
    const require = createRequire(import.meta.url);
    const { ConfirmChannel } = require('amqplib/lib/channel_model.js') as { ConfirmChannel: { prototype: Record<string, (...a: unknown[]) => unknown> } };
    const { Connection } = require('amqplib/lib/connection.js') as { Connection: { prototype: object } };
    const { patched } = senders();
    /** A channel (amqplib's own methods) on channel number 3 of a connection that records the bytes. */
    const channel = () => {
      const out: Buffer[] = [];
      const conn = Object.assign(Object.create(Connection.prototype) as object, {
        frameMax: 131_072,
        sentSinceLastCheck: false,
        channels: [null, null, null, { buffer: { write: (b: Buffer) => out.push(Buffer.from(b)) > 0 } }],
      });
      const ch = Object.create(ConfirmChannel.prototype) as Record<string, unknown>;
      Object.assign(ch, { unconfirmed: [], sendMessage: (f: object, p: object, c: Buffer) => patched.call(conn, 3, 0x003c0028, f, 60, p, c) });
      return { ch, out, unconfirmed: ch.unconfirmed as unknown[] };
    };
    const headers = { lang: 'py', task: 'proj.add', id: 'i-1', eta: null, retries: 0, timelimit: [null, null], stamps: {}, ignore_result: false };
    const cases: [string, Record<string, unknown>][] = [
      ['a task', { contentType: 'application/json', contentEncoding: 'utf-8', headers, deliveryMode: 2, priority: 0, correlationId: 'i-1', replyTo: 'r' }],
      ['an rpc:// result', { contentType: 'application/json', contentEncoding: 'utf-8', headers: {}, deliveryMode: 1, correlationId: 'i-1' }],
      ['an expiration and a message id', { headers: { a: 1 }, deliveryMode: 2, expiration: '5000', messageId: 'm' }],
      ['a large body (amqplib encodes it)', { headers, deliveryMode: 2 }],
    ];
    for (const [name, options] of cases) {
      const body = name.startsWith('a large') ? Buffer.alloc(5_000, 7) : Buffer.from('[[1, 2], {}, {}]');
      const cb = () => undefined;
      const mine = channel();
      sendPublish(mine.ch as never, '', 'celery', body, options, cb);
      const theirs = channel();
      ConfirmChannel.prototype.publish!.call(theirs.ch, '', 'celery', body, options, cb);
      assert.ok(Buffer.concat(mine.out).length > body.length, name);
      assert.deepEqual(Buffer.concat(mine.out), Buffer.concat(theirs.out), name);
      assert.deepEqual(mine.unconfirmed, [cb], name);
      assert.deepEqual(theirs.unconfirmed, [cb], name);
    }
  });
});

describe('AMQP frame reader', () => {
  type Recv = (this: object) => unknown;
  /** amqplib's own Connection#recvFrame (a pristine copy of its modules) and the patched one. */
  function readers(): { original: Recv; patched: Recv } {
    const require = createRequire(import.meta.url);
    const path = require.resolve('amqplib/lib/connection.js');
    const dir = path.slice(0, path.lastIndexOf('/') + 1);
    const saved = Object.keys(require.cache).filter((k) => k.startsWith(dir));
    const kept = new Map(saved.map((k) => [k, require.cache[k]]));
    const patched = (require(path) as { Connection: { prototype: { recvFrame: Recv } } }).Connection.prototype.recvFrame;
    for (const k of saved) delete require.cache[k];
    const original = (require(path) as { Connection: { prototype: { recvFrame: Recv } } }).Connection.prototype.recvFrame;
    for (const [k, m] of kept) require.cache[k] = m;
    return { original, patched };
  }
  /** Every frame `recv` reads from `chunks`, read as amqplib's accept loop does (until false, then the next chunk). */
  function frames(recv: Recv, chunks: Buffer[]): unknown[] {
    const queue = [...chunks];
    const conn = { rest: Buffer.alloc(0), recvSinceLastCheck: false, stream: { read: () => queue.shift() ?? null }, recvFrame: recv };
    const out: unknown[] = [];
    for (;;) {
      let f: unknown;
      while ((f = recv.call(conn))) out.push(f);
      if (queue.length === 0) return out;
    }
  }

  it('reads the frames amqplib reads, wherever the chunks cut them', () => {
    const { original, patched } = readers();
    assert.notEqual(original, patched);
    const headers = { lang: 'py', task: 'proj.add', id: 'i-1', retries: 0, stamps: {} };
    const publish = (body: Buffer) =>
      encodePublish(
        1,
        { exchange: '', routingKey: 'celery' },
        { contentType: 'application/json', headers, deliveryMode: 2, correlationId: 'i-1' },
        body,
        131_072,
      )!;
    const heartbeat = Buffer.from([8, 0, 0, 0, 0, 0, 0, 0xce]);
    const stream = Buffer.concat([publish(Buffer.from('[[1, 2], {}, {}]')), heartbeat, publish(Buffer.alloc(0)), publish(Buffer.alloc(900, 7)), heartbeat]);
    const cuts: [string, number[]][] = [
      ['one chunk', [stream.length]],
      ['byte by byte', Array.from({ length: stream.length }, () => 1)],
      ['7 bytes at a time', Array.from({ length: Math.ceil(stream.length / 7) }, () => 7)],
      ['uneven chunks', [3, 100, 1, 250, 64, 5_000]],
    ];
    for (const [name, sizes] of cuts) {
      const chunks: Buffer[] = [];
      for (let at = 0, i = 0; at < stream.length; at += sizes[i++ % sizes.length]!) chunks.push(stream.subarray(at, at + sizes[i % sizes.length]!));
      const mine = frames(patched, chunks);
      assert.equal(mine.length, 10, name);
      assert.deepEqual(mine, frames(original, chunks), name);
    }
  });

  it('reads basic.deliver and its content header (every property) in place, as amqplib reads them', () => {
    const { original, patched } = readers();
    const require = createRequire(import.meta.url);
    const defs = require('amqplib/lib/defs.js') as {
      BasicDeliver: number;
      BasicProperties: number;
      encodeMethod(id: number, channel: number, fields: object): Buffer;
      encodeProperties(id: number, channel: number, size: number, props: object): Buffer;
    };
    const body = (n: number) => Buffer.from([3, 0, 1, 0, 0, 0, n, ...Buffer.alloc(n, 7), 0xce]);
    const deliver = (tag: number, routingKey: string, redelivered = false) =>
      defs.encodeMethod(defs.BasicDeliver, 1, { consumerTag: 'amq.ctag-x1', deliveryTag: tag, redelivered, exchange: '', routingKey });
    const all = {
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      headers: { lang: 'py', task: 'proj.add', id: 'i-1', retries: 0, stamps: {}, 'x-ü': 'é' },
      deliveryMode: 2,
      priority: 3,
      correlationId: 'i-1',
      replyTo: 'reply-q',
      expiration: '5000',
      messageId: 'm-1',
      timestamp: 1_700_000_000,
      type: 't',
      userId: 'guest',
      appId: 'app',
      clusterId: 'c',
    };
    const stream = Buffer.concat([
      deliver(1, 'celery'),
      defs.encodeProperties(defs.BasicProperties, 1, 5, all),
      body(5),
      deliver(2 ** 40 + 3, 'celery', true),
      defs.encodeProperties(defs.BasicProperties, 1, 5, { ...all, correlationId: 'i-2', routingKey: undefined, contentType: 'application/x-other' }),
      body(5),
      deliver(3, 'ünïcode'),
      defs.encodeProperties(defs.BasicProperties, 1, 0, {}),
      deliver(4, 'celery'),
      defs.encodeProperties(defs.BasicProperties, 1, 2, { deliveryMode: 1, correlationId: 'r' }),
      body(2),
    ]);
    for (const sizes of [[stream.length], [1], [13, 200, 7]]) {
      const chunks: Buffer[] = [];
      for (let at = 0, i = 0; at < stream.length; at += sizes[i++ % sizes.length]!) chunks.push(stream.subarray(at, at + sizes[i % sizes.length]!));
      const mine = frames(patched, chunks);
      assert.equal(mine.length, 11);
      assert.notEqual(decodeDeliveryFrame(1, 1, stream, 7, 7 + stream.readUInt32BE(3)), null, 'read in place, not by amqplib');
      assert.deepEqual(mine, frames(original, chunks));
    }
  });

  it('leaves a delivery frame whose fields do not fit its payload to amqplib (the same outcome)', () => {
    const { original, patched } = readers();
    /** A frame of `type` on channel 1 with this payload. */
    const frame = (type: number, payload: number[]) => {
      const head = Buffer.alloc(7);
      head[0] = type;
      head.writeUInt16BE(1, 1);
      head.writeUInt32BE(payload.length, 3);
      return Buffer.concat([head, Buffer.from(payload), Buffer.from([0xce])]);
    };
    const cases: [string, Buffer][] = [
      ['a consumer tag past the end', frame(1, [0, 60, 0, 60, 40, 1])],
      ['no routing key', frame(1, [0, 60, 0, 60, 1, 0x41, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0])],
      ['a content type past the end', frame(2, [0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x80, 0, 9, 0x61])],
      ['a header table past the end', frame(2, [0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x20, 0, 0, 0, 0, 50])],
      ['a delivery mode missing', frame(2, [0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x10, 0])],
    ];
    const outcome = (recv: Recv, b: Buffer) => {
      try {
        return { frames: frames(recv, [b]) };
      } catch (err) {
        return { error: (err as Error).constructor.name };
      }
    };
    for (const [name, b] of cases) assert.deepEqual(outcome(patched, b), outcome(original, b), name);
  });

  it('refuses a frame without its end marker, as amqplib does', () => {
    const { patched } = readers();
    const bad = Buffer.from([8, 0, 0, 0, 0, 0, 0, 0x00]);
    assert.throws(() => frames(patched, [bad]), /Invalid frame/);
  });
});

describe('AMQP frame writer', () => {
  /** A socket that records each write; `pending` stands for bytes it has not written yet. */
  function socket() {
    const s = Object.assign(new EventEmitter(), { writes: [] as Buffer[], pending: 0, writableEnded: false, destroyed: false });
    Object.defineProperty(s, 'writableLength', { get: () => s.pending });
    return Object.assign(s as typeof s & { readonly writableLength: number }, {
      write(b: Buffer) {
        s.writes.push(Buffer.from(b));
        return true;
      },
    });
  }
  const turn = () => new Promise((r) => setImmediate(r));
  const frame = (ch: number, n: number) => Buffer.from([1, 0, ch, n]);

  it("is where amqplib's channels send their frames once the broker driver is loaded", () => {
    const require = createRequire(import.meta.url);
    const { Connection } = require('amqplib/lib/connection.js') as { Connection: { prototype: { freshChannel: unknown } } };
    assert.equal(Connection.prototype.freshChannel, freshChannel);
  });

  it('writes the frames of every channel of a turn in one write, in the order they were sent', async () => {
    const stream = socket();
    const { BitSet } = createRequire(import.meta.url)('amqplib/lib/bitset.js') as { BitSet: new () => object };
    const conn = { stream, freeChannels: new BitSet(), channelMax: 10, channels: [null] as unknown[] };
    const ch = () => ({ drains: 0, onBufferDrain() {} });
    const one = freshChannel.call(conn as never, ch());
    const two = freshChannel.call(conn as never, ch());
    assert.deepEqual([one, two], [1, 2]);
    const buffers = conn.channels as { buffer: { write(b: Buffer): boolean; end(): void } }[];
    for (const [c, n] of [
      [1, 1],
      [2, 2],
      [1, 3],
      [1, 4],
      [2, 5],
    ] as const)
      assert.equal(buffers[c]!.buffer.write(frame(c, n)), true);
    assert.equal(stream.writes.length, 0, 'nothing written before the turn ends');
    await turn();
    assert.deepEqual(stream.writes, [Buffer.concat([frame(1, 1), frame(2, 2), frame(1, 3), frame(1, 4), frame(2, 5)])]);
    // A released channel's frames already sent still go out.
    buffers[2]!.buffer.write(frame(2, 6));
    buffers[2]!.buffer.end();
    await turn();
    assert.deepEqual(stream.writes[1], frame(2, 6));
    await turn();
    assert.equal(stream.writes.length, 2, 'no empty writes');
  });

  it("says to wait past 1 MiB waiting (queued or in the socket) and tells the channel on the socket's 'drain'", async () => {
    const stream = socket();
    const w = new FrameWriter(stream);
    let drains = 0;
    const ch = { onBufferDrain: () => drains++ };
    assert.equal(w.write(Buffer.alloc(512 * 1024), ch), true);
    assert.equal(w.write(Buffer.alloc(512 * 1024), ch), false);
    await turn();
    assert.equal(stream.writes.length, 1);
    stream.pending = 1 << 20;
    assert.equal(w.write(Buffer.alloc(10), ch), false, 'the socket holds 1 MiB');
    stream.pending = 0;
    stream.emit('drain');
    assert.equal(drains, 1, 'told once, however many writes said to wait');
    stream.emit('drain');
    assert.equal(drains, 1, 'not told again without waiting again');
    assert.equal(w.write(Buffer.alloc(10), ch), true);
    stream.pending = 2 << 20;
    assert.equal(w.write(Buffer.alloc(10), ch), false);
    stream.emit('close');
    assert.equal(drains, 2, 'a closed socket releases whoever waits');
  });

  it('sends what a beforeWrite callback sends in the same write, after the frames queued before it', async () => {
    const stream = socket();
    const w = new FrameWriter(stream);
    const ch = { onBufferDrain() {} };
    let runs = 0;
    w.beforeWrite(() => {
      runs++;
      w.write(frame(1, 9), ch);
    });
    w.write(frame(2, 1), ch);
    await turn();
    assert.deepEqual(stream.writes, [Buffer.concat([frame(2, 1), frame(1, 9)])]);
    await turn();
    assert.equal(runs, 1);
    assert.equal(stream.writes.length, 1, 'no second write');
    // Alone, it still gets a write of its own.
    w.beforeWrite(() => w.write(frame(1, 10), ch));
    await turn();
    assert.deepEqual(stream.writes[1], frame(1, 10));
  });

  it('drops what is queued once the socket is ended, as a closed connection drops it', async () => {
    const stream = socket();
    const w = new FrameWriter(stream);
    w.write(frame(1, 1), { onBufferDrain() {} });
    stream.writableEnded = true;
    await turn();
    assert.equal(stream.writes.length, 0);
  });
});
