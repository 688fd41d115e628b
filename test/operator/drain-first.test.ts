// Drain-first scale-down against a real kube-apiserver, a real Redis and real worker metrics
// servers: three "pods" (Pod objects whose status says Ready at 127.0.0.2-4, where the runtime's
// own metrics/drain server listens), one of them busy. Scaling 3 -> 1 must drain the two idle
// pods (never the busy one), then mark exactly those with pod-deletion-cost and lower replicas.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { resources, type KubeClient } from '../../operator/src/k8s/kube-client.js';
import type { ReconcileContext } from '../../operator/src/k8s/reconciler.js';
import { createAutoscaler, type Autoscaler } from '../../operator/src/autoscaler/autoscaler.js';
import type { KubeObject, TaskQueue, WorkerPool } from '../../operator/src/types.js';
import { createWorkerMetrics, type WorkerMetrics } from '../../runtime/src/metrics/worker-metrics.js';
import { startMetricsServer, type MetricsServer } from '../../runtime/src/metrics/server.js';
import { envtestSkipReason, startControlPlane, type ControlPlane } from '../support/envtest.js';
import { freePort, uniqueName, useRedis, type ServiceResult } from '../support/servers.js';

type Obj = KubeObject & { spec?: any; status?: any };

const envSkip = envtestSkipReason();
const redis: ServiceResult | undefined = envSkip ? undefined : await useRedis();
const skip = envSkip || redis?.skip || false;

interface FakeNode {
  ip: string;
  metrics: WorkerMetrics;
  server: MetricsServer;
  drains: number;
  resumes: number;
}

