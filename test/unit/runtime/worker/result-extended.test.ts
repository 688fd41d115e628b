// Config resultExtended: the worker stores Celery's result_extended fields with every state.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { TaskContext } from '../../../../runtime/src/app/task.js';
import { createTestApp, startTestWorker } from '../../../../runtime/src/testing/index.js';
import type { Worker } from '../../../../runtime/src/worker/worker.js';

function appWith(resultExtended: boolean) {
  const app = createTestApp({ resultExtended, queues: ['celery', 'q.other'] });
  app.task('t.echo', (...args: unknown[]) => args.length, { readsKwargs: true });
  app.task('t.retry-once', function (this: TaskContext) {
    if (this.retries === 0) this.retry({ countdown: 0 });
    return 'ok';
  });
  app.task('t.fail', () => {
    throw new Error('boom');
  });
  return app;
}

describe('resultExtended', () => {
  const app = appWith(true);
  const plain = appWith(false);
  const workers: Worker[] = [];
  before(async () => {
    workers.push(await startTestWorker(app), await startTestWorker(plain));
  });
  after(() => Promise.all(workers.map((w) => w.stop())));

  it('stores name, args, kwargs, worker, retries and queue (Celery field names) before task_id', async () => {
    const r = await app.sendTask('t.echo', [1, 'a', null], { k: true }, { queue: 'q.other' });
    await r.get({ timeout: 5000 });
    const meta = await r.meta();
    assert.deepEqual(
      { name: meta.name, args: meta.args, kwargs: meta.kwargs, worker: meta.worker, retries: meta.retries, queue: meta.queue },
      { name: 't.echo', args: [1, 'a', null], kwargs: { k: true }, worker: app.config.hostname, retries: 0, queue: 'q.other' },
    );
    assert.equal(Object.keys(meta).at(-1), 'task_id');
  });

  it('counts retries and keeps the fields on FAILURE', async () => {
    const retried = await app.sendTask('t.retry-once');
    assert.equal(await retried.get({ timeout: 5000 }), 'ok');
    const m = await retried.meta();
    assert.equal(m.retries, 1);
    assert.equal(m.queue, 'celery');
    const failed = await app.sendTask('t.fail', [7]);
    await assert.rejects(failed.get({ timeout: 5000 }));
    const f = await failed.meta();
    assert.deepEqual([f.status, f.name, f.args], ['FAILURE', 't.fail', [7]]);
  });

  it('stores none of them when off (the default)', async () => {
    const r = await plain.sendTask('t.echo', [1]);
    await r.get({ timeout: 5000 });
    const meta = await r.meta();
    for (const k of ['name', 'args', 'kwargs', 'worker', 'retries', 'queue']) assert.ok(!(k in meta), `no ${k}`);
  });
});
