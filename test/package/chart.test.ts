// The Helm chart rendered over a matrix of values: lint, the objects' security settings, the
// RBAC rules (exactly the operator's list), leader election, monitoring objects, and
// values.schema.json refusing bad values with messages that name the value.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  chartCases,
  chartDir,
  expectOk,
  helmBinary,
  kubeVersion,
  renderChart,
  run,
  skipOrFail,
  valuesFile,
  type KubeManifest,
} from '../support/package-tools.js';

/** The operator's permissions: "group/resource verb" (the cluster tier checks them against the audit log). */
const expectedPermissions: readonly string[] = [
  ...perms('celeriac.io', ['taskqueues', 'workerpools'], ['get', 'list', 'watch', 'update', 'patch']),
  ...perms('celeriac.io', ['taskqueues/status', 'workerpools/status'], ['patch']),
  ...perms('celeriac.io', ['taskschedules'], ['get', 'list', 'watch']),
  ...perms('celeriac.io', ['taskschedules/status'], ['patch']),
  ...perms('celeriac.io', ['taskqueues/finalizers', 'workerpools/finalizers'], ['update']),
  ...perms('apps', ['deployments'], ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete']),
  ...perms('policy', ['poddisruptionbudgets'], ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete']),
  ...perms('', ['secrets'], ['get']),
  ...perms('', ['pods'], ['get', 'list', 'watch', 'patch']),
  ...perms('', ['events'], ['create', 'patch']),
].sort();
const leasePermissions = perms('coordination.k8s.io', ['leases'], ['get', 'create', 'update']).sort();

function perms(group: string, resources: string[], verbs: string[]): string[] {
  return resources.flatMap((r) => verbs.map((v) => `${group}/${r} ${v}`));
}

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}

function permissionsOf(role: KubeManifest): string[] {
  const rules = (role.rules ?? []) as Rule[];
  for (const r of rules) {
    for (const field of [r.apiGroups, r.resources, r.verbs]) {
      assert.ok(!field.includes('*'), `${role.kind} ${role.metadata.name} uses a wildcard: ${JSON.stringify(r)}`);
    }
  }
  return rules.flatMap((r) => r.apiGroups.flatMap((g) => perms(g, r.resources, r.verbs))).sort();
}

function only(objs: KubeManifest[], kind: string, match: (o: KubeManifest) => boolean = () => true): KubeManifest {
  const found = objs.filter((o) => o.kind === kind && match(o));
  assert.equal(found.length, 1, `expected one ${kind}, found ${found.map((o) => o.metadata.name).join(', ') || 'none'}`);
  return found[0]!;
}

interface Container {
  name: string;
  args?: string[];
  command?: string[];
  ports?: { name: string; containerPort: number }[];
  securityContext?: Record<string, unknown>;
  resources?: { requests?: Record<string, unknown>; limits?: Record<string, unknown> };
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  env?: { name: string }[];
}
interface PodSpec {
  serviceAccountName: string;
  enableServiceLinks?: boolean;
  securityContext?: Record<string, unknown>;
  containers: Container[];
}

function deploymentParts(objs: KubeManifest[]) {
  const deployment = only(objs, 'Deployment');
  const spec = deployment.spec as { replicas: number; template: { metadata: { labels: Record<string, string> }; spec: PodSpec } };
  const container = spec.template.spec.containers[0];
  assert.ok(container, 'the operator Deployment has no container');
  return { deployment, spec, pod: spec.template.spec, container };
}

const helm = helmBinary();

test('the chart crds/ folder holds only the CRDs; templates render none', async (t) => {
  if (!helm) return skipOrFail(t, 'helm is not built (CELERIAC_K8S_BIN_DIR unset or without helm)');
  const objs = await renderChart(helm, {});
  assert.deepEqual(
    objs.filter((o) => o.kind === 'CustomResourceDefinition'),
    [],
  );
  const crdFiles = (await readdir(join(chartDir, 'crds'))).sort();
  assert.deepEqual(crdFiles, ['celeriac.io_taskqueues.yaml', 'celeriac.io_taskschedules.yaml', 'celeriac.io_workerpools.yaml']);
});

for (const c of chartCases) {
  test(`helm lint --strict passes with values "${c.name}"`, async (t) => {
    if (!helm) return skipOrFail(t, 'helm is not built');
    expectOk(await run(helm, ['lint', '--strict', chartDir, '--kube-version', kubeVersion, '-f', await valuesFile(c.values)]), 'helm lint');
  });

  test(`rendering "${c.name}": hardened pod, probes, resources, args for tini`, async (t) => {
    if (!helm) return skipOrFail(t, 'helm is not built');
    const objs = await renderChart(helm, c.values);
    const { pod, container } = deploymentParts(objs);
    assert.equal(pod.securityContext?.runAsNonRoot, true);
    assert.deepEqual(pod.securityContext?.seccompProfile, { type: 'RuntimeDefault' });
    assert.equal(pod.enableServiceLinks, false, 'the metrics Service would set CELERIAC_METRICS_PORT=tcp://… in the env');
    assert.equal(container.securityContext?.readOnlyRootFilesystem, true);
    assert.equal(container.securityContext?.allowPrivilegeEscalation, false);
    assert.equal(container.securityContext?.runAsNonRoot, true);
    assert.deepEqual(container.securityContext?.capabilities, { drop: ['ALL'] });
    assert.ok(container.resources?.requests?.cpu && container.resources.requests.memory, 'requests set');
    assert.ok(container.resources?.limits?.memory, 'memory limit set');
    assert.equal(container.livenessProbe?.httpGet?.path, '/healthz');
    assert.equal(container.readinessProbe?.httpGet?.path, '/readyz');
    const portNames = (container.ports ?? []).map((p) => p.name);
    assert.ok(portNames.includes(String(container.livenessProbe?.httpGet?.port)), 'liveness probe port is declared');
    assert.ok(portNames.includes(String(container.readinessProbe?.httpGet?.port)), 'readiness probe port is declared');
    // `command` would replace the image's ENTRYPOINT (tini) and SIGTERM would no longer reach node.
    assert.equal(container.command, undefined);
    assert.equal(container.args?.[0], 'celeriac-operator');
    assert.ok(container.args?.includes('--metrics-port=8080'), `args: ${container.args?.join(' ')}`);
    assert.ok(
      container.env?.some((e) => e.name === 'POD_NAMESPACE'),
      'POD_NAMESPACE for the Lease',
    );
    const sa = only(objs, 'ServiceAccount');
    assert.equal(pod.serviceAccountName, sa.metadata.name);
  });

  test(`rendering "${c.name}": RBAC grants exactly the operator's list`, async (t) => {
    if (!helm) return skipOrFail(t, 'helm is not built');
    const objs = await renderChart(helm, c.values);
    const { spec, container } = deploymentParts(objs);
    const namespaced = (c.values as { watch?: { scope?: string } }).watch?.scope === 'namespaced';
    const leaderElect = spec.replicas > 1;
    const sa = only(objs, 'ServiceAccount');
    const main = namespaced ? only(objs, 'Role', (r) => !r.metadata.name.endsWith('-leader-election')) : only(objs, 'ClusterRole');
    assert.deepEqual(permissionsOf(main), expectedPermissions);
    if (namespaced) {
      assert.equal(main.metadata.namespace, 'celeriac-apps');
      assert.deepEqual(
        objs.filter((o) => o.kind.startsWith('Cluster')),
        [],
        'namespaced mode creates no cluster objects',
      );
      assert.ok(container.args?.includes('--namespace=celeriac-apps'));
    } else {
      assert.ok(!container.args?.some((a) => a.startsWith('--namespace')));
    }
    const binding = only(objs, namespaced ? 'RoleBinding' : 'ClusterRoleBinding', (b) => !b.metadata.name.endsWith('-leader-election'));
    assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: main.kind, name: main.metadata.name });
    assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: 'celeriac-system' }]);

    // Leader election: the flag and the Lease Role exist together, only with more than one replica.
    assert.equal(container.args?.includes('--leader-elect'), leaderElect);
    const leaseRoles = objs.filter((o) => o.kind === 'Role' && o.metadata.name.endsWith('-leader-election'));
    assert.equal(leaseRoles.length, leaderElect ? 1 : 0);
    if (leaderElect) {
      assert.deepEqual(permissionsOf(leaseRoles[0]!), leasePermissions);
      assert.equal(leaseRoles[0]!.metadata.namespace, 'celeriac-system');
    }
  });
}

