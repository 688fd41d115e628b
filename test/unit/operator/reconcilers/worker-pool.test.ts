// The WorkerPool reconciler's branches, one table row each, on the in-memory KubeClient: for each
// row the conditions written to status (type/status/reason), the Events recorded and the
// Deployment left in the store. Behaviour against a real API server is in test/operator/worker-pool.test.ts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { controllerRef, isControlledBy } from '../../../../operator/src/k8s/apply.js';
import { resources } from '../../../../operator/src/k8s/kube-client.js';
import { KubeApiError, TerminalError } from '../../../../operator/src/errors.js';
import { createOperatorMetrics } from '../../../../operator/src/metrics.js';
import { createWorkerPoolReconciler, WAITING_RECHECK_MS, type DecideReplicas } from '../../../../operator/src/reconcilers/worker-pool.js';
import type { Deployment, KubeObject, TaskQueue, WorkerPool } from '../../../../operator/src/types.js';
import { createMemoryKube, type MemoryKube } from '../../../support/memory-kube.js';
import { conditionSummary, taskQueueFixture, workerPoolFixture } from '../../../support/operator-fixtures.js';
import { testContext } from '../../../support/reconcile-context.js';

const NS = 'shop';
const POOL = 'workers';
const RESYNC_MS = 60_000;

async function addTaskQueue(kube: MemoryKube, name: string, broker?: Record<string, unknown>): Promise<TaskQueue> {
  return kube.create<TaskQueue>(resources.taskQueues, taskQueueFixture(NS, name, { broker }) as TaskQueue);
}

async function addPool(kube: MemoryKube, spec: Record<string, unknown> = {}): Promise<WorkerPool> {
  return kube.create<WorkerPool>(resources.workerPools, workerPoolFixture(NS, POOL, { replicas: 2, ...spec }) as WorkerPool);
}

/** A Deployment named like the pool; `owner` makes it the pool's. */
async function addDeployment(kube: MemoryKube, replicas: number, owner?: WorkerPool): Promise<Deployment> {
  return kube.create<Deployment>(resources.deployments, {
    metadata: { name: POOL, namespace: NS, ...(owner ? { ownerReferences: [controllerRef(owner)] } : {}) },
    spec: { replicas },
  });
}

/** A decideReplicas hook that asks for `replicas` and counts its calls. */
function fixedDecision(replicas: number): DecideReplicas & { calls: number } {
  const decide = Object.assign(
    async () => {
      decide.calls++;
      return { replicas, active: true, reason: 'TestAutoscaler', message: `the test asks for ${replicas}` };
    },
    { calls: 0 },
  );
  return decide;
}

interface Row {
  name: string;
  /** Seeds the store; returns the pool to reconcile, as read from the store. */
  given(kube: MemoryKube): Promise<WorkerPool>;
  decide?: DecideReplicas & { calls: number };
  expect: {
    /** The error reconcile must throw (class and, for a TerminalError, its reason). */
    throws?: { type: typeof TerminalError | typeof KubeApiError; reason: string };
    requeueAfterMs?: number;
    conditions: Record<string, string>;
    events: string[];
    /** The Deployment in the store afterwards, or null when there must be none. */
    deployment: { replicas: number; ownedByPool: boolean } | null;
    decideCalls?: number;
  };
}

