import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { createEventRecorder } from '../../../../operator/src/k8s/events.js';
import type { KubeClient } from '../../../../operator/src/k8s/kube-client.js';
import type { KubeObject } from '../../../../operator/src/types.js';

function recordingKube() {
  const created: any[] = [];
  const patched: { name: string; patch: any }[] = [];
  const kube = {
    async create(_rt: unknown, o: KubeObject) {
      created.push(o);
      return o;
    },
    async patch(_rt: unknown, _ns: string, name: string, patch: unknown) {
      patched.push({ name, patch });
      return {};
    },
  } as unknown as KubeClient;
  return { kube, created, patched };
}

const pool: KubeObject = { apiVersion: 'celeriac.io/v1alpha1', kind: 'WorkerPool', metadata: { name: 'shop', namespace: 'prod', uid: 'u1' } };

describe('createEventRecorder', () => {
  it('creates a core/v1 Event pointing at the object', async () => {
    const { kube, created } = recordingKube();
    const r = createEventRecorder({ kube, log: pino({ level: 'silent' }), now: () => new Date('2026-01-01T00:00:00Z') });
    r.record(pool, 'Normal', 'ScaledDeployment', 'Scaled from 1 to 2');
    await r.flush();
    assert.equal(created.length, 1);
    const e = created[0];
    assert.deepEqual(e.involvedObject, {
      apiVersion: 'celeriac.io/v1alpha1',
      kind: 'WorkerPool',
      name: 'shop',
      namespace: 'prod',
      uid: 'u1',
      resourceVersion: undefined,
    });
    assert.equal(e.metadata.namespace, 'prod');
    assert.match(e.metadata.name, /^shop\./);
    assert.deepEqual([e.type, e.reason, e.message, e.count, e.source.component], ['Normal', 'ScaledDeployment', 'Scaled from 1 to 2', 1, 'celeriac-operator']);
    assert.equal(e.firstTimestamp, '2026-01-01T00:00:00Z');
  });

  it('aggregates a repeat into a count instead of a new Event', async () => {
    const { kube, created, patched } = recordingKube();
    const r = createEventRecorder({ kube, log: pino({ level: 'silent' }) });
    r.record(pool, 'Warning', 'Unreachable', 'cannot connect');
    await r.flush();
    r.record(pool, 'Warning', 'Unreachable', 'cannot connect');
    r.record(pool, 'Warning', 'Unreachable', 'cannot connect');
    await r.flush();
    r.record(pool, 'Warning', 'Unreachable', 'another message');
    await r.flush();
    assert.equal(created.length, 2);
    assert.deepEqual(
      patched.map((p) => p.patch.count),
      [2, 3],
    );
    assert.equal(patched[0]?.name, created[0].metadata.name);
  });

  it('aggregates two quick calls for the same Event (no flush in between) into one object with count 2', async () => {
    const { kube, created, patched } = recordingKube();
    const r = createEventRecorder({ kube, log: pino({ level: 'silent' }) });
    r.record(pool, 'Normal', 'ScaledDeployment', 'Scaled from 1 to 2');
    r.record(pool, 'Normal', 'ScaledDeployment', 'Scaled from 1 to 2');
    r.record(pool, 'Normal', 'ScaledDeployment', 'Scaled from 1 to 2');
    await r.flush();
    assert.equal(created.length, 1, 'one Event object');
    assert.deepEqual(
      patched.map((p) => [p.name, p.patch.count]),
      [
        [created[0].metadata.name, 2],
        [created[0].metadata.name, 3],
      ],
    );
  });

  it('creates the Event again after a failed create instead of patching one that does not exist', async () => {
    const { kube, created, patched } = recordingKube();
    let fail = true;
    const flaky = {
      ...kube,
      create: async (rt: unknown, o: KubeObject) => (fail ? Promise.reject(new Error('etcd timeout')) : kube.create(rt as never, o)),
    } as unknown as KubeClient;
    const r = createEventRecorder({ kube: flaky, log: pino({ level: 'silent' }) });
    r.record(pool, 'Warning', 'Unreachable', 'cannot connect');
    await r.flush();
    fail = false;
    r.record(pool, 'Warning', 'Unreachable', 'cannot connect');
    await r.flush();
    assert.equal(created.length, 1);
    assert.equal(created[0].count, 1);
    assert.equal(patched.length, 0);
  });

  it('drops events beyond the rate limit and logs write failures instead of throwing', async () => {
    let writes = 0;
    const kube = { create: async () => (writes++, Promise.reject(new Error('forbidden'))) } as unknown as KubeClient;
    const r = createEventRecorder({ kube, log: pino({ level: 'silent' }), qps: 0.0001, now: () => new Date(0) });
    for (let i = 0; i < 40; i++) r.record(pool, 'Normal', `Reason${i}`, 'm');
    await r.flush();
    assert.equal(writes, 25, 'the burst of 25 went out, the rest was dropped');
  });
});