test('HA: replicaCount 2 turns leader election on; operator.leaderElect forces it either way', async (t) => {
  if (!helm) return skipOrFail(t, 'helm is not built');
  const args = async (values: object) => deploymentParts(await renderChart(helm, values)).container.args ?? [];
  assert.ok((await args({ replicaCount: 2 })).includes('--leader-elect'));
  assert.ok(!(await args({ replicaCount: 1 })).includes('--leader-elect'));
  assert.ok((await args({ replicaCount: 1, operator: { leaderElect: true } })).includes('--leader-elect'));
  assert.ok(!(await args({ replicaCount: 3, operator: { leaderElect: false } })).includes('--leader-elect'));
});

test('metrics: the Service, ServiceMonitor and PodMonitor select what they should', async (t) => {
  if (!helm) return skipOrFail(t, 'helm is not built');
  const objs = await renderChart(helm, chartCases.find((c) => c.name === 'metrics')!.values);
  const { spec } = deploymentParts(objs);
  const podLabels = spec.template.metadata.labels;
  const service = only(objs, 'Service');
  const svc = service.spec as { selector: Record<string, string>; ports: { name: string; targetPort: string }[] };
  for (const [k, v] of Object.entries(svc.selector)) assert.equal(podLabels[k], v, `Service selector ${k}`);
  assert.deepEqual(
    svc.ports.map((p) => [p.name, p.targetPort]),
    [['metrics', 'metrics']],
  );

  const sm = only(objs, 'ServiceMonitor');
  assert.equal(sm.metadata.labels?.release, 'prometheus');
  const smSpec = sm.spec as { selector: { matchLabels: Record<string, string> }; endpoints: { port: string; path: string }[] };
  for (const [k, v] of Object.entries(smSpec.selector.matchLabels)) assert.equal(service.metadata.labels?.[k], v);
  assert.deepEqual(
    smSpec.endpoints.map((e) => [e.port, e.path]),
    [['metrics', '/metrics']],
  );
  // The operator's series carry the pool's namespace; the target's must not rename it.
  assert.equal((smSpec.endpoints[0] as { honorLabels?: boolean }).honorLabels, true);

  const pm = only(objs, 'PodMonitor');
  const pmSpec = pm.spec as { selector: unknown; namespaceSelector: unknown; podMetricsEndpoints: { port: string; path: string }[] };
  assert.deepEqual(pmSpec.selector, { matchExpressions: [{ key: 'celeriac.io/worker-pool', operator: 'Exists' }] });
  assert.deepEqual(pmSpec.namespaceSelector, { any: true });
  assert.deepEqual(
    pmSpec.podMetricsEndpoints.map((e) => [e.port, e.path]),
    [['metrics', '/metrics']],
  );

  const plain = await renderChart(helm, {});
  assert.deepEqual(
    plain.filter((o) => o.kind === 'ServiceMonitor' || o.kind === 'PodMonitor'),
    [],
  );
});

