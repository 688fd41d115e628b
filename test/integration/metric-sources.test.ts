// Queue-depth metric sources against a real redis-server and rabbitmq-server.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import amqp from 'amqplib';
import { createRedisListSource } from '../../operator/src/metric-sources/redis-list.js';
import { createAmqpQueueSource } from '../../operator/src/metric-sources/amqp-queue.js';
import { MetricSourceError } from '../../operator/src/metric-sources/source.js';
import { uniqueName, useRabbit, useRedis } from '../support/servers.js';

const redis = await useRedis();
const rabbit = await useRabbit({ management: true });
after(() => Promise.all([redis.server?.stop(), rabbit.server?.stop()]));

describe('redis-list source', { skip: redis.skip }, () => {
  it('sums every priority list of every queue and counts unacked messages of those queues only', async () => {
    const [a, b] = [uniqueName('a'), uniqueName('b')];
    const r = new Redis(redis.server!.url);
    const unackedKey = uniqueName('unacked');
    try {
      await r.lpush(a, 'm1', 'm2');
      await r.lpush(`${a}\x06\x163`, 'm3');
      await r.lpush(`${b}\x06\x169`, 'm4', 'm5');
      await r.lpush(uniqueName('other'), 'x');
      await r.hset(unackedKey, 't1', JSON.stringify([{}, '', a]), 't2', JSON.stringify([{}, '', 'elsewhere']), 't3', JSON.stringify([{}, '', b]));
      const source = createRedisListSource({ url: redis.server!.url, queues: [a, b], unackedKey });
      try {
        const v = await source.read(AbortSignal.timeout(5000));
        assert.deepEqual(v, { value: 5, detail: { ready: 5, unacked: 2 } });
        await r.del(a, `${b}\x06\x169`);
        assert.deepEqual(await source.read(AbortSignal.timeout(5000)), { value: 1, detail: { ready: 1, unacked: 2 } });
      } finally {
        await source.close();
      }
    } finally {
      r.disconnect();
    }
  });

  it('an unreachable server is a MetricSourceError naming the URL without its password', async () => {
    const source = createRedisListSource({ url: 'redis://:secret@127.0.0.1:1/0', queues: ['q'], timeoutMs: 500 });
    try {
      await assert.rejects(source.read(AbortSignal.timeout(5000)), (err: unknown) => {
        assert.ok(err instanceof MetricSourceError);
        assert.match(err.message, /127\.0\.0\.1:1/);
        assert.doesNotMatch(err.message, /secret/);
        return true;
      });
    } finally {
      await source.close();
    }
  });
});

describe('amqp-queue source', { skip: rabbit.skip }, () => {
  it('reads ready messages and consumers over AMQP, unacked over the management API; a missing queue is 0', async () => {
    const q = uniqueName('q');
    const conn = await amqp.connect(rabbit.server!.url);
    try {
      const ch = await conn.createConfirmChannel();
      await ch.assertQueue(q, { durable: true });
      for (let i = 0; i < 7; i++) ch.sendToQueue(q, Buffer.from(String(i)));
      await ch.waitForConfirms();
      // a consumer holding 2 unacked messages
      const consumer = await conn.createChannel();
      await consumer.prefetch(2);
      await consumer.consume(q, () => {}, { noAck: false });
      const source = createAmqpQueueSource({
        url: rabbit.server!.url,
        queues: [q, uniqueName('missing')],
        managementUrl: rabbit.server!.managementUrl ?? undefined,
      });
      try {
        const v = await source.read(AbortSignal.timeout(5000));
        assert.equal(v.value, 5);
        assert.equal(v.detail?.consumers, 1);
        if (rabbit.server!.managementUrl) {
          // the management API's statistics lag a few seconds behind
          let unacked = v.detail?.unacked;
          for (let i = 0; i < 40 && unacked !== 2; i++) {
            await new Promise((r) => setTimeout(r, 250));
            unacked = (await source.read(AbortSignal.timeout(5000))).detail?.unacked;
          }
          assert.equal(unacked, 2);
        }
      } finally {
        await source.close();
        await consumer.close();
        await ch.deleteQueue(q);
      }
    } finally {
      await conn.close();
    }
  });
});
