// TaskQueue broker checks on a real kube-apiserver with real redis-server and rabbitmq-server: the condition says
// what is wrong (missing Secret, missing key, unreachable host, failed auth) and recovers when fixed.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import amqp from 'amqplib';
import { Redis } from 'ioredis';
import { resources, type KubeClient } from '../../operator/src/k8s/kube-client.js';
import type { Operator } from '../../operator/src/operator.js';
import type { Condition } from '../../operator/src/types.js';
import { conditionOf, taskQueueFixture, type Obj } from '../support/operator-fixtures.js';
import { envtestSkipReason, startTestOperator, freePort, startControlPlane, type ControlPlane } from '../support/envtest.js';
import { eventually } from '../support/eventually.js';
import { useRabbit, useRedis, type TestServer } from '../support/servers.js';

const skipK8s = envtestSkipReason();
// A private redis-server (this file changes its requirepass) and rabbitmq-server.
const redisUse = skipK8s ? null : await useRedis({ managed: true });
const rabbitUse = skipK8s ? null : await useRabbit({ managed: true, management: true });
const skip = skipK8s || redisUse?.skip || false;

const ready = (obj: Obj | null): Condition | undefined => conditionOf(obj, 'Ready');

function secret(ns: string, name: string, data: Record<string, string>): Obj {
  return { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: ns }, stringData: data };
}

/** Checked every second, queue "q-<name>", Redis unless the broker says otherwise. */
function taskQueue(ns: string, name: string, broker: Record<string, unknown>): Obj {
  return taskQueueFixture(ns, name, { queue: `q-${name}`, broker: { type: 'redis', ...broker }, checkIntervalSeconds: 1 });
}

