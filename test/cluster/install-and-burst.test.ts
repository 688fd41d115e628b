// The whole product on a real single-node cluster, as a user runs it (issue 15, points 1-3):
// `kubectl apply -f crds/`, `helm install` of charts/celeriac with the project's image, the
// docs/install.md example (TaskQueue + autoscaled WorkerPool with the tasks module mounted from a
// ConfigMap) against Redis on the host, then a burst of acksLate tasks: the pool scales up from
// min, every task runs exactly once (counted by the tasks themselves) and the pool drains back to
// min. The burst's figures (time to the first new pod Ready and to its first task, peak replicas,
// replica-seconds, wait p95) are printed as test diagnostics.
// Issue 19's proof on the cluster: the same burst on a second pool that decides at 5 s polls only
// (eventDriven: false, tuned KEDA's 120 s scale-down window), its figures against the event-driven
// pool's, beside the simulator's prediction for both specs with the measured pod start.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoordinationV1Api, KubeConfig } from '@kubernetes/client-node';
import { Redis } from 'ioredis';
import { createApp, TaskFailedError } from '../../runtime/src/index.js';
import { predictBurst, ratioVerdict, type BurstShape } from '../support/burst-simulation.js';
import {
  burstFigures,
  isPodReady,
  listPoolPods,
  operatorRelease,
  triggerAutoscaling,
  useProductCluster,
  waitBurstDone,
  waitIdleAtMin,
  watchPool,
  type BurstRun,
} from '../support/cluster.js';
import { eventually } from '../support/eventually.js';
import { repoRoot } from '../support/processes.js';
import { projectImage, projectImageArchive } from '../support/project-image.js';
import { prometheusBin, startPrometheus } from '../support/prometheus.js';

const { name: release, namespace: operatorNs } = operatorRelease;
const ns = 'shop';
const pool = 'shop-workers';
/** The pool of the comparison that decides at its polls only, on its own queue. */
const polledPool = 'shop-polled';
const minReplicas = 1;
const maxReplicas = 6;
const concurrency = 4;
const terminationGracePeriodSeconds = 60;
const burstSize = 1500;

const product = useProductCluster(async () => [await projectImageArchive()]);
const skipOrFail = (t: TestContext) => product.skipOrFail(t);
const withOperatorLog = <T>(f: () => Promise<T>) => product.get().withOperatorLog(f);

test('kubectl apply -f crds/ and helm install: the operator pod becomes Ready under the chart RBAC, with leader election on', async (t) => {
  if (skipOrFail(t)) return;
  const { cluster: c, core } = product.get();
  await product.get().installOperator(projectImage, ['operator.leaderElect=true']);

  const [pod] = (await core.listNamespacedPod({ namespace: operatorNs, labelSelector: 'app.kubernetes.io/name=celeriac' })).items;
  assert.ok(pod, 'no operator pod');
  assert.equal(pod.spec?.serviceAccountName, release, 'the operator runs as the chart ServiceAccount');
  assert.ok(pod.spec?.containers[0]?.args?.includes('--leader-elect'), `leader election is on: ${JSON.stringify(pod.spec?.containers[0]?.args)}`);
  assert.equal(pod.spec?.containers[0]?.securityContext?.readOnlyRootFilesystem, true);
  // The leader holds the Lease under its pod name.
  const coordination = (() => {
    const kc = new KubeConfig();
    kc.loadFromFile(c.kubeconfigPath);
    return kc.makeApiClient(CoordinationV1Api);
  })();
  await eventually(async () => {
    const leases = (await coordination.listNamespacedLease({ namespace: operatorNs })).items;
    const holders = leases.map((l) => l.spec?.holderIdentity ?? '');
    assert.ok(
      holders.some((h) => h.includes(pod.metadata!.name!)),
      `a Lease held by ${pod.metadata!.name}: ${JSON.stringify(holders)}`,
    );
  });
});

/** The broker URL for the pods (Secret): a short visibility timeout, so a SIGKILLed worker's late-ack messages come back soon. */
const podBrokerUrl = () => `${product.get().redis.url}?visibility_timeout=10`;
/** Redis as the host reaches it (test clients, the tasks' counters). */
const hostRedisUrl = () => product.get().hostRedisUrl;
const podsOfPool = (name = pool) => listPoolPods(product.get().core, ns, name);
const workerPool = async () =>
  JSON.parse(await product.get().cluster.kubectl(['get', 'workerpool', pool, '-n', ns, '-o', 'json'])) as {
    spec: { replicas?: number; autoscaling?: unknown };
    status?: { replicas?: number };
  };

/** A TaskQueue on Redis whose URL is the `url` key of Secret `secret`. */
function taskQueue(namespace: string, name: string, secret: string, queue: string) {
  return {
    apiVersion: 'celeriac.io/v1alpha1',
    kind: 'TaskQueue',
    metadata: { name, namespace },
    spec: { broker: { type: 'redis', urlSecretRef: { name: secret, key: 'url' } }, queue: { name: queue } },
  };
}

/** The example's worker template: the project's image with the tasks module mounted from ConfigMap shop-tasks. */
const exampleTemplate = {
  image: projectImage,
  imagePullPolicy: 'Never',
  tasksModule: '/app/tasks/tasks.js',
  resources: { requests: { cpu: '10m', memory: '64Mi' }, limits: { memory: '512Mi' } },
  podTemplate: {
    spec: {
      volumes: [{ name: 'tasks', configMap: { name: 'shop-tasks' } }],
      containers: [{ name: 'worker', volumeMounts: [{ name: 'tasks', mountPath: '/app/tasks', readOnly: true }] }],
    },
  },
};

