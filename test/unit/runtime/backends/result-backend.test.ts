// Results stored by someone else: JSON that is not Celery's task meta fails at once, naming the key.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createKeyValueResultBackend } from '../../../../runtime/src/backends/result-backend.js';
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
