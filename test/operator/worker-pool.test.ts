// WorkerPool -> Deployment + PodDisruptionBudget on a real kube-apiserver + etcd (envtest): the
// operator runs in-process with the admin credentials; no controller-manager, so no pods and no
// garbage collector: owner references are asserted by what they say, cleanup by its effect.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { resources, type KubeClient } from '../../operator/src/k8s/kube-client.js';
import type { Operator } from '../../operator/src/operator.js';
import { fixedReplicas, type DecideReplicas } from '../../operator/src/reconcilers/worker-pool.js';
import { KubeApiError } from '../../operator/src/errors.js';
import type { WorkerPool } from '../../operator/src/types.js';
import { conditionOf, taskQueueFixture, workerPoolFixture, type Obj } from '../support/operator-fixtures.js';
import { CRD_DIR, envtestSkipReason, startControlPlane, startTestOperator, type ControlPlane } from '../support/envtest.js';
import { eventually } from '../support/eventually.js';
import { useRedis } from '../support/servers.js';

const skip = envtestSkipReason();
// A reachable broker for the TaskQueues: a pool whose queue cannot reach its broker is Degraded.
const redisUse = skip ? null : await useRedis();

/** Stands in for the autoscaler: pools with spec.autoscaling get maxReplicas. */
const testDecide: DecideReplicas = async (input) => {
  const a = input.pool.spec.autoscaling;
  if (!a) return fixedReplicas(input);
  return {
    replicas: a.maxReplicas,
    active: true,
    reason: 'TestAutoscaler',
    message: 'the test hook asks for maxReplicas',
    autoscalingStatus: { desiredReplicas: a.maxReplicas, reason: 'test', metrics: [{ name: 'queueDepth', value: 42 }] },
  };
};

const taskQueue = (ns: string, name: string, queue = name): Obj => taskQueueFixture(ns, name, { queue });
const workerPool = (ns: string, name: string, spec: Record<string, unknown> = {}): Obj => workerPoolFixture(ns, name, { replicas: 2, ...spec });
const condition = conditionOf;

