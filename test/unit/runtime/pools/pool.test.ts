// The pool seam on the event-loop pool: Celery's names, resize, and autoscale growing with load.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import { createPool, poolKind } from '../../../../runtime/src/pools/pool.js';
import { createTestApp, startTestWorker } from '../../../../runtime/src/testing/index.js';
import { eventually } from '../../../support/eventually.js';

describe('pool', () => {
  it("maps Celery's names to the closest pool", () => {
    assert.equal(poolKind('solo'), 'event-loop');
    assert.equal(poolKind('prefork'), 'processes');
    assert.equal(poolKind('threads'), 'threads');
  });

  it('threads and processes need the tasks module, and say how to give it', () => {
    const o = { size: 2, config: {}, maxTasksPerChild: null, maxMemoryPerChildKib: null, log: pino({ level: 'silent' }) };
    assert.throws(() => createPool('prefork', o), /tasksModule: import\.meta\.url/);
  });

  it('autoscale grows the slots to the tasks held, up to MAX, and the waiting tasks start at once', async () => {
    const app = createTestApp({ concurrency: 1, autoscale: '3,1' });
    const releases: (() => void)[] = [];
    const hold = app.task('t.hold', () => new Promise<void>((r) => releases.push(r)));
    const worker = await startTestWorker(app);
    try {
      const results = await Promise.all([1, 2, 3, 4].map(() => hold.delay()));
      await eventually(() => assert.equal(worker.counts().active, 3));
      assert.match(await worker.metrics.registry.getSingleMetricAsString('celeriac_worker_slots'), /^celeriac_worker_slots 3$/m);
      while (worker.counts().processed < 4) {
        for (const release of releases.splice(0)) release();
        await eventually(() => assert.ok(releases.length > 0 || worker.counts().processed === 4));
      }
      for (const r of results) await r.get({ timeout: 5000 });
    } finally {
      await worker.stop();
    }
  });
});
