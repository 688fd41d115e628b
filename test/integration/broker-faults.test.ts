/**
 * Brokers going away for real: the broker restarts in the middle of 2,000 tasks, and a worker is
 * SIGKILLed mid-task. Servers are private (test/support/servers.ts) so they can be restarted.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createBroker } from '../../runtime/src/brokers/index.js';
import { within } from '../../runtime/src/transport/wait.js';
import { createApp, createBeat, createScheduleStore, every } from '../../runtime/src/index.js';
import { startWorker, stopProcess, type Started } from '../support/processes.js';
import { uniqueName, useRabbit, useRedis, type ServiceResult } from '../support/servers.js';
import { eventually } from '../support/eventually.js';
import { startTcpProxy } from '../support/tcp-proxy.js';

const TASKS = 2_000;
const dir = mkdtempSync(join(tmpdir(), 'celeriac-faults-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function runs(log: string): string[] {
  return existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean) : [];
}

/** Waits until `check` holds; on timeout the error carries the worker's output. */
async function until(what: string, check: () => boolean, timeoutMs: number, worker?: Started): Promise<void> {
  await eventually(
    () => {
      if (!check()) throw new Error(`timed out waiting for ${what}\n--- worker ---\n${worker?.output()}`);
    },
    { timeoutMs, intervalMs: 50 },
  );
}

/** Publishes TASKS tasks, restarts the broker once a quarter ran, then counts the runs. */
async function restartMidRun(svc: ServiceResult, backend: string, acksLate: boolean): Promise<void> {
  const server = svc.server!;
  const queue = uniqueName(acksLate ? 'restart-late' : 'restart-early');
  const log = join(dir, `${queue}.log`);
  const app = createApp({ name: 'fault-client', broker: server.url, backend, logLevel: 'warn' });
  const worker = startWorker(
    'dist/test/integration/broker-fixtures/fault-tasks.js',
    queue,
    {
      CELERIAC_BROKER_URL: server.url,
      CELERIAC_RESULT_BACKEND: backend,
      FAULT_LOG: log,
      FAULT_ACKS_LATE: acksLate ? '1' : '0',
      FAULT_TASK_MS: '5',
    },
    ['-c', '20', '-l', 'info'],
  );
  try {
    for (let i = 0; i < TASKS; i++) await app.sendTask('faults.record', [i], {}, { queue, ignoreResult: true });
    await until('a quarter of the tasks to run', () => runs(log).length >= TASKS / 4, 60_000, worker);
    await server.restart({ downMs: 1_000 });
    await until(`all ${TASKS} tasks to run`, () => new Set(runs(log)).size >= TASKS, 180_000, worker);
    assert.equal(worker.exitCode, null, 'the worker kept running');
    // The outage is reported once per connection kind, not once per retry.
    const lost = worker
      .output()
      .split('\n')
      .filter((l) => /broker .*connection lost/.test(l));
    assert.equal(lost.length, 1, `one "connection lost" line for the broker, got:\n${lost.join('\n')}`);
    // Once the worker has exited the log is final: a late duplicate would be in it.
    await stopProcess(worker);
    const all = runs(log);
    const counts = new Map<string, number>();
    for (const n of all) counts.set(n, (counts.get(n) ?? 0) + 1);
    const twice = [...counts].filter(([, c]) => c > 1).map(([n]) => n);
    assert.deepEqual(twice, [], `tasks that ran more than once: ${twice.slice(0, 20).join(', ')}`);
    assert.equal(counts.size, TASKS);
  } finally {
    await stopProcess(worker);
    await app.close();
  }
}

/** SIGTERM while the broker is down: the worker must still exit (warm shutdown, nothing to ack). */
async function shutdownDuringOutage(svc: ServiceResult, backend: string): Promise<void> {
  const server = svc.server!;
  const queue = uniqueName('down');
  const worker = startWorker('dist/test/integration/broker-fixtures/fault-tasks.js', queue, {
    CELERIAC_BROKER_URL: server.url,
    CELERIAC_RESULT_BACKEND: backend,
    FAULT_LOG: join(dir, `${queue}.log`),
  });
  try {
    await until('the worker to start consuming', () => worker.output().includes('worker ready'), 30_000, worker);
    await server.stopProcess();
    const exited = new Promise((r) => worker.once('exit', r));
    worker.kill('SIGTERM');
    assert.equal(await within(exited, 20_000), true, `no exit 20 s after SIGTERM\n${worker.output()}`);
  } finally {
    await stopProcess(worker, 'SIGKILL');
    await server.start();
  }
}

/**
 * The link to the broker breaks while a consumer is subscribing: frozen (a partition: requests
 * get no reply) or cut after that (the reconnect then waits for a server that is gone). Stopping
 * the consumer and closing the broker must still end, as a worker's SIGTERM needs them to.
 */