/** An autoscaled WorkerPool of the example's workers (tasks module from the ConfigMap) on TaskQueue `queue`. */
function examplePool(name: string, queue: string, autoscaling: ReturnType<typeof triggerAutoscaling>) {
  return {
    apiVersion: 'celeriac.io/v1alpha1',
    kind: 'WorkerPool',
    metadata: { name, namespace: ns },
    spec: {
      queues: [queue],
      template: exampleTemplate,
      concurrency,
      prefetchMultiplier: 1,
      terminationGracePeriodSeconds,
      autoscaling,
    },
  };
}

/** The docs/install.md example with this cluster's image, broker and a small scale (event-driven, celeriac's default). */
function exampleObjects(brokerUrl: string): unknown[] {
  return [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'redis-broker', namespace: ns }, stringData: { url: brokerUrl } },
    {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'shop-tasks', namespace: ns },
      data: { 'tasks.js': readFileSync(join(repoRoot, 'test', 'cluster', 'fixtures', 'burst-tasks.js'), 'utf8') },
    },
    taskQueue(ns, 'default', 'redis-broker', 'celery'),
    examplePool(pool, 'default', triggerAutoscaling('eventDriven', minReplicas, maxReplicas)),
  ];
}

/** What a burst measured, for the comparison (figures as printed, plus how long the send took). */
interface BurstResult {
  readonly figures: ReturnType<typeof burstFigures>;
  readonly sendSeconds: number;
}

/**
 * A burst of acksLate tasks of 100-300 ms, sent from the host by a celeriac client to `queue`,
 * on pool `name` at `min`: every task runs exactly once, the pool scales up and back to `min`
 * through drain-first. Prints the burst's figures.
 */
async function burst(t: TestContext, o: { pool: string; queue: string; min: number; label: string }): Promise<BurstResult> {
  const p = product.get();
  const client = createApp({ name: 'cluster-burst-client', broker: hostRedisUrl() });
  const counter = new Redis(hostRedisUrl());
  const watch = watchPool(p, ns, o.pool);
  const before = new Set((await podsOfPool(o.pool)).map((q) => q.metadata!.name!));
  await counter.del('burst:runs', 'burst:log');
  const burstAt = Date.now();
  try {
    for (let i = 0; i < burstSize; i++) {
      await client.sendTask('burst.work', [`t${i}`, 100 + ((i * 37) % 201), Date.now()], {}, { queue: o.queue });
    }
    const sendSeconds = (Date.now() - burstAt) / 1000;
    // Every task ran exactly once, and the pool went back to min through drain-first: the surplus
    // pods went, none was killed mid-task (a task would have run twice).
    const endAt = await waitBurstDone(p, { counter, runsKey: 'burst:runs', count: burstSize, namespace: ns, pool: o.pool, min: o.min });

    await watch.stop();
    const log = (await counter.lrange('burst:log', 0, -1)).map((l) => JSON.parse(l) as BurstRun);
    const figures = burstFigures({ samples: watch.samples, podsBefore: before, runs: log, burstAt, endAt });
    assert.ok(figures.peakReplicas > o.min, `the pool never scaled above min (peak ${figures.peakReplicas})`);
    const line = `burst figures (${o.label}, min ${o.min}): ${JSON.stringify({ tasks: burstSize, taskMs: '100-300', concurrencyPerPod: concurrency, sendSeconds, ...figures })}`;
    t.diagnostic(line);
    console.error(`[cluster] ${line}`);
    assert.ok(figures.podsThatRanTasks > o.min, 'tasks ran on the new pods too');
    // The surplus pods went through drain-first: drained, then removed by the autoscaler.
    const operatorLog = await p.cluster.kubectl(['-n', operatorNs, 'logs', `deployment/${release}`, `--since-time=${new Date(burstAt).toISOString()}`]);
    assert.match(operatorLog, /drained pods removed/, 'the scale-down did not go through drain-first');
    return { figures, sendSeconds };
  } finally {
    await watch.stop().catch((err: unknown) => console.error('[cluster] the pod sampler failed', err));
    await client.close();
    counter.disconnect();
  }
}

/** The event-driven pool's bursts from min 1 and from zero, for the comparisons with the polled pool. */
let eventDrivenBurst: BurstResult | undefined;
let eventDrivenFromZero: BurstResult | undefined;

/**
 * Issue 19's comparison on the cluster: the burst the event-driven pool served from `min`, now on
 * a pool at `min` that decides at its 5 s polls only (eventDriven: false) and keeps tuned KEDA's
 * 120 s scale-down window, on its own queue; every task exactly once and the pool back at `min`
 * (asserted by `burst`). Prints both pools' figures beside the simulator's prediction for both
 * specs with each run's send time and measured pod start; the pool is deleted after.
 */