describe('drain-first scale-down', { skip }, () => {
  let cp: ControlPlane;
  let kube: KubeClient;
  let autoscaler: Autoscaler;
  const workers: FakeNode[] = [];
  let port: number;

  before(async () => {
    cp = await startControlPlane();
    kube = cp.kube;
    autoscaler = createAutoscaler({ kube, log: pino({ level: 'silent' }), timeoutMs: 2000 });
    port = await freePort();
    for (const ip of ['127.0.0.2', '127.0.0.3', '127.0.0.4']) {
      const metrics = createWorkerMetrics();
      const node: FakeNode = { ip, metrics, server: undefined as never, drains: 0, resumes: 0 };
      node.server = await startMetricsServer(
        port,
        {
          registry: metrics.registry,
          healthy: () => true,
          drain: async () => {
            node.drains++;
            metrics.draining.set(1);
          },
          resume: async () => {
            node.resumes++;
            metrics.draining.set(0);
          },
        },
        ip,
      );
      workers.push(node);
    }
  });

  after(async () => {
    await autoscaler?.close();
    await Promise.all(workers.map((w) => w.server.close()));
    await cp?.stop();
    await redis?.server?.stop();
  });

  async function scenario(nsName: string) {
    const ns = await cp.createNamespace(nsName);
    const queue = uniqueName('dq');
    const tq = {
      apiVersion: 'celeriac.io/v1alpha1',
      kind: 'TaskQueue',
      metadata: { name: 'work', namespace: ns },
      spec: { broker: { type: 'redis', url: redis!.server!.url }, queue: { name: queue } },
    } as TaskQueue;
    const pool = {
      apiVersion: 'celeriac.io/v1alpha1',
      kind: 'WorkerPool',
      metadata: { name: 'shop', namespace: ns },
      spec: {
        queues: ['work'],
        template: { image: 'example.com/shop:1', tasksModule: '/app/tasks.js' },
        concurrency: 4,
        metricsPort: port,
        autoscaling: {
          minReplicas: 1,
          maxReplicas: 10,
          pollingIntervalSeconds: 1,
          behavior: { scaleDown: { stabilizationWindowSeconds: 0, policies: [{ type: 'Percent', value: 100, periodSeconds: 1 }] } },
        },
      },
    } as WorkerPool;
    const names = ['busy', 'idle-a', 'idle-b'];
    for (const [i, name] of names.entries()) {
      await kube.create(resources.pods, {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name, namespace: ns, labels: { 'celeriac.io/worker-pool': 'shop' } },
        spec: { containers: [{ name: 'worker', image: 'example.com/shop:1' }] },
      } as Obj);
      const ip = workers[i]!.ip;
      await kube.patch(
        resources.pods,
        ns,
        name,
        { status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], conditions: [{ type: 'Ready', status: 'True' }] } },
        { subresource: 'status' },
      );
    }
    let t = Date.now();
    const ctx = { kube, log: pino({ level: 'silent' }), reconcileId: 'test', attempt: 0, now: () => new Date(t) } as unknown as ReconcileContext;
    const poll = async (replicas: number) =>
      (await autoscaler.decideReplicas({ pool, queues: [tq], deployment: { metadata: { name: 'shop' }, spec: { replicas } }, ctx })).replicas;
    const cost = async (name: string) => (await kube.get<Obj>(resources.pods, ns, name))?.metadata.annotations?.['controller.kubernetes.io/pod-deletion-cost'];
    const tick = (ms: number) => (t += ms);
    for (const w of workers) {
      w.drains = 0;
      w.resumes = 0;
      w.metrics.inFlight.set({ state: 'active' }, 0);
      w.metrics.draining.set(0);
    }
    workers[0]!.metrics.inFlight.set({ state: 'active' }, 2);
    // NotReady with the worker started (its startup probe passed), as the kubelet shows a draining pod.
    const setReady = (name: string, ready: boolean) =>
      kube.patch(
        resources.pods,
        ns,
        name,
        {
          status: {
            conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }],
            containerStatuses: [
              {
                name: 'worker',
                image: 'example.com/shop:1',
                imageID: '',
                ready,
                started: true,
                restartCount: 0,
                state: { running: { startedAt: new Date().toISOString() } },
              },
            ],
          },
        },
        { subresource: 'status' },
      );
    return { poll, cost, tick, setReady, pool, tq, ctx };
  }

  /**
   * One poll at 3 replicas tells the two idle pods to drain; the kubelet then sees /readyz answer
   * 503 on them, so they leave the Ready set.
   */
  async function drainIdleToNotReady(poll: (replicas: number) => Promise<number>, setReady: (name: string, ready: boolean) => Promise<unknown>) {
    assert.equal(await poll(3), 3);
    assert.deepEqual(
      workers.map((w) => w.drains),
      [0, 1, 1],
    );
    await setReady('idle-a', false);
    await setReady('idle-b', false);
  }

  it('drains idle pods only, then removes exactly those by deletion cost', async () => {
    const { poll, cost, tick } = await scenario('drain');

    // 2 running tasks want 1 pod: the two idle pods are told to drain; replicas stay until they are idle.
    assert.equal(await poll(3), 3);
    assert.deepEqual(
      workers.map((w) => w.drains),
      [0, 1, 1],
    );
    assert.equal(await cost('idle-a'), undefined, 'no deletion cost before the pod reports idle');

    // Next poll: both report no task, so they get the lowest deletion cost and replicas drop by two.
    tick(1500);
    assert.equal(await poll(3), 1);
    assert.equal(await cost('idle-a'), '-1000');
    assert.equal(await cost('idle-b'), '-1000');
    assert.equal(await cost('busy'), undefined);
    assert.equal(workers[0]!.drains, 0, 'the busy pod was never drained');
  });

  it('removes drained pods that turned NotReady (readiness on /readyz fails while draining)', async () => {
    const { poll, cost, tick, setReady } = await scenario('notready');
    // Their metrics must still be read, or the autoscaler never learns they are idle.
    await drainIdleToNotReady(poll, setReady);
    tick(1500);
    assert.equal(await poll(3), 1);
    assert.equal(await cost('idle-a'), '-1000');
    assert.equal(await cost('idle-b'), '-1000');
  });

  it('cancels drains when the work comes back, instead of starting new pods', async () => {
    const { poll, cost, tick } = await scenario('resume');
    assert.equal(await poll(3), 3);
    assert.deepEqual(
      workers.map((w) => w.drains),
      [0, 1, 1],
    );
    // Before the drained pods are removed, the busy pod reports 12 running tasks: 3 pods of 4 slots.
    workers[0]!.metrics.inFlight.set({ state: 'active' }, 12);
    tick(1500);
    const replicas = await poll(3);
    assert.ok(replicas >= 3, `scaled back up (${replicas})`);
    assert.deepEqual(
      workers.map((w) => w.resumes),
      [0, 1, 1],
      'both drains were cancelled before any new pod',
    );
    assert.equal(await cost('idle-a'), undefined);
    assert.equal(await cost('idle-b'), undefined);
  });

  it('a new leader adopts the drains of the old one: drained pods that turned NotReady are found by their metrics and removed, none stays stranded', async () => {
    const { poll, cost, tick, setReady, pool, tq, ctx } = await scenario('takeover');
    await drainIdleToNotReady(poll, setReady);
    // The leader is gone; the new one starts with no memory of the drains it did not order.
    const successor = createAutoscaler({ kube, log: pino({ level: 'silent' }), timeoutMs: 2000 });
    try {
      const pollNew = async (replicas: number) =>
        (await successor.decideReplicas({ pool, queues: [tq], deployment: { metadata: { name: 'shop' }, spec: { replicas } }, ctx })).replicas;
      // (One poll: this fake cluster has no ReplicaSet to delete the pods afterwards.)
      tick(1500);
      assert.equal(await pollNew(3), 1, 'the drained pods were removed');
      assert.equal(await cost('idle-a'), '-1000');
      assert.equal(await cost('idle-b'), '-1000');
      assert.equal(await cost('busy'), undefined);
      assert.equal(workers[0]!.drains, 0, 'the busy pod was never drained');
    } finally {
      await successor.close();
    }
  });
});