describe('WorkerPool reconciler on a real API server', { skip: skip || redisUse?.skip }, () => {
  let cp: ControlPlane;
  let kube: KubeClient;
  let op: Operator;

  before(async () => {
    cp = await startControlPlane();
    kube = cp.kube;
    op = await startTestOperator(cp, { decideReplicas: testDecide, brokerCheckTimeoutMs: 300 });
  });

  after(async () => {
    await op?.stop();
    await cp?.stop();
    await redisUse?.server?.stop();
  });

  /** A namespace with the Secret "broker" (a reachable Redis) that the TaskQueue fixtures use. */
  async function brokerNamespace(prefix: string): Promise<string> {
    const ns = await cp.createNamespace(prefix);
    await kube.create(resources.secrets, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'broker', namespace: ns },
      stringData: { url: redisUse!.server!.url },
    } as Obj);
    return ns;
  }

  async function setup(prefix: string): Promise<string> {
    const ns = await brokerNamespace(prefix);
    await kube.create(resources.taskQueues, taskQueue(ns, 'default', 'celery'));
    return ns;
  }

  it('creates the Deployment and PodDisruptionBudget with the worker spec, owner references and status', async () => {
    const ns = await setup('create');
    const pool = await kube.create<Obj>(
      resources.workerPools,
      workerPool(ns, 'shop', {
        concurrency: 3,
        template: { image: 'example.com/shop:1', tasksModule: '/app/tasks.js', resources: { limits: { memory: '512Mi' } } },
      }),
    );

    const dep = await eventually(async () => {
      const d = await kube.get<Obj>(resources.deployments, ns, 'shop');
      assert.ok(d, 'Deployment not created yet');
      return d;
    });
    assert.equal(dep.spec.replicas, 2);
    assert.deepEqual(dep.spec.selector, { matchLabels: { 'celeriac.io/worker-pool': 'shop' } });
    assert.equal(dep.metadata.labels?.['celeriac.io/worker-pool'], 'shop');
    assert.deepEqual(dep.metadata.ownerReferences, [
      { apiVersion: 'celeriac.io/v1alpha1', kind: 'WorkerPool', name: 'shop', uid: pool.metadata.uid, controller: true, blockOwnerDeletion: true },
    ]);
    const tpl = dep.spec.template;
    assert.equal(tpl.metadata.labels['celeriac.io/worker-pool'], 'shop');
    assert.equal(tpl.metadata.annotations['prometheus.io/scrape'], 'true');
    assert.equal(tpl.metadata.annotations['prometheus.io/port'], '9540');
    assert.equal(tpl.spec.terminationGracePeriodSeconds, 300);
    const [c] = tpl.spec.containers;
    assert.equal(c.name, 'worker');
    assert.equal(c.image, 'example.com/shop:1');
    assert.deepEqual(c.command, ['celeriac']);
    assert.deepEqual(c.args, ['worker', '-A', '/app/tasks.js', '-Q', 'celery', '-c', '3', '--prefetch-multiplier', '1', '--metrics-port', '9540']);
    assert.deepEqual(
      c.env.find((e: { name: string }) => e.name === 'CELERIAC_BROKER_URL'),
      { name: 'CELERIAC_BROKER_URL', valueFrom: { secretKeyRef: { name: 'broker', key: 'url' } } },
    );
    assert.deepEqual(c.ports, [{ name: 'metrics', containerPort: 9540, protocol: 'TCP' }]);
    const shutdownTimeout = c.env.find((e: { name: string }) => e.name === 'CELERIAC_SHUTDOWN_TIMEOUT_MS');
    assert.deepEqual(shutdownTimeout, { name: 'CELERIAC_SHUTDOWN_TIMEOUT_MS', value: '290000' }, 'a warm shutdown waits the grace period minus the margin');
    assert.deepEqual(c.lifecycle.preStop.httpGet, { path: '/drain', port: 'metrics', scheme: 'HTTP' });
    assert.deepEqual(c.resources, { limits: { memory: '512Mi' } });
    const managers = (dep.metadata as { managedFields?: { manager: string; operation: string }[] }).managedFields ?? [];
    assert.ok(
      managers.some((m) => m.manager === 'celeriac-operator' && m.operation === 'Apply'),
      'applied by server-side apply as celeriac-operator',
    );

    const pdb = await eventually(async () => {
      const p = await kube.get<Obj>(resources.podDisruptionBudgets, ns, 'shop');
      assert.ok(p);
      return p;
    });
    assert.equal(pdb.spec.maxUnavailable, 1);
    assert.deepEqual(pdb.spec.selector, { matchLabels: { 'celeriac.io/worker-pool': 'shop' } });
    assert.equal(pdb.metadata.ownerReferences?.[0]?.uid, pool.metadata.uid);

    const status = await eventually(async () => {
      const p = await kube.get<Obj>(resources.workerPools, ns, 'shop');
      assert.equal(p?.status?.observedGeneration, p?.metadata.generation);
      assert.ok(condition(p, 'Ready'));
      return p!;
    });
    assert.equal(status.metadata.finalizers, undefined, 'no finalizer: a stopped operator must not block a delete');
    assert.equal(status.status.desiredReplicas, 2);
    assert.equal(status.status.selector, 'celeriac.io/worker-pool=shop');
    // No kubelet in envtest: nothing becomes ready, and the pool says so.
    assert.equal(condition(status, 'Ready')?.status, 'False');
    assert.equal(condition(status, 'Ready')?.reason, 'WaitingForReplicas');
    assert.equal(condition(status, 'ScalingActive')?.reason, 'FixedReplicas');
    assert.equal(condition(status, 'Degraded')?.status, 'False');
    assert.equal(condition(status, 'Progressing')?.status, 'True');

    await op.events.flush();
    const events = await kube.list<Obj>(resources.events, { namespace: ns });
    assert.ok(
      events.items.some((e) => e.reason === 'CreatedDeployment' && e.involvedObject.name === 'shop'),
      'CreatedDeployment event',
    );
  });

  it('updates the Deployment when the pool is edited', async () => {
    const ns = await setup('edit');
    await kube.create(resources.workerPools, workerPool(ns, 'edit'));
    await eventually(async () => assert.ok(await kube.get(resources.deployments, ns, 'edit')));
    await kube.patch(resources.workerPools, ns, 'edit', {
      spec: { concurrency: 8, prefetchMultiplier: 2, template: { image: 'example.com/shop:2', logLevel: 'debug' }, terminationGracePeriodSeconds: 60 },
    });
    const dep = await eventually(async () => {
      const d = await kube.get<Obj>(resources.deployments, ns, 'edit');
      assert.equal(d?.spec.template.spec.containers[0].image, 'example.com/shop:2');
      return d!;
    });
    const c = dep.spec.template.spec.containers[0];
    assert.deepEqual(c.args, [
      'worker',
      '-A',
      '/app/tasks.js',
      '-Q',
      'celery',
      '-c',
      '8',
      '--prefetch-multiplier',
      '2',
      '--metrics-port',
      '9540',
      '-l',
      'debug',
    ]);
    assert.equal(dep.spec.template.spec.terminationGracePeriodSeconds, 60);
    assert.deepEqual(
      c.env.filter((e: { name: string }) => e.name === 'CELERIAC_SHUTDOWN_TIMEOUT_MS'),
      [{ name: 'CELERIAC_SHUTDOWN_TIMEOUT_MS', value: '50000' }],
      'the shutdown timeout follows the new grace period',
    );
    await eventually(async () => {
      const p = await kube.get<Obj>(resources.workerPools, ns, 'edit');
      assert.equal(p?.status?.observedGeneration, p?.metadata.generation);
    });
  });

  it('follows the scale subresource (kubectl scale) and exposes the selector for an HPA', async () => {
    const ns = await setup('scale');
    await kube.create(resources.workerPools, workerPool(ns, 'scaled'));
    await eventually(async () => {
      const p = await kube.get<Obj>(resources.workerPools, ns, 'scaled');
      assert.equal(p?.status?.selector, 'celeriac.io/worker-pool=scaled');
    });
    const scale = await kube.get<Obj>(resources.workerPools, ns, 'scaled', { subresource: 'scale' });
    assert.equal(scale?.spec.replicas, 2);
    assert.equal(scale?.status.selector, 'celeriac.io/worker-pool=scaled');

    await kube.patch(resources.workerPools, ns, 'scaled', { spec: { replicas: 5 } }, { subresource: 'scale' });
    await eventually(async () => {
      const d = await kube.get<Obj>(resources.deployments, ns, 'scaled');
      assert.equal(d?.spec.replicas, 5);
    });
    const pool = await eventually(async () => {
      const p = await kube.get<Obj>(resources.workerPools, ns, 'scaled');
      assert.equal(p?.status?.desiredReplicas, 5);
      return p!;
    });
    assert.equal(pool.spec.replicas, 5);
    assert.ok(pool.status.lastScaleTime, 'lastScaleTime set');
    await op.events.flush();
    await eventually(async () => {
      const events = await kube.list<Obj>(resources.events, { namespace: ns });
      assert.ok(events.items.some((e) => e.reason === 'ScaledDeployment' && /from 2 to 5/.test(e.message)));
    });
  });

  it('leaves nothing behind when the pool is deleted (owned objects deleted once it is gone)', async () => {
    const ns = await setup('delete');
    await kube.create(resources.workerPools, workerPool(ns, 'gone'));
    await eventually(async () => {
      assert.ok(await kube.get(resources.deployments, ns, 'gone'));
      assert.ok(await kube.get(resources.podDisruptionBudgets, ns, 'gone'));
    });
    await kube.delete(resources.workerPools, ns, 'gone');
    await eventually(async () => {
      assert.equal(await kube.get(resources.workerPools, ns, 'gone'), null, 'WorkerPool still there');
      assert.equal(await kube.get(resources.deployments, ns, 'gone'), null, 'Deployment left behind');
      assert.equal(await kube.get(resources.podDisruptionBudgets, ns, 'gone'), null, 'PodDisruptionBudget left behind');
    });
  });

  it('reports a missing TaskQueue in status and recovers when it is created', async () => {
    const ns = await brokerNamespace('missing');
    await kube.create(resources.workerPools, workerPool(ns, 'waiting', { queues: ['later'] }));
    const p = await eventually(async () => {
      const p = await kube.get<Obj>(resources.workerPools, ns, 'waiting');
      assert.equal(condition(p, 'Ready')?.reason, 'TaskQueueNotFound');
      return p!;
    });
    assert.equal(condition(p, 'Ready')?.status, 'False');
    assert.match(condition(p, 'Ready')!.message, /TaskQueue "later" not found in namespace/);
    assert.equal(condition(p, 'Degraded')?.status, 'True');
    assert.equal(await kube.get(resources.deployments, ns, 'waiting'), null);

    await kube.create(resources.taskQueues, taskQueue(ns, 'later'));
    await eventually(async () => {
      assert.ok(await kube.get(resources.deployments, ns, 'waiting'));
      const p = await kube.get<Obj>(resources.workerPools, ns, 'waiting');
      assert.equal(condition(p, 'Degraded')?.status, 'False');
    });
  });

  it('lets the replica hook (the autoscaler) set replicas when spec.autoscaling is set', async () => {
    const ns = await setup('autoscale');
    await kube.create(resources.workerPools, workerPool(ns, 'auto', { autoscaling: { minReplicas: 1, maxReplicas: 7 } }));
    await eventually(async () => {
      const d = await kube.get<Obj>(resources.deployments, ns, 'auto');
      assert.equal(d?.spec.replicas, 7);
    });
    const p = await eventually(async () => {
      const p = await kube.get<Obj>(resources.workerPools, ns, 'auto');
      assert.equal(condition(p, 'ScalingActive')?.status, 'True');
      return p!;
    });
    assert.equal(condition(p, 'ScalingActive')?.reason, 'TestAutoscaler');
    assert.deepEqual(p.status.autoscaling, { desiredReplicas: 7, reason: 'test', metrics: [{ name: 'queueDepth', value: 42 }] });
    // CRD defaults filled in the rest of spec.autoscaling.
    assert.equal(p.spec.autoscaling.pollingIntervalSeconds, 5);
    assert.equal(p.spec.autoscaling.targetUtilization, 0.8);

    // Paused: the count is frozen even though the hook would change it.
    await kube.patch(resources.workerPools, ns, 'auto', { spec: { paused: true, autoscaling: { maxReplicas: 9 } } });
    await eventually(async () => {
      const p = await kube.get<Obj>(resources.workerPools, ns, 'auto');
      assert.equal(condition(p, 'ScalingActive')?.reason, 'Paused');
      assert.equal(p?.status?.observedGeneration, p?.metadata.generation);
    });
    assert.equal((await kube.get<Obj>(resources.deployments, ns, 'auto'))?.spec.replicas, 7);
  });

  it('follows TaskQueue edits and recreates a deleted Deployment', async () => {
    const ns = await setup('follow');
    await kube.create(resources.workerPools, workerPool(ns, 'follow'));
    await eventually(async () => assert.ok(await kube.get(resources.deployments, ns, 'follow')));
    await kube.patch(resources.taskQueues, ns, 'default', { spec: { queue: { name: 'renamed' }, broker: { urlSecretRef: { key: 'broker-url' } } } });
    await eventually(async () => {
      const c = (await kube.get<Obj>(resources.deployments, ns, 'follow'))?.spec.template.spec.containers[0];
      assert.equal(c?.args[4], 'renamed');
      assert.equal(c?.env.find((e: { name: string }) => e.name === 'CELERIAC_BROKER_URL')?.valueFrom.secretKeyRef.key, 'broker-url');
    });
    const before = await kube.get<Obj>(resources.deployments, ns, 'follow');
    await kube.delete(resources.deployments, ns, 'follow');
    await eventually(async () => {
      const d = await kube.get<Obj>(resources.deployments, ns, 'follow');
      assert.ok(d && d.metadata.uid !== before?.metadata.uid, 'not recreated yet');
    });
  });

  it('refuses TaskQueues on different brokers in one pool', async () => {
    const ns = await setup('mismatch');
    const other = taskQueue(ns, 'other');
    other.spec.broker = { type: 'redis', url: 'redis://elsewhere:6379/0' };
    await kube.create(resources.taskQueues, other);
    await kube.create(resources.workerPools, workerPool(ns, 'mixed', { queues: ['default', 'other'] }));
    const p = await eventually(async () => {
      const p = await kube.get<Obj>(resources.workerPools, ns, 'mixed');
      assert.equal(condition(p, 'Ready')?.reason, 'BrokerMismatch');
      return p!;
    });
    assert.match(condition(p, 'Ready')!.message, /use different brokers/);
    assert.equal(await kube.get(resources.deployments, ns, 'mixed'), null);
  });

  it('shows replicas, desired and the Ready reason in kubectl get (printer columns)', async () => {
    const ns = await setup('columns');
    await kube.create(resources.workerPools, workerPool(ns, 'cols', { autoscaling: { minReplicas: 2, maxReplicas: 4 } }));
    await eventually(async () => {
      const p = await kube.get<Obj>(resources.workerPools, ns, 'cols');
      assert.equal(p?.status?.desiredReplicas, 4);
    });
    const table = async (plural: string) => {
      const r = await cp.getRaw(`/apis/celeriac.io/v1alpha1/namespaces/${ns}/${plural}`, { Accept: 'application/json;as=Table;g=meta.k8s.io;v=v1' });
      assert.equal(r.status, 200, r.body);
      const t = JSON.parse(r.body) as { columnDefinitions: { name: string }[]; rows: { cells: unknown[] }[] };
      const names = t.columnDefinitions.map((c) => c.name);
      return t.rows.map((row) => Object.fromEntries(names.map((n, i) => [n, row.cells[i]])));
    };
    const [pool] = await table('workerpools');
    assert.deepEqual(
      {
        Queues: pool?.Queues,
        Min: pool?.Min,
        Max: pool?.Max,
        Desired: pool?.Desired,
        Replicas: pool?.Replicas,
        Ready: pool?.Ready,
        Active: pool?.Active,
        Status: pool?.Status,
      },
      { Queues: '["default"]', Min: 2, Max: 4, Desired: 4, Replicas: 0, Ready: 0, Active: 'True', Status: 'WaitingForReplicas' },
    );
    const [queue] = await table('taskqueues');
    assert.equal(queue?.Broker, 'redis');
    assert.equal(queue?.Queue, 'celery');
    assert.ok('Ready' in queue! && 'Depth' in queue! && 'Reason' in queue!);
  });

  it('rolls the pods when the broker credentials in the Secret change', async () => {
    const ns = await cp.createNamespace('rotate');
    await kube.create(resources.secrets, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'broker', namespace: ns },
      stringData: { url: 'redis://:one@127.0.0.1:1/0' },
    } as Obj);
    await kube.create(resources.taskQueues, taskQueueFixture(ns, 'default', { queue: 'celery', checkIntervalSeconds: 1 }));
    await kube.create(resources.workerPools, workerPool(ns, 'rotate'));
    const annotation = async () =>
      (await kube.get<Obj>(resources.deployments, ns, 'rotate'))?.spec.template.metadata.annotations['celeriac.io/broker-credentials-hash'] as
        string | undefined;
    const first = await eventually(async () => {
      const a = await annotation();
      assert.match(a ?? '', /^[0-9a-f]{16}$/);
      return a;
    });
    await kube.patch(resources.secrets, ns, 'broker', { stringData: { url: 'redis://:two@127.0.0.1:1/0' } });
    await eventually(async () => {
      const a = await annotation();
      assert.ok(a && a !== first, 'the pod template changed with the Secret');
    });
    const env = (await kube.get<Obj>(resources.deployments, ns, 'rotate'))?.spec.template.spec.containers[0].env;
    assert.ok(!JSON.stringify(env).includes('two'), 'the password itself never reaches the Deployment');
  });

  it('refuses a Deployment it does not own', async () => {
    const ns = await setup('conflict');
    await kube.create(resources.deployments, {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'taken', namespace: ns },
      spec: { selector: { matchLabels: { app: 'x' } }, template: { metadata: { labels: { app: 'x' } }, spec: { containers: [{ name: 'x', image: 'x' }] } } },
    } as Obj);
    await kube.create(resources.workerPools, workerPool(ns, 'taken'));
    await eventually(async () => {
      const p = await kube.get<Obj>(resources.workerPools, ns, 'taken');
      assert.equal(condition(p, 'Ready')?.reason, 'DeploymentConflict');
    });
    const d = await kube.get<Obj>(resources.deployments, ns, 'taken');
    assert.equal(d?.spec.template.spec.containers[0].name, 'x', 'the foreign Deployment is untouched');
  });
});

