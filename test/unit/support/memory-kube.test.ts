// The in-memory KubeClient keeps the API server's rules the reconciler tests rely on: errors as
// the real client's KubeApiError, resourceVersion and generation, the status subresource,
// server-side apply as create-or-merge with pruning, finalizers, and a watch the real informer can follow.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { KubeApiError, isKubeStatus } from '../../../operator/src/errors.js';
import { createInformer } from '../../../operator/src/k8s/informer.js';
import { resources } from '../../../operator/src/k8s/kube-client.js';
import type { Deployment, KubeObject } from '../../../operator/src/types.js';
import { eventually } from '../../support/eventually.js';
import { createMemoryKube } from '../../support/memory-kube.js';

const dep = (spec: Record<string, unknown>, metadata: Partial<KubeObject['metadata']> = {}): Deployment => ({
  metadata: { name: 'd', namespace: 'ns', ...metadata },
  spec,
});

describe('createMemoryKube', () => {
  it('answers like the API server: 409 AlreadyExists, 404 NotFound, null/false for a missing get/delete', async () => {
    const kube = createMemoryKube();
    const created = await kube.create(resources.deployments, dep({ replicas: 1 }));
    assert.deepEqual([created.apiVersion, created.kind, created.metadata.generation], ['apps/v1', 'Deployment', 1]);
    assert.ok(created.metadata.uid && created.metadata.resourceVersion);
    await assert.rejects(
      kube.create(resources.deployments, dep({})),
      (e: unknown) => e instanceof KubeApiError && e.statusCode === 409 && e.reason === 'AlreadyExists',
    );
    await assert.rejects(kube.patch(resources.deployments, 'ns', 'nope', { spec: {} }), (e: unknown) => isKubeStatus(e, 404));
    assert.equal(await kube.get(resources.deployments, 'other-ns', 'd'), null);
    assert.equal(await kube.delete(resources.deployments, 'ns', 'nope'), false);
  });

  it('bumps resourceVersion on every change and generation on spec changes only; a stale resourceVersion is a 409', async () => {
    const kube = createMemoryKube();
    const v1 = await kube.create<Deployment>(resources.deployments, dep({ replicas: 1 }));
    const same = await kube.patch<Deployment>(resources.deployments, 'ns', 'd', { spec: { replicas: 1 } });
    assert.equal(same.metadata.resourceVersion, v1.metadata.resourceVersion, 'a no-op write changes nothing');
    const labelled = await kube.patch<Deployment>(resources.deployments, 'ns', 'd', { metadata: { labels: { a: 'b' } } });
    assert.ok(Number(labelled.metadata.resourceVersion) > Number(v1.metadata.resourceVersion));
    assert.equal(labelled.metadata.generation, 1, 'metadata changes keep the generation');
    const scaled = await kube.patch<Deployment>(resources.deployments, 'ns', 'd', { spec: { replicas: 2 } });
    assert.equal(scaled.metadata.generation, 2);
    await assert.rejects(
      kube.patch(resources.deployments, 'ns', 'd', { metadata: { resourceVersion: v1.metadata.resourceVersion }, spec: { replicas: 3 } }),
      (e: unknown) => isKubeStatus(e, 409),
    );
  });

  it('keeps status apart: object writes leave it, status writes change only it (null removes a key)', async () => {
    const kube = createMemoryKube();
    await kube.create(resources.deployments, { ...dep({ replicas: 1 }), status: { replicas: 9 } });
    assert.equal((await kube.get<Deployment>(resources.deployments, 'ns', 'd'))?.status, undefined, 'status is not set on create');
    await kube.patch(resources.deployments, 'ns', 'd', { spec: { replicas: 5 }, status: { replicas: 1, readyReplicas: 1 } }, { subresource: 'status' });
    await kube.patch(resources.deployments, 'ns', 'd', { status: { replicas: 7 } });
    await kube.patch(resources.deployments, 'ns', 'd', { status: { readyReplicas: null } }, { subresource: 'status' });
    const d = await kube.get<Deployment>(resources.deployments, 'ns', 'd');
    assert.deepEqual([d?.spec?.replicas, d?.status], [1, { replicas: 1 }]);
  });

  it('applies as create-or-merge and drops what the same field manager no longer sends', async () => {
    const kube = createMemoryKube();
    await kube.apply(resources.deployments, dep({ replicas: 1, paused: true }, { annotations: { mine: 'x' } }));
    await kube.patch(resources.deployments, 'ns', 'd', { metadata: { annotations: { theirs: 'y' } } });
    const d = await kube.apply<Deployment>(resources.deployments, dep({ replicas: 2 }));
    assert.deepEqual(d.spec, { replicas: 2 });
    assert.deepEqual(d.metadata.annotations, { theirs: 'y' });
  });

  it('deletes an object with finalizers only once they are removed', async () => {
    const kube = createMemoryKube();
    await kube.create(resources.workerPools, { metadata: { name: 'p', namespace: 'ns', finalizers: ['celeriac.io/cleanup'] } });
    assert.equal(await kube.delete(resources.workerPools, 'ns', 'p'), true);
    assert.ok((await kube.get(resources.workerPools, 'ns', 'p'))?.metadata.deletionTimestamp);
    await kube.patch(resources.workerPools, 'ns', 'p', { metadata: { finalizers: [] } });
    assert.equal(await kube.get(resources.workerPools, 'ns', 'p'), null);
  });

  it('serves list and watch to the real informer, label selector included', async () => {
    const kube = createMemoryKube();
    await kube.create(resources.deployments, dep({}, { name: 'a', labels: { 'celeriac.io/worker-pool': 'a' } }));
    await kube.create(resources.deployments, dep({}, { name: 'unlabelled' }));
    const inf = createInformer<Deployment>({ kube, resource: resources.deployments, labelSelector: 'celeriac.io/worker-pool', log: pino({ level: 'silent' }) });
    const seen: string[] = [];
    inf.on('add', (o) => seen.push(`add ${o.metadata.name}`));
    inf.on('update', (o) => seen.push(`update ${o.metadata.name} ${o.spec?.replicas}`));
    inf.on('delete', (o) => seen.push(`delete ${o.metadata.name}`));
    inf.start();
    await inf.waitForSync();
    await kube.create(resources.deployments, dep({}, { name: 'b', labels: { 'celeriac.io/worker-pool': 'b' } }));
    await kube.patch(resources.deployments, 'ns', 'a', { spec: { replicas: 3 } });
    await kube.patch(resources.deployments, 'ns', 'unlabelled', { spec: { replicas: 3 } });
    await kube.delete(resources.deployments, 'ns', 'b');
    await eventually(() => assert.deepEqual(seen, ['add a', 'add b', 'update a 3', 'delete b']));
    await inf.stop();
  });
});