async function compareWithPolled(t: TestContext, min: number, event: BurstResult | undefined): Promise<void> {
  const c = product.get().cluster;
  assert.ok(event, "the event-driven pool's burst (the test before) did not run");
  const kedaLike = triggerAutoscaling('kedaLike', min, maxReplicas);
  await c.kubectl(
    ['apply', '-f', '-'],
    JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [taskQueue(ns, 'polled', 'redis-broker', 'polled'), examplePool(polledPool, 'polled', kedaLike)] }),
  );
  await waitIdleAtMin(product.get(), ns, polledPool, min);
  const polled = await burst(t, { pool: polledPool, queue: 'polled', min, label: 'KEDA-like polled' });

  // The simulator on the same burst: both pools' specs, the client's send time and the measured
  // pod start (means of the two runs: they are the cluster's, not the policy's).
  const mean = (x: number, y: number) => Number(((x + y) / 2).toFixed(2));
  const shape: BurstShape = {
    tasks: burstSize,
    sendSeconds: mean(event.sendSeconds, polled.sendSeconds),
    minReplicas: min,
    maxReplicas,
    concurrency,
    terminationGracePeriodSeconds,
    podStartSeconds: mean(event.figures.podStartSeconds, polled.figures.podStartSeconds),
  };
  const predicted = predictBurst(shape, triggerAutoscaling('eventDriven', min, maxReplicas), kedaLike);
  const surplus = (r: BurstResult) => r.figures.replicaSeconds - min * r.figures.burstToAllDoneAndBackAtMinSeconds;
  const rows = [
    [
      'wait p95 (s)',
      event.figures.waitP95Seconds,
      polled.figures.waitP95Seconds,
      predicted.waitP95Ratio,
      predicted.a.waitP95Seconds,
      predicted.b.waitP95Seconds,
    ],
    [
      'replica-s above min',
      surplus(event),
      surplus(polled),
      predicted.surplusReplicaSecondsRatio,
      predicted.a.surplusReplicaSeconds,
      predicted.b.surplusReplicaSeconds,
    ],
  ] as const;
  const f = (x: number) => x.toFixed(2);
  const lines = [
    `issue 19 on the cluster: ${burstSize} tasks of 100-300 ms from min ${min} (max ${maxReplicas}, ${concurrency} slots/pod); event-driven (5 s polls + backlog watch, 10 s scale-down window; sent in ${event.sendSeconds} s, pod start ${event.figures.podStartSeconds} s) vs KEDA-like (5 s polls only, 120 s window; ${polled.sendSeconds} s, ${polled.figures.podStartSeconds} s); simulator: sent in ${shape.sendSeconds} s, pod start ${shape.podStartSeconds} s, ${predicted.seeds} paired seeds, mean ±95% CI, PI = 95% prediction interval of one run`,
    ...rows.map(([name, e, p, ratio, simE, simP]) => {
      const measured = e / Math.max(p, 0.01);
      const v = ratioVerdict(measured, ratio, predicted.seeds);
      return `${name}: measured event-driven ${f(e)}, polled ${f(p)}, ratio ${f(measured)}; simulator ${f(simE.mean)} ±${f(simE.ci95)} vs ${f(simP.mean)} ±${f(simP.ci95)}, ratio ${f(ratio.mean)} ±${f(ratio.ci95)} (PI ±${f(v.predictionInterval)}); ordering ${v.sameOrdering ? 'matches' : 'DIFFERS'}, measured ratio ${v.withinCi ? 'within' : 'outside'} the CI, ${v.withinPi ? 'within' : 'outside'} the PI`;
    }),
    `tasks killed in the simulator: ${predicted.a.killed} event-driven, ${predicted.b.killed} polled; raw replica-seconds on the cluster: ${event.figures.replicaSeconds} vs ${polled.figures.replicaSeconds}`,
  ];
  for (const line of lines) {
    t.diagnostic(line);
    console.error(`[cluster] ${line}`);
  }
  // Gone before the next comparison creates it again (at another min).
  await withOperatorLog(() => c.kubectl(['-n', ns, 'delete', 'workerpool', polledPool, '--timeout=120s']));
  await waitPodsGone(polledPool);
}

test('the docs example serves a burst: scale up from min, every task exactly once, drain back to min', async (t) => {
  if (skipOrFail(t)) return;
  const c = product.get().cluster;
  await c.kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: exampleObjects(podBrokerUrl()) }));

  // The pool comes up at min and its printer columns and Events show, as `kubectl get/describe` do.
  await waitIdleAtMin(product.get(), ns, pool, minReplicas);
  const table = await c.kubectl(['get', 'taskqueues,workerpools', '-n', ns]);
  assert.match(table, /READY/i, table);
  assert.match(table, new RegExp(pool), table);
  const described = await c.kubectl(['describe', 'workerpool', pool, '-n', ns]);
  assert.match(described, /Events:/, described);

  eventDrivenBurst = await burst(t, { pool, queue: 'celery', min: minReplicas, label: 'event-driven' });
});

test('issue 19 on the cluster, from min 1: the same burst on a pool deciding at 5 s polls only (tuned KEDA-like), every task exactly once, back to min; its figures against the event-driven pool and the simulator', async (t) => {
  if (skipOrFail(t)) return;
  await compareWithPolled(t, minReplicas, eventDrivenBurst);
});

/**
 * Sends `count` acksLate tasks of `ms` each, calls `disrupt` with the pod the first one started on
 * once it runs, and waits until every task finished exactly once (counted by the tasks). Returns
 * which pod each task started and finished on.
 */
async function slowTasksThrough(
  count: number,
  ms: number,
  disrupt: (victim: string) => Promise<void>,
): Promise<{ victim: string; started: { id: string; pod: string }[]; finished: { id: string; pod: string }[] }> {
  const client = createApp({ name: 'cluster-slow-client', broker: hostRedisUrl() });
  const counter = new Redis(hostRedisUrl());
  try {
    await counter.del('slow:started', 'slow:runs', 'slow:finished');
    for (let i = 0; i < count; i++) await client.sendTask('burst.slow', [`s${i}`, ms], {}, { queue: 'celery' });
    const started = async () => (await counter.lrange('slow:started', 0, -1)).map((l) => JSON.parse(l) as { id: string; pod: string });
    const victim = await eventually(
      async () => {
        const s = await started();
        assert.ok(s.length > 0, 'no slow task started yet');
        return s[0]!.pod;
      },
      { timeoutMs: 120_000, intervalMs: 200 },
    );
    await disrupt(victim);
    await withOperatorLog(() =>
      eventually(
        async () => {
          const done = await counter.hlen('slow:runs');
          assert.equal(done, count, `${done} of ${count} slow tasks finished`);
        },
        { timeoutMs: 300_000, intervalMs: 1000 },
      ),
    );
    assert.deepEqual(
      Object.entries(await counter.hgetall('slow:runs')).filter(([, n]) => n !== '1'),
      [],
      'slow tasks that ran more than once',
    );
    const finished = (await counter.lrange('slow:finished', 0, -1)).map((l) => JSON.parse(l) as { id: string; pod: string });
    return { victim, started: await started(), finished };
  } finally {
    await client.close();
    counter.disconnect();
  }
}