test("grafana: the dashboard ConfigMap carries the sidecar's label and the dashboard file", async (t) => {
  if (!helm) return skipOrFail(t, 'helm is not built');
  const file = JSON.parse(await readFile(join(chartDir, 'dashboards', 'celeriac.json'), 'utf8')) as unknown;
  const dashboard = (objs: KubeManifest[]) => only(objs, 'ConfigMap', (o) => o.metadata.name.endsWith('-dashboard'));
  const on = dashboard(await renderChart(helm, { grafana: { dashboard: { enabled: true } } }));
  assert.equal(on.metadata.labels?.grafana_dashboard, '1');
  assert.equal(on.metadata.namespace, 'celeriac-system');
  assert.deepEqual(JSON.parse((on.data as Record<string, string>)['celeriac.json']!), file);

  const custom = dashboard(
    await renderChart(helm, {
      grafana: { dashboard: { enabled: true, label: 'dash', labelValue: 'yes', namespace: 'monitoring', annotations: { grafana_folder: 'celeriac' } } },
    }),
  );
  assert.equal(custom.metadata.labels?.dash, 'yes');
  assert.equal(custom.metadata.namespace, 'monitoring');
  assert.equal((custom.metadata.annotations as Record<string, string> | undefined)?.grafana_folder, 'celeriac');

  assert.deepEqual(
    (await renderChart(helm, {})).filter((o) => o.kind === 'ConfigMap'),
    [],
  );
});

test('examples: a TaskQueue and a WorkerPool that serves it', async (t) => {
  if (!helm) return skipOrFail(t, 'helm is not built');
  const objs = await renderChart(helm, { examples: { enabled: true } });
  const tq = only(objs, 'TaskQueue');
  const wp = only(objs, 'WorkerPool');
  assert.deepEqual((wp.spec as { queues: string[] }).queues, [tq.metadata.name]);
  assert.equal((await renderChart(helm, {})).filter((o) => o.apiVersion.startsWith('celeriac.io/')).length, 0);
});

for (const bad of [
  { values: { replicaCount: 'two' }, message: "at '/replicaCount': got string, want integer" },
  { values: { replicas: 2 }, message: "additional properties 'replicas' not allowed" },
  { values: { watch: { scope: 'everywhere' } }, message: "at '/watch/scope': value must be one of 'cluster', 'namespaced'" },
  { values: { image: { pullPolicy: 'Sometimes' } }, message: "at '/image/pullPolicy': value must be one of" },
  { values: { metrics: { serviceMonitor: { interval: 'often' } } }, message: "at '/metrics/serviceMonitor/interval': 'often' does not match pattern" },
  { values: { operator: { metricsPort: 70000 } }, message: "at '/operator/metricsPort': maximum" },
]) {
  test(`values.schema.json refuses ${JSON.stringify(bad.values)} with a message naming the value`, async (t) => {
    if (!helm) return skipOrFail(t, 'helm is not built');
    const r = await run(helm, ['template', 'x', chartDir, '--kube-version', kubeVersion, '-f', await valuesFile(bad.values)]);
    assert.notEqual(r.code, 0, 'helm accepted a bad value');
    assert.match(r.stderr, /values don't meet the specifications of the schema/);
    assert.ok(r.stderr.includes(bad.message), `expected "${bad.message}" in:\n${r.stderr}`);
  });
}

test('a ServiceMonitor without the metrics Service fails with a message saying why', async (t) => {
  if (!helm) return skipOrFail(t, 'helm is not built');
  const r = await run(helm, [
    'template',
    'x',
    chartDir,
    '--kube-version',
    kubeVersion,
    '-f',
    await valuesFile({
      metrics: { service: { enabled: false }, serviceMonitor: { enabled: true } },
    }),
  ]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /metrics\.serviceMonitor\.enabled needs metrics\.service\.enabled/);
});
