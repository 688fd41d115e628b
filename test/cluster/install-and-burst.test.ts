// The whole product on a real single-node cluster, as a user runs it (issue 15, points 1-3):
// `kubectl apply -f crds/`, `helm install` of charts/celeriac with the project's image, the
// docs/install.md example (TaskQueue + autoscaled WorkerPool with the tasks module mounted from a
// ConfigMap) against Redis on the host, then a burst of acksLate tasks: the pool scales up from
// min, every task runs exactly once (counted by the tasks themselves) and the pool drains back to
// min. The burst's figures (time to the first new pod Ready and to its first task, peak replicas,
// replica-seconds, wait p95) are printed as test diagnostics.
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AppsV1Api, CoreV1Api, CoordinationV1Api, KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { Redis } from 'ioredis';
import { createApp, TaskFailedError } from '../../runtime/src/index.js';
import { resolvePolicy } from '../../operator/src/autoscaler/policy.js';
import { modelFor, Simulation, type ModelParams } from '../../operator/src/simulator/model.js';
import { CeleriacController } from '../../operator/src/simulator/policies.js';
import { generateTasks, type Scenario } from '../../operator/src/simulator/scenarios.js';
import { clusterSkipReason, hostSnapshot, startCluster, type Cluster } from '../support/cluster.js';
import { eventually } from '../support/eventually.js';
import { repoRoot } from '../support/processes.js';
import { projectImage, projectImageArchive } from '../support/project-image.js';
import { prometheusBin, startPrometheus } from '../support/prometheus.js';
import { startRedis, type TestServer } from '../support/servers.js';

const release = 'celeriac';
const operatorNs = 'celeriac-system';
const ns = 'shop';
const pool = 'shop-workers';
const minReplicas = 1;
const maxReplicas = 6;
const concurrency = 4;
const burstSize = 1500;

let cluster: Cluster | undefined;
let hostBefore: ReturnType<typeof hostSnapshot> | undefined;
let redis: TestServer | undefined;
let skip: string | false = false;
let core: CoreV1Api;
let apps: AppsV1Api;

function skipOrFail(t: TestContext): boolean {
  if (!skip) return false;
  if (process.env.CELERIAC_REQUIRE_SERVICES === '1') assert.fail(`the cluster tier is required (CELERIAC_REQUIRE_SERVICES=1) but cannot run: ${skip}`);
  console.error(`\n!!! SKIPPED ${t.name}: ${skip}\n`);
  t.skip(skip);
  return true;
}

before(async () => {
  skip = clusterSkipReason();
  if (skip) return;
  hostBefore = hostSnapshot();
  let at = Date.now();
  const archive = await projectImageArchive();
  console.error(`[cluster] project image built and saved in ${Date.now() - at} ms`);
  at = Date.now();
  cluster = await startCluster({ images: [archive] });
  console.error(`[cluster] cluster up (images imported) in ${Date.now() - at} ms`);
  redis = await startRedis({ host: cluster.nodeIP });
  const kc = new KubeConfig();
  kc.loadFromFile(cluster.kubeconfigPath);
  core = kc.makeApiClient(CoreV1Api);
  apps = kc.makeApiClient(AppsV1Api);
});

after(async () => {
  await redis?.stop();
  await cluster?.stop();
  if (hostBefore) {
    // The host as found: the sysctls the kubelet and CNI rewrite, and no kube-proxy chain left.
    const now = hostSnapshot();
    assert.deepEqual([...now.sysctls], [...hostBefore.sysctls], 'sysctls changed by the cluster');
    const kube = (chains: string[]) => chains.filter((c) => c.includes('/KUBE-'));
    assert.deepEqual(kube(now.chains), kube(hostBefore.chains), 'iptables chains left by the cluster');
  }
});

/** Fails with the operator's log attached, so a cluster failure says what the operator saw. */
async function withOperatorLog<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    const logs = await cluster!
      .kubectl(['-n', operatorNs, 'logs', `deployment/${release}`, '--tail=40'])
      .catch((e: Error) => `(no operator log: ${e.message})`);
    throw new Error(`${(err as Error).message}\n--- operator log\n${logs}`, { cause: err });
  }
}