const rows: Row[] = [
  {
    name: 'TaskQueueNotFound: a queue in spec.queues does not exist; nothing is applied',
    given: (kube) => addPool(kube),
    expect: {
      requeueAfterMs: RESYNC_MS,
      conditions: { Ready: 'False/TaskQueueNotFound', Degraded: 'True/TaskQueueNotFound' },
      events: ['Warning TaskQueueNotFound'],
      deployment: null,
    },
  },
  {
    name: 'BrokerMismatch: two TaskQueues on different brokers is a TerminalError',
    given: async (kube) => {
      await addTaskQueue(kube, 'default');
      await addTaskQueue(kube, 'reports', { type: 'redis', url: 'redis://other:6379/0' });
      return addPool(kube, { queues: ['default', 'reports'] });
    },
    expect: {
      throws: { type: TerminalError, reason: 'BrokerMismatch' },
      conditions: { Ready: 'False/BrokerMismatch', Degraded: 'True/BrokerMismatch' },
      events: ['Warning BrokerMismatch'],
      deployment: null,
    },
  },
  {
    name: 'DeploymentConflict: a Deployment of that name that the pool does not own is left alone',
    given: async (kube) => {
      await addTaskQueue(kube, 'default');
      await addDeployment(kube, 5);
      return addPool(kube);
    },
    expect: {
      requeueAfterMs: RESYNC_MS,
      conditions: { Ready: 'False/DeploymentConflict', Degraded: 'True/DeploymentConflict' },
      events: ['Warning DeploymentConflict'],
      deployment: { replicas: 5, ownedByPool: false },
    },
  },
  {
    name: 'happy path: creates the Deployment with spec.replicas and the pool as controller owner; looked at again soon while replicas are missing',
    given: async (kube) => {
      await addTaskQueue(kube, 'default');
      return addPool(kube);
    },
    expect: {
      requeueAfterMs: WAITING_RECHECK_MS,
      conditions: { Ready: 'False/WaitingForReplicas', Progressing: 'True/RollingOut', ScalingActive: 'False/FixedReplicas', Degraded: 'False/AsExpected' },
      events: ['Normal CreatedDeployment'],
      deployment: { replicas: 2, ownedByPool: true },
    },
  },
  {
    name: 'WorkerFailing: a worker that keeps exiting (a missing tasks module) is quoted in Ready, with an Event',
    given: async (kube) => {
      await addTaskQueue(kube, 'default');
      const pool = await addPool(kube);
      await kube.create(resources.pods, { metadata: { name: `${POOL}-abc`, namespace: NS, labels: { 'celeriac.io/worker-pool': POOL } } } as KubeObject);
      const status = {
        containerStatuses: [
          {
            name: 'worker',
            restartCount: 3,
            state: { waiting: { reason: 'CrashLoopBackOff' } },
            lastState: { terminated: { exitCode: 1, reason: 'Error', message: 'starting\ncannot load the tasks module /app/tasks/tasks.js' } },
          },
        ],
      };
      await kube.patch(resources.pods, NS, `${POOL}-abc`, { status }, { subresource: 'status' });
      return pool;
    },
    expect: {
      requeueAfterMs: WAITING_RECHECK_MS,
      conditions: { Ready: 'False/WorkerFailing', Progressing: 'True/RollingOut', ScalingActive: 'False/FixedReplicas', Degraded: 'False/AsExpected' },
      events: ['Normal CreatedDeployment', 'Warning WorkerFailing'],
      deployment: { replicas: 2, ownedByPool: true },
    },
  },
  {
    name: 'scales its own Deployment to the decided count and says so in an Event',
    given: async (kube) => {
      await addTaskQueue(kube, 'default');
      const pool = await addPool(kube, { replicas: 4 });
      await addDeployment(kube, 1, pool);
      return pool;
    },
    expect: {
      conditions: { Ready: 'False/WaitingForReplicas', ScalingActive: 'False/FixedReplicas', Degraded: 'False/AsExpected' },
      events: ['Normal ScaledDeployment'],
      deployment: { replicas: 4, ownedByPool: true },
    },
  },
  {
    name: 'Ready once the Deployment reports every replica ready and rolled out',
    given: async (kube) => {
      await addTaskQueue(kube, 'default');
      const pool = await addPool(kube);
      const dep = await addDeployment(kube, 2, pool);
      // The reconcile's apply sends the full spec, a spec change: the rollout status must be for that next generation.
      await kube.patch(
        resources.deployments,
        NS,
        POOL,
        { status: { observedGeneration: (dep.metadata.generation ?? 1) + 1, replicas: 2, updatedReplicas: 2, readyReplicas: 2 } },
        { subresource: 'status' },
      );
      return pool;
    },
    expect: {
      conditions: { Ready: 'True/ReplicasReady', Progressing: 'False/RolloutComplete', ScalingActive: 'False/FixedReplicas', Degraded: 'False/AsExpected' },
      events: [],
      deployment: { replicas: 2, ownedByPool: true },
    },
  },
  {
    name: 'paused keeps the replicas of the existing Deployment and does not ask the autoscaler',
    given: async (kube) => {
      await addTaskQueue(kube, 'default');
      const pool = await addPool(kube, { paused: true });
      await addDeployment(kube, 3, pool);
      return pool;
    },
    decide: fixedDecision(7),
    expect: {
      conditions: { ScalingActive: 'False/Paused', Degraded: 'False/AsExpected' },
      events: [],
      deployment: { replicas: 3, ownedByPool: true },
      decideCalls: 0,
    },
  },
  {
    name: 'paused without a Deployment yet creates it with spec.replicas',
    given: async (kube) => {
      await addTaskQueue(kube, 'default');
      return addPool(kube, { paused: true });
    },
    decide: fixedDecision(7),
    expect: {
      conditions: { ScalingActive: 'False/Paused', Degraded: 'False/AsExpected' },
      events: ['Normal CreatedDeployment'],
      deployment: { replicas: 2, ownedByPool: true },
      decideCalls: 0,
    },
  },
  {
    name: 'not paused: the decideReplicas hook sets the count and ScalingActive',
    given: async (kube) => {
      await addTaskQueue(kube, 'default');
      const pool = await addPool(kube);
      await addDeployment(kube, 3, pool);
      return pool;
    },
    decide: fixedDecision(7),
    expect: {
      conditions: { ScalingActive: 'True/TestAutoscaler', Degraded: 'False/AsExpected' },
      events: ['Normal ScaledDeployment'],
      deployment: { replicas: 7, ownedByPool: true },
      decideCalls: 1,
    },
  },
  {
    name: 'spec.autoscaling without an autoscaler keeps the count within [minReplicas, maxReplicas]',
    given: async (kube) => {
      await addTaskQueue(kube, 'default');
      const pool = await addPool(kube, { autoscaling: { minReplicas: 2, maxReplicas: 4, pollingIntervalSeconds: 7 } });
      await addDeployment(kube, 9, pool);
      return pool;
    },
    expect: {
      requeueAfterMs: 7000,
      conditions: { ScalingActive: 'False/NoAutoscaler', Degraded: 'False/AsExpected' },
      events: ['Normal ScaledDeployment'],
      deployment: { replicas: 4, ownedByPool: true },
    },
  },
  {
    name: 'ApplyFailed: a refused apply is reported in status, then rethrown for a retry',
    given: async (kube) => {
      await addTaskQueue(kube, 'default');
      kube.intercept((req) => {
        if (req.verb === 'apply' && req.resource === resources.deployments) {
          throw new KubeApiError(403, 'Forbidden', 'deployments.apps is forbidden', 'PATCH', '/apis/apps/v1/namespaces/shop/deployments/workers');
        }
      });
      return addPool(kube);
    },
    expect: {
      throws: { type: KubeApiError, reason: 'Forbidden' },
      conditions: { Ready: 'False/ApplyFailed', Degraded: 'True/ApplyFailed' },
      events: ['Warning ApplyFailed'],
      deployment: null,
    },
  },
];

