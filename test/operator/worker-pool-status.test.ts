// What a WorkerPool's status says on a real kube-apiserver (envtest) with a real Redis: the
// current truth and nothing older (issue 21, "What the first run on a real cluster showed").
// - status.autoscaling is replaced whole: a field the autoscaler no longer reports disappears;
// - a TaskQueue that cannot reach its broker makes its pools Degraded, and the pools recover with it;
// - `kubectl scale` on an autoscaled pool is refused instead of silently ignored;
// - a scale Event says why in words, not a bare condition reason such as "(ValidMetricFound)".
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { resources, type KubeClient } from '../../operator/src/k8s/kube-client.js';
import type { Operator } from '../../operator/src/operator.js';
import { fixedReplicas, type DecideReplicas } from '../../operator/src/reconcilers/worker-pool.js';
import { KubeApiError } from '../../operator/src/errors.js';
import type { WorkerPoolAutoscalingStatus } from '../../operator/src/types.js';
import { conditionOf, taskQueueFixture, workerPoolFixture, type Obj } from '../support/operator-fixtures.js';
import { envtestSkipReason, freePort, startControlPlane, startTestOperator, type ControlPlane } from '../support/envtest.js';
import { eventually } from '../support/eventually.js';
import { useRedis, type ServiceResult } from '../support/servers.js';

const envSkip = envtestSkipReason();
const redis: ServiceResult | undefined = envSkip ? undefined : await useRedis();
const skip = envSkip || redis?.skip || false;

/** The autoscaling status the stand-in autoscaler reports, per pool name; the test changes it. */
const reported = new Map<string, WorkerPoolAutoscalingStatus>();

/** Stands in for the autoscaler: pools with spec.autoscaling get minReplicas and `reported`'s status. */
const testDecide: DecideReplicas = async (input) => {
  const a = input.pool.spec.autoscaling;
  if (!a) return fixedReplicas(input);
  return {
    replicas: a.minReplicas ?? 1,
    active: true,
    reason: 'TestAutoscaler',
    message: 'the test hook keeps minReplicas',
    autoscalingStatus: reported.get(input.pool.metadata.name) ?? null,
    requeueAfterMs: 200,
  };
};