test('kubectl apply -f crds/ and helm install: the operator pod becomes Ready under the chart RBAC, with leader election on', async (t) => {
  if (skipOrFail(t)) return;
  const c = cluster!;
  await c.kubectl(['apply', '--server-side', '-f', join(repoRoot, 'crds')]);
  const [repository, tag] = projectImage.split(':') as [string, string];
  await c.helm([
    'install',
    release,
    join(repoRoot, 'charts', 'celeriac'),
    '--namespace',
    operatorNs,
    '--create-namespace',
    '--set',
    `image.repository=${repository}`,
    '--set',
    `image.tag=${tag}`,
    '--set',
    'image.pullPolicy=Never',
    '--set',
    'operator.leaderElect=true',
  ]);
  await withOperatorLog(() => c.kubectl(['-n', operatorNs, 'rollout', 'status', `deployment/${release}`, '--timeout=180s']));

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
const podBrokerUrl = () => `${redis!.url}?visibility_timeout=10`;
/** Redis as the host reaches it (test clients, the tasks' counters). */
const hostRedisUrl = () => redis!.url.replace(cluster!.nodeIP, '127.0.0.1');
const podsOfPool = async () => (await core.listNamespacedPod({ namespace: ns, labelSelector: `celeriac.io/worker-pool=${pool}` })).items;
const workerPool = async () =>
  JSON.parse(await cluster!.kubectl(['get', 'workerpool', pool, '-n', ns, '-o', 'json'])) as {
    spec: { replicas?: number; autoscaling?: unknown };
    status?: { replicas?: number };
  };

/** The example pool's autoscaling (without its metrics), as the simulator is given it too. */
function autoscaling(min: number) {
  return {
    minReplicas: min,
    maxReplicas,
    pollingIntervalSeconds: 2,
    cooldownPeriodSeconds: 30,
    activationThreshold: 0,
    targetDrainSeconds: 20,
    targetUtilization: 0.8,
    behavior: { scaleDown: { stabilizationWindowSeconds: 10, policies: [{ type: 'Percent' as const, value: 100, periodSeconds: 10 }] } },
  };
}

/** A TaskQueue on Redis whose URL is the `url` key of Secret `secret`. */
function taskQueue(namespace: string, name: string, secret: string, queue: string) {
  return {
    apiVersion: 'celeriac.io/v1alpha1',
    kind: 'TaskQueue',
    metadata: { name, namespace },
    spec: { broker: { type: 'redis', urlSecretRef: { name: secret, key: 'url' } }, queue: { name: queue } },
  };
}

/** The docs/install.md example with this cluster's image, broker and a small scale. */
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
    {
      apiVersion: 'celeriac.io/v1alpha1',
      kind: 'WorkerPool',
      metadata: { name: pool, namespace: ns },
      spec: {
        queues: ['default'],
        template: {
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
        },
        concurrency,
        prefetchMultiplier: 1,
        terminationGracePeriodSeconds: 60,
        autoscaling: { ...autoscaling(minReplicas), metrics: [{ type: 'queueDepth' }, { type: 'inFlight' }] },
      },
    },
  ];
}

