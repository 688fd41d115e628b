// The celeriac-operator bin, twice, against a real API server: one instance holds the Lease and
// reconciles; a clean stop hands over at once (the lease is released); a crashed leader (SIGKILL)
// is replaced after the lease expires. Also checks /metrics, /healthz and /readyz of the bin.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { resources, type KubeClient } from '../../operator/src/k8s/kube-client.js';
import type { Lease } from '../../operator/src/types.js';
import { taskQueueFixture, workerPoolFixture } from '../support/operator-fixtures.js';
import { envtestSkipReason, startControlPlane, type ControlPlane } from '../support/envtest.js';
import { eventually } from '../support/eventually.js';

const skip = envtestSkipReason();
const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'operator', 'src', 'main.js');

interface Instance {
  identity: string;
  child: ChildProcess;
  logs: Record<string, unknown>[];
  port(): number;
}

describe('leader election between celeriac-operator processes', { skip }, () => {
  let cp: ControlPlane;
  let kube: KubeClient;
  let leaseNs: string;
  let ns: string;
  const instances: Instance[] = [];

  function startInstance(identity: string): Instance {
    const child = spawn(
      process.execPath,
      [
        BIN,
        '--kubeconfig',
        cp.kubeconfigPath,
        '--leader-elect',
        '--lease-namespace',
        leaseNs,
        '--identity',
        identity,
        '--lease-duration-seconds',
        '4',
        '--renew-deadline-seconds',
        '3',
        '--retry-period-seconds',
        '1',
        '--metrics-port',
        '0',
        '--metrics-host',
        '127.0.0.1',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, CELERIAC_OPERATOR_LOG_LEVEL: 'info' } },
    );
    const logs: Record<string, unknown>[] = [];
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        logs.push({ msg: line });
      }
    });
    const inst: Instance = {
      identity,
      child,
      logs,
      port() {
        const started = logs.find((l) => l.msg === 'celeriac-operator starting');
        assert.ok(started, `${identity} has not started its HTTP server yet`);
        return started.port as number;
      },
    };
    instances.push(inst);
    return inst;
  }

  async function holder(): Promise<string | null | undefined> {
    return (await kube.get<Lease>(resources.leases, leaseNs, 'celeriac-operator'))?.spec?.holderIdentity;
  }

  async function get(inst: Instance, path: string): Promise<{ status: number; text: string }> {
    const res = await fetch(`http://127.0.0.1:${inst.port()}${path}`);
    return { status: res.status, text: await res.text() };
  }

  async function poolGetsDeployment(name: string): Promise<void> {
    await kube.create(resources.workerPools, workerPoolFixture(ns, name));
    await eventually(async () => assert.ok(await kube.get(resources.deployments, ns, name), `no Deployment for ${name}`), { timeoutMs: 60_000 });
  }

  function exited(inst: Instance): Promise<number | null> {
    return inst.child.exitCode !== null ? Promise.resolve(inst.child.exitCode) : new Promise((r) => inst.child.once('exit', (code) => r(code)));
  }

  before(async () => {
    cp = await startControlPlane();
    kube = cp.kube;
    leaseNs = await cp.createNamespace('lease');
    ns = await cp.createNamespace('pools');
    await kube.create(resources.taskQueues, taskQueueFixture(ns, 'default'));
  });

  after(async () => {
    for (const i of instances) if (i.child.exitCode === null) i.child.kill('SIGKILL');
    await cp?.stop();
  });

  it('elects exactly one leader, which reconciles; the other waits and serves /readyz', async () => {
    const a = startInstance('op-a');
    const b = startInstance('op-b');
    const first = await eventually(async () => {
      const h = await holder();
      assert.ok(h === 'op-a' || h === 'op-b', `holder is ${String(h)}`);
      return h;
    });
    const [leader, standby] = first === 'op-a' ? [a, b] : [b, a];
    await poolGetsDeployment('one');
    await eventually(async () => {
      assert.equal((await get(leader, '/readyz')).status, 200);
      assert.equal((await get(standby, '/readyz')).status, 200);
      assert.equal((await get(leader, '/healthz')).status, 200);
      const lm = (await get(leader, '/metrics')).text;
      assert.match(lm, /^celeriac_operator_leader 1$/m);
      assert.match(lm, /celeriac_operator_reconcile_total\{controller="workerpool",result="requeue_after"\} \d+/);
      assert.match(lm, /celeriac_autoscaler_desired_replicas\{namespace="[^"]+",workerpool="one"\} 1/);
      assert.match(lm, /^workqueue_depth\{name="workerpool"\} \d+$/m);
      const sm = (await get(standby, '/metrics')).text;
      assert.doesNotMatch(sm, /^celeriac_operator_leader 1$/m);
      assert.doesNotMatch(sm, /celeriac_operator_reconcile_total\{/);
    });
    assert.ok(!standby.logs.some((l) => l.msg === 'became leader'), 'the standby never led');
  });

  it('hands over at once when the leader stops cleanly (lease released)', async () => {
    const current = await holder();
    const leader = instances.find((i) => i.identity === current)!;
    const standby = instances.find((i) => i.identity !== current && i.child.exitCode === null)!;
    leader.child.kill('SIGTERM');
    assert.equal(await exited(leader), 0);
    assert.ok(
      leader.logs.some((l) => l.msg === 'released leadership'),
      'the leader released the lease',
    );
    await eventually(async () => assert.equal(await holder(), standby.identity));
    await poolGetsDeployment('two');
  });

  it('takes over from a crashed leader once its lease expires', async () => {
    const current = await holder();
    const crashed = instances.find((i) => i.identity === current)!;
    const before = (await kube.get<Lease>(resources.leases, leaseNs, 'celeriac-operator'))?.spec?.leaseTransitions ?? 0;
    const c = startInstance('op-c');
    await eventually(async () => assert.equal((await get(c, '/readyz')).status, 200));
    crashed.child.kill('SIGKILL');
    await exited(crashed);
    await eventually(async () => assert.equal(await holder(), 'op-c'), { timeoutMs: 60_000 });
    const after = (await kube.get<Lease>(resources.leases, leaseNs, 'celeriac-operator'))?.spec?.leaseTransitions ?? 0;
    assert.ok(after > before, `leaseTransitions ${before} -> ${after}`);
    await poolGetsDeployment('three');
  });
});