/** What started on `victim` finished on it: the worker shut down warmly within the grace period. */
function finishedWhereStarted(r: Awaited<ReturnType<typeof slowTasksThrough>>): void {
  const startedOnVictim = r.started.filter((s) => s.pod === r.victim).map((s) => s.id);
  assert.ok(startedOnVictim.length > 0);
  for (const id of startedOnVictim) assert.equal(r.finished.find((f) => f.id === id)?.pod, r.victim, `${id} did not finish on ${r.victim}`);
}

async function waitPodGone(name: string): Promise<void> {
  await eventually(async () => assert.ok(!(await podsOfPool()).some((p) => p.metadata?.name === name), `${name} still exists`), {
    timeoutMs: 120_000,
    intervalMs: 1000,
  });
}

/** Waits until pool `name` has no pod left. */
async function waitPodsGone(name: string): Promise<void> {
  await eventually(
    async () => {
      const left = (await podsOfPool(name)).map((p) => p.metadata?.name);
      assert.deepEqual(left, [], `pods of ${name} left`);
    },
    { timeoutMs: 120_000, intervalMs: 1000 },
  );
}

test('kubectl delete pod while its acksLate tasks run: they finish there (warm shutdown), nothing runs twice or is lost', async (t) => {
  if (skipOrFail(t)) return;
  const r = await slowTasksThrough(24, 3000, (victim) =>
    product
      .get()
      .cluster.kubectl(['-n', ns, 'delete', 'pod', victim, '--wait=false'])
      .then(() => undefined),
  );
  finishedWhereStarted(r);
  await waitPodGone(r.victim);
});

test('a rolling update of the WorkerPool (new env) while acksLate tasks run: the old pods finish theirs, nothing runs twice or is lost', async (t) => {
  if (skipOrFail(t)) return;
  const c = product.get().cluster;
  const r = await slowTasksThrough(24, 3000, async () => {
    const patch = { spec: { template: { env: [{ name: 'CLUSTER_ROLL', value: 'two' }] } } };
    await c.kubectl(['-n', ns, 'patch', 'workerpool', pool, '--type=merge', '-p', JSON.stringify(patch)]);
  });
  finishedWhereStarted(r);
  await withOperatorLog(() => c.kubectl(['-n', ns, 'rollout', 'status', `deployment/${pool}`, '--timeout=180s']));
  await eventually(
    async () => {
      const pods = await podsOfPool();
      assert.ok(pods.length > 0);
      for (const p of pods) {
        const env = p.spec!.containers[0]!.env ?? [];
        assert.ok(
          env.some((e) => e.name === 'CLUSTER_ROLL' && e.value === 'two'),
          `${p.metadata?.name} runs the old template`,
        );
      }
    },
    { timeoutMs: 120_000, intervalMs: 1000 },
  );
  await waitPodGone(r.victim);
});

test('kubectl scale workerpool with autoscaling off (the scale subresource): up, then down while acksLate tasks run, nothing lost', async (t) => {
  if (skipOrFail(t)) return;
  const c = product.get().cluster;
  // Autoscaling off: replicas by hand from here on.
  await c.kubectl(['-n', ns, 'patch', 'workerpool', pool, '--type=merge', '-p', JSON.stringify({ spec: { autoscaling: null, replicas: 1 } })]);
  await c.kubectl(['-n', ns, 'scale', 'workerpool', pool, '--replicas=3']);
  assert.equal((await workerPool()).spec.replicas, 3, 'kubectl scale wrote spec.replicas');
  await withOperatorLog(() =>
    eventually(
      async () => {
        const pods = await podsOfPool();
        assert.equal(pods.filter(isPodReady).length, 3, `Ready pods: ${pods.map((p) => p.metadata?.name).join(', ')}`);
        assert.equal((await workerPool()).status?.replicas, 3, 'status.replicas (the scale subresource) follows');
      },
      { timeoutMs: 180_000, intervalMs: 1000 },
    ),
  );
  const scale = JSON.parse(await c.kubectl(['get', '--raw', `/apis/celeriac.io/v1alpha1/namespaces/${ns}/workerpools/${pool}/scale`])) as {
    spec: { replicas: number };
    status: { replicas: number; selector?: string };
  };
  assert.equal(scale.spec.replicas, 3);
  assert.match(scale.status.selector ?? '', new RegExp(`celeriac.io/worker-pool=${pool}`), 'the scale subresource names the pods (as an HPA needs)');

  // Down to 1 while tasks run on the pods that go: they finish, none runs twice.
  await slowTasksThrough(24, 3000, async () => {
    await c.kubectl(['-n', ns, 'scale', 'workerpool', pool, '--replicas=1']);
  });
  await eventually(
    async () => {
      const pods = await podsOfPool();
      assert.equal(pods.length, 1, `pods left: ${pods.map((p) => p.metadata?.name).join(', ')}`);
    },
    { timeoutMs: 180_000, intervalMs: 1000 },
  );
});

