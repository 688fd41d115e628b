// Every rendering of the chart's value matrix sent to a real kube-apiserver (envtest) with
// server-side dry-run, so Kubernetes itself validates the objects (built-in kinds, the celeriac
// CRDs from the chart's crds/ folder, and the Prometheus operator's kinds from a minimal CRD);
// then a real `helm install` against it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { envtestSkipReason, startControlPlane, type ControlPlane } from '../support/envtest.js';
import {
  chartCases,
  chartDir,
  expectOk,
  helmBinary,
  kubeVersion,
  monitoringCrdsYaml,
  parseManifests,
  renderChart,
  repoRoot,
  run,
  type KubeManifest,
} from '../support/package-tools.js';

const helm = helmBinary();
const skip = envtestSkipReason() || (helm ? false : 'helm is not built (CELERIAC_K8S_BIN_DIR has no helm)');
let cp: ControlPlane;

before(async () => {
  if (skip) return;
  cp = await startControlPlane({ crdDir: join(chartDir, 'crds') });
  const dir = await mkdtemp(join(tmpdir(), 'celeriac-monitoring-'));
  await writeFile(join(dir, 'monitoring.yaml'), monitoringCrdsYaml);
  await cp.applyFiles([join(dir, 'monitoring.yaml')]);
});
after(async () => cp?.stop());

/**
 * Server-side dry-run apply of every object; returns the API server's refusals by object. Apply
 * is strict: a field a schema does not declare is refused, not pruned.
 */
async function dryRun(objs: KubeManifest[]): Promise<string[]> {
  const refusals: string[] = [];
  for (const obj of objs) {
    // A freshly established CRD can take a moment to be served: discovery is retried.
    const rt = await retry(() => cp.resourceFor(obj.apiVersion, obj.kind));
    try {
      await cp.kube.apply(rt, obj as never, { dryRun: true, fieldManager: 'helm-chart-test' });
    } catch (err) {
      refusals.push(`${obj.kind} ${obj.metadata.name}: ${(err as Error).message}`);
    }
  }
  return refusals;
}

async function retry<T>(f: () => Promise<T>, attempts = 50): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await f();
    } catch (err) {
      if (i >= attempts) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

for (const c of chartCases) {
  test(`the API server accepts every object of rendering "${c.name}" (server-side dry-run)`, { skip }, async () => {
    const namespace = await cp.createNamespace('celeriac-system');
    const values = structuredClone(c.values) as { watch?: { namespace?: string } };
    if (values.watch?.namespace) values.watch.namespace = await cp.createNamespace('celeriac-apps');
    const objs = await renderChart(helm!, values, { namespace, release: `r-${c.name}` });
    assert.ok(objs.length >= 5, `only ${objs.length} objects rendered`);
    assert.deepEqual(await dryRun(objs), []);
  });
}

test('a value the CRD forbids is refused by the API server with its message', { skip }, async () => {
  const namespace = await cp.createNamespace('celeriac-system');
  const objs = await renderChart(
    helm!,
    {
      examples: { enabled: true, workerPool: { template: { image: 'x', tasksModule: '/app/tasks/t.js' }, autoscaling: { minReplicas: 5, maxReplicas: 2 } } },
    },
    { namespace, release: 'bad' },
  );
  const refusals = await dryRun(objs);
  assert.equal(refusals.length, 1, refusals.join('\n'));
  assert.match(refusals[0]!, /^WorkerPool bad-celeriac-example: .*minReplicas/);
});

test('a misspelt field in an example is refused by the API server', { skip }, async () => {
  const namespace = await cp.createNamespace('celeriac-system');
  const objs = await renderChart(
    helm!,
    {
      examples: { enabled: true, workerPool: { template: { image: 'x', tasksModule: '/app/tasks/t.js' }, concurency: 4 } },
    },
    { namespace, release: 'typo' },
  );
  const refusals = await dryRun(objs);
  assert.equal(refusals.length, 1, refusals.join('\n'));
  assert.match(refusals[0]!, /^WorkerPool typo-celeriac-example: .*\.spec\.concurency: field not declared in schema/);
});

test('the TaskQueue, WorkerPool and TaskSchedule examples of docs/install.md are accepted by the API server', { skip }, async () => {
  const namespace = await cp.createNamespace('shop');
  const doc = await readFile(join(repoRoot, 'docs', 'install.md'), 'utf8');
  const objs = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)]
    .flatMap((m) => parseManifests(m[1]!))
    .filter((o) => o.apiVersion && o.kind)
    .map((o) => ({ ...o, metadata: { ...o.metadata, namespace } }));
  assert.deepEqual(
    objs.map((o) => o.kind),
    ['Secret', 'TaskQueue', 'WorkerPool', 'TaskSchedule'],
  );
  assert.deepEqual(await dryRun(objs), []);
});

test('helm install into the API server creates the release objects', { skip }, async () => {
  const namespace = await cp.createNamespace('celeriac-system');
  const r = expectOk(
    await run(helm!, [
      'install',
      'celeriac',
      chartDir,
      '--namespace',
      namespace,
      '--kubeconfig',
      cp.kubeconfigPath,
      '--set',
      'replicaCount=2',
      '--set',
      'examples.enabled=true',
    ]),
    'helm install',
  );
  assert.match(r.stdout, /STATUS: deployed/);
  assert.match(r.stdout, /Leader election is on/, 'NOTES.txt is printed');
  for (const [apiVersion, kind, name] of [
    ['apps/v1', 'Deployment', 'celeriac'],
    ['v1', 'ServiceAccount', 'celeriac'],
    ['v1', 'Service', 'celeriac-metrics'],
    ['rbac.authorization.k8s.io/v1', 'Role', 'celeriac-leader-election'],
    ['celeriac.io/v1alpha1', 'WorkerPool', 'celeriac-example'],
  ] as const) {
    const rt = await cp.resourceFor(apiVersion, kind);
    assert.ok(await cp.kube.get(rt, namespace, name), `${kind} ${name} was not created`);
  }
  const clusterRole = await cp.kube.get(await cp.resourceFor('rbac.authorization.k8s.io/v1', 'ClusterRole'), undefined, 'celeriac');
  assert.ok(clusterRole, 'ClusterRole celeriac was not created');
});
