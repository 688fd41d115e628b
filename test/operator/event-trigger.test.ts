// The autoscaler's event trigger (issue 19) on a real API server, Redis and RabbitMQ: two pools with
// the longest polling interval (3600 s) see the same burst on their own queues. The event-driven
// pool is woken by its backlog watch and scaled; at that moment the polled pool has not decided
// on the burst yet, so the scale cannot have come from a poll. No timing numbers: the order of
// the two outcomes is the proof.
// envtest runs no kubelet: there are no worker pods, so in-flight work reads 0, the backlog alone
// drives the pools, and no pod start or service time is measured yet.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { Redis } from 'ioredis';
import amqp from 'amqplib';
import { createKubeClient, resources, type KubeClient } from '../../operator/src/k8s/kube-client.js';
import { createOperator, type Operator } from '../../operator/src/operator.js';
import { createOperatorMetrics } from '../../operator/src/metrics.js';
import { createAutoscaler, type Autoscaler } from '../../operator/src/autoscaler/autoscaler.js';
import type { KubeObject } from '../../operator/src/types.js';
import { envtestSkipReason, startControlPlane, type ControlPlane } from '../support/envtest.js';
import { eventually } from '../support/eventually.js';
import { uniqueName, useRabbit, useRedis, type ServiceResult } from '../support/servers.js';

type Obj = KubeObject & { spec?: any; status?: any; [k: string]: any };

const envSkip = envtestSkipReason();
const [redis, rabbit]: (ServiceResult | undefined)[] = envSkip ? [] : await Promise.all([useRedis(), useRabbit()]);
const skip = envSkip || redis?.skip || rabbit?.skip || false;

/** A broker the test fills: queues declared before the pools read them, a burst, clean-up. */
interface TestBroker {
  readonly type: 'redis' | 'amqp';
  readonly url: string;
  /** Declares the queues; returns how to publish `n` messages to one and how to clean up. */
  open(queues: readonly string[]): Promise<{ publish(queue: string, n: number): Promise<void>; close(): Promise<void> }>;
}

const redisBroker = (): TestBroker => ({
  type: 'redis',
  url: redis!.server!.url,
  async open(queues) {
    const r = new Redis(redis!.server!.url);
    return {
      async publish(queue, n) {
        const pipe = r.pipeline();
        for (let i = 0; i < n; i++) pipe.lpush(queue, JSON.stringify({ body: '', headers: { id: `${queue}-${i}` } }));
        await pipe.exec();
      },
      async close() {
        await r.del(...queues);
        r.disconnect();
      },
    };
  },
});

const rabbitBroker = (): TestBroker => ({
  type: 'amqp',
  url: rabbit!.server!.url,
  async open(queues) {
    const conn = await amqp.connect(rabbit!.server!.url);
    const ch = await conn.createConfirmChannel();
    for (const q of queues) await ch.assertQueue(q, { durable: true });
    return {
      async publish(queue, n) {
        for (let i = 0; i < n; i++) ch.sendToQueue(queue, Buffer.from(String(i)), { persistent: true });
        await ch.waitForConfirms();
      },
      async close() {
        for (const q of queues) await ch.deleteQueue(q);
        await conn.close();
      },
    };
  },
});

/** 400 tasks, 40 slots per pod at utilization 1: ceil(400 / 40) = 10 pods. */
const MESSAGES = 400;
const CONCURRENCY = 40;
const EXPECTED = MESSAGES / CONCURRENCY;

