// Results stored by someone else: JSON that is not Celery's task meta fails at once, naming the key.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createKeyValueResultBackend } from '../../../../runtime/src/backends/result-backend.js';
import type { KeyValueStore } from '../../../../runtime/src/backends/backend.js';
import { createMemoryStore } from '../../../../runtime/src/backends/memory.js';
import { BackendError, ResultTimeoutError } from '../../../../runtime/src/errors.js';
import { eventually } from '../../../support/eventually.js';

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
      listen: undefined, // a store with watch() alone: listened to by watching again after each set
      watch: (_key, signal) => new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true })),
    };
    const backend = createKeyValueResultBackend(deaf, { expiresMs: null });
    const meta = { status: 'SUCCESS', result: 5, traceback: null, children: [], date_done: null, task_id: 't1' } as const;
    // An hour's deadline: before the fix this waited the whole hour (the test runner's timeout fails it).
    const waiting = backend.waitReady('t1', { timeoutMs: 3_600_000 });
    await inner.set('celery-task-meta-t1', JSON.stringify(meta));
    assert.equal((await waiting).result, 5);
  });

  it('a set that listen() never reports is still seen (re-read), not only at the deadline', async () => {
    const inner = createMemoryStore(`memory://lost-listen-${Math.random()}`);
    const deaf: KeyValueStore = { ...inner, listen: () => () => undefined };
    const backend = createKeyValueResultBackend(deaf, { expiresMs: null });
    const waiting = backend.waitReady('t1', { timeoutMs: 3_600_000 });
    await inner.set('celery-task-meta-t1', JSON.stringify(meta('SUCCESS', 't1')));
    assert.equal((await waiting).result, 5);
  });

  // An hour between rechecks (intervalMs raises the recheck): only the push can end these waits
  // before the test runner's timeout.
  const pushOnly = { timeoutMs: 3_600_000, intervalMs: 3_600_000 };

  for (const [how, make] of [
    ['listen() (memory)', (s: KeyValueStore) => s],
    ['watch() alone, watched again after each set', (s: KeyValueStore) => ({ ...s, listen: undefined })],
  ] as const) {
    it(`${how}: one waiter is woken by each set until the meta is ready, and stops listening`, async () => {
      const inner = createMemoryStore(`memory://wake-${Math.random()}`);
      const { store, active } = counted(make(inner));
      const backend = createKeyValueResultBackend(store, { expiresMs: null });
      const waiting = backend.waitReady('t1', pushOnly);
      await new Promise((r) => setImmediate(r));
      await inner.set('celery-task-meta-t1', JSON.stringify(meta('STARTED', 't1')));
      await new Promise((r) => setImmediate(r));
      await inner.set('celery-task-meta-t1', JSON.stringify(meta('RETRY', 't1')));
      await new Promise((r) => setImmediate(r));
      await inner.set('celery-task-meta-t1', JSON.stringify(meta('SUCCESS', 't1')));
      assert.equal((await waiting).status, 'SUCCESS');
      await eventually(() => assert.equal(active(), 0, 'no listener or watch left'));
    });

    it(`${how}: an abort ends the wait with ResultTimeoutError`, async () => {
      const inner = createMemoryStore(`memory://abort-${Math.random()}`);
      const { store, active } = counted(make(inner));
      const backend = createKeyValueResultBackend(store, { expiresMs: null });
      const ctl = new AbortController();
      const waiting = backend.waitReady('t1', { ...pushOnly, signal: ctl.signal });
      await new Promise((r) => setImmediate(r));
      ctl.abort();
      await assert.rejects(waiting, ResultTimeoutError);
      await eventually(() => assert.equal(active(), 0, 'no listener or watch left'));
    });
  }

  it('a watch() that fails ends the wait with its error (not a timeout)', async () => {
    const inner = createMemoryStore(`memory://broken-watch-${Math.random()}`);
    const broken: KeyValueStore = { ...inner, listen: undefined, watch: () => Promise.reject(new BackendError('watch broke')) };
    const backend = createKeyValueResultBackend(broken, { expiresMs: null });
    await assert.rejects(backend.waitReady('t1', pushOnly), /watch broke/);
  });

  it('a store that cannot push is polled every intervalMs', async () => {
    const inner = createMemoryStore(`memory://polled-${Math.random()}`);
    const backend = createKeyValueResultBackend({ ...inner, listen: undefined, watch: undefined }, { expiresMs: null });
    const waiting = backend.waitReady('t1', { timeoutMs: 3_600_000, intervalMs: 5 });
    await inner.set('celery-task-meta-t1', JSON.stringify(meta('SUCCESS', 't1')));
    assert.equal((await waiting).result, 5);
  });
});

function meta(status: string, id: string) {
  return { status, result: 5, traceback: null, children: [], date_done: null, task_id: id };
}

/** `s` with a count of the listen() and watch() calls not yet stopped or settled. */
function counted(s: KeyValueStore): { store: KeyValueStore; active: () => number } {
  let active = 0;
  const store: KeyValueStore = {
    ...s,
    listen:
      s.listen &&
      ((key, onSet) => {
        active++;
        const stop = s.listen!(key, onSet);
        return () => {
          active--;
          stop();
        };
      }),
    watch:
      s.watch &&
      ((key, signal) => {
        active++;
        return s.watch!(key, signal).finally(() => active--);
      }),
  };
  return { store, active: () => active };
}
