// Results stored by someone else: JSON that is not Celery's task meta fails at once, naming the key.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createKeyValueResultBackend } from '../../../../runtime/src/backends/result-backend.js';
import type { KeyValueStore } from '../../../../runtime/src/backends/backend.js';
import { createMemoryStore } from '../../../../runtime/src/backends/memory.js';
import { BackendError } from '../../../../runtime/src/errors.js';

describe('key-value result backend: what is stored', () => {
  for (const text of ['42', '"hello"', '[1,2,3]', '{}', 'null', '{"status": 1}']) {
    // The test timeout only turns the old behaviour (PENDING until waitReady's own hour) into a failure.
    it(`fails waitReady at once with a BackendError naming the key for ${text}`, { timeout: 30_000 }, async () => {
      const store = createMemoryStore(`memory://rb-${Math.random()}`);
      const results = createKeyValueResultBackend(store, { expiresMs: null });
      await store.set('celery-task-meta-t1', text);
      // A timeout far beyond the test's own: the rejection must not come from it.
      await assert.rejects(
        results.waitReady('t1', { timeoutMs: 3_600_000 }),
        (err: unknown) => err instanceof BackendError && /celery-task-meta-t1/.test(err.message) && /not a task result/.test(err.message),
      );
    });
  }

  it('still reads a real meta', async () => {
    const store = createMemoryStore(`memory://rb-${Math.random()}`);
    const results = createKeyValueResultBackend(store, { expiresMs: null });
    await store.set('celery-task-meta-t2', JSON.stringify({ status: 'SUCCESS', result: 3, task_id: 't2' }));
    assert.equal((await results.waitReady('t2', { timeoutMs: 1000 })).result, 3);
  });
});

describe('key-value result backend: waiting', () => {
  it('a change the watch never reports is still seen (re-read), not only at the deadline', async () => {
    // A store whose push is lost (fs.watch can miss a rename made by another process): watch()
    // settles only when the wait gives up on it.
    const inner = createMemoryStore(`memory://lost-watch-${Math.random()}`);
    const deaf: KeyValueStore = {
      ...inner,
      watch: (_key, signal) => new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true })),
    };
    const backend = createKeyValueResultBackend(deaf, { expiresMs: null });
    const meta = { status: 'SUCCESS', result: 5, traceback: null, children: [], date_done: null, task_id: 't1' } as const;
    // An hour's deadline: before the fix this waited the whole hour (the test runner's timeout fails it).
    const waiting = backend.waitReady('t1', { timeoutMs: 3_600_000 });
    await inner.set('celery-task-meta-t1', JSON.stringify(meta));
    assert.equal((await waiting).result, 5);
  });
});
