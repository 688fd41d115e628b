/**
 * The threads and processes pools on a real Redis: values and errors cross as on the wire, the
 * task context works in a runner, and a runaway, a leak, a killed runner or an edited module
 * under --watch leave the worker serving with every task in a stored state. The event-loop pool
 * takes part where it can (it cannot stop a runaway: see README "Choosing a pool").
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { applySignature, chord, createApp, immutable, signature, type App, type AsyncResult } from '../../runtime/src/index.js';
import { createWorker, type Worker } from '../../runtime/src/worker/worker.js';
import { TaskFailedError } from '../../runtime/src/errors.js';
import { eventually } from '../support/eventually.js';
import { jsonLogLine, repoRoot, startProcess, startWorker, stopProcess, type Started } from '../support/processes.js';
import { startPoolWorker as startSharedPoolWorker } from '../support/pool-worker.js';
import { uniqueName, useRedis } from '../support/servers.js';

const redis = await useRedis();
after(() => redis.server?.stop());
const url = redis.server?.url ?? 'redis://127.0.0.1:1/0';
const TASKS = pathToFileURL(join(repoRoot, 'dist/test/integration/fixtures/pool-tasks.js')).href;

/** A worker of `pool` on its own queue, in this process, and a client app on the same Redis. */
function startPoolWorker(pool: 'event-loop' | 'threads' | 'processes', extra: Record<string, unknown> = {}, tasksModule = TASKS) {
  return startSharedPoolWorker({ url, pool, tasksModule, name: 'pools', extra });
}