function reconciler(decide?: DecideReplicas) {
  return (kube: MemoryKube) =>
    createWorkerPoolReconciler({
      taskQueues: kube.informer<TaskQueue>(resources.taskQueues),
      deployments: kube.informer<Deployment>(resources.deployments),
      metrics: createOperatorMetrics(),
      decideReplicas: decide,
      resyncMs: RESYNC_MS,
    });
}

describe('WorkerPool reconciler branches', () => {
  for (const row of rows) {
    it(row.name, async () => {
      const kube = createMemoryKube();
      const pool = await row.given(kube);
      const { ctx, eventLines } = testContext(kube);
      const run = reconciler(row.decide)(kube).reconcile(pool, ctx);

      if (row.expect.throws) {
        const { type, reason } = row.expect.throws;
        await assert.rejects(run, (err: unknown) => err instanceof type && (err as { reason: string }).reason === reason);
      } else {
        const action = await run;
        if (row.expect.requeueAfterMs !== undefined) assert.equal(action.requeueAfterMs, row.expect.requeueAfterMs);
      }

      const stored = await kube.get<WorkerPool>(resources.workerPools, NS, POOL);
      const wanted = row.expect.conditions;
      assert.deepEqual(conditionSummary(stored, Object.keys(wanted)), wanted);
      for (const c of stored?.status?.conditions ?? []) assert.equal(c.observedGeneration, pool.metadata.generation, `${c.type} observedGeneration`);
      assert.deepEqual(eventLines(), row.expect.events);

      const dep = await kube.get<Deployment>(resources.deployments, NS, POOL);
      if (row.expect.deployment === null) assert.equal(dep, null, 'no Deployment written');
      else {
        assert.ok(dep, 'the Deployment exists');
        assert.deepEqual({ replicas: dep.spec?.replicas, ownedByPool: isControlledBy(dep, pool) }, row.expect.deployment);
      }
      if (row.decide) assert.equal(row.decide.calls, row.expect.decideCalls ?? 1, 'decideReplicas calls');
    });
  }
});

