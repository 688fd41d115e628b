// Issue 18's cluster-tier proof: a WorkerPool of Python Celery workers (`spec.celery`) on a real
// single-node cluster. The workers' image is built in the test from Debian's own Celery 5.2
// (test/cluster/fixtures/python-celery, cached in podman storage under a hash of its inputs); the
// operator is the project's image installed with the chart. A celeriac client sends a burst of
// the Python task by name (the interop the project sells); the pool scales up from min and back
// down through Celery's own drain (cancel_consumer, then removal once inspect shows the pod idle);
// every task ran exactly once (counted by the tasks in Redis) and none was killed (every result
// SUCCESS, read by celeriac from the Redis result backend the Python tasks write to). The figures
// (time to the first new pod Ready, peak replicas, ...) are printed as test diagnostics.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Pod } from '@kubernetes/client-node';
import { Redis } from 'ioredis';
import { createApp } from '../../runtime/src/index.js';
import { isPodReady, operatorRelease, useProductCluster } from '../support/cluster.js';
import { eventually } from '../support/eventually.js';
import { projectImage, projectImageArchive, pythonCeleryImage } from '../support/project-image.js';

const ns = 'py';
const pool = 'py-workers';
const queue = 'pyburst';
const minReplicas = 1;
const maxReplicas = 4;
const concurrency = 2;
const burstSize = 300;

let workerImage = '';
const product = useProductCluster(async () => {
  let at = Date.now();
  const operator = await projectImageArchive();
  console.error(`[cluster] project image ready in ${Date.now() - at} ms`);
  at = Date.now();
  const python = await pythonCeleryImage();
  console.error(`[cluster] Python Celery image ${python.image} ready in ${Date.now() - at} ms`);
  workerImage = python.image;
  return [operator, python.archive];
});

test('helm install: the operator pod becomes Ready', async (t) => {
  if (product.skipOrFail(t)) return;
  await product.get().installOperator(projectImage);
});

/** A TaskQueue on the host's Redis and an autoscaled pool of Debian Celery 5.2 workers. */
function poolObjects(brokerUrl: string): unknown[] {
  return [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'redis-broker', namespace: ns }, stringData: { url: brokerUrl } },
    {
      apiVersion: 'celeriac.io/v1alpha1',
      kind: 'TaskQueue',
      metadata: { name: 'pyburst', namespace: ns },
      spec: { broker: { type: 'redis', urlSecretRef: { name: 'redis-broker', key: 'url' } }, queue: { name: queue } },
    },
    {
      apiVersion: 'celeriac.io/v1alpha1',
      kind: 'WorkerPool',
      metadata: { name: pool, namespace: ns },
      spec: {
        queues: ['pyburst'],
        template: {
          image: workerImage,
          imagePullPolicy: 'Never',
          logLevel: 'info',
          resources: { requests: { cpu: '10m', memory: '64Mi' }, limits: { memory: '512Mi' } },
        },
        celery: { app: 'burst_tasks', pool: 'prefork' },
        concurrency,
        prefetchMultiplier: 1,
        terminationGracePeriodSeconds: 60,
        autoscaling: {
          minReplicas,
          maxReplicas,
          pollingIntervalSeconds: 2,
          cooldownPeriodSeconds: 30,
          activationThreshold: 0,
          targetDrainSeconds: 20,
          targetUtilization: 0.8,
          metrics: [{ type: 'queueDepth' }, { type: 'inFlight' }],
          behavior: { scaleDown: { stabilizationWindowSeconds: 10, policies: [{ type: 'Percent', value: 100, periodSeconds: 10 }] } },
        },
      },
    },
  ];
}