test('SIGKILL of a worker container: its acksLate tasks come back and run once, its early-acked tasks end FAILURE(WorkerLostError), none stays PENDING', async (t) => {
  if (skipOrFail(t)) return;
  const c = product.get().cluster;
  await c.kubectl(['-n', ns, 'scale', 'workerpool', pool, '--replicas=2']);
  await eventually(async () => assert.equal((await podsOfPool()).filter(isPodReady).length, 2), { timeoutMs: 180_000, intervalMs: 1000 });
  const client = createApp({ name: 'cluster-kill-client', broker: hostRedisUrl(), backend: hostRedisUrl() });
  const counter = new Redis(hostRedisUrl());
  const late = 16;
  const early = 8;
  try {
    await counter.del('slow:started', 'slow:runs', 'slow:finished', 'early:started', 'early:runs', 'early:finished');
    const earlyIds: string[] = [];
    // Interleaved, so both kinds run on both pods.
    for (let i = 0; i < Math.max(late, early); i++) {
      if (i < early) earlyIds.push((await client.sendTask('burst.early', [`e${i}`, 8000], {}, { queue: 'celery' })).id);
      if (i < late) await client.sendTask('burst.slow', [`k${i}`, 8000], {}, { queue: 'celery' });
    }
    const startedOn = async (key: string) => (await counter.lrange(key, 0, -1)).map((l) => JSON.parse(l) as { id: string; pod: string; boot?: string });
    // A pod running both an early-acked and a late-ack task.
    const victim = await eventually(
      async () => {
        const [e, l] = await Promise.all([startedOn('early:started'), startedOn('slow:started')]);
        const pod = e.map((x) => x.pod).find((p) => l.some((y) => y.pod === p));
        assert.ok(pod, 'no pod runs both kinds yet');
        return pod;
      },
      { timeoutMs: 120_000, intervalMs: 200 },
    );
    // The victim's worker process: tasks it starts until the kill lands are cut off too (read below).
    const victimBoot = (await startedOn('early:started')).find((s) => s.pod === victim)!.boot;
    const pod = await product.get().core.readNamespacedPod({ name: victim, namespace: ns });
    const containerId = pod.status!.containerStatuses!.find((s) => s.name === 'worker')!.containerID!;
    await c.killContainer(containerId, 'SIGKILL');

    // The late-ack tasks come back (visibility timeout) and each finishes exactly once.
    await withOperatorLog(() =>
      eventually(
        async () => {
          const done = await counter.hlen('slow:runs');
          assert.equal(done, late, `${done} of ${late} late-ack tasks finished`);
        },
        { timeoutMs: 300_000, intervalMs: 1000 },
      ),
    );
    assert.deepEqual(
      Object.entries(await counter.hgetall('slow:runs')).filter(([, n]) => n !== '1'),
      [],
      'late-ack tasks that ran more than once',
    );
    // Every early-acked task ends in a stored state; the ones the kill cut off as WorkerLostError.
    const states = await eventually(
      async () => {
        const s = await Promise.all(earlyIds.map(async (id) => [id, await client.asyncResult(id).state()] as const));
        const pending = s.filter(([, st]) => st !== 'SUCCESS' && st !== 'FAILURE');
        assert.deepEqual(pending, [], 'early-acked tasks not in a stored final state');
        return new Map(s);
      },
      { timeoutMs: 180_000, intervalMs: 1000 },
    );
    const cutOff = [...states].filter(([, st]) => st === 'FAILURE').map(([id]) => id);
    assert.ok(cutOff.length > 0, 'the kill cut off no early-acked task');
    for (const id of cutOff) {
      const err = await client
        .asyncResult(id)
        .get({ timeout: 5000 })
        .then(
          () => null,
          (e: unknown) => e,
        );
      assert.ok(err instanceof TaskFailedError, `${id}: ${String(err)}`);
      assert.equal(err.excType, 'WorkerLostError', err.message);
    }
    // Exactly the ones the kill cut off: started by the killed process (the restarted container
    // runs others under the same pod name, as another process). Those whose code had not returned
    // are lost; one whose code returned just before the kill may be too, if its result was not
    // stored yet. Their ids are e<i>, sent i-th.
    const idOf = (e: string) => earlyIds[Number(e.slice(1))]!;
    const startedByKilled = (await startedOn('early:started')).filter((s) => s.boot === victimBoot).map((s) => idOf(s.id));
    const finished = new Set((await startedOn('early:finished')).map((f) => idOf(f.id)));
    const cutByKill = startedByKilled.filter((id) => !finished.has(id));
    assert.ok(cutByKill.length > 0, 'the kill cut off no early-acked task');
    assert.deepEqual(
      cutByKill.filter((id) => !cutOff.includes(id)),
      [],
      'early-acked tasks the kill cut off (their code had not returned) that were not stored as lost',
    );
    assert.deepEqual(
      cutOff.filter((id) => !startedByKilled.includes(id)),
      [],
      'early-acked tasks stored as lost that the killed process had not started',
    );
    // The container came back in the same pod.
    const after = await product.get().core.readNamespacedPod({ name: victim, namespace: ns });
    assert.ok((after.status!.containerStatuses!.find((s) => s.name === 'worker')!.restartCount ?? 0) >= 1, 'the worker container restarted');
  } finally {
    await client.close();
    counter.disconnect();
  }
});

test('minReplicas 0: the pool drains to zero, a burst scales it from zero, and it drains back to zero (drain-first)', async (t) => {
  if (skipOrFail(t)) return;
  const c = product.get().cluster;
  // Autoscaling back on, from zero.
  const patch = { spec: { replicas: null, autoscaling: triggerAutoscaling('eventDriven', 0, maxReplicas) } };
  await c.kubectl(['-n', ns, 'patch', 'workerpool', pool, '--type=merge', '-p', JSON.stringify(patch)]);
  await withOperatorLog(() =>
    eventually(
      async () => {
        const pods = await podsOfPool();
        assert.equal(pods.length, 0, `pods left: ${pods.map((p) => p.metadata?.name).join(', ')}`);
      },
      { timeoutMs: 300_000, intervalMs: 1000 },
    ),
  );
  eventDrivenFromZero = await burst(t, { pool, queue: 'celery', min: 0, label: 'event-driven' });
});