describe('WorkerPool status tells the current truth', { skip }, () => {
  let cp: ControlPlane;
  let kube: KubeClient;
  let op: Operator;

  before(async () => {
    cp = await startControlPlane();
    kube = cp.kube;
    op = await startTestOperator(cp, { decideReplicas: testDecide, brokerCheckTimeoutMs: 500 });
  });

  after(async () => {
    await op?.stop();
    await cp?.stop();
    await redis?.server?.stop();
  });

  /** A namespace with Secret "broker" holding `url` and TaskQueue "default" checked every second. */
  async function setup(prefix: string, url: string): Promise<string> {
    const ns = await cp.createNamespace(prefix);
    await kube.create(resources.secrets, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'broker', namespace: ns }, stringData: { url } } as Obj);
    await kube.create(resources.taskQueues, taskQueueFixture(ns, 'default', { queue: 'celery', checkIntervalSeconds: 1 }));
    return ns;
  }

  it('drops status.autoscaling fields the autoscaler no longer reports (fallback, failures, draining)', async () => {
    const ns = await setup('stale', redis!.server!.url);
    reported.set('stale', { desiredReplicas: 1, reason: 'Fallback', fallback: true, failures: 15, draining: ['stale-7d9f-abcde'] });
    await kube.create(resources.workerPools, workerPoolFixture(ns, 'stale', { autoscaling: { minReplicas: 1, maxReplicas: 5 } }));
    await eventually(async () => {
      const p = await kube.get<Obj>(resources.workerPools, ns, 'stale');
      assert.equal(p?.status?.autoscaling?.fallback, true);
    });

    // The broker recovered and the drained pod is gone: the autoscaler reports neither any more.
    reported.set('stale', { desiredReplicas: 1, reason: 'Steady' });
    await eventually(async () => {
      const p = await kube.get<Obj>(resources.workerPools, ns, 'stale');
      assert.deepEqual(p?.status?.autoscaling, { desiredReplicas: 1, reason: 'Steady' });
    });
  });

  it("carries its TaskQueue's broker failure in Degraded, and recovers with it", async () => {
    const closed = `redis://127.0.0.1:${await freePort()}/0`;
    const ns = await setup('broker', closed);
    await kube.create(resources.workerPools, workerPoolFixture(ns, 'shop', { replicas: 1 }));
    const degraded = await eventually(
      async () => {
        const p = await kube.get<Obj>(resources.workerPools, ns, 'shop');
        const c = conditionOf(p, 'Degraded');
        assert.equal(c?.status, 'True', JSON.stringify(c));
        return c!;
      },
      { timeoutMs: 20_000 },
    );
    const tq = await kube.get<Obj>(resources.taskQueues, ns, 'default');
    assert.equal(degraded.reason, conditionOf(tq, 'BrokerReachable')?.reason);
    assert.match(degraded.message, /^TaskQueue "default" cannot reach its broker: /);
    assert.ok(await kube.get(resources.deployments, ns, 'shop'), 'the Deployment is still applied');
    await op.events.flush();
    await eventually(async () => {
      const events = await kube.list<Obj>(resources.events, { namespace: ns });
      assert.ok(
        events.items.some((e) => e.involvedObject.kind === 'WorkerPool' && e.type === 'Warning' && e.reason === degraded.reason),
        'a Warning Event on the pool',
      );
    });

    await kube.patch(resources.secrets, ns, 'broker', { stringData: { url: redis!.server!.url } });
    await eventually(
      async () => {
        const p = await kube.get<Obj>(resources.workerPools, ns, 'shop');
        assert.equal(conditionOf(p, 'Degraded')?.reason, 'AsExpected');
      },
      { timeoutMs: 20_000 },
    );
  });

  it("says in the scale Event why the count changed, in the decision's words", async () => {
    const ns = await setup('event', redis!.server!.url);
    await kube.create(resources.workerPools, workerPoolFixture(ns, 'evt', { autoscaling: { minReplicas: 1, maxReplicas: 5 } }));
    await eventually(async () => assert.equal((await kube.get<Obj>(resources.deployments, ns, 'evt'))?.spec.replicas, 1));
    await kube.patch(resources.workerPools, ns, 'evt', { spec: { autoscaling: { minReplicas: 3 } } });
    await eventually(async () => {
      await op.events.flush();
      const events = await kube.list<Obj>(resources.events, { namespace: ns });
      const scaled = events.items.find((e) => e.reason === 'ScaledDeployment');
      assert.equal(scaled?.message, 'Scaled Deployment evt from 1 to 3 replicas: the test hook keeps minReplicas');
    });
  });

  it('refuses kubectl scale on an autoscaled pool, saying why; a pool without autoscaling still scales', async () => {
    const ns = await setup('scale', redis!.server!.url);
    await kube.create(resources.workerPools, workerPoolFixture(ns, 'auto', { autoscaling: { minReplicas: 2, maxReplicas: 5 } }));
    await kube.create(resources.workerPools, workerPoolFixture(ns, 'fixed', { replicas: 2 }));
    await assert.rejects(
      kube.patch(resources.workerPools, ns, 'auto', { spec: { replicas: 4 } }, { subresource: 'scale' }),
      (err: unknown) =>
        err instanceof KubeApiError && err.statusCode === 422 && /spec\.replicas cannot change while spec\.autoscaling is set/.test(err.message),
    );
    await kube.patch(resources.workerPools, ns, 'fixed', { spec: { replicas: 4 } }, { subresource: 'scale' });
    assert.equal((await kube.get<Obj>(resources.workerPools, ns, 'fixed'))?.spec.replicas, 4);
    // Other edits of an autoscaled pool, and removing spec.autoscaling together with a new count, pass.
    await kube.patch(resources.workerPools, ns, 'auto', { spec: { autoscaling: { maxReplicas: 6 } } });
    await kube.patch(resources.workerPools, ns, 'auto', { spec: { autoscaling: null, replicas: 3 } });
    assert.equal((await kube.get<Obj>(resources.workerPools, ns, 'auto'))?.spec.replicas, 3);
  });
});
