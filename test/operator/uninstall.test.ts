/**
 * Uninstalling the operator strands nothing: a WorkerPool holds no finalizer, so deleting it (or
 * its namespace) after `helm uninstall` completes without an operator; a WorkerPool that an earlier
 * operator version marked with the finalizer `celeriac.io/cleanup` has it removed on first sight.
 * Real kube-apiserver + etcd; the operator runs in-process and is stopped to play "uninstalled".
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { resources, type KubeClient } from '../../operator/src/k8s/kube-client.js';
import type { Operator } from '../../operator/src/operator.js';
import { LEGACY_FINALIZER } from '../../operator/src/types.js';
import { taskQueueFixture, workerPoolFixture, type Obj } from '../support/operator-fixtures.js';
import { envtestSkipReason, startControlPlane, startTestOperator, type ControlPlane } from '../support/envtest.js';
import { eventually } from '../support/eventually.js';

const skip = envtestSkipReason();

describe('uninstall: no finalizer holds a WorkerPool (real API server)', { skip }, () => {
  let cp: ControlPlane;
  let kube: KubeClient;
  let op: Operator | null = null;

  before(async () => {
    cp = await startControlPlane();
    kube = cp.kube;
  });
  after(async () => {
    await op?.stop();
    await cp?.stop();
  });

  async function namespaceWithQueue(prefix: string): Promise<string> {
    const ns = await cp.createNamespace(prefix);
    await kube.create(resources.taskQueues, taskQueueFixture(ns, 'default', { queue: 'celery' }));
    return ns;
  }

  it('a WorkerPool deleted after the operator is gone is deleted at once', async () => {
    const ns = await namespaceWithQueue('uninstall');
    op = await startTestOperator(cp, { brokerCheckTimeoutMs: 300 });
    await kube.create(resources.workerPools, workerPoolFixture(ns, 'shop', { replicas: 1 }));
    await eventually(async () => assert.ok(await kube.get(resources.deployments, ns, 'shop'), 'Deployment created'));
    const pool = await kube.get<Obj>(resources.workerPools, ns, 'shop');
    assert.equal(pool?.metadata.finalizers, undefined);

    await op.stop(); // helm uninstall
    op = null;
    await kube.delete(resources.workerPools, ns, 'shop');
    await eventually(async () => assert.equal(await kube.get(resources.workerPools, ns, 'shop'), null, 'WorkerPool stuck in deletion'));
    // Its Deployment is the garbage collector's (owner reference); envtest runs none, a cluster does.
    const dep = await kube.get<Obj>(resources.deployments, ns, 'shop');
    assert.equal(dep?.metadata.ownerReferences?.[0]?.kind, 'WorkerPool');
  });

  it('removes the finalizer that earlier versions added, so the pool can go without the operator', async () => {
    const ns = await namespaceWithQueue('legacy');
    await kube.create(resources.workerPools, {
      ...workerPoolFixture(ns, 'old', { replicas: 1 }),
      metadata: { name: 'old', namespace: ns, finalizers: [LEGACY_FINALIZER, 'example.com/keep'] },
    });
    op = await startTestOperator(cp, { brokerCheckTimeoutMs: 300 });
    await eventually(async () => {
      const p = await kube.get<Obj>(resources.workerPools, ns, 'old');
      assert.deepEqual(p?.metadata.finalizers, ['example.com/keep'], 'only the legacy finalizer goes');
      assert.ok(await kube.get(resources.deployments, ns, 'old'), 'and the pool is reconciled as usual');
    });
    await op.stop();
    op = null;
    await kube.patch(resources.workerPools, ns, 'old', { metadata: { finalizers: null } });
    await kube.delete(resources.workerPools, ns, 'old');
    await eventually(async () => assert.equal(await kube.get(resources.workerPools, ns, 'old'), null));
  });
});
