// The chart's RBAC, exercised: the real operator process runs against envtest as the chart's
// ServiceAccount (a TokenRequest token, as in a pod), with the arguments of the Deployment the
// chart rendered, and reconciles a WorkerPool into a Deployment. Then one verb is taken out of
// the ClusterRole and the same operator fails to create the next pool's Deployment: the RBAC is
// both sufficient and used.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { resources } from '../../operator/src/k8s/kube-client.js';
import type { KubeObject } from '../../operator/src/types.js';
import { envtestSkipReason, freePort, startControlPlane, type ControlPlane } from '../support/envtest.js';
import { eventually } from '../support/eventually.js';
import { chartDir, expectOk, helmBinary, repoRoot, run } from '../support/package-tools.js';

type Obj = KubeObject & { spec?: any; status?: any; rules?: any[] };

const helm = helmBinary();
const skip = envtestSkipReason() || (helm ? false : 'helm is not built (CELERIAC_K8S_BIN_DIR has no helm)');

/** The operator as its pod would run it: the Deployment's args, the ServiceAccount's token. */
class OperatorProcess {
  readonly output: string[] = [];
  private child: ChildProcess | null = null;
  metricsUrl = '';

  constructor(
    private readonly args: string[],
    private readonly env: Record<string, string>,
  ) {}

