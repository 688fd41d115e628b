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
import { Redis } from 'ioredis';
import { createApp } from '../../runtime/src/index.js';
import {
  burstAutoscaling,
  burstFigures,
  listPoolPods,
  operatorRelease,
  useProductCluster,
  waitBurstDone,
  waitIdleAtMin,
  watchPool,
  type BurstRun,
} from '../support/cluster.js';
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
        autoscaling: burstAutoscaling(minReplicas, maxReplicas),
      },
    },
  ];
}

test('a burst on Python Celery workers: scale up from min, every task exactly once and SUCCESS, drained back to min', async (t) => {
  if (product.skipOrFail(t)) return;
  const { cluster: c, core, redis, hostRedisUrl } = product.get();
  await c.kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: poolObjects(redis.url) }));

  const podsOfPool = () => listPoolPods(core, ns, pool);
  // The autoscaler reads the idle pool (no scale-up without work) before the burst starts.
  await waitIdleAtMin(product.get(), ns, pool, minReplicas);
  // The pod runs the command line the operator built, with its nodename from the pod name.
  const [first] = await podsOfPool();
  const args = first!.spec!.containers[0]!.args!;
  assert.deepEqual(args.slice(0, 3), ['-A', 'burst_tasks', 'worker'], JSON.stringify(args));
  assert.ok(args.includes('celery@$(POD_NAME)'), JSON.stringify(args));

  const client = createApp({ name: 'cluster-python-burst-client', broker: hostRedisUrl, backend: hostRedisUrl });
  const counter = new Redis(hostRedisUrl);
  const watch = watchPool(product.get(), ns, pool);
  const before = new Set((await podsOfPool()).map((p) => p.metadata!.name!));
  const burstAt = Date.now();
  try {
    const ids: string[] = [];
    for (let i = 0; i < burstSize; i++) {
      const r = await client.sendTask('pyburst.work', [`p${i}`, 100 + ((i * 37) % 201), Date.now()], {}, { queue });
      ids.push(r.id);
    }
    // Every task ran exactly once; back to min through the Celery drain (surplus pods are
    // removed only once idle), no task run again meanwhile.
    const endAt = await waitBurstDone(product.get(), { counter, runsKey: 'pyburst:runs', count: burstSize, namespace: ns, pool, min: minReplicas });
    // None killed: every task's result, written by the Python worker, read by celeriac, is SUCCESS
    // (a pool child killed under a task makes it FAILURE with WorkerLostError).
    const states = await Promise.all(ids.map(async (id) => [id, (await client.asyncResult(id).meta()).status] as const));
    const notSuccess = states.filter(([, s]) => s !== 'SUCCESS');
    assert.deepEqual(notSuccess, [], 'tasks whose result is not SUCCESS');

    await watch.stop();
    const log = (await counter.lrange('pyburst:log', 0, -1)).map((l) => JSON.parse(l) as BurstRun);
    const figures = {
      tasks: burstSize,
      taskMs: '100-300',
      celery: '5.2 (Debian bookworm)',
      concurrencyPerPod: concurrency,
      ...burstFigures({ samples: watch.samples, podsBefore: before, runs: log, burstAt, endAt }),
    };
    assert.ok(figures.peakReplicas > minReplicas, `the pool never scaled above min (peak ${figures.peakReplicas})`);
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
    await watch.stop().catch((err: unknown) => console.error('[cluster] the pod sampler failed', err));
    await client.close();
    counter.disconnect();
  }
});
