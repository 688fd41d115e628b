/**
 * The Redis broker and result store against a private redis-server: the contract suites, then
 * kombu's exact layout (spec §3, §5.2) read back with plain Redis commands.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { connect, createServer, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { createRedisBroker } from '../../runtime/src/brokers/redis.js';
import { POP_SCRIPT } from '../../runtime/src/brokers/redis-scripts.js';
import { listFor, SEP, UNACKED, UNACKED_INDEX } from '../../runtime/src/protocol/kombu-redis.js';
import { createRedisStore } from '../../runtime/src/backends/redis.js';
import { brokerContract, message, Recorder, textOf } from '../contract/broker-contract.js';
import { backendContract } from '../contract/backend-contract.js';
import { eventually } from '../support/eventually.js';
import { uniqueName, useRedis } from '../support/servers.js';

const redis = await useRedis();
after(() => redis.server?.stop());
const url = redis.server?.url ?? 'redis://127.0.0.1:1/0';

brokerContract('redis', () => createRedisBroker(url, { visibilityTimeoutMs: 1_000, pollTimeoutMs: 200 }), {
  priorityOrder: 'lower-first',
  visibilityTimeoutMs: 1_000,
  restoresOnClose: true,
  skip: redis.skip,
});
backendContract('redis', () => createRedisStore(url), { skip: redis.skip });

describe('Redis broker: kombu layout', { skip: redis.skip }, () => {
  const raw = new Redis(url);
  const broker = createRedisBroker(url, { pollTimeoutMs: 200 });
  after(async () => {
    await broker.close();
    raw.disconnect();
  });

  it('publishes kombu envelopes to the priority lists and records the binding', async () => {
    await broker.connect();
    const q = uniqueName('layout');
    await broker.publish(q, message('p0'));
    await broker.publish(q, message('p5', { priority: 5 }));
    await broker.publish(q, message('p9', { priority: 9 }));
    assert.equal(listFor(q, 5), `${q}${SEP}3`);
    const env = JSON.parse((await raw.lindex(q, 0))!);
    assert.deepEqual(Object.keys(env).sort(), ['body', 'content-encoding', 'content-type', 'headers', 'properties']);
    assert.equal(env.properties.body_encoding, 'base64');
    assert.deepEqual(env.properties.delivery_info, { exchange: '', routing_key: q });
    assert.match(env.properties.delivery_tag, /^[0-9a-f-]{36}$/);
    assert.equal(JSON.parse(Buffer.from(env.body, 'base64').toString())[0][0], 'p0');
    assert.equal(await raw.llen(`${q}${SEP}3`), 1);
    assert.equal(await raw.llen(`${q}${SEP}9`), 1);
    assert.deepEqual(await raw.smembers(`_kombu.binding.${q}`), [`${q}${SEP}${SEP}${q}`]);
  });

  it('writes the publishes of one turn together, each list in publish order, bindings declared', async () => {
    const [q1, q2] = [uniqueName('turn-a'), uniqueName('turn-b')];
    const texts = Array.from({ length: 6 }, (_, i) => `t${i}`);
    // Issued in one turn: one write, one LPUSH per list.
    await Promise.all(texts.map((t, i) => broker.publish(i % 2 ? q2 : q1, message(t, { priority: i < 4 ? 0 : 9 }))));
    const bodies = async (list: string) =>
      (await raw.lrange(list, 0, -1)).reverse().map((e) => JSON.parse(Buffer.from((JSON.parse(e) as { body: string }).body, 'base64').toString())[0][0]);
    assert.deepEqual(await bodies(q1), ['t0', 't2']);
    assert.deepEqual(await bodies(q2), ['t1', 't3']);
    assert.deepEqual(await bodies(listFor(q1, 9)), ['t4']);
    assert.deepEqual(await bodies(listFor(q2, 9)), ['t5']);
    assert.deepEqual(await raw.smembers(`_kombu.binding.${q1}`), [`${q1}${SEP}${SEP}${q1}`]);
    assert.deepEqual(await raw.smembers(`_kombu.binding.${q2}`), [`${q2}${SEP}${SEP}${q2}`]);
    await broker.purge(q1);
    await broker.purge(q2);
  });

  it('records a held message in unacked and unacked_index, and removes it on ack', async () => {
    const q = uniqueName('unacked');
    const before = Date.now() / 1000;
    await broker.publish(q, message('held'));
    const r = new Recorder(broker, [q], 1);
    const [d] = await r.waitFor(1);
    const entries = await raw.hgetall('unacked');
    const mine = Object.entries(entries).find(([, v]) => v.includes(q));
    assert.ok(mine, 'the delivery is recorded in the unacked hash');
    const [deliveryTag, value] = mine;
    const [env, exchange, routingKey] = JSON.parse(value) as [{ properties: { delivery_tag: string } }, string, string];
    assert.equal(env.properties.delivery_tag, deliveryTag);
    assert.equal(exchange, '');
    assert.equal(routingKey, q);
    const score = Number(await raw.zscore('unacked_index', deliveryTag));
    assert.ok(Math.abs(score - Date.now() / 1000) < 60, 'score is epoch seconds');
    // Whole seconds, rounded up (Redis keeps them as integers: cheaper to add), never before the take.
    assert.ok(Number.isInteger(score) && score >= before, `score ${score} is a whole second not before ${before}`);
    await d!.ack();
    await r.stop();
    assert.equal(await raw.hexists('unacked', deliveryTag), 0);
    assert.equal(await raw.zscore('unacked_index', deliveryTag), null);
  });

  it('an idle consumer records what BRPOP took, and a requeue in the turn of the delivery gives it back at once', async () => {
    const q = uniqueName('brpop');
    let first = true;
    // Consuming before anything is published: the message comes through BRPOP, not the pop script.
    const r = new Recorder(broker, [q], 10, (d) => {
      if (!first) return;
      first = false;
      void d.requeue(); // in the turn of the delivery, before the record's own write
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    await broker.publish(q, message('once'));
    const [, again] = await r.waitFor(2);
    assert.equal(textOf(again!.message), 'once', 'given back to the queue at once and taken again');
    assert.equal(again!.info.redelivered, true);
    await again!.ack();
    await r.stop();
    const left = Object.values(await raw.hgetall('unacked')).filter((v) => v.includes(q));
    assert.deepEqual(left, [], 'nothing of this queue left in unacked');
  });

  it('an idle consumer records what BRPOP took with a whole-second score, and renews it so', async () => {
    const q = uniqueName('brpop-score');
    const held = createRedisBroker(url, { visibilityTimeoutMs: 400, pollTimeoutMs: 200 }); // renewed every 100 ms
    await held.connect();
    // Prefetch 1: BRPOP alone takes the message (no pop behind it).
    const r = new Recorder(held, [q], 1);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const before = Date.now() / 1000;
    await held.publish(q, message('blocked'));
    const [d] = await r.waitFor(1);
    const tag = await eventually(async () => {
      const mine = Object.entries(await raw.hgetall(UNACKED)).find(([, v]) => v.includes(q));
      assert.ok(mine, 'recorded in unacked');
      return mine[0];
    });
    const first = Number(await raw.zscore(UNACKED_INDEX, tag));
    assert.ok(Number.isInteger(first) && first >= before, `score ${first} is a whole second not before ${before}`);
    // Renewed while held: a later whole second.
    await eventually(async () => {
      const s = Number(await raw.zscore(UNACKED_INDEX, tag));
      assert.ok(Number.isInteger(s) && s > first, `renewed score ${s} is a whole second after ${first}`);
    });
    await d!.ack();
    await r.stop();
    await held.close();
    assert.equal(await raw.zscore(UNACKED_INDEX, tag), null);
  });

  it('gives a message back to a queue whose name has a slash (recorded as written, not as \\/)', async () => {
    const q = `${uniqueName('slash')}/x`;
    await broker.publish(q, message('slashed'));
    const r = new Recorder(broker, [q], 1);
    const [d] = await r.waitFor(1);
    await r.stop();
    const mine = Object.values(await raw.hgetall(UNACKED)).find((v) => v.includes(q));
    assert.ok(mine?.endsWith(`, "", "${q}"]`), `recorded with its routing key as written: ${mine?.slice(-60)}`);
    await d!.requeue();
    assert.equal(await raw.llen(q), 1, 'back in its own list');
    await broker.purge(q);
  });

  it('delivers a message a Python client wrote (Python spacing, no binding)', async () => {
    const q = uniqueName('py');
    const body = Buffer.from('[[2, 3], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]');
    const env = `{"body": "${body.toString('base64')}", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"lang": "py", "task": "proj.tasks.add", "id": "11111111-1111-4111-8111-111111111111", "retries": 0, "timelimit": [null, null], "stamps": {}, "stamped_headers": []}, "properties": {"correlation_id": "11111111-1111-4111-8111-111111111111", "reply_to": "r", "delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "${q}"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "${randomUUID()}"}}`;
    await raw.lpush(q, env);
    const r = new Recorder(broker, [q], 1);
    const [d] = await r.waitFor(1);
    assert.deepEqual(Buffer.from(d!.message.body), body);
    assert.equal(d!.message.headers.task, 'proj.tasks.add');
    assert.deepEqual(d!.message.headers.stamped_headers, []);
    await r.stop();
    // Restoring keeps the envelope text as written, so Python's [] stays [] (cjson would make it {}).
    await d!.requeue();
    const back = (await raw.lindex(q, 0))!;
    assert.ok(back.includes('"stamped_headers": []'), 'arrays survive a restore');
    assert.equal(JSON.parse(back).properties.delivery_info.redelivered, true);
  });

  it('restores what a killed consumer held after the visibility timeout, into its priority list', async () => {
    const q = uniqueName('killed');
    const victim = createRedisBroker(url, { pollTimeoutMs: 200 });
    await victim.connect();
    await victim.publish(q, message('urgent-ish', { priority: 4 }));
    const r = new Recorder(victim, [q], 1);
    await r.waitFor(1);
    // Simulate a crash: nothing settles and the consumer never closes; backdate the lease.
    const [tag] = Object.entries(await raw.hgetall('unacked')).find(([, v]) => v.includes(q))!;
    await r.stop();
    await raw.zadd('unacked_index', Date.now() / 1000 - 7200, tag);
    const rescuer = createRedisBroker(url, { pollTimeoutMs: 200, visibilityTimeoutMs: 3_600_000 });
    await rescuer.connect();
    const r2 = new Recorder(rescuer, [q], 1, (d) => d.ack());
    const [d] = await r2.waitFor(1, 60_000);
    await r2.stop();
    assert.equal(d!.info.redelivered, true);
    await rescuer.close();
    // The victim never acks; closing it must not push a second copy.
    await victim.close();
    assert.equal(await broker.depth(q), 0);
  });

  it('records each envelope under its properties delivery_tag, whatever its layout', async () => {
    const q = uniqueName('layouts');
    const body = Buffer.from('[[1], {}, {}]').toString('base64');
    const tags = Array.from({ length: 7 }, () => randomUUID());
    const di = `{"exchange": "", "routing_key": "${q}"}`;
    const envelopes = [
      // kombu's layout, a header that looks like the properties' keys
      `{"body": "${body}", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"id": "a", "x": {"delivery_info": {"exchange": "ex", "routing_key": "no"}, "delivery_tag": "no"}}, "properties": {"delivery_info": ${di}, "priority": 0, "body_encoding": "base64", "delivery_tag": "${tags[0]}"}}`,
      // properties first, headers last with such keys too
      `{"properties": {"delivery_info": ${di}, "body_encoding": "base64", "delivery_tag": "${tags[1]}"}, "body": "${body}", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"id": "b", "delivery_info": {"exchange": "ex", "routing_key": "no"}, "delivery_tag": "no"}}`,
      // redelivered (restored) and a routing key with an escape
      `{"body": "${body}", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"id": "c"}, "properties": {"delivery_info": {"redelivered": true, "exchange": "", "routing_key": "${q}"}, "body_encoding": "base64", "delivery_tag": "${tags[2]}"}}`,
      `{"body": "${body}", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"id": "d"}, "properties": {"delivery_info": {"exchange": "", "routing_key": "a\\"b"}, "body_encoding": "base64", "delivery_tag": "${tags[3]}"}}`,
      // kombu's own tail and celeriac's (read by pattern in the pop script), and celeriac's tail
      // after a header named delivery_tag (decoded instead: the text's first one is not the tail's)
      `{"body": "${body}", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"id": "e"}, "properties": {"correlation_id": "e", "reply_to": "", "delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "${q}"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "${tags[4]}"}}`,
      `{"body":"${body}","content-encoding":"utf-8","content-type":"application/json","headers":{"id":"f"},"properties":{"priority":0,"delivery_info":{"exchange":"ex","routing_key":"rk"},"body_encoding":"base64","delivery_tag":"${tags[5]}"}}`,
      `{"body":"${body}","content-encoding":"utf-8","content-type":"application/json","headers":{"id":"g","delivery_tag":"no"},"properties":{"delivery_info":{"exchange":"","routing_key":"${q}"},"body_encoding":"base64","delivery_tag":"${tags[6]}"}}`,
    ];
    const routes = [
      ['', q],
      ['', q],
      ['', q],
      ['', 'a"b'],
      ['', q],
      ['ex', 'rk'],
      ['', q],
    ];
    for (const e of envelopes) await raw.lpush(q, e);
    const r = new Recorder(broker, [q], envelopes.length);
    const got = await r.waitFor(envelopes.length);
    await r.stop();
    const unacked = await raw.hgetall('unacked');
    for (const [i, tag] of tags.entries()) {
      assert.ok(unacked[tag], `envelope ${i} recorded under its delivery_tag (${Object.keys(unacked).join(' ')})`);
      const entry = JSON.parse(unacked[tag]!) as [unknown, string, string];
      assert.equal(JSON.stringify(entry[0]), JSON.stringify(JSON.parse(envelopes[i]!)), `envelope ${i} recorded under its delivery_tag`);
      assert.deepEqual(entry.slice(1), routes[i]);
      assert.equal(
        unacked[tag],
        `[${envelopes[i]}, ${JSON.stringify(routes[i]![0])}, ${JSON.stringify(routes[i]![1])}]`,
        `envelope ${i} recorded as it was taken`,
      );
    }
    for (const d of got) await d.ack();
  });

  it('answers a pop resent after a reconnect with the messages it took, raw ones included; acks what it carries', async () => {
    const q = uniqueName('resent');
    const popper = new Redis(url);
    popper.defineCommand('pop', { lua: POP_SCRIPT });
    const pop = (popId: string, acks: string[] = []) =>
      (popper as unknown as { pop(...a: (string | number)[]): Promise<(string | number)[]> }).pop(
        4,
        UNACKED,
        UNACKED_INDEX,
        `celeriac.pop.${q}`,
        q,
        10,
        Date.now() / 1000,
        popId,
        acks.length,
        ...acks,
        q,
      );
    try {
      await broker.publish(q, message('enveloped'));
      await raw.lpush(q, 'not an envelope');
      const first = await pop('p1');
      const again = await pop('p1');
      assert.equal(first.length, 6);
      assert.deepEqual(again, first, 'the same tags and texts, nothing more taken');
      assert.equal(first[5], 'not an envelope');
      assert.equal(JSON.parse(first[2] as string).properties.delivery_tag, first[1]);
      assert.deepEqual(await pop('p2'), [], 'a new pop finds the queue empty');
      // A pop that took nothing leaves no record (no write at all): the same call resent takes
      // what is there by then, as it would have.
      assert.equal(await raw.exists(`celeriac.pop.${q}`), 0, 'no record of an empty pop');
      await raw.lpush(q, 'later');
      const resent = await pop('p2');
      assert.equal(resent[2], 'later');
      await pop('p2b', [resent[1] as string]);
      // A pop carries the acks of the turn before it: both entries go, whatever it pops.
      const tags = [first[1] as string, first[4] as string];
      assert.equal((await raw.hmget(UNACKED, ...tags)).filter((v) => v !== null).length, 2);
      assert.deepEqual(await pop('p3', tags), []);
      assert.deepEqual(await raw.hmget(UNACKED, ...tags), [null, null]);
      assert.deepEqual(await raw.zmscore(UNACKED_INDEX, ...tags), [null, null]);
      assert.deepEqual(await pop('p3', tags), [], 'acking again (a resent pop) changes nothing');
    } finally {
      popper.disconnect();
    }
  });
});

/**
 * A loopback proxy to the test server that can hold back what Redis sends on one connection (by
 * the order they were opened: a store's first is its command connection, its second its
 * subscriber) and refuse new connections.
 */
