// The whole product on a real single-node cluster, as a user runs it (issue 15, points 1-3):
// `kubectl apply -f crds/`, `helm install` of charts/celeriac with the project's image, the
// docs/install.md example (TaskQueue + autoscaled WorkerPool with the tasks module mounted from a
// ConfigMap) against Redis on the host, then a burst of acksLate tasks: the pool scales up from
// min, every task runs exactly once (counted by the tasks themselves) and the pool drains back to
// min. The burst's figures (time to the first new pod Ready and to its first task, peak replicas,
// replica-seconds, wait p95) are printed as test diagnostics.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoordinationV1Api, KubeConfig } from '@kubernetes/client-node';
import { Redis } from 'ioredis';
import { createApp } from '../../runtime/src/index.js';
import {
  burstAutoscaling,
  burstFigures,
  isPodReady as isReady,
  listPoolPods,
  operatorRelease,
  useProductCluster,
  waitPoolSize,
  watchPool,
  type BurstRun,
} from '../support/cluster.js';
import { eventually } from '../support/eventually.js';
import { repoRoot } from '../support/processes.js';
import { projectImage, projectImageArchive } from '../support/project-image.js';

const { name: release, namespace: operatorNs } = operatorRelease;
const ns = 'shop';
const pool = 'shop-workers';
const minReplicas = 1;
const maxReplicas = 6;
const concurrency = 4;
const burstSize = 1500;

const product = useProductCluster(async () => [await projectImageArchive()]);
const skipOrFail = product.skipOrFail;

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
    {
      apiVersion: 'celeriac.io/v1alpha1',
      kind: 'TaskQueue',
      metadata: { name: 'default', namespace: ns },
      spec: { broker: { type: 'redis', urlSecretRef: { name: 'redis-broker', key: 'url' } }, queue: { name: 'celery' } },
    },
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
        autoscaling: burstAutoscaling(minReplicas, maxReplicas),
      },
    },
  ];
}

test('the docs example serves a burst: scale up from min, every task exactly once, drain back to min', async (t) => {
  if (skipOrFail(t)) return;
  const { cluster: c, core, withOperatorLog } = product.get();
  const brokerUrl = product.get().redis.url;
  await c.kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: exampleObjects(brokerUrl) }));

  // The pool comes up at min and its printer columns and Events show, as `kubectl get/describe` do.
  const podsOfPool = () => listPoolPods(core, ns, pool);
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

  // The burst: acksLate tasks of 100-300 ms, sent from the host by a celeriac client.
  const client = createApp({ name: 'cluster-burst-client', broker: brokerUrl.replace(c.nodeIP, '127.0.0.1') });
  const counter = new Redis(brokerUrl.replace(c.nodeIP, '127.0.0.1'));
  const watch = watchPool(product.get(), ns, pool);
  const before = new Set((await podsOfPool()).map((p) => p.metadata!.name!));
  const burstAt = Date.now();
  try {
    for (let i = 0; i < burstSize; i++) {
      await client.sendTask('burst.work', [`t${i}`, 100 + ((i * 37) % 201), Date.now()], {}, { queue: 'celery' });
    }
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
    await waitPoolSize(product.get(), ns, pool, minReplicas);
    const endAt = Date.now();
    assert.equal(await counter.hlen('burst:runs'), burstSize);
    assert.deepEqual(
      Object.entries(await counter.hgetall('burst:runs')).filter(([, n]) => n !== '1'),
      [],
      'a task ran again during scale-down',
    );

    // Figures of the burst.
    await watch.stop();
    const log = (await counter.lrange('burst:log', 0, -1)).map((l) => JSON.parse(l) as BurstRun);
    const figures = {
      tasks: burstSize,
      taskMs: '100-300',
      concurrencyPerPod: concurrency,
      ...burstFigures({ samples: watch.samples, podsBefore: before, runs: log, burstAt, endAt }),
    };
    assert.ok(figures.peakReplicas > minReplicas, `the pool never scaled above min (peak ${figures.peakReplicas})`);
    t.diagnostic(`burst figures: ${JSON.stringify(figures)}`);
    console.error(`[cluster] burst figures: ${JSON.stringify(figures)}`);
    assert.ok(figures.podsThatRanTasks > minReplicas, 'tasks ran on the new pods too');
    // The surplus pods went through drain-first: drained, then removed by the autoscaler.
    const operatorLog = await c.kubectl(['-n', operatorNs, 'logs', `deployment/${release}`]);
    assert.match(operatorLog, /drained pods removed/, 'the scale-down did not go through drain-first');
  } finally {
    await watch.stop().catch((err: unknown) => console.error('[cluster] the pod sampler failed', err));
    await client.close();
    counter.disconnect();
  }
});

test('kubectl delete pod while its acksLate tasks run: they finish there (warm shutdown), nothing runs twice or is lost', async (t) => {
  if (skipOrFail(t)) return;
  const { cluster: c, core, withOperatorLog, hostRedisUrl: brokerUrl } = product.get();
  const client = createApp({ name: 'cluster-delete-client', broker: brokerUrl });
  const counter = new Redis(brokerUrl);
  const count = 24;
  try {
    for (let i = 0; i < count; i++) await client.sendTask('burst.slow', [`s${i}`, 3000], {}, { queue: 'celery' });
    const started = async () => (await counter.lrange('slow:started', 0, -1)).map((l) => JSON.parse(l) as { id: string; pod: string });
    const victim = await eventually(
      async () => {
        const s = await started();
        assert.ok(s.length > 0, 'no slow task started yet');
        return s[0]!.pod;
      },
      { timeoutMs: 120_000, intervalMs: 200 },
    );
    await c.kubectl(['-n', ns, 'delete', 'pod', victim, '--wait=false']);
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
    // What ran on the deleted pod finished on it: the worker shut down warmly within the grace period.
    const finished = (await counter.lrange('slow:finished', 0, -1)).map((l) => JSON.parse(l) as { id: string; pod: string });
    const startedOnVictim = (await started()).filter((s) => s.pod === victim).map((s) => s.id);
    assert.ok(startedOnVictim.length > 0);
    for (const id of startedOnVictim) assert.equal(finished.find((f) => f.id === id)?.pod, victim, `${id} did not finish on ${victim}`);
    await eventually(
      async () => {
        const pods = await core.listNamespacedPod({ namespace: ns, labelSelector: `celeriac.io/worker-pool=${pool}` });
        assert.ok(!pods.items.some((p) => p.metadata?.name === victim), `${victim} still exists`);
      },
      { timeoutMs: 120_000, intervalMs: 1000 },
    );
  } finally {
    await client.close();
    counter.disconnect();
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
    .filter((e) => e.stage === 'ResponseComplete' && e.user.username === sa && e.objectRef?.resource);
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
});
