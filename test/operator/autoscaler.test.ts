// The autoscaler end to end on a real kube-apiserver with a real Redis and a real RabbitMQ: 500
// messages in the queue raise the Deployment's replicas to what the formula says; once the queue
// is drained the pool returns to minReplicas after the (shortened) stabilization window.
// envtest runs no kubelet, so there are no worker pods: in-flight work reads 0 and the backlog
// alone drives the pool, which is exactly the formula's cold-start case.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { Redis } from 'ioredis';
import amqp from 'amqplib';
import { createKubeClient, resources, type KubeClient } from '../../operator/src/k8s/kube-client.js';
import { createOperator, type Operator } from '../../operator/src/operator.js';
import { createOperatorMetrics } from '../../operator/src/metrics.js';
import { createAutoscaler, type Autoscaler } from '../../operator/src/autoscaler/autoscaler.js';
import type { Condition, KubeObject } from '../../operator/src/types.js';
import { envtestSkipReason, startControlPlane, type ControlPlane } from '../support/envtest.js';
import { eventually } from '../support/eventually.js';
import { uniqueName, useRabbit, useRedis, type ServiceResult } from '../support/servers.js';

type Obj = KubeObject & { spec?: any; status?: any; [k: string]: any };

const envSkip = envtestSkipReason();
const [redis, rabbit]: ServiceResult[] = envSkip ? [] : await Promise.all([useRedis(), useRabbit()]);
const skip = envSkip || redis?.skip || rabbit?.skip || false;

/** 500 tasks, 50 slots per pod at utilization 1: ceil(500 / 1 / 50) = 10 pods. */
const MESSAGES = 500;
const CONCURRENCY = 50;
const EXPECTED = Math.ceil(MESSAGES / 1 / CONCURRENCY);

function pool(ns: string, name: string): Obj {
  return {
    apiVersion: 'celeriac.io/v1alpha1',
    kind: 'WorkerPool',
    metadata: { name, namespace: ns },
    spec: {
      queues: ['work'],
      template: { image: 'example.com/shop:1', tasksModule: '/app/tasks.js' },
      concurrency: CONCURRENCY,
      autoscaling: {
        minReplicas: 1,
        maxReplicas: 30,
        pollingIntervalSeconds: 1,
        targetUtilization: 1,
        behavior: { scaleDown: { stabilizationWindowSeconds: 3, policies: [{ type: 'Percent', value: 100, periodSeconds: 1 }] } },
      },
    },
  };
}

describe('autoscaler on a real API server, Redis and RabbitMQ', { skip }, () => {
  let cp: ControlPlane;
  let kube: KubeClient;
  let op: Operator;
  let autoscaler: Autoscaler;

  before(async () => {
    cp = await startControlPlane();
    kube = cp.kube;
    const log = pino({ level: process.env.CELERIAC_TEST_LOG_LEVEL ?? 'silent' });
    const client = createKubeClient(cp.kubeConfig);
    autoscaler = createAutoscaler({ kube: client, log, timeoutMs: 2000 });
    op = createOperator({ kube: client, log, metrics: createOperatorMetrics(), decideReplicas: autoscaler.decideReplicas, brokerCheckTimeoutMs: 1000 });
    await op.start();
  });

  after(async () => {
    await op?.stop();
    await autoscaler?.close();
    await cp?.stop();
    await Promise.all([redis?.server?.stop(), rabbit?.server?.stop()]);
  });

  /** Creates Secret, TaskQueue and WorkerPool; returns the namespace. */
  async function setup(type: 'redis' | 'amqp', url: string, queue: string): Promise<string> {
    const ns = await cp.createNamespace(`as-${type}`);
    await kube.create(resources.secrets, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'broker', namespace: ns }, stringData: { url } } as Obj);
    await kube.create(resources.taskQueues, {
      apiVersion: 'celeriac.io/v1alpha1',
      kind: 'TaskQueue',
      metadata: { name: 'work', namespace: ns },
      spec: { broker: { type, urlSecretRef: { name: 'broker' } }, queue: { name: queue }, checkIntervalSeconds: 600 },
    } as Obj);
    await kube.create(resources.workerPools, pool(ns, 'shop'));
    await eventually(async () => assert.equal((await kube.get<Obj>(resources.deployments, ns, 'shop'))?.spec.replicas, 1), { timeoutMs: 20_000 });
    return ns;
  }

  async function expectScale(ns: string, replicas: number, backlog: number): Promise<void> {
    await eventually(
      async () => {
        const dep = await kube.get<Obj>(resources.deployments, ns, 'shop');
        assert.equal(dep?.spec.replicas, replicas);
        const wp = await kube.get<Obj>(resources.workerPools, ns, 'shop');
        assert.equal(wp?.status?.desiredReplicas, replicas);
        assert.deepEqual(
          wp?.status?.autoscaling?.metrics?.find((m: { name: string }) => m.name === 'backlog'),
          { name: 'backlog', value: backlog },
        );
        // The whole truth every poll: no failure, no fallback, nothing draining (no pods in envtest).
        const { failures, fallback, draining, scaleDownWindowSeconds } = wp?.status?.autoscaling ?? {};
        assert.deepEqual({ failures, fallback, draining, scaleDownWindowSeconds }, { failures: 0, fallback: false, draining: [], scaleDownWindowSeconds: 3 });
        const scaling = (wp?.status?.conditions as Condition[]).find((c) => c.type === 'ScalingActive');
        assert.equal(scaling?.status, 'True', scaling?.message);
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
  }

  it('Redis: 500 messages over the priority lists raise replicas per the formula; drained, back to min', async () => {
    const queue = uniqueName('as');
    const ns = await setup('redis', redis!.server!.url, queue);
    const r = new Redis(redis!.server!.url);
    try {
      // kombu layout: priority 0 in `queue`, others in `queue\x06\x16<step>`; KEDA would see only the first.
      const pipe = r.pipeline();
      for (let i = 0; i < MESSAGES; i++) pipe.lpush(i % 5 === 0 ? `${queue}\x06\x166` : queue, JSON.stringify({ body: '', headers: { id: String(i) } }));
      await pipe.exec();
      await expectScale(ns, EXPECTED, MESSAGES);
      await r.del(queue, `${queue}\x06\x166`);
      await expectScale(ns, 1, 0);
    } finally {
      r.disconnect();
    }
  });

  it('RabbitMQ: 500 ready messages raise replicas per the formula; purged, back to min', async () => {
    const queue = uniqueName('as');
    const conn = await amqp.connect(rabbit!.server!.url);
    try {
      const ch = await conn.createConfirmChannel();
      await ch.assertQueue(queue, { durable: true });
      const ns = await setup('amqp', rabbit!.server!.url, queue);
      for (let i = 0; i < MESSAGES; i++) ch.sendToQueue(queue, Buffer.from(String(i)), { persistent: true });
      await ch.waitForConfirms();
      await expectScale(ns, EXPECTED, MESSAGES);
      await ch.purgeQueue(queue);
      await expectScale(ns, 1, 0);
      await ch.deleteQueue(queue);
    } finally {
      await conn.close();
    }
  });
});
