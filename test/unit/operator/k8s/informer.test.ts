// The informer's restart logic against a scripted KubeClient: 410 Gone re-lists (and fires delete
// for objects that vanished), other failures retry with backoff while the cache keeps serving,
// and a server-ended watch resumes from the last resourceVersion.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { createInformer } from '../../../../operator/src/k8s/informer.js';
import { resources, type KubeClient, type WatchEvent, type WatchOptions } from '../../../../operator/src/k8s/kube-client.js';
import type { KubeObject } from '../../../../operator/src/types.js';
import { eventually } from '../../../support/eventually.js';

function obj(name: string, rv: string): KubeObject {
  return { metadata: { name, namespace: 'ns', resourceVersion: rv } };
}

type WatchScript = (o: WatchOptions, emit: (e: WatchEvent<KubeObject>) => void) => Promise<void>;

/** A KubeClient whose list and watch answers are scripted in order; the last watch blocks until aborted. */
function scripted(lists: KubeObject[][], watches: WatchScript[]) {
  const calls = { lists: 0, watches: [] as string[] };
  const block: WatchScript = (o) => new Promise((_, reject) => o.signal.addEventListener('abort', () => reject(new Error('aborted'))));
  const kube = {
    async list() {
      const items = lists[Math.min(calls.lists, lists.length - 1)] ?? [];
      calls.lists++;
      return { items, resourceVersion: `list-${calls.lists}` };
    },
    async watch(_rt: unknown, o: WatchOptions, onEvent: (e: WatchEvent<KubeObject>) => void) {
      calls.watches.push(o.resourceVersion);
      const script = watches.shift() ?? block;
      await script(o, onEvent);
    },
  } as unknown as KubeClient;
  return { kube, calls };
}

const log = pino({ level: 'silent' });

describe('createInformer', () => {
  it('lists, applies watch events, and resumes a server-ended watch from the last resourceVersion', async () => {
    const { kube, calls } = scripted(
      [[obj('a', '1')]],
      [
        async (_o, emit) => {
          emit({ type: 'ADDED', object: obj('b', '5') });
          emit({ type: 'MODIFIED', object: obj('a', '6') });
          emit({ type: 'BOOKMARK', object: obj('', '7') });
        },
      ],
    );
    const inf = createInformer<KubeObject>({ kube, resource: resources.workerPools, log, minBackoffMs: 1 });
    const seen: string[] = [];
    inf.on('add', (o) => seen.push(`add ${o.metadata.name}`));
    inf.on('update', (o, old) => seen.push(`update ${o.metadata.name} ${old?.metadata.resourceVersion}->${o.metadata.resourceVersion}`));
    inf.start();
    await inf.waitForSync();
    await eventually(() => assert.deepEqual(calls.watches, ['list-1', '7']));
    assert.deepEqual(seen, ['add a', 'add b', 'update a 1->6']);
    assert.deepEqual(
      inf
        .list()
        .map((o) => o.metadata.name)
        .sort(),
      ['a', 'b'],
    );
    assert.equal(calls.lists, 1, 'no re-list after a normal watch end');
    await inf.stop();
  });

  it('re-lists on 410 Gone and fires delete for objects that vanished meanwhile', async () => {
    const { kube, calls } = scripted(
      [[obj('a', '1'), obj('b', '1')], [obj('b', '9')]],
      [async (_o, emit) => emit({ type: 'ERROR', object: { code: 410, message: 'too old resource version' } as unknown as KubeObject })],
    );
    const inf = createInformer<KubeObject>({ kube, resource: resources.workerPools, log, minBackoffMs: 1 });
    const deleted: string[] = [];
    inf.on('delete', (o) => deleted.push(o.metadata.name));
    inf.start();
    await eventually(() => assert.equal(calls.lists, 2));
    await eventually(() => assert.deepEqual(deleted, ['a']));
    assert.equal(inf.get('ns', 'b')?.metadata.resourceVersion, '9');
    await inf.stop();
  });

  it('retries after other errors while the cache keeps serving the last state', async () => {
    const { kube, calls } = scripted(
      [[obj('a', '1')]],
      [
        async () => {
          throw new Error('ECONNRESET');
        },
        async () => {
          throw new Error('ECONNRESET again');
        },
      ],
    );
    const inf = createInformer<KubeObject>({ kube, resource: resources.workerPools, log, minBackoffMs: 1, maxBackoffMs: 5 });
    inf.start();
    await eventually(() => assert.equal(calls.watches.length, 3));
    assert.ok(inf.get('ns', 'a'), 'cache still serves a');
    assert.equal(inf.synced, true);
    await inf.stop();
  });

  it('restarts a watch the server did not end after its timeout (a dead connection)', async () => {
    const { kube, calls } = scripted([[obj('a', '1')]], []);
    const inf = createInformer<KubeObject>({ kube, resource: resources.workerPools, log, watchTimeoutSeconds: 0, watchGraceMs: 20, minBackoffMs: 1 });
    inf.start();
    await eventually(() => assert.ok(calls.watches.length >= 2, `watches: ${calls.watches.length}`));
    assert.equal(calls.lists, 1, 'resumed from the last resourceVersion, no re-list');
    await inf.stop();
  });
});