function isReady(p: V1Pod): boolean {
  return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/**
 * What `celeriac-operator simulate` predicts for the cluster's burst (10 seeds, means): the same
 * tasks, autoscaling spec, slots and broker, with the model's default pod start (schedule 1 s +
 * boot 5 s, +15 s image pull when the pool had no pod for 10 min) and with the image already on
 * the node, as here (imported, imagePullPolicy Never).
 */
function simulatorPrediction(min: number, sendSeconds: number) {
  const sc: Scenario = {
    id: 'cluster-burst',
    description: 'the cluster tier burst',
    durationSeconds: 400,
    arrivals: [{ type: 'bursts', atSeconds: [60], count: burstSize, withinSeconds: Math.max(0.1, sendSeconds) }],
    // 100-300 ms spread evenly: mean 0.2 s, CV 0.29.
    service: { type: 'lognormal', mean: 0.2, cv: 0.29 },
    minReplicas: min,
    maxReplicas,
    fixedReplicas: min,
    concurrency,
    prefetchMultiplier: 1,
    broker: 'redis',
    terminationGracePeriodSeconds: 60,
  };
  const predict = (overrides: Partial<ModelParams>) => {
    const runs = Array.from(
      { length: 10 },
      (_, i) =>
        new Simulation(sc, generateTasks(sc, i + 1), modelFor(sc, overrides), new CeleriacController(resolvePolicy(autoscaling(min), concurrency)), i + 1).run()
          .metrics,
    );
    const mean = (k: 'waitP95' | 'coldStartWait' | 'backlogDrainSeconds') => Number((runs.reduce((a, m) => a + m[k], 0) / runs.length).toFixed(2));
    return { waitP95Seconds: mean('waitP95'), firstTaskWaitFromZeroSeconds: mean('coldStartWait'), backlogDrainSeconds: mean('backlogDrainSeconds') };
  };
  return { modelDefaults: predict({}), imageOnNode: predict({ coldPullSeconds: 0 }) };
}

/**
 * A burst of acksLate tasks of 100-300 ms, sent from the host by a celeriac client, on the example
 * pool at `min`: every task runs exactly once, the pool scales up and back to `min` through
 * drain-first. Prints the burst's figures beside the simulator's prediction for the same burst.
 */
async function burst(t: TestContext, min: number): Promise<void> {
  const c = cluster!;
  const client = createApp({ name: 'cluster-burst-client', broker: hostRedisUrl() });
  const counter = new Redis(hostRedisUrl());
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
  await counter.del('burst:runs', 'burst:log');
  const burstAt = Date.now();
  try {
    for (let i = 0; i < burstSize; i++) {
      await client.sendTask('burst.work', [`t${i}`, 100 + ((i * 37) % 201), Date.now()], {}, { queue: 'celery' });
    }
    const sendSeconds = (Date.now() - burstAt) / 1000;
    // Every task ran exactly once.
    await withOperatorLog(() =>
      eventually(
        async () => {
          const done = await counter.hlen('burst:runs');
          assert.equal(done, burstSize, `${done} of ${burstSize} tasks ran`);
        },
        { timeoutMs: 600_000, intervalMs: 1000 },
      ),
    );
    const runs = await counter.hgetall('burst:runs');
    const twice = Object.entries(runs).filter(([, n]) => n !== '1');
    assert.deepEqual(twice, [], 'tasks that ran more than once');

    // Back to min through drain-first: the surplus pods go, none is killed mid-task (checked by
    // the counts above and below staying at one run per task).
    await withOperatorLog(() =>
      eventually(
        async () => {
          const pods = await podsOfPool();
          const dep = await apps.readNamespacedDeployment({ name: pool, namespace: ns });
          assert.equal(dep.spec?.replicas, min);
          assert.equal(pods.length, min, `pods left: ${pods.map((p) => p.metadata?.name).join(', ')}`);
        },
        { timeoutMs: 300_000, intervalMs: 1000 },
      ),
    );
    const endAt = Date.now();
    assert.equal(await counter.hlen('burst:runs'), burstSize);
    assert.deepEqual(
      Object.entries(await counter.hgetall('burst:runs')).filter(([, n]) => n !== '1'),
      [],
      'a task ran again during scale-down',
    );

    // Figures of the burst.
    sampling = false;
    await sampler;
    const log = (await counter.lrange('burst:log', 0, -1)).map((l) => JSON.parse(l) as { id: string; pod: string; sentAt: number; startedAt: number });
    const peak = Math.max(...samples.map((s) => s.pods.length));
    assert.ok(peak > min, `the pool never scaled above min (peak ${peak})`);
    const newPods = new Map<string, V1Pod>();
    for (const s of samples) for (const p of s.pods) if (!before.has(p.metadata!.name!)) newPods.set(p.metadata!.name!, p);
    // When each new pod turned Ready, by its condition (1 s resolution), as seen in the samples.
    const readyAt = [...newPods.keys()].flatMap((name) => {
      const seen = samples.flatMap((s) => s.pods).find((q) => q.metadata!.name === name && isReady(q));
      const cond = seen?.status?.conditions?.find((c) => c.type === 'Ready');
      return cond?.lastTransitionTime ? [new Date(cond.lastTransitionTime).getTime()] : [];
    });
    const firstReady = Math.min(...readyAt);
    const firstTaskOnNew = Math.min(...log.filter((l) => newPods.has(l.pod)).map((l) => l.startedAt));
    let replicaSeconds = 0;
    for (let i = 1; i < samples.length; i++) replicaSeconds += (samples[i - 1]!.pods.length * (samples[i]!.at - samples[i - 1]!.at)) / 1000;
    const waits = log.map((l) => (l.startedAt - l.sentAt) / 1000).sort((a, b) => a - b);
    const p95 = waits[Math.floor(waits.length * 0.95)]!;
    const figures = {
      tasks: burstSize,
      taskMs: '100-300',
      concurrencyPerPod: concurrency,
      burstToFirstNewPodReadySeconds: (firstReady - burstAt) / 1000,
      burstToFirstTaskOnNewPodSeconds: (firstTaskOnNew - burstAt) / 1000,
      peakReplicas: peak,
      peakDesiredReplicas: Math.max(...samples.map((s) => s.desired)),
      replicaSeconds: Math.round(replicaSeconds),
      waitP95Seconds: Number(p95.toFixed(2)),
      burstToAllDoneAndBackAtMinSeconds: (endAt - burstAt) / 1000,
      podsThatRanTasks: new Set(log.map((l) => l.pod)).size,
    };
    const predicted = simulatorPrediction(min, sendSeconds);
    for (const line of [`burst figures (min ${min}): ${JSON.stringify(figures)}`, `simulator, same burst and autoscaling: ${JSON.stringify(predicted)}`]) {
      t.diagnostic(line);
      console.error(`[cluster] ${line}`);
    }
    assert.ok(figures.podsThatRanTasks > min, 'tasks ran on the new pods too');
    // The surplus pods went through drain-first: drained, then removed by the autoscaler.
    const operatorLog = await c.kubectl(['-n', operatorNs, 'logs', `deployment/${release}`, `--since-time=${new Date(burstAt).toISOString()}`]);
    assert.match(operatorLog, /drained pods removed/, 'the scale-down did not go through drain-first');
  } finally {
    sampling = false;
    await sampler.catch((err: unknown) => console.error('[cluster] the pod sampler failed', err));
    await client.close();
    counter.disconnect();
  }
}

test('the docs example serves a burst: scale up from min, every task exactly once, drain back to min', async (t) => {
  if (skipOrFail(t)) return;
  const c = cluster!;
  await c.kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: exampleObjects(podBrokerUrl()) }));

  // The pool comes up at min and its printer columns and Events show, as `kubectl get/describe` do.
  await withOperatorLog(() =>
    eventually(
      async () => {
        const pods = await podsOfPool();
        assert.equal(pods.filter(isReady).length, minReplicas, `Ready worker pods: ${pods.map((p) => `${p.metadata?.name} ${p.status?.phase}`).join(', ')}`);
      },
      { timeoutMs: 180_000, intervalMs: 1000 },
    ),
  );
  const table = await c.kubectl(['get', 'taskqueues,workerpools', '-n', ns]);
  assert.match(table, /READY/i, table);
  assert.match(table, new RegExp(pool), table);
  const described = await c.kubectl(['describe', 'workerpool', pool, '-n', ns]);
  assert.match(described, /Events:/, described);

  await burst(t, minReplicas);
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

