// The operator as a user with too little RBAC: the WorkerPool says why in status (ApplyFailed with
// the API server's "forbidden" message), and the pool converges once the missing verbs are granted.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { resources, type KubeClient } from '../../operator/src/k8s/kube-client.js';
import type { Operator } from '../../operator/src/operator.js';
import { conditionOf, taskQueueFixture, workerPoolFixture, type Obj } from '../support/operator-fixtures.js';
import { envtestSkipReason, startControlPlane, startTestOperator, type ControlPlane } from '../support/envtest.js';
import { eventually } from '../support/eventually.js';

const skip = envtestSkipReason();

/** The operator's needs (as in the brief), with `deploymentVerbs` for apps/deployments. */
function clusterRole(deploymentVerbs: string[]): Obj {
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRole',
    metadata: { name: 'test-operator' },
    rules: [
      { apiGroups: ['celeriac.io'], resources: ['taskqueues', 'workerpools'], verbs: ['get', 'list', 'watch', 'update', 'patch'] },
      { apiGroups: ['celeriac.io'], resources: ['taskqueues/status', 'workerpools/status'], verbs: ['patch'] },
      { apiGroups: ['celeriac.io'], resources: ['taskschedules'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: ['celeriac.io'], resources: ['taskschedules/status'], verbs: ['patch'] },
      { apiGroups: ['celeriac.io'], resources: ['taskqueues/finalizers', 'workerpools/finalizers'], verbs: ['update'] },
      { apiGroups: ['apps'], resources: ['deployments'], verbs: deploymentVerbs },
      { apiGroups: ['policy'], resources: ['poddisruptionbudgets'], verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'] },
      { apiGroups: [''], resources: ['secrets'], verbs: ['get'] },
      { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch', 'patch'] },
      { apiGroups: [''], resources: ['events'], verbs: ['create', 'patch'] },
      { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'create', 'update'] },
    ],
  };
}

describe('operator with limited RBAC', { skip }, () => {
  let cp: ControlPlane;
  let kube: KubeClient;
  let op: Operator;

  before(async () => {
    cp = await startControlPlane({ users: [{ name: 'celeriac-operator', groups: ['celeriac:operators'] }] });
    kube = cp.kube;
    const rbac = (kind: string) => cp.resourceFor('rbac.authorization.k8s.io/v1', kind);
    await kube.apply(await rbac('ClusterRole'), clusterRole(['get', 'list', 'watch', 'delete']), { fieldManager: 'test' });
    await kube.apply(
      await rbac('ClusterRoleBinding'),
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRoleBinding',
        metadata: { name: 'test-operator' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'test-operator' },
        subjects: [{ kind: 'Group', apiGroup: 'rbac.authorization.k8s.io', name: 'celeriac:operators' }],
      } as Obj,
      { fieldManager: 'test' },
    );
    op = await startTestOperator(cp, { kubeconfigPath: cp.kubeconfigFor('celeriac-operator') });
  });

  after(async () => {
    await op?.stop();
    await cp?.stop();
  });

  it('reports a forbidden Deployment write in status, and converges once the verbs are granted', async () => {
    const ns = await cp.createNamespace('rbac');
    await kube.create(resources.taskQueues, taskQueueFixture(ns, 'default'));
    await kube.create(resources.workerPools, workerPoolFixture(ns, 'limited'));
    const ready = await eventually(async () => {
      const c = conditionOf(await kube.get<Obj>(resources.workerPools, ns, 'limited'), 'Ready');
      assert.equal(c?.reason, 'ApplyFailed');
      return c!;
    });
    assert.match(ready.message, /deployments\.apps "limited" is forbidden: User "celeriac-operator" cannot patch resource "deployments"/);
    assert.equal(await kube.get(resources.deployments, ns, 'limited'), null);

    await kube.apply(
      await cp.resourceFor('rbac.authorization.k8s.io/v1', 'ClusterRole'),
      clusterRole(['get', 'list', 'watch', 'create', 'update', 'patch', 'delete']),
      { fieldManager: 'test' },
    );
    await eventually(async () => assert.ok(await kube.get(resources.deployments, ns, 'limited')), { timeoutMs: 60_000 });
  });
});
