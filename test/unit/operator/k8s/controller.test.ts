// The controller loop over the in-memory KubeClient's informer, with reconcilers that succeed, fail and fail for
// good: it reads objects from the cache by key, requeues by the returned Action, backs off after
// errors, does not retry a TerminalError, and counts each outcome.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { createController } from '../../../../operator/src/k8s/controller.js';
import type { EventRecorder } from '../../../../operator/src/k8s/events.js';
import { resources } from '../../../../operator/src/k8s/kube-client.js';
import { Action, TerminalError, type Reconciler } from '../../../../operator/src/k8s/reconciler.js';
import { createOperatorMetrics } from '../../../../operator/src/metrics.js';
import type { KubeObject } from '../../../../operator/src/types.js';
import { eventually } from '../../../support/eventually.js';
import { createMemoryKube } from '../../../support/memory-kube.js';

/** A store holding `names` as WorkerPools, and an informer over it. */
async function storeWith(names: string[]) {
  const kube = createMemoryKube();
  for (const name of names) await kube.create(resources.workerPools, { metadata: { name, namespace: 'ns' }, spec: {} } as KubeObject);
  return { kube, informer: kube.informer<KubeObject>(resources.workerPools) };
}

const noEvents: EventRecorder = { record: () => undefined, flush: async () => undefined };

describe('createController', () => {
  it('reconciles each object, requeues by Action, backs off on errors and stops retrying a TerminalError', async () => {
    const calls: Record<string, number> = {};
    const reconciler: Reconciler<KubeObject> = {
      name: 'test',
      async reconcile(o, ctx) {
        const n = (calls[o.metadata.name] = (calls[o.metadata.name] ?? 0) + 1);
        assert.equal(ctx.attempt, o.metadata.name === 'flaky' ? n - 1 : 0);
        if (o.metadata.name === 'flaky' && n < 3) throw new Error('transient');
        if (o.metadata.name === 'broken') throw new TerminalError('BadSpec', 'spec is wrong');
        return o.metadata.name === 'poll' && n < 3 ? Action.requeue(1) : Action.awaitChange();
      },
    };
    const { kube, informer } = await storeWith(['ok', 'flaky', 'broken', 'poll']);
    const metrics = createOperatorMetrics();
    const controller = createController({
      reconciler,
      informer,
      kube,
      events: noEvents,
      log: pino({ level: 'silent' }),
      metrics,
      rateLimiter: { baseDelayMs: 1, maxDelayMs: 10 },
    });
    const stop = new AbortController();
    const running = controller.run(stop.signal);
    await eventually(() => assert.deepEqual(calls, { ok: 1, flaky: 3, broken: 1, poll: 3 }));
    // An update of the broken object (the user fixed the spec) is reconciled again.
    await kube.patch(resources.workerPools, 'ns', 'broken', { spec: { fixed: true } });
    await eventually(() => assert.equal(calls.broken, 2));
    stop.abort();
    await running;
    const counts = Object.fromEntries((await metrics.reconcileTotal.get()).values.map((v) => [v.labels.result, v.value]));
    assert.deepEqual(counts, { success: 3, error: 2, terminal: 2, requeue_after: 2 });
  });

  it('skips update events the filter rejects (status-only writes)', async () => {
    const { kube, informer } = await storeWith(['a']);
    const metrics = createOperatorMetrics();
    createController({
      reconciler: { name: 'filtered', reconcile: async () => Action.awaitChange() },
      informer,
      kube,
      events: noEvents,
      log: pino({ level: 'silent' }),
      metrics,
      enqueueUpdate: (o, old) => o.metadata.generation !== old?.metadata.generation,
    });
    const adds = async () => (await metrics.workqueueAdds.get()).values[0]?.value ?? 0;
    await kube.patch(resources.workerPools, 'ns', 'a', { status: { observedGeneration: 1 } }, { subresource: 'status' });
    assert.equal(await adds(), 0, 'a status-only update is not enqueued');
    await kube.patch(resources.workerPools, 'ns', 'a', { spec: { replicas: 2 } });
    assert.equal(await adds(), 1, 'a spec change is');
  });
});