test('a burst on Python Celery workers: scale up from min, every task exactly once and SUCCESS, drained back to min', async (t) => {
  if (product.skipOrFail(t)) return;
  const { cluster: c, core, apps, redis, hostRedisUrl, withOperatorLog } = product.get();
  await c.kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: poolObjects(redis.url) }));

  const podsOfPool = async () => (await core.listNamespacedPod({ namespace: ns, labelSelector: `celeriac.io/worker-pool=${pool}` })).items;
  await withOperatorLog(() =>
    eventually(
      async () => {
        const pods = await podsOfPool();
        const describe = pods.map((p) => `${p.metadata?.name} ${p.status?.phase} ${JSON.stringify(p.status?.containerStatuses?.[0]?.state)}`);
        assert.equal(pods.filter(isPodReady).length, minReplicas, `Ready worker pods: ${describe.join(', ')}`);
        assert.equal(pods.length, minReplicas, `worker pods: ${describe.join(', ')}`);
        // The autoscaler reads the idle pool (no scale-up without work) before the burst starts.
        const wp = JSON.parse(await c.kubectl(['-n', ns, 'get', 'workerpool', pool, '-o', 'json'])) as {
          status?: { autoscaling?: { desiredReplicas?: number; reason?: string; message?: string } };
        };
        assert.equal(wp.status?.autoscaling?.desiredReplicas, minReplicas, JSON.stringify(wp.status?.autoscaling));
        assert.notEqual(wp.status?.autoscaling?.reason, 'MetricsUnavailable', JSON.stringify(wp.status?.autoscaling));
      },
      { timeoutMs: 180_000, intervalMs: 1000 },
    ),
  );
  // The pod runs the command line the operator built, with its nodename from the pod name.
  const [first] = await podsOfPool();
  const args = first!.spec!.containers[0]!.args!;
  assert.deepEqual(args.slice(0, 3), ['-A', 'burst_tasks', 'worker'], JSON.stringify(args));
  assert.ok(args.includes('celery@$(POD_NAME)'), JSON.stringify(args));

  const client = createApp({ name: 'cluster-python-burst-client', broker: hostRedisUrl, backend: hostRedisUrl });
  const counter = new Redis(hostRedisUrl);
  const samples: { at: number; pods: V1Pod[]; desired: number }[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const [pods, dep] = await Promise.all([podsOfPool(), apps.readNamespacedDeployment({ name: pool, namespace: ns })]);
      samples.push({ at: Date.now(), pods, desired: dep.spec?.replicas ?? 0 });
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  const before = new Set((await podsOfPool()).map((p) => p.metadata!.name!));
  const burstAt = Date.now();
  try {
    const ids: string[] = [];
    for (let i = 0; i < burstSize; i++) {
      const r = await client.sendTask('pyburst.work', [`p${i}`, 100 + ((i * 37) % 201), Date.now()], {}, { queue });
      ids.push(r.id);
    }
    const runs = async () => {
      const all = await counter.hgetall('pyburst:runs');
      return { count: Object.keys(all).length, twice: Object.entries(all).filter(([, n]) => n !== '1') };
    };
    await withOperatorLog(() =>
      eventually(
        async () => {
          const { count } = await runs();
          assert.equal(count, burstSize, `${count} of ${burstSize} tasks ran`);
        },
        { timeoutMs: 600_000, intervalMs: 1000 },
      ),
    );
    assert.deepEqual((await runs()).twice, [], 'tasks that ran more than once');

    // Back to min through the Celery drain: surplus pods are removed only once idle.
    await withOperatorLog(() =>
      eventually(
        async () => {
          const pods = await podsOfPool();
          const dep = await apps.readNamespacedDeployment({ name: pool, namespace: ns });
          assert.equal(dep.spec?.replicas, minReplicas);
          assert.equal(pods.length, minReplicas, `pods left: ${pods.map((p) => p.metadata?.name).join(', ')}`);
        },
        { timeoutMs: 300_000, intervalMs: 1000 },
      ),
    );
    const endAt = Date.now();
    const after = await runs();
    assert.equal(after.count, burstSize);
    assert.deepEqual(after.twice, [], 'a task ran again during scale-down');
    // None killed: every task's result, written by the Python worker, read by celeriac, is SUCCESS
    // (a pool child killed under a task makes it FAILURE with WorkerLostError).
    const states = await Promise.all(ids.map(async (id) => [id, (await client.asyncResult(id).meta()).status] as const));
    const notSuccess = states.filter(([, s]) => s !== 'SUCCESS');
    assert.deepEqual(notSuccess, [], 'tasks whose result is not SUCCESS');

    sampling = false;
    await sampler;
    const log = (await counter.lrange('pyburst:log', 0, -1)).map((l) => JSON.parse(l) as { id: string; pod: string; sentAt: number; startedAt: number });
    const peak = Math.max(...samples.map((s) => s.pods.length));
    assert.ok(peak > minReplicas, `the pool never scaled above min (peak ${peak})`);
    const newPods = new Set<string>();
    for (const s of samples) for (const p of s.pods) if (!before.has(p.metadata!.name!)) newPods.add(p.metadata!.name!);
    const readyAt = [...newPods].flatMap((name) => {
      const seen = samples.flatMap((s) => s.pods).find((q) => q.metadata!.name === name && isPodReady(q));
      const cond = seen?.status?.conditions?.find((c) => c.type === 'Ready');
      return cond?.lastTransitionTime ? [new Date(cond.lastTransitionTime).getTime()] : [];
    });
    const firstTaskOnNew = Math.min(...log.filter((l) => newPods.has(l.pod)).map((l) => l.startedAt));
    let replicaSeconds = 0;
    for (let i = 1; i < samples.length; i++) replicaSeconds += (samples[i - 1]!.pods.length * (samples[i]!.at - samples[i - 1]!.at)) / 1000;
    const waits = log.map((l) => (l.startedAt - l.sentAt) / 1000).sort((a, b) => a - b);
    const figures = {
      tasks: burstSize,
      taskMs: '100-300',
      celery: '5.2 (Debian bookworm)',
      concurrencyPerPod: concurrency,
      burstToFirstNewPodReadySeconds: (Math.min(...readyAt) - burstAt) / 1000,
      burstToFirstTaskOnNewPodSeconds: (firstTaskOnNew - burstAt) / 1000,
      peakReplicas: peak,
      peakDesiredReplicas: Math.max(...samples.map((s) => s.desired)),
      replicaSeconds: Math.round(replicaSeconds),
      waitP95Seconds: Number(waits[Math.floor(waits.length * 0.95)]!.toFixed(2)),
      burstToAllDoneAndBackAtMinSeconds: (endAt - burstAt) / 1000,
      podsThatRanTasks: new Set(log.map((l) => l.pod)).size,
    };
    t.diagnostic(`python burst figures: ${JSON.stringify(figures)}`);
    console.error(`[cluster] python burst figures: ${JSON.stringify(figures)}`);
    assert.ok(figures.podsThatRanTasks > minReplicas, 'tasks ran on the new pods too');

    // The surplus pods went through the Celery drain (cancel_consumer, then removal once idle),
    // and the operator says how it reads the workers' task rates.
    const operatorLog = await c.kubectl(['-n', operatorRelease.namespace, 'logs', `deployment/${operatorRelease.name}`]);
    assert.match(operatorLog, /drained pods removed/, 'the scale-down did not go through drain-first');
    const wp = JSON.parse(await c.kubectl(['-n', ns, 'get', 'workerpool', pool, '-o', 'json'])) as { status?: { autoscaling?: { celeryEvents?: string } } };
    assert.match(wp.status?.autoscaling?.celeryEvents ?? '', /^(Enabled|EnabledByOperator)$/, JSON.stringify(wp.status?.autoscaling));
  } finally {
    sampling = false;
    await sampler.catch((err: unknown) => console.error('[cluster] the pod sampler failed', err));
    await client.close();
    counter.disconnect();
  }
});