describe('event trigger: a burst is scaled for without waiting for the poll', { skip }, () => {
  let cp: ControlPlane;
  let kube: KubeClient;
  let op: Operator;
  let autoscaler: Autoscaler;
  const wakes: string[] = [];
  const metrics = createOperatorMetrics();

  /** Reconciles finished so far, all controllers. */
  const reconciles = async () => (await metrics.reconcileTotal.get()).values.reduce((n, v) => n + v.value, 0);

  /**
   * Waits until no reconcile finished for 2 s: the events of a pool's own first decision (its
   * Deployment created, its status written) reconcile it once more, and such a late reconcile
   * after the burst would be a decision outside the poll and the watch.
   */
  async function quiet(): Promise<void> {
    let last = -1; // the first look only records the count
    await eventually(
      async () => {
        const now = await reconciles();
        const same = now === last;
        last = now;
        assert.ok(same, 'reconciles still running');
      },
      { timeoutMs: 60_000, intervalMs: 2000 },
    );
  }

  before(async () => {
    cp = await startControlPlane();
    kube = cp.kube;
    const log = pino({ level: process.env.CELERIAC_TEST_LOG_LEVEL ?? 'silent' });
    const client = createKubeClient(cp.kubeConfig);
    autoscaler = createAutoscaler({ kube: client, log, timeoutMs: 2000, watchIntervalMs: 100 });
    op = createOperator({
      kube: client,
      log,
      metrics,
      decideReplicas: autoscaler.decideReplicas,
      // Record each wake on its way to the WorkerPool controller's queue.
      onWorkerPoolWake: (reconcileNow) =>
        autoscaler.onWake((key) => {
          wakes.push(key);
          reconcileNow(key);
        }),
      brokerCheckTimeoutMs: 1000,
      // No resync inside the test: only a poll, an object change or a wake reconciles a pool. envtest
      // runs no pods, so every pool misses its replicas: its 15 s recheck would be a poll too (it
      // made the polled pool scale first when the machine was slow).
      resyncMs: 3_600_000,
      waitingRecheckMs: 3_600_000,
    });
    await op.start();
  });

  after(async () => {
    await op?.stop();
    await autoscaler?.close();
    await cp?.stop();
    await Promise.all([redis?.server?.stop(), rabbit?.server?.stop()]);
  });

  async function createPool(ns: string, type: TestBroker['type'], name: string, queue: string, eventDriven: boolean): Promise<void> {
    await kube.create(resources.taskQueues, {
      apiVersion: 'celeriac.io/v1alpha1',
      kind: 'TaskQueue',
      metadata: { name, namespace: ns },
      spec: { broker: { type, urlSecretRef: { name: 'broker' } }, queue: { name: queue }, checkIntervalSeconds: 3600 },
    } as Obj);
    // The queue's broker check first: its status change reconciles the pool, which is a decision
    // outside the poll and the watch (it made the RabbitMQ case pass without a wake under load).
    await eventually(
      async () => {
        const tq = await kube.get<Obj>(resources.taskQueues, ns, name);
        assert.equal(tq?.status?.conditions?.find((c: { type: string }) => c.type === 'Ready')?.status, 'True');
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    await kube.create(resources.workerPools, {
      apiVersion: 'celeriac.io/v1alpha1',
      kind: 'WorkerPool',
      metadata: { name, namespace: ns },
      spec: {
        queues: [name],
        template: { image: 'example.com/shop:1', tasksModule: '/app/tasks.js' },
        concurrency: CONCURRENCY,
        autoscaling: { minReplicas: 1, maxReplicas: 30, pollingIntervalSeconds: 3600, targetUtilization: 1, eventDriven },
      },
    } as Obj);
  }

  /** The pool's status once its first decision is written (backlog 0, one replica). */
  async function firstDecision(ns: string, name: string): Promise<Obj> {
    let wp: Obj | null = null;
    await eventually(
      async () => {
        wp = await kube.get<Obj>(resources.workerPools, ns, name);
        assert.equal((await kube.get<Obj>(resources.deployments, ns, name))?.spec.replicas, 1);
        assert.deepEqual(
          wp?.status?.autoscaling?.metrics?.find((m: { name: string }) => m.name === 'backlog'),
          { name: 'backlog', value: 0 },
        );
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
    return wp!;
  }

  async function burstBeforePoll(broker: TestBroker): Promise<void> {
    const ns = await cp.createNamespace(`evt-${broker.type}`);
    await kube.create(resources.secrets, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'broker', namespace: ns },
      stringData: { url: broker.url },
    } as Obj);
    const fastQueue = uniqueName('fast');
    const polledQueue = uniqueName('polled');
    const queues = await broker.open([fastQueue, polledQueue]);
    await createPool(ns, broker.type, 'fast', fastQueue, true);
    await createPool(ns, broker.type, 'polled', polledQueue, false);
    const fastBefore = await firstDecision(ns, 'fast');
    const polledBefore = await firstDecision(ns, 'polled');
    assert.equal(fastBefore.status.autoscaling.eventDriven, true);
    assert.equal(polledBefore.status.autoscaling.eventDriven, false);
    // Nothing measured without pods: left out, not a made-up number.
    assert.equal(fastBefore.status.autoscaling.podStartSeconds, undefined);
    assert.equal(fastBefore.status.autoscaling.serviceTimeSeconds, undefined);
    assert.ok(!wakes.some((k) => k.startsWith(`${ns}/`)), 'no work, no wake');
    await quiet();

    try {
      await Promise.all([queues.publish(fastQueue, MESSAGES), queues.publish(polledQueue, MESSAGES)]);

      await eventually(
        async () => {
          assert.equal((await kube.get<Obj>(resources.deployments, ns, 'fast'))?.spec.replicas, EXPECTED);
          const wp = await kube.get<Obj>(resources.workerPools, ns, 'fast');
          assert.deepEqual(
            wp?.status?.autoscaling?.metrics?.find((m: { name: string }) => m.name === 'backlog'),
            { name: 'backlog', value: MESSAGES },
          );
          assert.equal(wp?.status?.autoscaling?.desiredReplicas, EXPECTED);
        },
        { timeoutMs: 30_000, intervalMs: 100 },
      );
      assert.ok(wakes.includes(`${ns}/fast`), `the backlog watch woke the pool (wakes: ${wakes.join(', ')})`);
      assert.ok(!wakes.includes(`${ns}/polled`), 'a polled pool has no watch');
      // The order is the proof: the polled pool, same interval, same burst, has not decided since.
      const polled = await kube.get<Obj>(resources.workerPools, ns, 'polled');
      assert.equal((await kube.get<Obj>(resources.deployments, ns, 'polled'))?.spec.replicas, 1);
      assert.deepEqual(
        polled?.status?.autoscaling?.metrics?.find((m: { name: string }) => m.name === 'backlog'),
        { name: 'backlog', value: 0 },
        'the polled pool still shows the backlog of its first poll',
      );
    } finally {
      await queues.close();
    }
  }

  it('Redis: the event-driven pool scales for a burst while a polled pool with the same interval has not looked yet', () => burstBeforePoll(redisBroker()));

  it('RabbitMQ: the same, the watch reading the queue by passive declare', () => burstBeforePoll(rabbitBroker()));
});