async function stopsOnBrokenLink(svc: ServiceResult, how: 'frozen' | 'cut'): Promise<void> {
  const url = new URL(svc.server!.url);
  const proxy = await startTcpProxy(Number(url.port));
  url.port = String(proxy.port);
  const broker = await createBroker(url.toString(), {});
  try {
    await broker.connect();
    proxy.freeze();
    const stop = new AbortController();
    const delivered: unknown[] = [];
    const consuming = broker.consume(
      [uniqueName('broken')],
      async (d) => {
        delivered.push(d);
      },
      { prefetch: 10, signal: stop.signal },
    );
    // The subscription is under way: its requests went into the partition.
    await eventually(() => assert.ok(proxy.droppedFromClients > 0, 'the consumer sent a request'), { intervalMs: 10 });
    if (how === 'cut') {
      proxy.cut();
      // The driver has seen the link go and is reconnecting.
      await eventually(() => assert.ok(proxy.refused > 0, 'the driver tries to reconnect'), { intervalMs: 10 });
    }
    stop.abort();
    assert.equal(await within(consuming, 10_000), true, 'consume() ended after its signal aborted');
    assert.equal(await within(broker.close(), 10_000), true, 'close() ended on a broken link');
    assert.deepEqual(delivered, []);
  } finally {
    await proxy.close();
  }
}

const redis = await useRedis({ persist: true, managed: true });
describe('Redis broker faults', { skip: redis.skip }, () => {
  after(() => redis.server?.stop());

  it(`a Redis restart in the middle of ${TASKS} late-ack tasks: each runs exactly once`, () => restartMidRun(redis, redis.server!.url, true));
  it(`a Redis restart in the middle of ${TASKS} early-ack tasks: nothing lost while the worker lives`, () => restartMidRun(redis, redis.server!.url, false));

  it('a SIGKILLed worker loses nothing: its late-ack task comes back after the visibility timeout', async () => {
    const url = redis.server!.url;
    const queue = uniqueName('sigkill');
    const log = join(dir, `${queue}.log`);
    const app = createApp({ name: 'fault-client', broker: url, backend: url, logLevel: 'warn' });
    const env = { CELERIAC_RESULT_BACKEND: url, FAULT_LOG: log, FAULT_ACKS_LATE: '1' };
    const victim = startWorker('dist/test/integration/broker-fixtures/fault-tasks.js', queue, { ...env, CELERIAC_BROKER_URL: url, FAULT_TASK_MS: '600000' });
    let rescuer: Started | undefined;
    try {
      const r = await app.sendTask('faults.slow', [], {}, { queue });
      await until('the task to start', () => runs(log).length === 1, 30_000, victim);
      await stopProcess(victim, 'SIGKILL');
      rescuer = startWorker('dist/test/integration/broker-fixtures/fault-tasks.js', queue, {
        ...env,
        CELERIAC_BROKER_URL: `${url}?visibilityTimeoutMs=2000`,
        FAULT_TASK_MS: '10',
      });
      await r.get({ timeout: 60_000 });
      assert.deepEqual(runs(log), [`start ${victim.pid}`, `start ${rescuer.pid}`, `done ${rescuer.pid}`]);
    } finally {
      await stopProcess(victim, 'SIGKILL');
      await stopProcess(rescuer);
      await app.close();
    }
  });

  it('a worker exits on SIGTERM while Redis is down', () => shutdownDuringOutage(redis, redis.server!.url));
  it('a consumer stops and the broker closes when the link freezes mid-subscription', () => stopsOnBrokenLink(redis, 'frozen'));
  it('a consumer stops and the broker closes when the link is cut mid-subscription', () => stopsOnBrokenLink(redis, 'cut'));

  it('beat stops when the link to its schedule store freezes', async () => {
    const url = new URL(redis.server!.url);
    const proxy = await startTcpProxy(Number(url.port));
    url.port = String(proxy.port);
    const app = createApp({
      name: 'beat-fault',
      broker: 'memory://beat-fault',
      logLevel: 'silent',
      beatSchedule: { tick: { task: 't.tick', schedule: every(200) } },
    });
    const beat = createBeat(app, { store: await createScheduleStore(url.toString(), { logger: app.log, prefix: uniqueName('beat') }), leaseMs: 600 });
    try {
      await beat.start();
      await eventually(() => assert.ok(beat.leading, 'beat leads'));
      proxy.freeze();
      // A lease renewal went into the partition: the beat loop now waits on a reply that never comes.
      await eventually(() => assert.ok(proxy.droppedFromClients > 0, 'beat sent a request'), { intervalMs: 10 });
      assert.equal(await within(beat.stop(), 10_000), true, 'stop() ended on a frozen link');
    } finally {
      await proxy.close();
      await app.close();
    }
  });
});

const rabbit = await useRabbit({ managed: true });
describe('AMQP broker faults', { skip: rabbit.skip }, () => {
  after(() => rabbit.server?.stop());

  it(`a RabbitMQ restart in the middle of ${TASKS} late-ack tasks: each runs exactly once`, () => restartMidRun(rabbit, 'rpc://', true));
  it(`a RabbitMQ restart in the middle of ${TASKS} early-ack tasks: nothing lost while the worker lives`, () => restartMidRun(rabbit, 'rpc://', false));
  it('a worker exits on SIGTERM while RabbitMQ is down', () => shutdownDuringOutage(rabbit, 'rpc://'));
  it('a consumer stops and the broker closes when the link freezes mid-subscription', () => stopsOnBrokenLink(rabbit, 'frozen'));
  it('a consumer stops and the broker closes when the link is cut mid-subscription', () => stopsOnBrokenLink(rabbit, 'cut'));
});