test('issue 19 on the cluster, from zero: the same burst on a polled pool at minReplicas 0, every task exactly once, back to zero; its figures against the event-driven pool and the simulator', async (t) => {
  if (skipOrFail(t)) return;
  await compareWithPolled(t, 0, eventDrivenFromZero);
});

test('deleting the leading operator pod mid-scale (2 replicas, leader election): the other takes over, no flapping, no stranded drain', async (t) => {
  if (skipOrFail(t)) return;
  const c = product.get().cluster;
  const kc = new KubeConfig();
  kc.loadFromFile(c.kubeconfigPath);
  const coordination = kc.makeApiClient(CoordinationV1Api);
  await c.helm(['upgrade', release, join(repoRoot, 'charts', 'celeriac'), '--namespace', operatorNs, '--reuse-values', '--set', 'replicaCount=2']);
  await withOperatorLog(() => c.kubectl(['-n', operatorNs, 'rollout', 'status', `deployment/${release}`, '--timeout=180s']));
  const operatorPods = async () =>
    (await product.get().core.listNamespacedPod({ namespace: operatorNs, labelSelector: 'app.kubernetes.io/name=celeriac' })).items;
  const holder = async () => {
    const leases = (await coordination.listNamespacedLease({ namespace: operatorNs })).items;
    return leases.map((l) => l.spec?.holderIdentity ?? '').find((h) => h !== '') ?? '';
  };
  const leaderPod = async () => {
    const h = await holder();
    return (await operatorPods()).find((p) => h.includes(p.metadata!.name!))?.metadata?.name;
  };
  const first = await eventually(
    async () => {
      const pods = await operatorPods();
      assert.equal(pods.filter(isPodReady).length, 2, 'two operator pods Ready');
      const name = await leaderPod();
      assert.ok(name, `a Lease held by one of them: ${await holder()}`);
      return name;
    },
    { timeoutMs: 120_000, intervalMs: 1000 },
  );

  const client = createApp({ name: 'cluster-takeover-client', broker: hostRedisUrl() });
  const counter = new Redis(hostRedisUrl());
  const desired: number[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      desired.push((await product.get().apps.readNamespacedDeployment({ name: pool, namespace: ns })).spec?.replicas ?? 0);
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  const size = 1000;
  try {
    await counter.del('burst:runs', 'burst:log');
    for (let i = 0; i < size; i++) await client.sendTask('burst.work', [`o${i}`, 100 + ((i * 37) % 201), Date.now()], {}, { queue: 'celery' });
    // Mid-scale: the pool is growing when the leader goes.
    await eventually(async () => assert.ok(desired.at(-1)! >= 2, `replicas ${desired.at(-1)}`), { timeoutMs: 120_000, intervalMs: 500 });
    await c.kubectl(['-n', operatorNs, 'delete', 'pod', first, '--wait=false']);
    const second = await eventually(
      async () => {
        const name = await leaderPod();
        assert.ok(name && name !== first, `the Lease moved from ${first}: ${await holder()}`);
        return name;
      },
      { timeoutMs: 120_000, intervalMs: 1000 },
    );
    await eventually(async () => assert.equal(await counter.hlen('burst:runs'), size), { timeoutMs: 600_000, intervalMs: 1000 });
    assert.deepEqual(
      Object.entries(await counter.hgetall('burst:runs')).filter(([, n]) => n !== '1'),
      [],
      'tasks that ran more than once',
    );
    // Back to zero: every drain the old leader began ended with its pod gone.
    await withOperatorLog(() =>
      eventually(
        async () => {
          const pods = await podsOfPool();
          assert.equal(pods.length, 0, `pods left: ${pods.map((p) => p.metadata?.name).join(', ')}`);
          const status = (await workerPool()).status as { autoscaling?: { draining?: string[] } } | undefined;
          assert.deepEqual(status?.autoscaling?.draining ?? [], [], 'drains left in the status');
        },
        { timeoutMs: 300_000, intervalMs: 1000 },
      ),
    );
    sampling = false;
    await sampler;
    // No flapping: the count rose, then fell, once (runs of equal values collapsed).
    const steps = desired.filter((v, i) => i === 0 || v !== desired[i - 1]);
    const reversals = steps.filter((v, i) => i >= 2 && Math.sign(v - steps[i - 1]!) !== Math.sign(steps[i - 1]! - steps[i - 2]!)).length;
    t.diagnostic(`operator takeover: ${first} -> ${second}; replicas over time ${JSON.stringify(steps)}`);
    assert.ok(reversals <= 1, `the replica count flapped: ${JSON.stringify(steps)}`);
  } finally {
    sampling = false;
    await sampler.catch((err: unknown) => console.error('[cluster] the replica sampler failed', err));
    await client.close();
    counter.disconnect();
  }
});

test('bad input: a missing TaskQueue, a broker that refuses the credentials, an image without the tasks module: a clear condition and Event each, nothing crashes', async (t) => {
  if (skipOrFail(t)) return;
  const c = product.get().cluster;
  const bad = 'bad-input';
  // A Redis user whose password the Secret gets wrong: the broker refuses the login.
  const admin = new Redis(hostRedisUrl());
  await admin.call('ACL', 'SETUSER', 'shop', 'on', '>right-password', '~*', '&*', '+@all');
  admin.disconnect();
  const refusedUrl = product.get().redis.url.replace('redis://', 'redis://shop:wrong-password@');
  const template = (tasksModule: string) => ({
    image: projectImage,
    imagePullPolicy: 'Never',
    tasksModule,
    resources: { requests: { cpu: '10m', memory: '64Mi' }, limits: { memory: '512Mi' } },
  });
  const objects = [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: bad } },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'good', namespace: bad }, stringData: { url: podBrokerUrl() } },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'refused', namespace: bad }, stringData: { url: refusedUrl } },
    taskQueue(bad, 'good', 'good', 'bad-input'),
    taskQueue(bad, 'refused', 'refused', 'refused'),
    {
      apiVersion: 'celeriac.io/v1alpha1',
      kind: 'WorkerPool',
      metadata: { name: 'orphan', namespace: bad },
      spec: { queues: ['missing'], template: template('/app/tasks/tasks.js'), replicas: 1 },
    },
    {
      apiVersion: 'celeriac.io/v1alpha1',
      kind: 'WorkerPool',
      metadata: { name: 'no-module', namespace: bad },
      spec: { queues: ['good'], template: template('/app/tasks/missing.js'), replicas: 1 },
    },
  ];
  await c.kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }));
  const ready = async (kind: string, name: string) => {
    const o = JSON.parse(await c.kubectl(['get', kind, name, '-n', bad, '-o', 'json'])) as {
      status?: { conditions?: { type: string; status: string; reason: string; message: string }[] };
    };
    return o.status?.conditions?.find((x) => x.type === 'Ready');
  };
  const eventsOf = async (name: string) =>
    (
      JSON.parse(await c.kubectl(['get', 'events', '-n', bad, '--field-selector', `involvedObject.name=${name}`, '-o', 'json'])) as {
        items: { type: string; reason: string; message: string }[];
      }
    ).items;
  const expectations: [kind: string, name: string, reason: string, message: RegExp][] = [
    ['workerpool', 'orphan', 'TaskQueueNotFound', /missing/],
    ['taskqueue', 'refused', 'AuthenticationFailed', /WRONGPASS|password/i],
    ['workerpool', 'no-module', 'WorkerFailing', /missing\.js|tasks module|Cannot find/i],
  ];
  const seen: string[] = [];
  for (const [kind, name, reason, message] of expectations) {
    await withOperatorLog(() =>
      eventually(
        async () => {
          const r = await ready(kind, name);
          assert.equal(r?.status, 'False', `${kind}/${name} Ready: ${JSON.stringify(r)}`);
          assert.equal(r?.reason, reason, `${kind}/${name} Ready: ${JSON.stringify(r)}`);
          assert.match(r?.message ?? '', message);
          const events = await eventsOf(name);
          assert.ok(
            events.some((e) => e.type === 'Warning' && e.reason === reason),
            `${kind}/${name} Events: ${JSON.stringify(events.map((e) => `${e.type} ${e.reason}`))}`,
          );
          seen.push(`${kind}/${name}: ${r!.reason}: ${r!.message}`);
        },
        { timeoutMs: 180_000, intervalMs: 2000 },
      ),
    );
  }
  t.diagnostic(`bad input as the user sees it:\n${seen.join('\n')}`);
  // Nothing crashed: the operator pods never restarted.
  const operatorPods = (await product.get().core.listNamespacedPod({ namespace: operatorNs, labelSelector: 'app.kubernetes.io/name=celeriac' })).items;
  for (const p of operatorPods) assert.equal(p.status?.containerStatuses?.[0]?.restartCount ?? 0, 0, `${p.metadata?.name} restarted`);
  // The namespace stays until the cluster stops: deleting it here makes the operator's Events
  // there 403 (the namespace is terminating), which the RBAC check would count against the chart.
});