async function connectionProxy() {
  const port = Number(new URL(url).port);
  const conns: { client: Socket; upstream: Socket }[] = [];
  let holding = -1;
  let refusing = false;
  const queue: Buffer[] = [];
  const server = createServer((client) => {
    if (refusing) return client.destroy();
    const upstream = connect({ host: '127.0.0.1', port });
    const index = conns.push({ client, upstream }) - 1;
    client.on('data', (b) => upstream.write(b));
    upstream.on('data', (b) => (index === holding ? queue.push(b) : client.write(b)));
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxied = new URL(url);
  proxied.port = String((server.address() as { port: number }).port);
  return {
    url: proxied.toString(),
    conns,
    /** Holds what Redis sends on connection `index` until release(). */
    hold(index: number) {
      holding = index;
    },
    release() {
      const c = conns[holding];
      holding = -1;
      for (const b of queue.splice(0)) c?.client.write(b);
    },
    refuseNew(on: boolean) {
      refusing = on;
    },
    async close() {
      for (const c of conns) c.client.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('Redis result backend: Celery meta', { skip: redis.skip }, () => {
  it('never overwrites a stored SUCCESS, and publishes each store on the key channel', async () => {
    const { createKeyValueResultBackend } = await import('../../runtime/src/backends/result-backend.js');
    const results = createKeyValueResultBackend(createRedisStore(url), { expiresMs: 60_000 });
    const sub = new Redis(url);
    const raw = new Redis(url);
    try {
      const id = uniqueName('task');
      const key = `celery-task-meta-${id}`;
      const heard: string[] = [];
      sub.on('message', (_c: string, m: string) => heard.push((JSON.parse(m) as { status: string }).status));
      await sub.subscribe(key);
      const meta = (status: string) => ({ status, result: 1, traceback: null, children: [], date_done: null, task_id: id });
      await results.store(meta('STARTED'));
      await results.store(meta('SUCCESS'));
      await results.store(meta('FAILURE'));
      assert.equal((await results.get(id))?.status, 'SUCCESS');
      const ttl = await raw.pttl(key);
      assert.ok(ttl > 0 && ttl <= 60_000, `expiry set (pttl ${ttl})`);
      await eventually(() => assert.deepEqual(heard, ['STARTED', 'SUCCESS']));
    } finally {
      sub.disconnect();
      raw.disconnect();
      await results.close();
    }
  });
  it('stores the sets of one turn together, each with its own expiry, check and publish', async () => {
    const store = createRedisStore(url);
    const sub = new Redis(url);
    const raw = new Redis(url);
    try {
      const [kept, fresh, plain, started] = ['kept', 'fresh', 'plain', 'started'].map((n) => `celery-task-meta-${uniqueName(n)}`) as [
        string,
        string,
        string,
        string,
      ];
      await raw.set(kept, '{"status": "SUCCESS", "result": 1}');
      await raw.set(started, '{"status": "STARTED"}');
      const heard: string[] = [];
      sub.on('message', (channel: string) => heard.push(channel));
      await sub.subscribe(kept, fresh, plain, started);
      // Issued in one turn: one batch, with a SUCCESS to keep, a new key, a key without expiry and
      // a STARTED to replace (a checked key that exists: not set by SET NX, then set).
      await Promise.all([
        store.setUnlessSuccess!(kept, '{"status": "FAILURE"}', { ttlMs: 60_000 }),
        store.setUnlessSuccess!(fresh, '{"status": "SUCCESS", "result": 2}', { ttlMs: 60_000 }),
        store.set(plain, 'no expiry'),
        store.setUnlessSuccess!(started, '{"status": "SUCCESS", "result": 3}', { ttlMs: 60_000 }),
      ]);
      assert.equal(await raw.get(started), '{"status": "SUCCESS", "result": 3}');
      const startedTtl = await raw.pttl(started);
      assert.ok(startedTtl > 0 && startedTtl <= 60_000, `expiry set on the replaced key (pttl ${startedTtl})`);
      assert.equal(await raw.get(kept), '{"status": "SUCCESS", "result": 1}');
      assert.equal(await raw.pttl(kept), -1, 'the kept SUCCESS is not touched, its expiry neither');
      assert.equal(await raw.get(fresh), '{"status": "SUCCESS", "result": 2}');
      const ttl = await raw.pttl(fresh);
      assert.ok(ttl > 0 && ttl <= 60_000, `expiry set (pttl ${ttl})`);
      assert.equal(await raw.get(plain), 'no expiry');
      assert.equal(await raw.pttl(plain), -1);
      await eventually(() => assert.deepEqual(heard.sort(), [fresh, plain, started].sort()));
    } finally {
      sub.disconnect();
      raw.disconnect();
      await store.close();
    }
  });
  it('expect() subscribes a key before it is set, hands the published value to get(), and unsubscribes it when idle', async () => {
    const store = createRedisStore(url);
    const raw = new Redis(url);
    const subscribers = async (key: string) => Number(((await raw.pubsub('NUMSUB', key)) as [string, number])[1]);
    try {
      const key = `celery-task-meta-${uniqueName('expected')}`;
      store.expect!(key);
      await eventually(async () => assert.equal(await subscribers(key), 1));
      await raw.multi().set(key, '{"status": "SUCCESS", "result": 7}').publish(key, '{"status": "SUCCESS", "result": 7}').exec();
      // The published value, then the stored one (the push is handed out once).
      await eventually(async () => assert.equal(await store.get(key), '{"status": "SUCCESS", "result": 7}'));
      assert.equal(await store.get(key), '{"status": "SUCCESS", "result": 7}');
      // Nobody waits on it: unsubscribed after the idle time (2-3 s).
      await eventually(async () => assert.equal(await subscribers(key), 0), { timeoutMs: 6_000, intervalMs: 200 });
    } finally {
      raw.disconnect();
      await store.close();
    }
  });
  it('a pushed value nobody read is not handed out after the key is deleted (forget() reads as PENDING)', async () => {
    // A client that waited once subscribes the next task it sends (expect()); its result is pushed
    // while nobody reads it, and the user forgets it: the result must read as gone, not as the push.
    const store = createRedisStore(url);
    const raw = new Redis(url);
    const subscribers = async (key: string) => Number(((await raw.pubsub('NUMSUB', key)) as [string, number])[1]);
    try {
      const key = `celery-task-meta-${uniqueName('forgotten')}`;
      store.expect!(key);
      await eventually(async () => assert.equal(await subscribers(key), 1));
      let pushed = false;
      const stop = store.listen!(key, () => (pushed = true));
      await raw.multi().set(key, '{"status": "SUCCESS", "result": 7}').publish(key, '{"status": "SUCCESS", "result": 7}').exec();
      await eventually(() => assert.ok(pushed, 'the push arrived'));
      stop();
      await store.delete(key);
      assert.equal(await raw.get(key), null);
      assert.equal(await store.get(key), null, 'deleted: read as absent, not as the value pushed before');
    } finally {
      raw.disconnect();
      await store.close();
    }
  });
  it('a process reads its own write of a watched key, not an older push that arrives after it (pushes travel on another connection)', async () => {
    const proxy = await connectionProxy();
    const store = createRedisStore(proxy.url);
    const raw = new Redis(url);
    const subscribers = async (key: string) => Number(((await raw.pubsub('NUMSUB', key)) as [string, number])[1]);
    try {
      const key = `celery-task-meta-${uniqueName('own-write')}`;
      assert.equal(await store.get(`${key}-other`), null); // the command connection is the first
      store.expect!(key);
      await eventually(async () => assert.equal(await subscribers(key), 1));
      assert.equal(proxy.conns.length, 2, 'command connection, then subscriber');
      let pushes = 0;
      const stop = store.listen!(key, () => pushes++);
      // Another client stores STARTED: pushed here, nobody reads it.
      await raw.multi().set(key, '{"status": "STARTED"}').publish(key, '{"status": "STARTED"}').exec();
      await eventually(() => assert.equal(pushes, 1));
      // This process stores SUCCESS; its own push is held back (a slower connection).
      proxy.hold(1);
      await store.set(key, '{"status": "SUCCESS", "result": 1}');
      assert.equal(await store.get(key), '{"status": "SUCCESS", "result": 1}', 'the value this process just stored');
      proxy.release();
      await eventually(() => assert.equal(pushes, 2));
      assert.equal(await store.get(key), '{"status": "SUCCESS", "result": 1}');
      stop();
    } finally {
      raw.disconnect();
      await store.close();
      await proxy.close();
    }
  });
  it('a push left unread before the subscriber connection dropped is not read as the value after it (later pushes were lost)', async () => {
    const proxy = await connectionProxy();
    const store = createRedisStore(proxy.url);
    const raw = new Redis(url);
    const subscribers = async (key: string) => Number(((await raw.pubsub('NUMSUB', key)) as [string, number])[1]);
    try {
      const key = `celery-task-meta-${uniqueName('outage')}`;
      assert.equal(await store.get(`${key}-other`), null); // the command connection is the first
      store.expect!(key);
      await eventually(async () => assert.equal(await subscribers(key), 1));
      let pushes = 0;
      const stop = store.listen!(key, () => pushes++);
      await raw.multi().set(key, '{"status": "STARTED"}').publish(key, '{"status": "STARTED"}').exec();
      await eventually(() => assert.equal(pushes, 1));
      // The subscriber's link drops; SUCCESS is stored and pushed while it is down (lost).
      proxy.refuseNew(true);
      proxy.conns[1]!.client.destroy();
      await eventually(async () => assert.equal(await subscribers(key), 0));
      await raw.multi().set(key, '{"status": "SUCCESS", "result": 1}').publish(key, '{"status": "SUCCESS", "result": 1}').exec();
      proxy.refuseNew(false);
      await eventually(async () => assert.equal(await subscribers(key), 1), { timeoutMs: 10_000 });
      assert.equal(await store.get(key), '{"status": "SUCCESS", "result": 1}', 'the stored value, not the push from before the outage');
      stop();
    } finally {
      raw.disconnect();
      await store.close();
      await proxy.close();
    }
  });
  it('a client that waits for results subscribes to the next task it sends before publishing it; a producer that never waits does not', async () => {
    const { createApp } = await import('../../runtime/src/index.js');
    const queue = uniqueName('expect');
    const app = createApp({ name: 'expect-test', broker: url, backend: url, defaultQueue: queue, logLevel: 'silent' });
    const raw = new Redis(url);
    const subscribers = async (id: string) => Number(((await raw.pubsub('NUMSUB', `celery-task-meta-${id}`)) as [string, number])[1]);
    try {
      // No worker: the tasks stay queued. Never waited yet: nothing subscribed.
      const first = await app.sendTask('expect.nothing', [], {}, { queue });
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(await subscribers(first.id), 0);
      // One wait for a result (stored here by hand), then the next send subscribes its key.
      await (await app.backend()).store({ status: 'SUCCESS', result: 1, traceback: null, children: [], date_done: null, task_id: first.id });
      assert.equal(await first.get({ timeout: 5_000 }), 1);
      const second = await app.sendTask('expect.nothing', [], {}, { queue });
      const ignored = await app.sendTask('expect.nothing', [], {}, { queue, ignoreResult: true });
      await eventually(async () => assert.equal(await subscribers(second.id), 1));
      assert.equal(await subscribers(ignored.id), 0, 'a task whose result is ignored is not subscribed');
    } finally {
      raw.disconnect();
      await app.close();
    }
  });
});

// rediss:// against a real TLS-only redis-server with a self-signed certificate.
const tlsRedis = await useRedis({ tls: true, managed: true });
describe('Redis over TLS (rediss://)', { skip: tlsRedis.skip }, () => {
  after(() => tlsRedis.server?.stop());

  it('refuses a server whose certificate it cannot verify, with an error naming the server', async () => {
    const b = createRedisBroker(tlsRedis.server!.url, { connectTimeoutMs: 2_000 });
    await assert.rejects(
      b.connect(),
      (err: Error) => err.name === 'BrokerError' && /cannot reach Redis at rediss:\/\/127\.0\.0\.1.*Last error: self-signed certificate/.test(err.message),
    );
    await b.close();
  });

  it('with tlsInsecure=true: tasks round-trip through the broker and results through the store', async () => {
    const url = `${tlsRedis.server!.url}?tlsInsecure=true`;
    const b = createRedisBroker(url, { connectTimeoutMs: 5_000 });
    const store = createRedisStore(url);
    try {
      await b.connect();
      const q = uniqueName('tls');
      await b.publish(q, message('over tls'));
      const r = new Recorder(b, [q], 1, (d) => d.ack());
      const [d] = await r.waitFor(1);
      await r.stop();
      assert.equal(textOf(d!.message), 'over tls');
      await store.set(`k-${q}`, 'stored over tls');
      assert.equal(await store.get(`k-${q}`), 'stored over tls');
    } finally {
      await b.close();
      await store.close();
    }
  });

  it('refuses TLS options on a plain redis:// URL instead of ignoring them', () => {
    assert.throws(() => createRedisBroker('redis://127.0.0.1:6379/0?tlsInsecure=true'), /tlsInsecure and tlsServerName need a rediss:\/\/ URL/);
  });
});
