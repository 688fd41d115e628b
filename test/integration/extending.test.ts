/**
 * Extending the worker (issue 20) in each pool on a real Redis: a task's custom state with its
 * meta (ctx.updateState) is stored as Celery stores it and followed by AsyncResult.follow().
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { createApp, type App } from '../../runtime/src/index.js';
import type { TaskMeta } from '../../runtime/src/protocol/result-meta.js';
import { createWorker, type Worker } from '../../runtime/src/worker/worker.js';
import { repoRoot } from '../support/processes.js';
import { uniqueName, useRedis } from '../support/servers.js';

const redis = await useRedis();
const dir = mkdtempSync(join(tmpdir(), 'celeriac-extending-'));
after(async () => {
  await redis.server?.stop();
  rmSync(dir, { recursive: true, force: true });
});
const url = redis.server?.url ?? 'redis://127.0.0.1:1/0';
const TASKS = pathToFileURL(join(repoRoot, 'dist/test/integration/fixtures/extending-tasks.js')).href;

/** A worker of `pool` on its own queue, in this process, and a client app on the same Redis. */
async function startPoolWorker(pool: 'event-loop' | 'threads' | 'processes', extra: Record<string, unknown> = {}) {
  const queue = uniqueName(`ext-${pool}`);
  const { app } = (await import(TASKS)) as { app: App };
  // One module instance per test process: each worker needs a fresh app with the same tasks.
  const own = createApp({
    name: 'extending',
    hostname: 'ext@test',
    broker: url,
    backend: url,
    queues: [queue],
    concurrency: 2,
    metricsPort: 0,
    logLevel: 'silent',
    ...extra,
  });
  for (const t of app.tasks.values()) own.task(t.name, t.fn, t.options);
  const worker: Worker = createWorker(own, { pool, tasksModule: TASKS });
  await worker.start();
  const client = createApp({ broker: url, backend: url, defaultQueue: queue, logLevel: 'silent' });
  return { worker, client, queue, own };
}

for (const pool of ['event-loop', 'threads', 'processes'] as const) {
  describe(`extending the worker, ${pool} pool`, { skip: redis.skip }, () => {
    it('updateState stores PROGRESS with its meta as Celery does, and follow() yields it, then SUCCESS', async () => {
      const { worker, client } = await startPoolWorker(pool, { resultExtended: true });
      try {
        const gate = join(dir, `${pool}.gate`);
        const r = await client.sendTask('ext.progress', [3, gate]);
        const seen: TaskMeta[] = [];
        for await (const m of r.follow({ intervalMs: 20 })) {
          seen.push(m);
          if (m.status === 'PROGRESS' && (m.result as { current: number }).current === 3) {
            assert.deepEqual(await r.info(), { current: 3, total: 3 });
            writeFileSync(gate, '');
          }
        }
        const progress = seen.filter((m) => m.status === 'PROGRESS');
        const last = progress.at(-1)!;
        assert.deepEqual(last.result, { current: 3, total: 3 });
        // Celery's field order and values for a non-ready state stored from inside a task.
        assert.deepEqual(Object.keys(last), [
          'status',
          'result',
          'traceback',
          'children',
          'date_done',
          'name',
          'args',
          'kwargs',
          'worker',
          'retries',
          'queue',
          'task_id',
        ]);
        assert.equal(last.date_done, null);
        assert.deepEqual(last.children, []);
        assert.equal((last as unknown as { worker: string }).worker, 'ext@test');
        // Every change is yielded once, in order, and the iteration ends with the ready state.
        const currents = progress.map((m) => (m.result as { current: number }).current);
        assert.deepEqual(currents, [...currents].sort(), 'progress only goes forward');
        assert.equal(new Set(currents).size, currents.length, 'no repeats');
        assert.equal(seen.at(-1)!.status, 'SUCCESS');
        assert.equal(seen.at(-1)!.result, 'done');
      } finally {
        await worker.stop();
        await client.close();
      }
    });
  });
}
