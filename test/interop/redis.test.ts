/** Python Celery <-> celeriac on Redis (kombu's layout), results in Redis; and npm celery-node -> celeriac. */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import celery from 'celery-node';
import { uniqueName, useRedis } from '../support/servers.js';
import { interopSuite, startTsWorker, stopProcess, VALUES } from './interop-suite.js';

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