test('Prometheus on the host discovers the pods by Kubernetes service discovery and their scrape annotations, scrapes workers and operator, and a WorkerPool scales on a query over those metrics', async (t) => {
  if (skipOrFail(t)) return;
  const c = product.get().cluster;
  assert.ok(prometheusBin(), 'CELERIAC_PROMETHEUS_BIN is not set: run test/support/setup-cluster.sh and export what it prints');
  const prometheus = await startPrometheus(c.kubeconfigPath, c.nodeIP);
  try {
    const promPool = 'prom-workers';
    // One pod of the example pool to scrape: the pool is at zero after the zero test.
    await c.kubectl(['-n', ns, 'patch', 'workerpool', pool, '--type=merge', '-p', JSON.stringify({ spec: { autoscaling: { minReplicas: 1 } } })]);
    // The pool's size follows a query over what Prometheus scraped: the number of celeriac pods
    // (workers and operators) it scrapes, one replica each, up to 3.
    const query = 'sum(up{job="pods"} == 1)';
    const promPoolObject = {
      apiVersion: 'celeriac.io/v1alpha1',
      kind: 'WorkerPool',
      metadata: { name: promPool, namespace: ns },
      spec: {
        queues: ['default'],
        template: exampleTemplate,
        concurrency: 1,
        autoscaling: {
          minReplicas: 1,
          maxReplicas: 3,
          pollingIntervalSeconds: 2,
          metrics: [{ type: 'prometheus', prometheus: { serverAddress: prometheus.url, query, targetAverageValue: 1 } }],
        },
      },
    };
    await c.kubectl(['apply', '-f', '-'], JSON.stringify(promPoolObject));
    // Discovered and scraped: a worker pod of each pool and the operator pods, all up.
    const up = await eventually(
      async () => {
        const series = await prometheus.query('up{job="pods"}');
        const upOf = (f: (m: Record<string, string>) => boolean) => series.filter((s) => f(s.metric) && s.value === 1);
        assert.ok(upOf((m) => m.namespace === operatorNs).length >= 1, `operator pods up: ${JSON.stringify(series)}`);
        assert.ok(upOf((m) => m.workerpool === pool).length >= 1, `${pool} pods up: ${JSON.stringify(series)}`);
        assert.ok(upOf((m) => m.workerpool === promPool).length >= 1, `${promPool} pods up: ${JSON.stringify(series)}`);
        return series;
      },
      { timeoutMs: 180_000, intervalMs: 2000 },
    );
    // The scraped series are celeriac's own: worker slots from the workers, reconcile counts from the operator.
    await eventually(
      async () => {
        assert.ok((await prometheus.query(`celeriac_worker_slots{workerpool="${pool}"}`)).length >= 1, 'worker metrics scraped');
        assert.ok((await prometheus.query(`celeriac_operator_reconcile_total{namespace="${operatorNs}"}`)).length >= 1, 'operator metrics scraped');
      },
      { timeoutMs: 60_000, intervalMs: 2000 },
    );
    // The prometheus-driven pool grows to what the query says (3 or more scraped pods: max 3).
    await withOperatorLog(() =>
      eventually(
        async () => {
          const pods = await product.get().core.listNamespacedPod({ namespace: ns, labelSelector: `celeriac.io/worker-pool=${promPool}` });
          assert.equal(pods.items.filter(isPodReady).length, 3, `${promPool} Ready pods`);
          const wp = JSON.parse(await c.kubectl(['get', 'workerpool', promPool, '-n', ns, '-o', 'json'])) as {
            status?: { autoscaling?: { metrics?: { name: string; value: number | null }[] } };
          };
          const value = wp.status?.autoscaling?.metrics?.find((m) => m.name === 'prometheus[0]')?.value;
          assert.ok(typeof value === 'number' && value >= 3, `the prometheus metric in the status: ${JSON.stringify(wp.status?.autoscaling)}`);
        },
        { timeoutMs: 240_000, intervalMs: 2000 },
      ),
    );
    t.diagnostic(`Prometheus scraped: ${JSON.stringify(up.map((s) => `${s.metric.namespace}/${s.metric.pod}`))}`);
    await c.kubectl(['-n', ns, 'delete', 'workerpool', promPool, '--wait=false']);
  } finally {
    await prometheus.stop();
  }
});

