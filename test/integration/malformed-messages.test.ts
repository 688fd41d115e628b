/**
 * Issue 16: every message a worker takes ends in exactly one of run, stored FAILURE plus
 * dead-lettered (with the original bytes and the reason), or dead-lettered alone when no task id
 * can be read. A corpus of malformed and edge-case messages is pushed raw into real Redis and
 * RabbitMQ; the worker must stay up, callers get the stored failure, and the next good task runs.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { deflateSync } from 'node:zlib';
import { after, describe, it } from 'node:test';
import { encode as msgpackEncode } from '@msgpack/msgpack';
import { Redis } from 'ioredis';
import { createApp, type App } from '../../runtime/src/app/app.js';
import { createRedisBroker } from '../../runtime/src/brokers/redis.js';
import { amqplib } from '../../runtime/src/brokers/amqp-codec.js';
import { TaskFailedError } from '../../runtime/src/errors.js';
import { DEAD_REASON_HEADER } from '../../runtime/src/protocol/dead-letter.js';
import { createWorker, type Worker } from '../../runtime/src/worker/worker.js';
import { eventually } from '../support/eventually.js';
import { uniqueName, useRabbit, useRedis } from '../support/servers.js';

const MAX_BYTES = 1024 * 1024;
const DEEP = 100_000;

/** What must happen to a message: it runs with `value`, or is refused (`excType` stored when it has an id). */
type Expect = { run: unknown } | { excType: string | null; code: string; reason: RegExp };

interface Case {
  readonly name: string;
  /** Broker-neutral message; `raw` cases are bytes put straight into a Redis list (not an envelope). */
  readonly body: Buffer;
  readonly contentType?: string;
  readonly contentEncoding?: string;
  readonly headers: Record<string, unknown>;
  readonly correlationId?: string;
  readonly raw?: boolean;
  readonly id: string | null;
  readonly expect: Expect;
}

const J = (v: unknown) => Buffer.from(JSON.stringify(v));
const deepJson = (open: string, close: string, prefix = '', suffix = '') => Buffer.from(prefix + open.repeat(DEEP) + close.repeat(DEEP) + suffix);
const deepMsgpack = () => Buffer.concat([Buffer.alloc(DEEP, 0x91), Buffer.from([0xc0])]); // fixarray(1) x DEEP, then nil

const refused = (excType: string | null, code: string, reason: RegExp) => ({ excType, code, reason });
const CONTENT = (r: RegExp) => refused('ContentDisallowed', 'E_CONTENT_DISALLOWED', r);
const DECODE = (r: RegExp) => refused('DecodeError', 'E_DECODE', r);
const INVALID = (r: RegExp) => refused('InvalidTaskError', 'E_PROTOCOL', r);