test('kubectl delete pod while its acksLate tasks run: they finish there (warm shutdown), nothing runs twice or is lost', async (t) => {
  if (skipOrFail(t)) return;
  const r = await slowTasksThrough(24, 3000, (victim) => cluster!.kubectl(['-n', ns, 'delete', 'pod', victim, '--wait=false']).then(() => undefined));
  finishedWhereStarted(r);
  await waitPodGone(r.victim);
});

test('a rolling update of the WorkerPool (new env) while acksLate tasks run: the old pods finish theirs, nothing runs twice or is lost', async (t) => {
  if (skipOrFail(t)) return;
  const c = cluster!;
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
  const c = cluster!;
  // Autoscaling off: replicas by hand from here on.
  await c.kubectl(['-n', ns, 'patch', 'workerpool', pool, '--type=merge', '-p', JSON.stringify({ spec: { autoscaling: null, replicas: 1 } })]);
  await c.kubectl(['-n', ns, 'scale', 'workerpool', pool, '--replicas=3']);
  assert.equal((await workerPool()).spec.replicas, 3, 'kubectl scale wrote spec.replicas');
  await withOperatorLog(() =>
    eventually(
      async () => {
        const pods = await podsOfPool();
        assert.equal(pods.filter(isReady).length, 3, `Ready pods: ${pods.map((p) => p.metadata?.name).join(', ')}`);
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
  const c = cluster!;
  await c.kubectl(['-n', ns, 'scale', 'workerpool', pool, '--replicas=2']);
  await eventually(async () => assert.equal((await podsOfPool()).filter(isReady).length, 2), { timeoutMs: 180_000, intervalMs: 1000 });
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
    const startedOn = async (key: string) => (await counter.lrange(key, 0, -1)).map((l) => JSON.parse(l) as { id: string; pod: string });
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
    // What ran on the victim so far (some may finish before the kill lands: checked below).
    const killedEarly = (await startedOn('early:started')).filter((s) => s.pod === victim).map((s) => s.id);
    const pod = await core.readNamespacedPod({ name: victim, namespace: ns });
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
    // Exactly the ones the kill cut off: started on the victim before the kill, never finished
    // (the restarted container runs others under the same pod name). Their ids are e<i>, sent i-th.
    const finished = new Set((await startedOn('early:finished')).map((f) => f.id));
    const cutByKill = killedEarly.filter((e) => !finished.has(e));
    assert.ok(cutByKill.length > 0, 'the kill cut off no early-acked task');
    assert.deepEqual(
      cutOff.sort(),
      cutByKill.map((e) => earlyIds[Number(e.slice(1))]!).sort(),
      'the early-acked tasks stored as lost are those the kill cut off',
    );
    // The container came back in the same pod.
    const after = await core.readNamespacedPod({ name: victim, namespace: ns });
    assert.ok((after.status!.containerStatuses!.find((s) => s.name === 'worker')!.restartCount ?? 0) >= 1, 'the worker container restarted');
  } finally {
    await client.close();
    counter.disconnect();
  }
});

test('minReplicas 0: the pool drains to zero, a burst scales it from zero, and it drains back to zero (drain-first)', async (t) => {
  if (skipOrFail(t)) return;
  const c = cluster!;
  // Autoscaling back on, from zero.
  const patch = { spec: { replicas: null, autoscaling: { ...autoscaling(0), metrics: [{ type: 'queueDepth' }, { type: 'inFlight' }] } } };
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
  await burst(t, 0);
});

test('deleting the leading operator pod mid-scale (2 replicas, leader election): the other takes over, no flapping, no stranded drain', async (t) => {
  if (skipOrFail(t)) return;
  const c = cluster!;
  const kc = new KubeConfig();
  kc.loadFromFile(c.kubeconfigPath);
  const coordination = kc.makeApiClient(CoordinationV1Api);
  await c.helm(['upgrade', release, join(repoRoot, 'charts', 'celeriac'), '--namespace', operatorNs, '--reuse-values', '--set', 'replicaCount=2']);
  await withOperatorLog(() => c.kubectl(['-n', operatorNs, 'rollout', 'status', `deployment/${release}`, '--timeout=180s']));
  const operatorPods = async () => (await core.listNamespacedPod({ namespace: operatorNs, labelSelector: 'app.kubernetes.io/name=celeriac' })).items;
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
      assert.equal(pods.filter(isReady).length, 2, 'two operator pods Ready');
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
      desired.push((await apps.readNamespacedDeployment({ name: pool, namespace: ns })).spec?.replicas ?? 0);
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
  const c = cluster!;
  const bad = 'bad-input';
  // A Redis user whose password the Secret gets wrong: the broker refuses the login.
  const admin = new Redis(hostRedisUrl());
  await admin.call('ACL', 'SETUSER', 'shop', 'on', '>right-password', '~*', '&*', '+@all');
  admin.disconnect();
  const refusedUrl = redis!.url.replace('redis://', 'redis://shop:wrong-password@');
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
  const operatorPods = (await core.listNamespacedPod({ namespace: operatorNs, labelSelector: 'app.kubernetes.io/name=celeriac' })).items;
  for (const p of operatorPods) assert.equal(p.status?.containerStatuses?.[0]?.restartCount ?? 0, 0, `${p.metadata?.name} restarted`);
  // The namespace stays until the cluster stops: deleting it here makes the operator's Events
  // there 403 (the namespace is terminating), which the RBAC check would count against the chart.
});

test('Prometheus on the host discovers the pods by Kubernetes service discovery and their scrape annotations, scrapes workers and operator, and a WorkerPool scales on a query over those metrics', async (t) => {
  if (skipOrFail(t)) return;
  const c = cluster!;
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
        template: {
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
        },
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
          const pods = await core.listNamespacedPod({ namespace: ns, labelSelector: `celeriac.io/worker-pool=${promPool}` });
          assert.equal(pods.items.filter(isReady).length, 3, `${promPool} Ready pods`);
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
  const c = cluster!;
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
