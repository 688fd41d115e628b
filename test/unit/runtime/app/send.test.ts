// send.ts and App.sendTask: one builder and one routing for every task message, whoever sends it.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../../../runtime/src/app/config.js';
import { outgoingTask } from '../../../../runtime/src/app/send.js';
import type { TaskContext } from '../../../../runtime/src/app/task.js';
import { createTestApp, startTestWorker } from '../../../../runtime/src/testing/index.js';
import type { Worker } from '../../../../runtime/src/worker/worker.js';

describe('outgoingTask: queue precedence (Celery: call > task option > routes > default)', () => {
  const config = loadConfig({ env: {}, options: { defaultQueue: 'dflt' } });
  const queue = (o: { queue?: string }, task: { queue?: string } | undefined, route: { queue?: string; priority?: number } | null) =>
    outgoingTask('t.x', [], {}, o, { config, origin: 'o', task, route, ownReplyTo: undefined, id: 'i', now: 0 });
  it('takes the first of call, task, route, default', () => {
    assert.equal(queue({ queue: 'call' }, { queue: 'task' }, { queue: 'route' }).queue, 'call');
    assert.equal(queue({}, { queue: 'task' }, { queue: 'route' }).queue, 'task');
    assert.equal(queue({}, {}, { queue: 'route' }).queue, 'route');
    assert.equal(queue({}, undefined, null).queue, 'dflt');
  });
  it("uses a route's priority when the caller gives none", () => {
    assert.equal(queue({}, undefined, { priority: 7 }).message.properties.priority, 7);
    assert.equal(
      outgoingTask('t.x', [], {}, { priority: 2 }, { config, origin: 'o', task: undefined, route: { priority: 7 }, ownReplyTo: undefined, id: 'i', now: 0 })
        .message.properties.priority,
      2,
    );
  });
});

describe('a signature goes to one queue whether a client or a worker sends it (memory broker)', () => {
  const app = createTestApp({
    concurrency: 4,
    queues: ['celery', 'q.routed', 'q.explicit'],
    routes: { 'r.*': 'q.routed' },
  });
  /** Returns the queue it was delivered from. */
  app.task('r.where', function (this: TaskContext) {
    return this.deliveryInfo.queue;
  });
  app.task('t.ok', () => 1);
  app.task('t.fail', () => {
    throw new Error('boom');
  });
  app.task('r.retrying', function (this: TaskContext) {
    if (this.retries === 0) this.retry({ countdown: 0 });
    return this.deliveryInfo.queue;
  });
  const where = (taskId: string) => app.signature('r.where', [], {}, { task_id: taskId });
  const queueOf = async (id: string) => app.asyncResult<string>(id).get({ timeout: 5000 });

  let worker: Worker;
  before(async () => {
    worker = await startTestWorker(app);
  });
  after(() => worker.stop());

  it('a client sends it to the routed queue', async () => {
    const r = await app.sendTask<string>('r.where');
    assert.equal(await r.get({ timeout: 5000 }), 'q.routed');
  });

  it('link: the worker sends it to the same queue', async () => {
    const id = randomUUID();
    await app.sendTask('t.ok', [], {}, { link: where(id) });
    assert.equal(await queueOf(id), 'q.routed');
  });

  it('link_error: the worker sends it to the same queue', async () => {
    const id = randomUUID();
    await app.sendTask('t.fail', [], {}, { linkError: where(id) });
    assert.equal(await queueOf(id), 'q.routed');
  });

  it('chain step: the worker sends it to the same queue', async () => {
    const id = randomUUID();
    await app.sendTask('t.ok', [], {}, { chain: [where(id)] });
    assert.equal(await queueOf(id), 'q.routed');
  });

  it("a signature's own queue option wins, for the client and the worker alike", async () => {
    const id = randomUUID();
    const sig = app.signature('r.where', [], {}, { task_id: id, queue: 'q.explicit' });
    await app.sendTask('t.ok', [], {}, { link: sig });
    assert.equal(await queueOf(id), 'q.explicit');
    const r = await app.sendTask<string>('r.where', [], {}, { queue: 'q.explicit' });
    assert.equal(await r.get({ timeout: 5000 }), 'q.explicit');
  });

  it('retry: sent back to the queue the task came from, never re-routed (Celery Task.retry)', async () => {
    const routed = await app.sendTask<string>('r.retrying');
    assert.equal(await routed.get({ timeout: 5000 }), 'q.routed');
    const explicit = await app.sendTask<string>('r.retrying', [], {}, { queue: 'q.explicit' });
    assert.equal(await explicit.get({ timeout: 5000 }), 'q.explicit');
  });
});