async function failureOf(p: Promise<unknown>): Promise<TaskFailedError> {
  const err = await p.then(
    () => assert.fail('expected the task to fail'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof TaskFailedError, String(err));
  return err;
}

async function healthz(worker: Worker): Promise<number> {
  return (await fetch(new URL('/healthz', worker.metricsUrl!))).status;
}

for (const pool of ['event-loop', 'threads', 'processes'] as const) {
  describe(`${pool} pool`, { skip: redis.skip }, () => {
    // The event-loop pool runs tasks in this test process: a runaway or a killed runner would end the test run.
    const preemptive = { skip: pool === 'event-loop' ? 'the event-loop pool cannot stop a task (README "Choosing a pool")' : false };
    let worker: Worker;
    let client: App;
    let queue: string;
    before(async () => {
      ({ worker, client, queue } = await startPoolWorker(pool));
    });
    after(async () => {
      await worker?.stop();
      await client?.close();
    });
    const run = (name: string, args: unknown[] = [], opts: Record<string, unknown> = {}) =>
      client.sendTask(name, args, {}, opts).then((r) => r.get({ timeout: 30_000 }));

    it('values cross as the wire carries them, not as structured clone would', async () => {
      const v = (await run('pools.shapes')) as Record<string, unknown>;
      assert.deepEqual(v.map, {});
      assert.equal(v.money, '12.34 EUR');
      assert.equal(v.date, '1970-01-01T00:00:00.000Z');
      assert.equal('missing' in v, false);
    });

    it('a datetime argument (kombu 5.3+ tag, as Celery 5.3+ sends it) reaches the task as a Date', async () => {
      const tagging = createApp({ broker: url, backend: url, defaultQueue: queue, logLevel: 'silent', jsonDateTags: true });
      try {
        const r = await tagging.sendTask('pools.kindOf', [new Date(0)]);
        assert.equal(await r.get({ timeout: 30_000 }), '[object Date]');
      } finally {
        await tagging.close();
      }
    });

    it('an error keeps its type, module, message and stack', async () => {
      const err = await failureOf(run('pools.fail', [42]));
      assert.equal(err.excType, 'PaymentError');
      assert.equal(err.excModule, 'shop.errors');
      assert.equal(err.excMessage, 'payment of 42 refused');
      assert.match(err.remoteTraceback ?? '', /pool-tasks\.js/);
    });

    it('this: ids, delivery info and retry() work in a runner', async () => {
      const id = randomUUID();
      const v = (await client.sendTask('pools.context', [], {}, { taskId: id }).then((r) => r.get({ timeout: 30_000 }))) as Record<string, unknown>;
      assert.equal(v.id, id);
      assert.equal(v.retries, 1);
      assert.equal(v.hostname, 'pools@test');
      if (pool === 'processes') assert.notEqual(v.pid, process.pid);
    });

    it('this.applyChild() and this.addToChord() work in every pool (a runner asks the worker)', async () => {
      const parent = await client.sendTask('pools.applyChild', [], {});
      const childId = (await parent.get({ timeout: 30_000 })) as string;
      assert.equal(await client.asyncResult(childId).get({ timeout: 30_000 }), 3);
      assert.deepEqual(
        (await parent.children()).map((c) => c.id),
        [childId],
        "the child is among the parent's children",
      );
      const body = signature('pools.collect', [], {}, { queue });
      const joined = (await applySignature(client, chord([signature('pools.addToChord', [], {}, { queue })], body))) as AsyncResult;
      // The added task has no place in the header's order (Celery gives it no group_index): compare as a set.
      assert.deepEqual(new Set((await joined.get({ timeout: 30_000 })) as unknown[]), new Set(['added', 3]));
      // Outside a chord: Celery's own error, crossed back from the worker.
      assert.match((await failureOf(run('pools.addToChord'))).excMessage, /not member of any chord/);
    });

    it('a CPU-bound runaway past its hard limit is stored TimeLimitExceeded; the worker serves on', preemptive, async () => {
      const err = await failureOf(run('pools.spin', [], { timeLimit: 500 }));
      assert.equal(err.excType, 'TimeLimitExceeded');
      assert.equal(err.excModule, 'billiard.exceptions');
      assert.equal(await healthz(worker), 200);
      assert.equal(await run('pools.add', [2, 3]), 5);
    });

    it('the soft time limit raises SoftTimeLimitExceeded in the task', async () => {
      const err = await failureOf(run('pools.soft', [], { softTimeLimit: 200 }));
      assert.equal(err.excType, 'SoftTimeLimitExceeded');
    });

    it("a result the wire cannot carry fails the task with kombu's EncodeError (never PENDING)", async () => {
      for (const [name, message] of [
        ['pools.cycle', /circular/],
        ['pools.function', /function is not JSON serializable \(key "format"\)/],
        ['pools.symbol', /symbol is not JSON serializable/],
        ['pools.getter', /lazy field failed/],
        ['pools.replaceUnencodable', /function is not JSON serializable/],
      ] as const) {
        const err = await failureOf(run(name));
        assert.equal(err.excType, 'EncodeError', name);
        assert.equal(err.excModule, 'kombu.exceptions', name);
        assert.match(err.excMessage, message);
      }
      assert.equal(await run('pools.add', [1, 2]), 3);
    });

    it("a result the wire cannot carry runs the task's errbacks, as any failure", async () => {
      const errbackId = randomUUID();
      const errback = immutable(signature('pools.add', [20, 22], {}, { task_id: errbackId, queue }));
      await failureOf(client.sendTask('pools.function', [], {}, { linkError: errback }).then((r) => r.get({ timeout: 30_000 })));
      assert.equal(await client.asyncResult(errbackId).get({ timeout: 30_000 }), 42);
    });

    it('a runner killed mid-task: FAILURE(WorkerLostError) in Celery words, and the worker serves on', preemptive, async () => {
      const err = await failureOf(run('pools.die'));
      assert.equal(err.excType, 'WorkerLostError');
      assert.equal(err.excModule, 'billiard.exceptions');
      assert.match(
        err.excMessage,
        pool === 'processes' ? /^Worker exited prematurely: signal 9 \(SIGKILL\) Job: \d+\.$/ : /^Worker exited prematurely: exitcode 9 Job: \d+\.$/,
      );
      assert.equal(await healthz(worker), 200);
      assert.equal(await run('pools.add', [4, 5]), 9);
    });

    it('an exception thrown outside the task ends its runner: WorkerLostError, and the worker serves on', preemptive, async () => {
      const err = await failureOf(run('pools.stray'));
      assert.equal(err.excType, 'WorkerLostError');
      assert.match(err.excMessage, /^Worker exited prematurely: exitcode 1 Job: \d+\.$/);
      assert.equal(await healthz(worker), 200);
      assert.equal(await run('pools.add', [3, 4]), 7);
    });

    if (pool === 'processes') {
      it('rejectOnWorkerLost with acksLate: the message goes back and runs again', async () => {
        const dir = mkdtempSync(join(tmpdir(), 'celeriac-pool-'));
        try {
          assert.equal(await run('pools.dieOnce', [join(dir, 'marker')]), 'second run');
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      });
    }
  });
}

/** Runs `fn` against a one-runner worker of `pool`, so every task runs in the same runner until it is replaced. */
async function withOneRunner(
  pool: 'threads' | 'processes',
  extra: Record<string, unknown>,
  fn: (where: (name?: string, args?: unknown[]) => Promise<string>, client: App) => Promise<void>,
) {
  const { worker, client } = await startPoolWorker(pool, { concurrency: 1, ...extra });
  try {
    await fn(async (name = 'pools.where', args = []) => {
      const w = (await client.sendTask(name, args).then((r) => r.get({ timeout: 30_000 }))) as { pid: number; thread: number };
      return `${w.pid}/${w.thread}`;
    }, client);
  } finally {
    await worker.stop();
    await client.close();
  }
}

for (const pool of ['threads', 'processes'] as const) {
  describe(`${pool} pool: runner replacement`, { skip: redis.skip }, () => {
    it('maxTasksPerChild: the runner is replaced after N tasks, never during one', () =>
      withOneRunner(pool, { maxTasksPerChild: 2 }, async (where) => {
        const ids = [await where(), await where(), await where(), await where()];
        assert.equal(ids[0], ids[1]);
        assert.equal(ids[2], ids[3]);
        assert.notEqual(ids[1], ids[2]);
      }));

    it('maxMemoryPerChildKib: the task that crossed the line succeeds, then its runner is replaced', () =>
      withOneRunner(pool, { maxMemoryPerChildKib: 150 * 1024 }, async (where) => {
        const first = await where();
        assert.equal(await where(), first);
        assert.equal(await where('pools.leak', [200]), first);
        assert.notEqual(await where(), first);
      }));

    it('revoke with terminate: the runaway is stored REVOKED, its runner replaced', () =>
      withOneRunner(pool, { trackStarted: true }, async (where, client) => {
        const first = await where();
        const spin = await client.sendTask('pools.spin');
        await eventually(async () => assert.equal(await spin.state(), 'STARTED'));
        await client.revoke(spin.id, { terminate: true });
        assert.notEqual(await where(), first);
        assert.equal(await spin.state(), 'REVOKED');
      }));

    it('a runaway: its runner is terminated and a new one serves the next task', () =>
      withOneRunner(pool, {}, async (where) => {
        const first = await where();
        await failureOf(where('pools.spinFor'));
        assert.notEqual(await where(), first);
      }));

    it('an async task past its hard limit cannot run on: its runner is gone before the next task starts', () =>
      withOneRunner(pool, {}, async (where, client) => {
        const first = await where();
        const err = await failureOf(client.sendTask('pools.sleep', [60_000], {}, { timeLimit: 300 }).then((r) => r.get({ timeout: 30_000 })));
        assert.equal(err.excType, 'TimeLimitExceeded');
        assert.notEqual(await where(), first);
        if (pool === 'processes') {
          const pid = Number(first.split('/')[0]);
          assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `runner ${pid} still exists`);
        }
      }));
  });
}

describe('autoscale with children', { skip: redis.skip }, () => {
  it('processes: the pool grows from MIN to the tasks held, one child each', async () => {
    const { worker, client } = await startPoolWorker('processes', { autoscale: '3,1', trackStarted: true });
    try {
      const sleeping = await Promise.all([1, 2, 3].map(() => client.sendTask('pools.sleep', [3000])));
      await eventually(async () => {
        for (const r of sleeping) assert.equal(await r.state(), 'STARTED');
      });
      // Three at once: past MIN (1) and past -c (2), which autoscale replaces.
      assert.equal(worker.counts().active, 3);
      for (const r of sleeping) assert.equal(await r.get({ timeout: 30_000 }), 3000);
    } finally {
      await worker.stop();
      await client.close();
    }
  });
});

describe('this.log in a runner (CLI worker)', { skip: redis.skip }, () => {
  for (const pool of ['threads', 'processes'] as const) {
    it(`${pool}: lines carry the task id and name, in the worker's output`, async () => {
      const queue = uniqueName(`log-${pool}`);
      const client = createApp({ broker: url, backend: url, defaultQueue: queue, logLevel: 'silent' });
      const w = startWorker('dist/test/integration/fixtures/pool-tasks.js', queue, { CELERIAC_BROKER_URL: url, CELERIAC_LOG_FORMAT: 'json' }, ['--pool', pool]);
      try {
        const r = await client.sendTask('pools.context');
        await r.get({ timeout: 30_000 });
        const line = await eventually(() => jsonLogLine(w, '"marker":"context-log"'));
        assert.equal(line.taskId, r.id);
        assert.equal(line.taskName, 'pools.context');
        assert.equal(line.msg, 'logging from a runner');
      } finally {
        await stopProcess(w);
        await client.close();
      }
    });
  }
});

describe('a tasks module that cannot load', () => {
  for (const pool of ['threads', 'processes'] as const) {
    it(`${pool}: the worker does not start, and says why`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'celeriac-broken-'));
      const file = join(dir, 'broken.mjs');
      writeFileSync(file, "throw new Error('broken on purpose');\n");
      const app = createApp({ broker: 'memory://broken', backend: 'memory://broken', metricsPort: null, logLevel: 'silent' });
      try {
        await assert.rejects(createWorker(app, { pool, tasksModule: pathToFileURL(file).href }).start(), /broken on purpose/);
      } finally {
        await app.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

describe('health', { skip: redis.skip }, () => {
  for (const pool of ['threads', 'processes'] as const) {
    it(`${pool}: /healthz fails while no runner can start, and recovers when one can`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'celeriac-health-'));
      const file = join(dir, 'tasks.mjs');
      const marker = join(dir, 'broken');
      const index = pathToFileURL(join(repoRoot, 'dist/runtime/src/index.js')).href;
      // Loads until the marker exists: runners started after that cannot import it.
      writeFileSync(
        file,
        `import { existsSync } from 'node:fs';\nimport { createApp } from '${index}';\n` +
          `if (existsSync(${JSON.stringify(marker)})) throw new Error('cannot load now');\n` +
          `export const app = createApp({ name: 'health' });\napp.task('health.exit', () => process.exit(3));\napp.task('health.ok', () => 'ok');\n`,
      );
      const { worker, client } = await startPoolWorker(pool, { concurrency: 1 }, pathToFileURL(file).href);
      try {
        assert.equal(await healthz(worker), 200);
        writeFileSync(marker, '');
        await failureOf(client.sendTask('health.exit').then((r) => r.get({ timeout: 30_000 })));
        await eventually(async () => assert.equal(await healthz(worker), 503));
        rmSync(marker);
        assert.equal(await client.sendTask('health.ok').then((r) => r.get({ timeout: 60_000 })), 'ok');
        assert.equal(await healthz(worker), 200);
      } finally {
        await worker.stop();
        await client.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

describe('--watch', { skip: redis.skip }, () => {
  for (const pool of ['event-loop', 'threads', 'processes'] as const) {
    it(`${pool}: an edited module is picked up, new tasks too; the task running meanwhile finishes`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'celeriac-watch-'));
      const file = join(dir, 'tasks.mjs');
      const index = pathToFileURL(join(repoRoot, 'dist/runtime/src/index.js')).href;
      const source = (version: number) =>
        `import { createApp } from '${index}';\nexport const app = createApp({ name: 'watch' });\n` +
        `app.task('watch.version', () => ${version});\napp.task('watch.sleep', async (ms) => { await new Promise((r) => setTimeout(r, ms)); return ms; });\n` +
        (version > 1 ? `app.task('watch.added', () => 'new task');\n` : '');
      writeFileSync(file, source(1));
      const queue = uniqueName(`watch-${pool}`);
      let w: Started | undefined;
      const client = createApp({ broker: url, backend: url, defaultQueue: queue, logLevel: 'silent' });
      try {
        const cli = join(repoRoot, 'dist/runtime/src/cli/main.js');
        const env = { ...process.env, CELERIAC_BROKER_URL: url, CELERIAC_TRACK_STARTED: '1' };
        w = startProcess(process.execPath, [cli, 'worker', '-A', file, '-Q', queue, '--metrics-port', 'none', '--pool', pool, '--watch', '-c', '2'], { env });
        assert.equal(await client.sendTask('watch.version').then((r) => r.get({ timeout: 30_000 })), 1);
        const slow = await client.sendTask('watch.sleep', [1500]);
        await eventually(async () => assert.equal(await slow.state(), 'STARTED'));
        writeFileSync(file, source(2));
        assert.equal(await slow.get({ timeout: 30_000 }), 1500);
        await eventually(async () => assert.equal(await client.sendTask('watch.version').then((r) => r.get({ timeout: 10_000 })), 2));
        // A task the edit added is known to the restarted worker (its registry, not only its runners).
        assert.equal(await client.sendTask('watch.added').then((r) => r.get({ timeout: 30_000 })), 'new task');
      } catch (err) {
        throw new Error(`${(err as Error).message}\nworker output:\n${w?.output() ?? ''}`, { cause: err });
      } finally {
        await stopProcess(w);
        await client.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
