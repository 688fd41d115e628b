// ETA tasks counted ahead (issue 19) on a real API server, Redis and a real celeriac worker: the
// worker holds ETA tasks unacked in memory, so the broker shows no backlog; the worker exports how
// many come due within each bucket (celeriac_worker_scheduled_due_tasks) and the autoscaler counts
// those due within its lead (decision delay + measured pod start) as work now. The pool's one pod
// says it took 100 s to start (Ready 100 s after creation), so the lead is 101 s: tasks due in an
// hour leave the pool alone, tasks due in 110 s scale it up while the worker still holds every one
// of them (none came due yet). No timing numbers: what the worker still holds is the proof.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { resources, type KubeClient } from '../../operator/src/k8s/kube-client.js';
import type { ReconcileContext } from '../../operator/src/k8s/reconciler.js';
import { createAutoscaler, type Autoscaler } from '../../operator/src/autoscaler/autoscaler.js';
import { parseWorkerMetrics } from '../../operator/src/metric-sources/worker-metrics.js';
import type { TaskQueue, WorkerPool } from '../../operator/src/types.js';
import { createApp, type App } from '../../runtime/src/index.js';
import { envtestSkipReason, startControlPlane, type ControlPlane } from '../support/envtest.js';
import { eventually } from '../support/eventually.js';
import { startWorker, stopProcess, withOutputOf, type Started } from '../support/processes.js';
import { freePort, uniqueName, useRedis, type ServiceResult } from '../support/servers.js';
import { taskQueueFixture, workerPoolFixture, type Obj } from '../support/operator-fixtures.js';

const envSkip = envtestSkipReason();
const redis: ServiceResult | undefined = envSkip ? undefined : await useRedis();
const skip = envSkip || redis?.skip || false;

/** Tasks due within the lead: (A + B + R + due) / rho = 20 / 0.8 = 25 slots = 7 pods of 4. */
const NEAR = 20;
const FAR = 12;

describe('ETA tasks counted ahead of their due time', { skip }, () => {
  let cp: ControlPlane;
  let kube: KubeClient;
  let autoscaler: Autoscaler;
  let worker: Started;
  let client: App;
  let port: number;
  const queue = uniqueName('eta');

  before(async () => {
    cp = await startControlPlane();
    kube = cp.kube;
    autoscaler = createAutoscaler({ kube, log: pino({ level: 'silent' }), timeoutMs: 2000 });
    port = await freePort();
    const url = redis!.server!.url;
    worker = startWorker('dist/test/operator/fixtures/dashboard-tasks.js', queue, { CELERIAC_BROKER_URL: url, CELERIAC_LOG_LEVEL: 'error' }, [
      '--metrics-port',
      String(port),
    ]);
    client = createApp({ broker: url, logLevel: 'warn', metricsPort: null });
  });

  after(async () => {
    await client?.close();
    await stopProcess(worker);
    await autoscaler?.close();
    await cp?.stop();
    await redis?.server?.stop();
  });

  /** What the worker holds for its ETA: from its own /metrics page. */
  async function held(): Promise<number> {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    return parseWorkerMetrics(await res.text()).scheduled;
  }

  it('scales up for ETA tasks due within the measured pod start, not for those due later', () =>
    withOutputOf({ worker }, async () => {
      const ns = await cp.createNamespace('eta-lead');
      const tq = taskQueueFixture(ns, 'work', { queue, broker: { type: 'redis', url: redis!.server!.url } }) as TaskQueue;
      const pool = workerPoolFixture(ns, 'shop', {
        queues: ['work'],
        concurrency: 4,
        metricsPort: port,
        autoscaling: { minReplicas: 1, maxReplicas: 20, pollingIntervalSeconds: 1 },
      }) as WorkerPool;
      // The pool's pod is the worker above; it became Ready 100 s after it was created.
      const pod = await kube.create<Obj>(resources.pods, {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'w0', namespace: ns, labels: { 'celeriac.io/worker-pool': 'shop' } },
        spec: { containers: [{ name: 'worker', image: 'example.com/shop:1' }] },
      } as Obj);
      const readyAt = new Date(Date.parse(pod.metadata.creationTimestamp!) + 100_000).toISOString();
      await kube.patch(
        resources.pods,
        ns,
        'w0',
        {
          status: {
            phase: 'Running',
            podIP: '127.0.0.1',
            podIPs: [{ ip: '127.0.0.1' }],
            conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: readyAt }],
          },
        },
        { subresource: 'status' },
      );
      const ctx = { kube, log: pino({ level: 'silent' }), reconcileId: 'test', attempt: 0, now: () => new Date() } as unknown as ReconcileContext;
      const poll = () => autoscaler.decideReplicas({ pool, queues: [tq], deployment: { metadata: { name: 'shop' }, spec: { replicas: 1 } }, ctx });

      // Due in an hour: far beyond the lead, held by the worker, no scale-up.
      for (let i = 0; i < FAR; i++) await client.sendTask('dash.work', [1], {}, { queue, countdown: 3_600_000 });
      await eventually(async () => assert.equal(await held(), FAR), { timeoutMs: 30_000, intervalMs: 200 });
      const quiet = await poll();
      assert.equal(quiet.replicas, 1, quiet.message);

      // Due in 110 s, within the 101 s lead's bucket (120 s): counted as work now.
      for (let i = 0; i < NEAR; i++) await client.sendTask('dash.work', [1], {}, { queue, countdown: 110_000 });
      await eventually(async () => assert.equal(await held(), FAR + NEAR), { timeoutMs: 30_000, intervalMs: 200 });
      const led = await poll();
      assert.equal(led.replicas, Math.ceil(NEAR / 0.8 / 4), led.message);
      assert.match(led.message ?? '', new RegExp(`due soon ${NEAR}`));
      // Decided before any of them came due: the worker still holds every one.
      assert.equal(await held(), FAR + NEAR);
    }));
});
