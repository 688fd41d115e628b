/**
 * `celeriac migrate` with Python Celery 5.7 on both ends: a Python client sends tasks to Redis with
 * no worker running, `celeriac migrate` moves them to RabbitMQ and back, and a Python worker then
 * runs every one of them with the arguments it was sent (the messages survive both hops as Celery
 * wrote them, AMQP field-table typing included).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { createApp } from '../../runtime/src/index.js';
import { repoRoot, withOutputOf, type Started } from '../support/processes.js';
import { uniqueName, useRabbit, useRedis } from '../support/servers.js';
import { fixtures, pythonEnv, pythons, skipReason, startPyWorker, stopProcess } from './interop-suite.js';

const run = promisify(execFile);
const py = pythons[0]!;
const [redis, rabbit] = await Promise.all([useRedis(), useRabbit()]);
after(async () => {
  await redis.server?.stop();
  await rabbit.server?.stop();
});

const SEND = `
import json, sys
from py_tasks import app
ids = [app.send_task("pyinterop.add", [i, 100], queue=sys.argv[1]).id for i in range(int(sys.argv[2]))]
ids.append(app.send_task("pyinterop.join", [["a", "b"]], {"sep": "+"}, queue=sys.argv[1], priority=5).id)
print(json.dumps(ids))
`;

describe(`${py.label} tasks migrated Redis -> RabbitMQ -> Redis run on a Python worker`, { skip: skipReason(py, redis.skip || rabbit.skip) }, () => {
  let worker: Started | undefined;
  after(() => stopProcess(worker));

  it('runs every migrated task with its arguments', async () => {
    const queue = uniqueName('py-mig');
    const redisUrl = redis.server!.url;
    const env = pythonEnv(redisUrl, redisUrl, queue);
    const { stdout } = await run(py.exe!, ['-c', SEND, queue, '12'], { env, cwd: fixtures });
    const ids = JSON.parse(stdout) as string[];
    assert.equal(ids.length, 13);

    const bin = join(repoRoot, 'dist/runtime/src/cli/main.js');
    const hop = (from: string, to: string) => run(process.execPath, [bin, 'migrate', from, to, '-Q', queue]);
    assert.equal((await hop(redisUrl, rabbit.server!.url)).stdout, `${queue}: migrated 13 message(s)\ntotal: 13\n`);
    assert.equal((await hop(rabbit.server!.url, redisUrl)).stdout, `${queue}: migrated 13 message(s)\ntotal: 13\n`);

    worker = startPyWorker(py, redisUrl, redisUrl, queue);
    const client = createApp({ broker: redisUrl, backend: redisUrl, logLevel: 'warn', metricsPort: null });
    try {
      await withOutputOf({ 'python worker': worker }, async () => {
        const results = await Promise.all(ids.map((id) => client.asyncResult(id).get({ timeout: 30_000 })));
        assert.deepEqual(results, [...Array.from({ length: 12 }, (_, i) => i + 100), 'a+b']);
      });
    } finally {
      await client.close();
    }
  });
});