describe('CRD validation on a real API server', { skip }, () => {
  let cp: ControlPlane;
  before(async () => {
    cp = await startControlPlane();
  });
  after(async () => cp?.stop());

  async function refused(rt: typeof resources.workerPools | typeof resources.taskQueues, obj: Obj): Promise<string> {
    try {
      await cp.kube.create(rt, obj);
    } catch (err) {
      assert.ok(err instanceof KubeApiError, String(err));
      assert.equal(err.statusCode, 422, err.message);
      return err.message;
    }
    assert.fail(`${obj.kind} ${obj.metadata.name} was accepted`);
  }

  it('refuses a WorkerPool with minReplicas above maxReplicas', async () => {
    const msg = await refused(resources.workerPools, workerPool('default', 'minmax', { autoscaling: { minReplicas: 5, maxReplicas: 2 } }));
    assert.match(msg, /spec\.autoscaling\.minReplicas must be less than or equal to spec\.autoscaling\.maxReplicas/);
  });

  it('refuses a negative concurrency', async () => {
    const msg = await refused(resources.workerPools, workerPool('default', 'negative', { concurrency: -1 }));
    assert.match(msg, /spec\.concurrency: Invalid value: -1: spec\.concurrency in body should be greater than or equal to 1/);
  });

  it('refuses a WorkerPool without queues, or with an empty list', async () => {
    const noQueues = workerPool('default', 'noqueues');
    delete noQueues.spec.queues;
    assert.match(await refused(resources.workerPools, noQueues), /spec\.queues: Required value/);
    assert.match(
      await refused(resources.workerPools, workerPool('default', 'emptyqueues', { queues: [] })),
      /spec\.queues: Invalid value: 0: spec\.queues in body should have at least 1 items/,
    );
  });

  it('refuses a prometheus metric without its settings and a bad targetUtilization', async () => {
    const msg = await refused(
      resources.workerPools,
      workerPool('default', 'prom', { autoscaling: { maxReplicas: 3, targetUtilization: 1.5, metrics: [{ type: 'prometheus' }] } }),
    );
    assert.match(msg, /type prometheus needs the prometheus field/);
    assert.match(msg, /targetUtilization/);
  });

  it('refuses TaskQueue brokers that are ambiguous, carry a password, or mismatch their type', async () => {
    const both = taskQueue('default', 'both');
    both.spec.broker = { type: 'redis', url: 'redis://r:6379/0', host: 'r' };
    assert.match(await refused(resources.taskQueues, both), /set exactly one of url, urlSecretRef or host/);
    const secret = taskQueue('default', 'secret');
    secret.spec.broker = { type: 'redis', url: 'redis://:hunter2@r:6379/0' };
    assert.match(await refused(resources.taskQueues, secret), /must not contain a password/);
    const scheme = taskQueue('default', 'scheme');
    scheme.spec.broker = { type: 'amqp', url: 'redis://r:6379/0' };
    assert.match(await refused(resources.taskQueues, scheme), /amqp:\/\/ or amqps:\/\/ when type is amqp/);
    const mgmt = taskQueue('default', 'mgmt');
    mgmt.spec.broker = { type: 'redis', host: 'r', management: { url: 'http://u:p@rabbit:15672' } };
    const mgmtMsg = await refused(resources.taskQueues, mgmt);
    assert.match(mgmtMsg, /spec\.broker\.management applies to amqp only/);
    assert.match(mgmtMsg, /management\.url must be http\(s\):\/\/ without a password/);
    const noQueue = taskQueue('default', 'noqueue');
    delete noQueue.spec.queue;
    assert.match(await refused(resources.taskQueues, noQueue), /spec\.queue: Required value/);
  });

  it('keeps spec.autoscaling.paused and the per-direction tolerance (the schema does not prune them)', async () => {
    const ns = await cp.createNamespace('autoscaling-fields');
    const created = await cp.kube.create<Obj>(
      resources.workerPools,
      workerPool(ns, 'tuned', {
        autoscaling: { maxReplicas: 3, paused: true, behavior: { scaleUp: { tolerance: 0.2 }, scaleDown: { tolerance: 0.05 } } },
      }),
    );
    const a = created.spec!.autoscaling as unknown as { paused: boolean; behavior: { scaleUp: { tolerance: number }; scaleDown: { tolerance: number } } };
    assert.equal(a.paused, true);
    assert.equal(a.behavior.scaleUp.tolerance, 0.2);
    assert.equal(a.behavior.scaleDown.tolerance, 0.05);
    assert.match(
      await refused(resources.workerPools, workerPool(ns, 'badtol', { autoscaling: { maxReplicas: 3, behavior: { scaleUp: { tolerance: 2 } } } })),
      /tolerance: Invalid value: 2: spec\.autoscaling\.behavior\.scaleUp\.tolerance in body should be less than or equal to 1/,
    );
  });

  it('fills defaults and accepts the examples in crds/examples', async () => {
    const ns = await cp.createNamespace('examples');
    const dir = join(CRD_DIR, 'examples');
    const files = readdirSync(dir)
      .filter((f) => f.endsWith('.yaml'))
      .map((f) => join(dir, f));
    assert.ok(files.length >= 3);
    // Examples carry no namespace; apply them into ours by rewriting through the API.
    for (const f of files) {
      for (const doc of parseAllDocuments(readFileSync(f, 'utf8'))) {
        const obj = doc.toJSON() as Obj;
        obj.metadata.namespace = ns;
        await cp.kube.apply(await cp.resourceFor(obj.apiVersion!, obj.kind!), obj, { fieldManager: 'test' });
      }
    }
    const wp = await cp.kube.get<WorkerPool>(resources.workerPools, ns, 'shop-workers');
    assert.equal(wp?.spec.prefetchMultiplier, 1);
    assert.equal(wp?.spec.metricsPort, 9540);
    assert.deepEqual(wp?.spec.podDisruptionBudget, { enabled: true, maxUnavailable: 1 });
    assert.equal(wp?.spec.paused, false);
  });
});