  async start(): Promise<void> {
    const port = await freePort();
    this.metricsUrl = `http://127.0.0.1:${port}/metrics`;
    const args = this.args.map((a) => (a.startsWith('--metrics-port=') ? `--metrics-port=${port}` : a));
    this.child = spawn(process.execPath, [join(repoRoot, 'dist', 'operator', 'src', 'main.js'), ...args], {
      env: { ...process.env, ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    for (const s of [this.child.stdout!, this.child.stderr!]) s.on('data', (d: Buffer) => this.output.push(d.toString()));
  }

  /** The operator's log so far, for assertions and failure messages. */
  log(): string {
    return this.output.join('');
  }

  async metric(name: string, labels: Record<string, string>): Promise<number> {
    const text = await (await fetch(this.metricsUrl)).text();
    const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
    const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && want.every((w) => l.includes(w)));
    return line ? Number(line.split(' ').at(-1)) : 0;
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
}

/** Installs the chart and returns how its Deployment runs the operator, with a token of its ServiceAccount. */
async function installChart(cp: ControlPlane, release: string, namespace: string, set: string[]): Promise<{ args: string[]; env: Record<string, string> }> {
  expectOk(
    await run(helm!, ['install', release, chartDir, '--namespace', namespace, '--kubeconfig', cp.kubeconfigPath, ...set.flatMap((s) => ['--set', s])]),
    'helm install',
  );
  const { items } = await cp.kube.list<Obj>(resources.deployments, { namespace, labelSelector: `app.kubernetes.io/instance=${release}` });
  assert.equal(items.length, 1, 'the chart renders one Deployment');
  const pod = items[0]!.spec.template.spec;
  const container = pod.containers[0];
  assert.equal(container.args[0], 'celeriac-operator');
  const kubeconfig = await cp.serviceAccountKubeconfig(namespace, pod.serviceAccountName);
  return {
    args: [...container.args.slice(1), `--kubeconfig=${kubeconfig}`],
    env: { POD_NAMESPACE: namespace, POD_NAME: `${release}-0`, CELERIAC_OPERATOR_LOG_LEVEL: 'info' },
  };
}

async function createTaskQueue(cp: ControlPlane, namespace: string): Promise<void> {
  await cp.kube.create(resources.taskQueues, {
    apiVersion: 'celeriac.io/v1alpha1',
    kind: 'TaskQueue',
    metadata: { name: 'default', namespace },
    spec: { broker: { type: 'redis', urlSecretRef: { name: 'broker' } }, queue: { name: 'celery' }, checkIntervalSeconds: 600 },
  } as Obj);
}

function workerPool(namespace: string, name: string): Obj {
  return {
    apiVersion: 'celeriac.io/v1alpha1',
    kind: 'WorkerPool',
    metadata: { name, namespace },
    spec: { queues: ['default'], template: { image: 'example.com/shop:1', tasksModule: '/app/tasks/tasks.js' }, replicas: 2 },
  };
}

/** Waits for the pool's Deployment and a status that says it was applied; fails with the operator's log. */
async function expectReconciled(cp: ControlPlane, operator: OperatorProcess, namespace: string, name: string): Promise<void> {
  const dep = await eventually(
    async () => {
      const d = await cp.kube.get<Obj>(resources.deployments, namespace, name);
      assert.ok(d, `no Deployment yet; operator log:\n${operator.log().slice(-3000)}`);
      return d;
    },
    { timeoutMs: 60_000 },
  );
  assert.equal(dep.spec.replicas, 2);
  assert.equal(dep.metadata.ownerReferences?.[0]?.kind, 'WorkerPool');
  const pool = await eventually(
    async () => {
      const p = await cp.kube.get<Obj>(resources.workerPools, namespace, name);
      // Applied: the status names the Deployment, and no RBAC refusal (ApplyFailed) is reported. The
      // broker itself is not there (Degraded may carry the TaskQueue's broker failure).
      const degraded = p?.status?.conditions?.find((c: { type: string }) => c.type === 'Degraded');
      assert.equal(p?.status?.deploymentName, name, `status: ${JSON.stringify(p?.status)}`);
      assert.notEqual(degraded?.reason, 'ApplyFailed', `status: ${JSON.stringify(p?.status)}`);
      return p!;
    },
    { timeoutMs: 30_000 },
  );
  assert.equal(pool.status.observedGeneration, pool.metadata.generation);
  assert.doesNotMatch(operator.log(), /forbidden/i);
}

describe('the operator under the chart RBAC', { skip }, () => {
  let cp: ControlPlane;
  const operators: OperatorProcess[] = [];

  before(async () => {
    cp = await startControlPlane({ crdDir: join(chartDir, 'crds') });
  });

  after(async () => {
    for (const o of operators) await o.stop();
    await cp?.stop();
  });

  async function startOperator(run: { args: string[]; env: Record<string, string> }): Promise<OperatorProcess> {
    const o = new OperatorProcess(run.args, run.env);
    operators.push(o);
    await o.start();
    return o;
  }

  test('cluster scope, two replicas: it takes the Lease and reconciles a WorkerPool; without "create" on deployments it cannot', async () => {
    const opNs = await cp.createNamespace('celeriac-system');
    const appNs = await cp.createNamespace('shop');
    // Two replicas: leader election on, so the Lease permissions are exercised too.
    const chartRun = await installChart(cp, 'celeriac', opNs, ['replicaCount=2']);
    assert.ok(chartRun.args.includes('--leader-elect'), `args: ${chartRun.args.join(' ')}`);
    await createTaskQueue(cp, appNs);
    let operator = await startOperator(chartRun);
    await cp.kube.create(resources.workerPools, workerPool(appNs, 'workers'));
    await expectReconciled(cp, operator, appNs, 'workers');
    const lease = await cp.kube.get<Obj>(resources.leases, opNs, 'celeriac-operator');
    assert.equal(lease?.spec.holderIdentity, chartRun.env.POD_NAME);
    // TaskSchedules: watched, and their status written (a timezone the runtime does not know is
    // reported without any broker).
    await cp.kube.create(resources.taskSchedules, {
      apiVersion: 'celeriac.io/v1alpha1',
      kind: 'TaskSchedule',
      metadata: { name: 'nightly', namespace: appNs },
      spec: { taskQueueRef: { name: 'default' }, task: 'shop.report', schedule: { cron: '0 2 * * *', timeZone: 'Mars/Olympus' } },
    } as Obj);
    await eventually(
      async () => {
        const t = await cp.kube.get<Obj>(resources.taskSchedules, appNs, 'nightly');
        assert.equal(t?.status?.conditions?.[0]?.reason, 'InvalidSchedule', `status: ${JSON.stringify(t?.status)}\n${operator.log().slice(-3000)}`);
      },
      { timeoutMs: 30_000 },
    );
    assert.doesNotMatch(operator.log(), /forbidden/i);

    // The negative: the same operator, one verb fewer.
    await operator.stop();
    const rbac = { group: 'rbac.authorization.k8s.io', version: 'v1', kind: 'ClusterRole', plural: 'clusterroles', namespaced: false };
    const role = await cp.kube.get<Obj>(rbac, undefined, 'celeriac');
    const rules = role!.rules!.map((r: { apiGroups: string[]; resources: string[]; verbs: string[] }) =>
      r.apiGroups.includes('apps') && r.resources.includes('deployments') ? { ...r, verbs: r.verbs.filter((v) => v !== 'create') } : r,
    );
    assert.notDeepEqual(rules, role!.rules, 'the ClusterRole had no create on deployments to remove');
    await cp.kube.patch(rbac, undefined, 'celeriac', { rules });

    operator = await startOperator(chartRun);
    await cp.kube.create(resources.workerPools, workerPool(appNs, 'workers-2'));
    await eventually(
      async () => {
        const errors = await operator.metric('celeriac_operator_reconcile_total', { controller: 'workerpool', result: 'error' });
        assert.ok(errors > 0, `no failed workerpool reconcile yet; log:\n${operator.log().slice(-2000)}`);
      },
      { timeoutMs: 60_000 },
    );
    // The pool says why, naming the ServiceAccount and the missing verb.
    const ready = await eventually(
      async () => {
        const p = await cp.kube.get<Obj>(resources.workerPools, appNs, 'workers-2');
        const c = p?.status?.conditions?.find((x: { type: string }) => x.type === 'Ready');
        assert.equal(c?.reason, 'ApplyFailed', `status: ${JSON.stringify(p?.status)}`);
        return c as { message: string };
      },
      { timeoutMs: 30_000 },
    );
    assert.match(ready.message, new RegExp(`forbidden: User "system:serviceaccount:${opNs}:celeriac" cannot create resource "deployments"`));
    assert.equal(await cp.kube.get(resources.deployments, appNs, 'workers-2'), null);
    await operator.stop();
  });

  test('namespaced scope: a Role in the watched namespace is enough to reconcile a WorkerPool there', async () => {
    const opNs = await cp.createNamespace('celeriac-ns');
    const appNs = await cp.createNamespace('team');
    const chartRun = await installChart(cp, 'scoped', opNs, ['watch.scope=namespaced', `watch.namespace=${appNs}`]);
    assert.ok(chartRun.args.includes(`--namespace=${appNs}`), `args: ${chartRun.args.join(' ')}`);
    await createTaskQueue(cp, appNs);
    const operator = await startOperator(chartRun);
    await cp.kube.create(resources.workerPools, workerPool(appNs, 'workers'));
    await expectReconciled(cp, operator, appNs, 'workers');
  });
});
