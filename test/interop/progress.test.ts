/**
 * Custom states and progress across the boundary (issue 20), on Celery 5.7 and 5.2 over Redis: a
 * TypeScript task's `this.updateState({ state: 'PROGRESS', meta })` read by Python's
 * `AsyncResult.state` / `.info`, and a Python task's `self.update_state(...)` followed by the
 * TypeScript `AsyncResult.follow()`.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createApp } from '../../runtime/src/index.js';
import type { TaskMeta } from '../../runtime/src/protocol/result-meta.js';
import { uniqueName, useRedis } from '../support/servers.js';
import { pythonClient, pythonEnv, pythons, skipReason, workerPair } from './interop-suite.js';

const redis = await useRedis();
const dir = mkdtempSync(join(tmpdir(), 'celeriac-progress-'));
after(async () => {
  await redis.server?.stop();
  rmSync(dir, { recursive: true, force: true });
});
const url = redis.server?.url ?? 'redis://127.0.0.1:1/0';

for (const python of pythons) {
  describe(`${python.label} <-> celeriac: custom states and progress (redis)`, { skip: skipReason(python, redis.skip) }, () => {
    const { tsQueue, pyQueue, apps, withLogs } = workerPair(python, url, 'progress');

    it("Python's AsyncResult.state and .info read a TypeScript task's PROGRESS meta", () =>
      withLogs(async () => {
        const app = createApp({ name: 'interop-progress', broker: url, backend: url, logLevel: 'warn' });
        apps.push(app);
        const gate = join(dir, uniqueName('ts-gate'));
        const r = await app.sendTask<string>('interop.progress', [3, gate], {}, { queue: tsQueue });
        const [seen] = await pythonClient(python.exe!, pythonEnv(url, url, tsQueue), [{ op: 'progress', id: r.id, total: 3 }]);
        assert.equal(seen?.error, undefined, JSON.stringify(seen));
        assert.equal(seen?.state, 'PROGRESS');
        assert.deepEqual(seen?.result, { current: 3, total: 3 });
        writeFileSync(gate, '');
        assert.equal(await r.get({ timeout: 60_000 }), 'done');
        const [done] = await pythonClient(python.exe!, pythonEnv(url, url, tsQueue), [{ op: 'result', id: r.id }]);
        assert.equal(done?.state, 'SUCCESS');
        assert.equal(done?.result, 'done');
      }));

    it("TypeScript's AsyncResult.follow() reads a Python task's PROGRESS meta, then its SUCCESS", () =>
      withLogs(async () => {
        const app = createApp({ name: 'interop-progress', broker: url, backend: url, logLevel: 'warn' });
        apps.push(app);
        const gate = join(dir, uniqueName('py-gate'));
        const r = await app.sendTask<string>('pyinterop.progress', [3, gate], {}, { queue: pyQueue });
        const seen: TaskMeta[] = [];
        for await (const m of r.follow({ intervalMs: 20 })) {
          seen.push(m);
          if (m.status === 'PROGRESS' && (m.result as { current?: number }).current === 3) {
            assert.equal(await r.state(), 'PROGRESS');
            assert.deepEqual(await r.info(), { current: 3, total: 3 });
            writeFileSync(gate, '');
          }
        }
        assert.deepEqual(seen.filter((m) => m.status === 'PROGRESS').at(-1)?.result, { current: 3, total: 3 });
        assert.equal(seen.at(-1)?.status, 'SUCCESS');
        assert.equal(seen.at(-1)?.result, 'done');
      }));
  });
}