/** The corpus: each call makes fresh ids, so one corpus serves one broker. */
function corpus(): Case[] {
  const cases: Case[] = [];
  const task = (name: string, body: Buffer, expect: Expect, o: { ct?: string; ce?: string; headers?: Record<string, unknown>; task?: unknown } = {}) => {
    const id = randomUUID();
    const headers: Record<string, unknown> = { lang: 'py', task: 'task' in o ? o.task : 'c.echo', id, ...o.headers };
    if (headers.task === undefined) delete headers.task;
    cases.push({ name, body, contentType: o.ct ?? 'application/json', contentEncoding: o.ce ?? 'utf-8', headers, id, expect });
  };
  const good = (i: number) => J([[`good-${i}`], {}, { callbacks: null, errbacks: null, chain: null, chord: null }]);
  // Content types.
  task('pickle', Buffer.from([0x80, 0x04, 0x95, 1]), CONTENT(/pickle/), { ct: 'application/x-python-serialize', ce: 'binary' });
  task('unknown content type', good(1), CONTENT(/application\/x-foo" is not accepted/), { ct: 'application/x-foo' });
  task('yaml not accepted', Buffer.from('- [1]\n- {}\n- {}\n'), CONTENT(/x-yaml" is not accepted/), { ct: 'application/x-yaml' });
  task('empty content type', good(2), CONTENT(/is not accepted/), { ct: '' });
  // Bodies that are not JSON / msgpack.
  task('json syntax error', Buffer.from('{oops'), DECODE(/Cannot decode application\/json/));
  task('empty body', Buffer.alloc(0), DECODE(/Cannot decode application\/json/));
  task('trailing garbage', Buffer.from('[[1],{},{}] trailing'), DECODE(/Cannot decode/));
  task('invalid utf-8', Buffer.concat([Buffer.from('[["'), Buffer.from([0xff, 0xfe]), Buffer.from('"],{},{}]')]), DECODE(/Cannot decode/));
  task('unknown json tag', J([[{ __type__: 'frobnicate', __value__: 1 }], {}, {}]), DECODE(/Unknown JSON type tag/));
  task('msgpack garbage', Buffer.from([0xc1, 0xc1]), DECODE(/Cannot decode application\/x-msgpack/), { ct: 'application/x-msgpack', ce: 'binary' });
  task('msgpack truncated', Buffer.from([0x93, 0x91]), DECODE(/Cannot decode application\/x-msgpack/), { ct: 'application/x-msgpack', ce: 'binary' });
  // Shape of the body.
  task('body a string', J('hello'), INVALID(/must be \[args, kwargs, embed\]/));
  task('body null', J(null), INVALID(/must be \[args, kwargs, embed\]/));
  task('body empty list', J([]), INVALID(/must be \[args, kwargs, embed\]/));
  task('body one element', J([[]]), INVALID(/must be \[args, kwargs, embed\]/));
  task('args a number', J([1, {}, {}]), INVALID(/args must be a list/));
  task('args an object', J([{ a: 1 }, {}, {}]), INVALID(/args must be a list/));
  task('kwargs a list', J([[], [1], {}]), INVALID(/kwargs must be a mapping/));
  task('kwargs a string', J([[], 'x', {}]), INVALID(/kwargs must be a mapping/));
  task('embed a list', J([[], {}, [1]]), INVALID(/embed must be a mapping/));
  task('msgpack body a map', Buffer.from(msgpackEncode({ a: 1 })), INVALID(/must be \[args, kwargs, embed\]/), { ct: 'application/x-msgpack', ce: 'binary' });
  // Headers.
  task('eta not a date', good(3), INVALID(/"eta" is not a valid ISO-8601 time/), { headers: { eta: 'tomorrow-ish' } });
  task('eta a number', good(4), INVALID(/"eta" must be an ISO-8601 string/), { headers: { eta: 12345 } });
  task('expires not a date', good(5), INVALID(/"expires" is not a valid ISO-8601 time/), { headers: { expires: 'never' } });
  task('expires an object', good(6), INVALID(/"expires" must be an ISO-8601 string/), { headers: { expires: {} } });
  task('no task header', good(7), INVALID(/no "task" header/), { task: undefined });
  task('task header a number', good(8), INVALID(/no "task" header/), { task: 42 });
  task('unknown task', good(9), refused('NotRegistered', 'E_NOT_REGISTERED', /not registered/), { task: 'c.nope' });
  // Compression.
  task('gzip header, garbage body', Buffer.from('not zlib at all'), DECODE(/Cannot decompress application\/x-gzip/), {
    headers: { compression: 'application/x-gzip' },
  });
  task('brotli header, garbage body', Buffer.from([0xff, 0xff, 0xff, 0xff]), DECODE(/Cannot decompress application\/x-brotli/), {
    headers: { compression: 'application/x-brotli' },
  });
  task('truncated bzip2 body', Buffer.from('BZh91AY&SY'), DECODE(/Cannot decompress application\/x-bz2 body/), {
    headers: { compression: 'application/x-bz2' },
  });
  task('lzma body', Buffer.from([0x5d, 0, 0, 0x80, 0]), DECODE(/Unsupported compression "application\/x-lzma"/), {
    headers: { compression: 'application/x-lzma' },
  });
  task('zlib bomb', deflateSync(Buffer.alloc(MAX_BYTES * 4, 0x20)), DECODE(/inflates to more than 1048576 bytes/), {
    headers: { compression: 'application/x-gzip' },
  });
  // Limits.
  task('body over maxMessageBytes', J([['x'.repeat(MAX_BYTES)], {}, {}]), DECODE(/over the limit of 1048576/));
  task(`${DEEP} levels deep, unknown task`, deepJson('[', ']'), DECODE(/nested deeper than 1000/), { task: 'c.nope' });
  task(`${DEEP} levels deep objects`, deepJson('{"a":', '}', '[[', '],{},{}]'), DECODE(/nested deeper than 1000/));
  task(`msgpack ${DEEP} levels deep`, deepMsgpack(), DECODE(/nested deeper than 1000/), { ct: 'application/x-msgpack', ce: 'binary' });
  // Edge cases that run.
  task('args null, kwargs null, no embed', J([null, null]), { run: [] });
  task(
    'unicode and an unknown header',
    J([['h\u00e9llo \u2603 \ud83d\ude00'], {}, null]),
    { run: ['h\u00e9llo \u2603 \ud83d\ude00'] },
    { headers: { 'x-user': { a: [1] } } },
  );
  task('bad timelimit and group_index ignored', good(10), { run: ['good-10'] }, { headers: { timelimit: 'x', group_index: 'y' } });
  task('msgpack accepted', Buffer.from(msgpackEncode([['mp'], {}, null])), { run: ['mp'] }, { ct: 'application/x-msgpack', ce: 'binary' });
  task('zlib compressed', deflateSync(good(11)), { run: ['good-11'] }, { headers: { compression: 'application/x-gzip' } });
  task('lone surrogate in args', Buffer.from('[["file-\\udc80.txt"], {}, null]'), { run: ['file-\udc80.txt'] });
  // Ids from elsewhere, or none.
  const corr = randomUUID();
  cases.push({
    name: 'id only in correlation_id, no task header',
    body: good(12),
    contentType: 'application/json',
    contentEncoding: 'utf-8',
    headers: { lang: 'py' },
    correlationId: corr,
    id: corr,
    expect: INVALID(/no "task" header/),
  });
  cases.push({
    name: 'no id at all',
    body: good(13),
    contentType: 'application/json',
    headers: { task: 'c.echo', id: 42 },
    id: null,
    expect: INVALID(/has no "id" header/),
  });
  cases.push({
    name: 'v1 body without id',
    body: J({ task: 'c.echo', args: [] }),
    contentType: 'application/json',
    headers: {},
    id: null,
    expect: INVALID(/has no "id"/),
  });
  return cases;
}

/** Messages that are not kombu envelopes at all (Redis only: every AMQP message has properties). */
function rawCorpus(): Case[] {
  const raw = (name: string, body: Buffer): Case => ({ name, body, headers: {}, raw: true, id: null, expect: DECODE(/not a kombu envelope/) });
  return [
    raw('not JSON', Buffer.from('hello, not json')),
    raw('a JSON list', Buffer.from('[1,2,3]')),
    raw('an object without body', Buffer.from('{"no":"body"}')),
    raw('a JSON string', Buffer.from('"just a string"')),
    // Not UTF-8: dead-lettered with these very bytes (no U+FFFD), however the message is popped.
    raw('bytes that are not UTF-8', Buffer.from([0xff, 0xfe, 0x00, 0x80, 0x41])),
    raw(
      'an envelope with a non-UTF-8 byte',
      Buffer.concat([Buffer.from('{"body":"'), Buffer.from([0xc3, 0x28]), Buffer.from('","headers":{},"properties":{}}')]),
    ),
    raw(`envelope with headers ${DEEP} levels deep`, deepJson('[', ']', '{"body":"","headers":{"a":', '},"properties":{}}')),
  ];
}

/**
 * Messages only AMQP carries: header tables nested past the limit (decoded by our field-table
 * codec; on Redis the envelope's depth check covers headers).
 */
function amqpCorpus(): Case[] {
  const id = randomUUID();
  let deep: unknown = 'bottom';
  for (let i = 0; i < 1500; i++) deep = i % 2 ? { a: deep } : [deep];
  const headers = { lang: 'py', task: 'c.echo', id, stamp: deep };
  return [
    {
      name: 'header table nested 1,500 levels deep',
      body: J([['deep-header'], {}, null]),
      headers,
      id,
      expect: DECODE(/Header "stamp" is nested deeper than 1000 levels/),
    },
  ];
}

interface Dead {
  readonly body: Buffer;
  readonly reason: string;
}

/** Runs the corpus on one broker: `push` puts a case on `queue`, `dead` reads `<queue>.dead`. */
async function runCorpus(o: {
  url: string;
  backend: string;
  push(queue: string, c: Case): Promise<void>;
  dead(queue: string): Promise<Dead[]>;
  raw: boolean;
}): Promise<void> {
  const queue = uniqueName('malformed');
  const app: App = createApp({
    name: 'malformed',
    broker: o.url,
    backend: o.backend,
    queues: [queue],
    acceptContent: ['json', 'msgpack'],
    maxMessageBytes: MAX_BYTES,
    logLevel: 'silent',
    metricsPort: null,
  });
  const echo = app.task('c.echo', (...args: unknown[]) => args);
  const worker: Worker = createWorker(app);
  await worker.start();
  try {
    const cases = [...corpus(), ...(o.raw ? rawCorpus() : amqpCorpus())];
    const bodies = new Set(cases.map((c) => c.body.toString('base64')));
    assert.equal(bodies.size, cases.length, 'each case has its own body, so dead letters can be told apart');
    for (const c of cases) await o.push(queue, c);

    // Callers with an id get the stored answer.
    for (const c of cases) {
      if (c.id === null) continue;
      const got = app.asyncResult(c.id).get({ timeout: 10_000 });
      if ('run' in c.expect) assert.deepEqual(await got, c.expect.run, c.name);
      else {
        const want = c.expect.excType;
        await assert.rejects(got, (err: unknown) => err instanceof TaskFailedError && err.excType === want, c.name);
      }
    }
    // Every refused message is dead-lettered once, byte-exact, with its reason.
    const refusedCases = cases.filter((c) => !('run' in c.expect));
    const dead = await eventually(
      async () => {
        const d = await o.dead(queue);
        assert.equal(d.length, refusedCases.length, `dead letters so far: ${d.length}`);
        return d;
      },
      { timeoutMs: 20_000 },
    );
    for (const c of refusedCases) {
      const match = dead.filter((d) => d.body.equals(c.body));
      assert.equal(match.length, 1, `${c.name}: dead-lettered once with the original bytes`);
      assert.match(match[0]!.reason, (c.expect as { reason: RegExp }).reason, c.name);
    }
    // The metric counts the same reasons.
    const metrics = await worker.metrics.registry.metrics();
    const byCode = new Map<string, number>();
    for (const c of refusedCases) {
      const code = (c.expect as { code: string }).code;
      byCode.set(code, (byCode.get(code) ?? 0) + 1);
    }
    for (const [code, n] of byCode) {
      assert.match(metrics, new RegExp(`celeriac_messages_dead_lettered_total\\{queue="${queue}",reason="${code}"\\} ${n}\\n`), code);
    }
    // The worker is still up and runs the next good task.
    const r = await echo.applyAsync(['after'], {}, { queue });
    assert.deepEqual(await r.get({ timeout: 10_000 }), ['after']);
  } finally {
    await worker.stop();
    await app.close();
  }
}

const redis = await useRedis();
describe('malformed messages on Redis', { skip: redis.skip }, () => {
  it('runs, stores FAILURE and dead-letters, or dead-letters byte-exact, each message of the corpus', async () => {
    const url = redis.server!.url;
    const r = new Redis(url);
    try {
      await runCorpus({
        url,
        backend: url,
        raw: true,
        async push(queue, c) {
          if (c.raw) return void (await r.lpush(queue, c.body));
          const properties: Record<string, unknown> = {
            correlation_id: c.correlationId ?? c.id ?? 'none',
            delivery_mode: 2,
            delivery_info: { exchange: '', routing_key: queue },
            priority: 0,
            body_encoding: 'base64',
            delivery_tag: randomUUID(),
          };
          if (c.correlationId === undefined && c.id === null) delete properties.correlation_id;
          const env = {
            body: c.body.toString('base64'),
            'content-encoding': c.contentEncoding ?? 'utf-8',
            'content-type': c.contentType,
            headers: c.headers,
            properties,
          };
          await r.lpush(queue, JSON.stringify(env));
        },
        async dead(queue) {
          const items = await r.lrange(`${queue}.dead`, 0, -1);
          return items.map((t) => {
            const e = JSON.parse(t) as { body: string; headers: Record<string, unknown> };
            return { body: Buffer.from(e.body, 'base64'), reason: String(e.headers[DEAD_REASON_HEADER]) };
          });
        },
      });
    } finally {
      r.disconnect();
    }
  });
});

const rabbit = await useRabbit();
describe('malformed messages on RabbitMQ', { skip: redis.skip || rabbit.skip }, () => {
  it('runs, stores FAILURE and dead-letters each message of the corpus', async () => {
    const conn = await amqplib.connect(rabbit.server!.url);
    const ch = await conn.createChannel();
    /** Waits until the worker has declared `queue` (a fresh channel per look: a 404 closes it). */
    const declared = (queue: string) =>
      eventually(async () => {
        const look = await conn.createChannel();
        look.on('error', () => undefined); // the 404 rejects checkQueue below, which eventually retries
        try {
          await look.checkQueue(queue);
        } finally {
          await look.close().catch(() => undefined);
        }
      });
    try {
      await runCorpus({
        url: rabbit.server!.url,
        backend: redis.server!.url,
        raw: false,
        async push(queue, c) {
          await declared(queue);
          ch.sendToQueue(queue, c.body, {
            contentType: c.contentType || undefined,
            contentEncoding: c.contentEncoding,
            headers: c.headers,
            correlationId: c.correlationId ?? c.id ?? undefined,
            deliveryMode: 2,
          });
        },
        async dead(queue) {
          // A fresh channel per look: checkQueue on a queue not declared yet closes the channel, and
          // closing it gives back what was read without an ack, so each look sees every dead letter.
          const look = await conn.createChannel();
          look.on('error', () => undefined); // the 404 before the first dead letter; reported by the count
          const out: Dead[] = [];
          try {
            await look.checkQueue(`${queue}.dead`);
            for (;;) {
              const m = await look.get(`${queue}.dead`, { noAck: false });
              if (!m) break;
              out.push({ body: m.content, reason: String(m.properties.headers?.[DEAD_REASON_HEADER]) });
            }
          } catch {
            return out; // not declared yet: no dead letters so far
          } finally {
            await look.close().catch(() => undefined);
          }
          return out;
        },
      });
    } finally {
      await ch.close().catch(() => undefined);
      await conn.close();
    }
  });
});

describe('Redis: a valid message the Lua JSON decoder cannot read', { skip: redis.skip }, () => {
  // The last suite of the file stops both servers (a top-level after() ran before the RabbitMQ suite).
  after(() => Promise.all([redis.server?.stop(), rabbit.server?.stop()]));
  it('with a lone surrogate (Python json of an os.fsdecode name), popped in a batch and given back, comes back unchanged', async () => {
    const url = redis.server!.url;
    const r = new Redis(url);
    const broker = createRedisBroker(url);
    const queue = uniqueName('surrogate');
    try {
      await broker.connect();
      // JSON.stringify writes a lone surrogate as the escape \udc80, as Python's json.dumps does.
      const texts = ['plain-1', 'file-\udc80.txt', 'plain-2'].map((name) =>
        JSON.stringify({
          body: Buffer.from(JSON.stringify([[name], {}, null])).toString('base64'),
          'content-encoding': 'utf-8',
          'content-type': 'application/json',
          headers: { lang: 'py', task: 'c.echo', id: randomUUID(), name },
          properties: { delivery_info: { exchange: '', routing_key: queue }, body_encoding: 'base64', delivery_tag: randomUUID(), priority: 0 },
        }),
      );
      await r.lpush(queue, ...texts);
      const seen = new Map<string, number>();
      const unreadable: string[] = [];
      const ctl = new AbortController();
      const consuming = broker.consume(
        [queue],
        async (d) => {
          if (d.message.unreadable !== undefined || typeof d.message.headers.name !== 'string') {
            unreadable.push(d.message.body.toString('utf8'));
            ctl.abort(); // a message came back changed: stop and report it
            return d.ack();
          }
          const name = d.message.headers.name;
          const n = (seen.get(name) ?? 0) + 1;
          seen.set(name, n);
          if (n === 1) return d.requeue();
          await d.ack();
          if ([...seen.values()].every((c) => c === 2) && seen.size === 3) ctl.abort();
        },
        { prefetch: 10, signal: ctl.signal },
      );
      await consuming;
      assert.deepEqual(unreadable, [], 'every message comes back as it was sent');
      assert.deepEqual([...seen.keys()].sort(), ['file-\udc80.txt', 'plain-1', 'plain-2']);
      assert.equal(await r.hlen('unacked'), 0);
    } finally {
      await broker.close();
      r.disconnect();
    }
  });
});
