// Tasks a worker could not finish normally, read from Python, on Celery 5.7 and 5.2: the early-acked
// task a celeriac worker could not finish within its shutdown timeout is stored
// FAILURE(WorkerLostError), and Celery's AsyncResult raises billiard's WorkerLostError for it
// (issue 11); one still blocking the loop past its hard limit when the worker is killed raises
// billiard's TimeLimitExceeded; one whose result cannot be written raises kombu's EncodeError.
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
  describe(`${py.label} reads tasks a celeriac worker could not finish normally`, { skip: skipReason(py, redis.skip) }, () => {
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

    it('a runaway past its hard limit, worker killed (SIGKILL): Python sees FAILURE with billiard.exceptions.TimeLimitExceeded', async () => {
      const queue = uniqueName('hard');
      const env = { CELERIAC_BROKER_URL: url, CELERIAC_RESULT_BACKEND: url, CELERIAC_EVENT_LOOP_BLOCKED_MS: '300', CELERIAC_LOG_FORMAT: 'json' };
      const worker = startWorker('dist/test/integration/fixtures/shutdown-tasks.js', queue, env);
      const app = createApp({ name: 'hard-client', broker: url, backend: url, logLevel: 'silent' });
      try {
        await withOutputOf({ worker }, async () => {
          const r = await app.sendTask('sd.spin', [], {}, { queue });
          await eventually(() => assert.match(worker.output(), /the watchdog stored FAILURE\(TimeLimitExceeded\)/));
          await stopProcess(worker, 'SIGKILL');
          const [out] = await pythonClient(py.exe!, pythonEnv(url, url, queue), [{ op: 'result', id: r.id }]);
          assert.equal(out?.state, 'FAILURE');
          assert.equal(out?.error?.type, 'TimeLimitExceeded');
          assert.equal(out?.error?.module, 'billiard.exceptions');
        });
      } finally {
        await stopProcess(worker, 'SIGKILL');
        await app.close();
      }
    });

    it('a result no serializer can write: Python sees FAILURE with kombu.exceptions.EncodeError', async () => {
      const queue = uniqueName('encode');
      const worker = startWorker('dist/test/integration/fixtures/shutdown-tasks.js', queue, { CELERIAC_BROKER_URL: url, CELERIAC_RESULT_BACKEND: url });
      const app = createApp({ name: 'encode-client', broker: url, backend: url, logLevel: 'silent' });
      try {
        await withOutputOf({ worker }, async () => {
          const r = await app.sendTask('sd.unserializable', [], {}, { queue });
          await eventually(async () => assert.equal(await r.state(), 'FAILURE'));
          const [out] = await pythonClient(py.exe!, pythonEnv(url, url, queue), [{ op: 'result', id: r.id }]);
          assert.equal(out?.state, 'FAILURE');
          assert.equal(out?.error?.type, 'EncodeError');
          assert.equal(out?.error?.module, 'kombu.exceptions');
          assert.match(out?.error?.message ?? '', /function is not JSON serializable/);
        });
      } finally {
        await stopProcess(worker, 'SIGKILL');
        await app.close();
      }
    });
  });
}
