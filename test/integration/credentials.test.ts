/**
 * Broker passwords never reach a worker's output, and a refused password is said as such: real
 * worker processes on a private redis-server with requirepass and a private rabbitmq-server, their
 * whole stdout and stderr searched for the password (issue: the start-up line printed it).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { createApp } from '../../runtime/src/index.js';
import { eventually } from '../support/eventually.js';
import { jsonLogLine, startWorker, stopProcess, type Started } from '../support/processes.js';
import { uniqueName, useRabbit, useRedis } from '../support/servers.js';
import { EXIT_CODES } from '../../runtime/src/cli/report.js';

const TASKS = 'dist/test/integration/fixtures/file-tasks.js';
const redisUse = await useRedis({ managed: true });
const rabbitUse = await useRabbit({ managed: true });

/** The URL with a password put in (`redis://host` -> `redis://:pw@host`, `amqp://u:p@` -> `amqp://u:pw@`). */
function withPassword(url: string, password: string, user = ''): string {
  const u = new URL(url);
  if (user) u.username = user;
  u.password = password;
  return u.toString();
}

/** Resolves with the exit code once the process has ended. */
function exitOf(p: Started): Promise<number | null> {
  return p.exitCode !== null ? Promise.resolve(p.exitCode) : new Promise((r) => p.once('exit', (code) => r(code)));
}

function assertNoSecret(output: string, secret: string): void {
  for (const form of [secret, encodeURIComponent(secret)]) {
    assert.ok(!output.includes(form), `the output carries the password "${form}":\n${output}`);
  }
}

describe('broker credentials in worker output (redis-server with requirepass)', { skip: redisUse.skip }, () => {
  // Characters that URL-encode, so both forms are searched.
  const password = `s3cret-${uniqueName('pw')}-&+`;
  let url: string;
  const workers: Started[] = [];

  before(async () => {
    const admin = new Redis(redisUse.server!.url);
    await admin.config('SET', 'requirepass', password);
    admin.disconnect();
    url = withPassword(redisUse.server!.url, password);
  });
  after(async () => {
    await Promise.all(workers.map((w) => stopProcess(w)));
    await redisUse.server?.stop();
  });

  it('a worker with the right password runs a task and prints the URLs without it', async () => {
    const queue = uniqueName('creds');
    const worker = startWorker(TASKS, queue, { CELERIAC_BROKER_URL: url, CELERIAC_LOG_LEVEL: 'debug' });
    workers.push(worker);
    const client = createApp({ name: 'creds-client', broker: url, backend: url, logLevel: 'silent' });
    try {
      const r = await client.sendTask('it.add', [2, 3], {}, { queue });
      assert.equal(await r.get({ timeout: 30_000 }), 5);
    } finally {
      await client.close();
    }
    const ready = await eventually(() => jsonLogLine<{ broker: string; backend: string }>(worker, 'worker ready'));
    assert.match(ready.broker, /^redis:\/\/:\*\*\*@127\.0\.0\.1:\d+\/0$/);
    assert.match(ready.backend, /^redis:\/\/:\*\*\*@127\.0\.0\.1:\d+\/0$/);
    await stopProcess(worker);
    assertNoSecret(worker.output(), password);
  });

  it('a worker with a wrong password says authentication failed, exits 5 (broker unavailable) and prints no password', async () => {
    const wrong = `wr0ng-${uniqueName('pw')}`;
    const worker = startWorker(TASKS, uniqueName('creds'), { CELERIAC_BROKER_URL: withPassword(redisUse.server!.url, wrong), CELERIAC_LOG_LEVEL: 'debug' });
    workers.push(worker);
    assert.equal(await exitOf(worker), EXIT_CODES.unavailable, worker.output());
    const out = worker.output();
    assert.match(out, /authentication to redis:\/\/:\*\*\*@127\.0\.0\.1:\d+\/0 failed: WRONGPASS/);
    assert.doesNotMatch(out, /reconnecting with backoff/, 'a refused password is not an outage');
    assert.doesNotMatch(out, /at parseError/, 'a stack trace instead of the message');
    assertNoSecret(out, wrong);
  });
});

describe('broker credentials in worker output (rabbitmq-server)', { skip: rabbitUse.skip }, () => {
  after(async () => {
    await rabbitUse.server?.stop();
  });

  it('a worker refused by RabbitMQ says the credentials were refused, exits 5 (broker unavailable) and prints no password', async () => {
    const wrong = `wr0ng-${uniqueName('pw')}`;
    const worker = startWorker(TASKS, uniqueName('creds'), {
      CELERIAC_BROKER_URL: withPassword(rabbitUse.server!.url, wrong, 'guest'),
      CELERIAC_LOG_LEVEL: 'debug',
    });
    try {
      assert.equal(await exitOf(worker), EXIT_CODES.unavailable, worker.output());
    } finally {
      await stopProcess(worker);
    }
    const out = worker.output();
    assert.match(out, /ACCESS.REFUSED/);
    assert.match(out, /refused the credentials: check the user and password/);
    assertNoSecret(out, wrong);
  });
});
