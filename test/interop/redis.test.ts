/** Python Celery <-> celeriac on Redis (kombu's layout), results in Redis; and npm celery-node -> celeriac. */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import celery from 'celery-node';
import { uniqueName, useRedis } from '../support/servers.js';
import { interopSuite, pythonClient, pythonEnv, pythons, skipReason, startTsWorker, stopProcess, VALUES } from './interop-suite.js';

const redis = await useRedis();
after(() => redis.server?.stop());
const url = redis.server?.url ?? 'redis://127.0.0.1:1/0';
interopSuite({ broker: 'redis', brokerUrl: url, backendUrl: url, skip: redis.skip });

describe('celery-node client -> celeriac worker on redis', { skip: redis.skip }, () => {
  const queue = uniqueName('celery-node');
  const worker = redis.skip ? undefined : startTsWorker(url, url, queue);
  after(() => stopProcess(worker));

  it('runs tasks celery-node sends and celery-node reads the results', async () => {
    const client = celery.createClient(url, url, queue);
    try {
      const add = await client.createTask('interop.add').applyAsync([2, 3]).get(30_000);
      assert.equal(add, 5);
      const d = (await client.createTask('interop.describe').applyAsync(VALUES.args, VALUES.kwargs).get(30_000)) as { args: unknown; kwargs: unknown };
      assert.deepEqual(d.args, VALUES.args);
      assert.deepEqual(d.kwargs, VALUES.kwargs);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- TS worker ---\n${worker?.output()}`, { cause: err });
    } finally {
      await client.disconnect();
    }
  });
});

// Redis only: Celery's rpc:// backend sends no extended fields, and neither does celeriac's.
for (const py of pythons) {
  describe(`${py.label} reads result_extended fields a celeriac worker stored (redis)`, { skip: skipReason(py, redis.skip) }, () => {
    const queue = uniqueName('ts-extended');
    const worker = redis.skip || !py.exe ? undefined : startTsWorker(url, url, queue, { CELERIAC_RESULT_EXTENDED: '1' });
    after(() => stopProcess(worker));

    it('AsyncResult(id).name, args, kwargs, worker, retries, queue', async () => {
      try {
        const [described, flaky] = await pythonClient(py.exe!, pythonEnv(url, url, queue), [
          { op: 'send_task', name: 'interop.describe', args: VALUES.args, kwargs: VALUES.kwargs, queue, extended: true },
          { op: 'send_task', name: 'interop.flaky', args: ['x'], queue, extended: true },
        ]);
        const e = described!.extended!;
        assert.equal(e.name, 'interop.describe');
        assert.deepEqual(e.args, VALUES.args);
        assert.deepEqual(e.kwargs, VALUES.kwargs);
        assert.match(String(e.worker), new RegExp(`^${queue}-\\w+@localhost$`));
        assert.equal(e.retries, 0);
        assert.equal(e.queue, queue);
        assert.equal(flaky!.extended!.retries, 2, 'the retries of the run that stored SUCCESS');
      } catch (err) {
        throw new Error(`${(err as Error).message}\n--- TS worker ---\n${worker?.output()}`, { cause: err });
      }
    });
  });
}