describe('TaskQueue broker checks on a real API server with real brokers', { skip }, () => {
  let cp: ControlPlane;
  let kube: KubeClient;
  let op: Operator;
  let redis: TestServer;
  let ns: string;

  before(async () => {
    redis = redisUse!.server!;
    cp = await startControlPlane();
    kube = cp.kube;
    op = await startTestOperator(cp);
    ns = await cp.createNamespace('tq');
  });

  after(async () => {
    await op?.stop();
    await Promise.all([cp?.stop(), redis?.stop(), rabbitUse?.server?.stop()]);
  });

  async function readyOf(name: string): Promise<Condition | undefined> {
    return ready(await kube.get<Obj>(resources.taskQueues, ns, name));
  }

  it('reports depth (kombu priority sub-queues included) and in-flight messages of a reachable broker', async () => {
    await kube.create(resources.secrets, secret(ns, 'good', { url: redis.url }));
    const client = new Redis(redis.url);
    await client.lpush('q-depth', 'a', 'b', 'c');
    await client.lpush('q-depth\x06\x163', 'd');
    // kombu's unacked hash: [envelope, exchange, routing key]; one of ours, one of another queue.
    await client.hset('unacked', 'tag-1', JSON.stringify([{}, '', 'q-depth']), 'tag-2', JSON.stringify([{}, '', 'elsewhere']));
    await client.quit();
    await kube.create(resources.taskQueues, taskQueue(ns, 'depth', { urlSecretRef: { name: 'good' } }));
    const tq = await eventually(async () => {
      const tq = await kube.get<Obj>(resources.taskQueues, ns, 'depth');
      assert.equal(ready(tq)?.status, 'True', JSON.stringify(tq?.status));
      assert.equal(tq?.status?.depth, 4);
      assert.equal(tq?.status?.inFlight, 1);
      return tq!;
    });
    assert.equal(tq.status.brokerUrl, redis.url);
    assert.ok(tq.status.lastChecked);
    const reachable = (tq.status.conditions as Condition[]).find((c) => c.type === 'BrokerReachable');
    assert.equal(reachable?.status, 'True');
  });

  it('says which Secret is missing, then recovers when it is created', async () => {
    await kube.create(resources.taskQueues, taskQueue(ns, 'nosecret', { urlSecretRef: { name: 'later' } }));
    const c = await eventually(async () => {
      const c = await readyOf('nosecret');
      assert.equal(c?.reason, 'SecretNotFound');
      return c!;
    });
    assert.equal(c.status, 'False');
    assert.match(c.message, /Secret "later" \(spec\.broker\.urlSecretRef\) not found in namespace/);
    await kube.create(resources.secrets, secret(ns, 'later', { url: redis.url }));
    await eventually(async () => assert.equal((await readyOf('nosecret'))?.status, 'True'));
  });

  it('says which key the Secret lacks', async () => {
    await kube.create(resources.secrets, secret(ns, 'wrongkey', { uri: redis.url }));
    await kube.create(resources.taskQueues, taskQueue(ns, 'wrongkey', { urlSecretRef: { name: 'wrongkey' } }));
    const c = await eventually(async () => {
      const c = await readyOf('wrongkey');
      assert.equal(c?.reason, 'SecretKeyMissing');
      return c!;
    });
    assert.match(c.message, /Secret "wrongkey" has no key "url" .*it has: uri/);
  });

  it('reports a bad URL from a Secret', async () => {
    await kube.create(resources.secrets, secret(ns, 'badurl', { url: 'amqp://elsewhere:5672//' }));
    await kube.create(resources.taskQueues, taskQueue(ns, 'badurl', { urlSecretRef: { name: 'badurl' } }));
    const c = await eventually(async () => {
      const c = await readyOf('badurl');
      assert.equal(c?.reason, 'InvalidURL');
      return c!;
    });
    assert.match(c.message, /scheme "amqp:" does not match broker type "redis"/);
  });

  it('reports an unreachable host, then recovers when the spec is fixed', async () => {
    const closed = await freePort();
    await kube.create(resources.taskQueues, taskQueue(ns, 'wronghost', { host: '127.0.0.1', port: closed }));
    const c = await eventually(async () => {
      const c = await readyOf('wronghost');
      assert.equal(c?.reason, 'Unreachable');
      return c!;
    });
    assert.match(c.message, new RegExp(`cannot connect to redis://127\\.0\\.0\\.1:${closed}/0: ECONNREFUSED`));
    await kube.patch(resources.taskQueues, ns, 'wronghost', { spec: { broker: { port: redis.port } } });
    await eventually(async () => assert.equal((await readyOf('wronghost'))?.status, 'True'));
    await op.events.flush();
    const events = await kube.list<Obj>(resources.events, { namespace: ns });
    assert.ok(events.items.some((e) => e.reason === 'Unreachable' && e.type === 'Warning' && e.involvedObject.name === 'wronghost'));
  });

  it('reports failed authentication with host + credentialsSecretRef, then recovers when the password is fixed', async () => {
    const admin = new Redis(redis.url);
    await admin.config('SET', 'requirepass', 's3cret');
    try {
      await kube.create(resources.secrets, secret(ns, 'creds', { username: '', password: 'wrong' }));
      await kube.create(resources.taskQueues, taskQueue(ns, 'auth', { host: '127.0.0.1', port: redis.port, credentialsSecretRef: { name: 'creds' } }));
      const c = await eventually(async () => {
        const c = await readyOf('auth');
        assert.equal(c?.reason, 'AuthenticationFailed');
        return c!;
      });
      assert.match(c.message, /authentication to redis:\/\/:\*\*\*@127\.0\.0\.1:\d+\/0 failed: WRONGPASS/);
      assert.doesNotMatch(c.message, /wrong@/);
      await kube.patch(resources.secrets, ns, 'creds', { stringData: { password: 's3cret' } });
      await eventually(async () => assert.equal((await readyOf('auth'))?.status, 'True'));
    } finally {
      await admin.call('AUTH', 's3cret').catch(() => undefined);
      await admin.config('SET', 'requirepass', '');
      await admin.quit();
    }
  });
  describe('on RabbitMQ', { skip: rabbitUse?.skip || false }, () => {
    it('reports depth and consumers of a declared queue', async () => {
      const rabbit = rabbitUse!.server!;
      const conn = await amqp.connect(rabbit.url);
      const ch = await conn.createChannel();
      await ch.assertQueue('q-amqp-depth');
      await ch.assertQueue('q-amqp-depth-consumed');
      for (const m of ['a', 'b']) ch.sendToQueue('q-amqp-depth', Buffer.from(m));
      await ch.consume('q-amqp-depth-consumed', () => undefined);
      try {
        const url = new URL(rabbit.url);
        await kube.create(resources.secrets, secret(ns, 'rabbit', { username: decodeURIComponent(url.username), password: decodeURIComponent(url.password) }));
        for (const name of ['amqp-depth', 'amqp-depth-consumed']) {
          const tq = taskQueue(ns, name, { type: 'amqp', host: url.hostname, port: Number(url.port), credentialsSecretRef: { name: 'rabbit' } });
          await kube.create(resources.taskQueues, tq);
        }
        await eventually(async () => {
          const tq = await kube.get<Obj>(resources.taskQueues, ns, 'amqp-depth');
          assert.equal(ready(tq)?.status, 'True', JSON.stringify(tq?.status));
          assert.equal(tq?.status?.depth, 2);
          assert.equal(tq?.status?.consumers, 0);
        });
        await eventually(async () => {
          const tq = await kube.get<Obj>(resources.taskQueues, ns, 'amqp-depth-consumed');
          assert.equal(tq?.status?.consumers, 1);
        });
      } finally {
        await conn.close();
      }
    });

    it('reads in-flight (unacknowledged) messages from the management API with the broker credentials', async () => {
      const rabbit = rabbitUse!.server!;
      assert.ok(rabbit.managementUrl, 'rabbitmq started with management');
      const url = new URL(rabbit.url);
      const mgmt = new URL(rabbit.managementUrl);
      mgmt.username = '';
      mgmt.password = '';
      const conn = await amqp.connect(rabbit.url);
      try {
        const ch = await conn.createChannel();
        await ch.assertQueue('q-amqp-unacked');
        for (const m of ['a', 'b', 'c']) ch.sendToQueue('q-amqp-unacked', Buffer.from(m));
        await ch.prefetch(2);
        await ch.consume('q-amqp-unacked', () => undefined, { noAck: false }); // holds 2, acks none
        await kube.create(
          resources.taskQueues,
          taskQueue(ns, 'amqp-unacked', {
            type: 'amqp',
            host: url.hostname,
            port: Number(url.port),
            credentialsSecretRef: { name: 'rabbit' },
            management: { url: mgmt.toString() },
          }),
        );
        await eventually(async () => {
          const tq = await kube.get<Obj>(resources.taskQueues, ns, 'amqp-unacked');
          assert.equal(ready(tq)?.status, 'True', JSON.stringify(tq?.status));
          assert.equal(tq?.status?.inFlight, 2);
          assert.equal(tq?.status?.depth, 1);
        });
      } finally {
        await conn.close();
      }
    });

    it('says when the queue is not declared yet, and when the password is wrong', async () => {
      const rabbit = rabbitUse!.server!;
      const url = new URL(rabbit.url);
      await kube.create(
        resources.taskQueues,
        taskQueue(ns, 'amqp-undeclared', { type: 'amqp', host: url.hostname, port: Number(url.port), credentialsSecretRef: { name: 'rabbit' } }),
      );
      await eventually(async () => {
        const c = await readyOf('amqp-undeclared');
        assert.equal(c?.status, 'True');
        assert.match(c!.message, /queue "q-amqp-undeclared" is not declared yet/);
      });
      await kube.create(resources.secrets, secret(ns, 'rabbit-wrong', { username: decodeURIComponent(url.username), password: 'nope' }));
      await kube.create(
        resources.taskQueues,
        taskQueue(ns, 'amqp-auth', { type: 'amqp', host: url.hostname, port: Number(url.port), credentialsSecretRef: { name: 'rabbit-wrong' } }),
      );
      const c = await eventually(async () => {
        const c = await readyOf('amqp-auth');
        assert.equal(c?.reason, 'AuthenticationFailed');
        return c!;
      });
      assert.match(c.message, /ACCESS.REFUSED/);
      assert.doesNotMatch(c.message, /nope/);
    });
  });
});