test("the chart's RBAC, against the apiserver's audit log: nothing the operator did was forbidden, and Secrets are only read by name", async (t) => {
  if (skipOrFail(t)) return;
  const c = product.get().cluster;
  const sa = `system:serviceaccount:${operatorNs}:${release}`;
  interface AuditEvent {
    stage: string;
    verb: string;
    user: { username: string };
    objectRef?: { apiGroup?: string; resource?: string; subresource?: string; name?: string };
    responseStatus?: { code?: number };
    requestURI: string;
  }
  const events = readFileSync(c.auditLogPath, 'utf8')
    .split('\n')
    .filter((l) => l.includes(sa))
    .map((l) => JSON.parse(l) as AuditEvent)
    // A watch still open at the end has only its ResponseStarted event.
    .filter(
      (e) => (e.stage === 'ResponseComplete' || (e.stage === 'ResponseStarted' && e.verb === 'watch')) && e.user.username === sa && e.objectRef?.resource,
    );
  assert.ok(events.length > 0, 'no request of the operator in the audit log');
  const forbidden = events.filter((e) => e.responseStatus?.code === 403).map((e) => `${e.verb} ${e.requestURI}`);
  assert.deepEqual(forbidden, [], 'requests the chart RBAC refused');

  const used = new Map<string, Set<string>>();
  for (const e of events) {
    const r = e.objectRef!;
    const key = `${r.apiGroup ?? ''}/${r.resource}${r.subresource ? `/${r.subresource}` : ''}`;
    used.set(key, (used.get(key) ?? new Set()).add(e.verb));
  }
  const secretReads = events.filter((e) => e.objectRef!.resource === 'secrets');
  assert.ok(secretReads.length > 0, "the broker Secret was never read: the TaskQueue's check did not run");
  assert.deepEqual([...used.get('/secrets')!], ['get']);
  assert.ok(
    secretReads.every((e) => e.objectRef!.name),
    'every Secret read names its Secret',
  );
  const role = JSON.parse(await c.kubectl(['get', 'clusterrole', release, '-o', 'json'])) as { rules: { resources: string[]; verbs: string[] }[] };
  const grantedOnSecrets = role.rules.filter((r) => r.resources.includes('secrets')).flatMap((r) => r.verbs);
  assert.deepEqual(grantedOnSecrets, ['get'], 'the chart grants on Secrets exactly the verb the operator uses');
  t.diagnostic(`verbs the operator used: ${JSON.stringify(Object.fromEntries([...used].map(([k, v]) => [k, [...v].sort()])))}`);
  // What the chart grants and this run never used (a server-side apply that creates is logged as
  // `patch` but needs `create` too; deletions and finalizer updates happen at uninstall, which this
  // run does not do): printed, for the RBAC review.
  const grants = [
    ...role.rules,
    ...(JSON.parse(await c.kubectl(['get', 'role', `${release}-leader-election`, '-n', operatorNs, '-o', 'json'])) as typeof role).rules,
  ] as { apiGroups: string[]; resources: string[]; verbs: string[] }[];
  const unused = grants.flatMap((r) =>
    r.resources.flatMap((res) =>
      r.verbs.filter((v) => !used.get(`${r.apiGroups[0] ?? ''}/${res}`)?.has(v)).map((v) => `${r.apiGroups[0] || 'core'}/${res}:${v}`),
    ),
  );
  t.diagnostic(`granted, not used in this run: ${JSON.stringify(unused)}`);
  console.error(`[cluster] RBAC granted, not used in this run: ${JSON.stringify(unused)}`);
});
