// Finalizer edits are read-modify-write with the resourceVersion as precondition: a 409 Conflict
// re-reads the object and tries again instead of overwriting someone else's finalizer.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KubeApiError } from '../../../../operator/src/errors.js';
import { removeFinalizer } from '../../../../operator/src/k8s/finalizer.js';
import { resources, type KubeClient } from '../../../../operator/src/k8s/kube-client.js';
import type { KubeObject } from '../../../../operator/src/types.js';

/** One object with optimistic concurrency, and a hook to let "someone else" write first. */
function store(initial: KubeObject) {
  let current = structuredClone(initial);
  let rv = Number(initial.metadata.resourceVersion);
  const patches: unknown[] = [];
  let interfere: ((o: KubeObject) => void) | null = null;
  const kube = {
    async get() {
      return structuredClone(current);
    },
    async patch(_rt: unknown, _ns: string, _name: string, patch: { metadata: { finalizers: string[]; resourceVersion: string } }) {
      patches.push(patch);
      if (interfere) {
        interfere(current);
        interfere = null;
        current.metadata.resourceVersion = String(++rv);
      }
      if (patch.metadata.resourceVersion !== current.metadata.resourceVersion) {
        throw new KubeApiError(409, 'Conflict', 'the object has been modified', 'PATCH', '/x');
      }
      current.metadata.finalizers = patch.metadata.finalizers;
      current.metadata.resourceVersion = String(++rv);
      return structuredClone(current);
    },
  } as unknown as KubeClient;
  return {
    kube,
    patches,
    current: () => current,
    interfereOnce(fn: (o: KubeObject) => void) {
      interfere = fn;
    },
  };
}

const obj = (finalizers: string[]): KubeObject => ({ metadata: { name: 'p', namespace: 'ns', resourceVersion: '1', finalizers } });

describe('finalizers', () => {
  it('removes ours, keeping a finalizer another controller added meanwhile', async () => {
    const s = store(obj(['celeriac.io/cleanup']));
    s.interfereOnce((o) => (o.metadata.finalizers = ['other.io/x', 'celeriac.io/cleanup']));
    await removeFinalizer(s.kube, resources.workerPools, obj(['celeriac.io/cleanup']), 'celeriac.io/cleanup');
    assert.deepEqual(s.current().metadata.finalizers, ['other.io/x']);
    assert.equal(s.patches.length, 2, 'one conflict, one retry');
  });

  it('removes only ours, and is quiet when it is already gone', async () => {
    const s = store(obj(['a.io/x', 'celeriac.io/cleanup']));
    await removeFinalizer(s.kube, resources.workerPools, s.current(), 'celeriac.io/cleanup');
    assert.deepEqual(s.current().metadata.finalizers, ['a.io/x']);
    await removeFinalizer(s.kube, resources.workerPools, s.current(), 'celeriac.io/cleanup');
    assert.equal(s.patches.length, 1, 'nothing to remove: no write');
  });
});