describe('WorkerPool reconciler writes', () => {
  it('the created Deployment and PodDisruptionBudget carry one controller owner reference to the pool; status points at them', async () => {
    const kube = createMemoryKube();
    await addTaskQueue(kube, 'default');
    const pool = await addPool(kube);
    await reconciler()(kube).reconcile(pool, testContext(kube).ctx);

    const owner = { apiVersion: 'celeriac.io/v1alpha1', kind: 'WorkerPool', name: POOL, uid: pool.metadata.uid, controller: true, blockOwnerDeletion: true };
    for (const rt of [resources.deployments, resources.podDisruptionBudgets]) {
      const child = await kube.get<KubeObject>(rt, NS, POOL);
      assert.deepEqual(child?.metadata.ownerReferences, [owner], `${rt.kind} owner reference`);
      assert.equal(child?.metadata.labels?.['celeriac.io/worker-pool'], POOL);
    }
    const status = (await kube.get<WorkerPool>(resources.workerPools, NS, POOL))?.status;
    assert.deepEqual(
      {
        desiredReplicas: status?.desiredReplicas,
        deploymentName: status?.deploymentName,
        selector: status?.selector,
        observedGeneration: status?.observedGeneration,
      },
      { desiredReplicas: 2, deploymentName: POOL, selector: `celeriac.io/worker-pool=${POOL}`, observedGeneration: 1 },
    );
  });

  it('a repeated reconcile of a converged pool changes nothing (no status write, same resourceVersions)', async () => {
    const kube = createMemoryKube();
    await addTaskQueue(kube, 'default');
    await addPool(kube);
    const r = reconciler()(kube);
    await r.reconcile((await kube.get<WorkerPool>(resources.workerPools, NS, POOL))!, testContext(kube).ctx);

    const pool = (await kube.get<WorkerPool>(resources.workerPools, NS, POOL))!;
    const dep = (await kube.get<Deployment>(resources.deployments, NS, POOL))!;
    const writesBefore = kube.writes.length;
    const second = testContext(kube);
    await r.reconcile(pool, second.ctx);

    assert.deepEqual(
      kube.writes.slice(writesBefore).map((w) => `${w.verb} ${w.resource.plural}${w.subresource ? `/${w.subresource}` : ''}`),
      ['apply deployments', 'apply poddisruptionbudgets'],
      'only the idempotent applies',
    );
    assert.equal((await kube.get<WorkerPool>(resources.workerPools, NS, POOL))?.metadata.resourceVersion, pool.metadata.resourceVersion);
    assert.equal((await kube.get<Deployment>(resources.deployments, NS, POOL))?.metadata.resourceVersion, dep.metadata.resourceVersion);
    assert.deepEqual(second.eventLines(), []);
  });

  it('a problem that persists is written and announced once', async () => {
    const kube = createMemoryKube();
    await addPool(kube);
    const r = reconciler()(kube);
    const first = testContext(kube);
    await r.reconcile((await kube.get<WorkerPool>(resources.workerPools, NS, POOL))!, first.ctx);
    const again = testContext(kube);
    await r.reconcile((await kube.get<WorkerPool>(resources.workerPools, NS, POOL))!, again.ctx);

    assert.deepEqual(first.eventLines(), ['Warning TaskQueueNotFound']);
    assert.deepEqual(again.eventLines(), []);
    assert.equal(kube.writes.filter((w) => w.subresource === 'status').length, 1, 'one status write');
  });

  it('cleanup, once the pool is gone, deletes the Deployment and PodDisruptionBudget it owned, and only those', async () => {
    const kube = createMemoryKube();
    await addTaskQueue(kube, 'default');
    const pool = await addPool(kube);
    const r = reconciler()(kube);
    await r.reconcile(pool, testContext(kube).ctx);
    await kube.delete(resources.workerPools, NS, POOL);
    const { ctx } = testContext(kube);
    await r.cleanup!({ namespace: NS, name: POOL }, ctx);
    assert.equal(await kube.get(resources.deployments, NS, POOL), null);
    assert.equal(await kube.get(resources.podDisruptionBudgets, NS, POOL), null);

    const stranger = await addDeployment(kube, 1);
    const other = testContext(kube);
    await r.cleanup!({ namespace: NS, name: POOL }, other.ctx);
    assert.equal((await kube.get(resources.deployments, NS, POOL))?.metadata.uid, stranger.metadata.uid, 'a Deployment the pool does not own stays');
    assert.deepEqual(other.eventLines(), []);
  });
});
