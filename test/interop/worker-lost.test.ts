// A task cut off by a worker's shutdown, read from Python: the early-acked task a celeriac worker
// could not finish within its shutdown timeout is stored FAILURE(WorkerLostError), and Celery's
// AsyncResult raises billiard's WorkerLostError for it (issue 11), on Celery 5.7 and 5.2.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createApp } from '../../runtime/src/index.js';
import { eventually } from '../support/eventually.js';
import { startWorker, stopProcess, withOutputOf } from '../support/processes.js';
import { uniqueName, useRedis } from '../support/servers.js';
import { pythonClient, pythonEnv, pythons, skipReason } from './interop-suite.js';

const redis = await useRedis();
const dir = mkdtempSync(join(tmpdir(), 'celeriac-lost-'));
after(async () => {
  await redis.server?.stop();
  rmSync(dir, { recursive: true, force: true });
});
const url = redis.server?.url ?? 'redis://127.0.0.1:1/0';

for (const py of pythons) {
  describe(`${py.label} reads a task cut off by a celeriac worker's shutdown`, { skip: skipReason(py, redis.skip) }, () => {
    it('SIGTERM past the shutdown timeout: Python sees FAILURE with billiard.exceptions.WorkerLostError', async () => {
      const queue = uniqueName('lost');
      const ledger = join(dir, `${queue}.ledger`);
      const env = { CELERIAC_BROKER_URL: url, CELERIAC_RESULT_BACKEND: url, CELERIAC_SHUTDOWN_TIMEOUT_MS: '300', HANG: '1', LEDGER: ledger };
      const worker = startWorker('dist/test/integration/fixtures/shutdown-tasks.js', queue, env);
      const app = createApp({ name: 'lost-client', broker: url, backend: url, logLevel: 'silent' });
      try {
        await withOutputOf({ worker }, async () => {
          const r = await app.sendTask('sd.wait', [], {}, { queue });
          await eventually(() => assert.ok(existsSync(ledger) && readFileSync(ledger, 'utf8').includes(r.id), 'the task started'));
          await stopProcess(worker);
          const [out] = await pythonClient(py.exe!, pythonEnv(url, url, queue), [{ op: 'result', id: r.id }]);
          assert.equal(out?.state, 'FAILURE');
          assert.equal(out?.error?.type, 'WorkerLostError');
          assert.equal(out?.error?.module, 'billiard.exceptions');
          assert.match(out?.error?.message ?? '', /^Worker exited prematurely: warm shutdown timeout/);
        });
      } finally {
        await stopProcess(worker, 'SIGKILL');
        await app.close();
      }
    });
  });
}
