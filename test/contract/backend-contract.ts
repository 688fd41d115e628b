/**
 * The KeyValueStore contract: every result store driver (memory, file, redis) runs this suite.
 * Keys are unique per test, so drivers may share one server.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { KeyValueStore } from '../../runtime/src/backends/backend.js';
import { createKeyValueResultBackend } from '../../runtime/src/backends/result-backend.js';
import { buildMeta, States } from '../../runtime/src/protocol/result-meta.js';
import { eventually } from '../support/eventually.js';
import { uniqueName } from '../support/servers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface BackendContractOptions {
  readonly skip?: string | false;
}

export function backendContract(name: string, make: () => KeyValueStore | Promise<KeyValueStore>, opts: BackendContractOptions = {}): void {
  describe(`KeyValueStore contract: ${name}`, { skip: opts.skip }, () => {
    const stores: KeyValueStore[] = [];
    const open = async () => {
      const s = await make();
      stores.push(s);
      return s;
    };
    after(async () => {
      for (const s of stores.splice(0)) await s.close();
    });

    it('reads null for a missing key and what was set', async () => {
      const s = await open();
      const k = uniqueName('celery-task-meta-');
      assert.equal(await s.get(k), null);
      const value = JSON.stringify({ status: 'SUCCESS', result: 'ünïcødé ✓', task_id: k });
      await s.set(k, value);
      assert.equal(await s.get(k), value);
      await s.set(k, 'second');
      assert.equal(await s.get(k), 'second');
    });

    it('a stored SUCCESS is never overwritten; any other state is, even one whose own meta says "status": "SUCCESS"', async () => {
      const s = await open();
      const results = createKeyValueResultBackend(s, { expiresMs: null });
      const id = uniqueName('never-overwrite-');
      // A PROGRESS whose meta holds the text "status": "SUCCESS" (a task's own progress report).
      await results.store(buildMeta(id, 'PROGRESS', { status: 'SUCCESS', step: 1 }));
      await results.store(buildMeta(id, States.SUCCESS, 42));
      assert.equal((await results.get(id))?.result, 42, 'the SUCCESS replaced the PROGRESS');
      await results.store(buildMeta(id, States.RETRY, { exc_type: 'Retry', exc_message: ['late'] }));
      assert.equal((await results.get(id))?.status, States.SUCCESS, 'a late RETRY of an earlier run leaves the SUCCESS');
      assert.equal((await results.get(id))?.result, 42);
    });

    it('mget keeps order and gives null for missing keys', async () => {
      const s = await open();
      const [a, b, c] = [uniqueName('a'), uniqueName('b'), uniqueName('c')];
      await s.set(a, '1');
      await s.set(c, '3');
      assert.deepEqual(await s.mget([a, b, c]), ['1', null, '3']);
      assert.deepEqual(await s.mget([]), []);
    });

    it('expires a value set with ttlMs', async () => {
      const s = await open();
      const k = uniqueName('ttl');
      await s.set(k, 'short-lived', { ttlMs: 300 });
      const kept = uniqueName('kept');
      await s.set(kept, 'forever');
      await eventually(async () => assert.equal(await s.get(k), null, 'the value expired'), { timeoutMs: 15_000, intervalMs: 50 });
      assert.equal(await s.get(kept), 'forever');
    });

    it('incr counts from zero atomically', async () => {
      const s = await open();
      const k = uniqueName('counter');
      const results = await Promise.all(Array.from({ length: 10 }, () => s.incr(k, { ttlMs: 60_000 })));
      assert.deepEqual(
        [...results].sort((x, y) => x - y),
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
      );
      assert.equal(await s.get(k), '10');
    });

    it('delete removes a key', async () => {
      const s = await open();
      const k = uniqueName('del');
      await s.set(k, 'x');
      await s.delete(k);
      assert.equal(await s.get(k), null);
      await s.delete(uniqueName('never-set'));
    });

    it('watch resolves when the key is set by another client, and on abort', async (t) => {
      const s = await open();
      if (!s.watch) return t.skip(`${name} has no watch(); AsyncResult polls it`);
      const writer = await open();
      const k = uniqueName('watched');
      let woke = false;
      const ctl = new AbortController();
      // Set repeatedly: the subscription may not be live yet when the first set happens.
      const watching = s.watch(k, ctl.signal).then(() => (woke = true));
      await eventually(
        async () => {
          await writer.set(k, 'done');
          await sleep(50);
          assert.ok(woke, 'watch() woke on set');
        },
        { timeoutMs: 15_000, intervalMs: 1 },
      );
      await watching;
      assert.equal(ctl.signal.aborted, false, 'woke by the set, not by abort');
      const ctl2 = new AbortController();
      const idle = s.watch(uniqueName('quiet'), ctl2.signal);
      ctl2.abort();
      await idle;
    });
  });
}
