// Issue 11, with real worker processes on Redis: the event-loop watchdog (a CPU-bound runaway is
// logged with its task, /healthz tells the truth) and shutdown without loss (a task cut off by the
// shutdown timeout, a cold shutdown or a crash ends in a stored state or back in its queue).
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { createApp, TaskFailedError } from '../../runtime/src/index.js';
import { StartedLedger } from '../../runtime/src/worker/started-ledger.js';
import { encodeTask } from '../../runtime/src/protocol/task-message.js';
import { eventually } from '../support/eventually.js';
import { startWorker, stopProcess, withOutputOf, type Started } from '../support/processes.js';
import { freePort, uniqueName, useRedis } from '../support/servers.js';

const TASKS = 'dist/test/integration/fixtures/shutdown-tasks.js';
const redis = await useRedis();
const dir = mkdtempSync(join(tmpdir(), 'celeriac-shutdown-'));
after(async () => {
  await redis.server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Ledger lines "<id> <name> <pid>" of the tasks that started. */
const started = (ledger: string) => (existsSync(ledger) ? readFileSync(ledger, 'utf8').trim().split('\n').filter(Boolean) : []);

/** The worker's JSON log lines (pino), parsed. */
function logLines(w: Started): Record<string, unknown>[] {
  return w
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

function exited(w: Started): Promise<number | null> {
  return w.exitCode !== null || w.signalCode !== null ? Promise.resolve(w.exitCode) : new Promise((r) => w.once('exit', (code) => r(code)));
}

describe('event-loop watchdog and shutdown without loss (redis, worker processes)', { skip: redis.skip }, () => {
  const url = redis.server?.url ?? '';
  const setup = (name: string, env: Record<string, string> = {}) => {
    const queue = uniqueName(name);
    const ledger = join(dir, `${queue}.ledger`);
    const app = createApp({ name: 'shutdown-client', broker: url, backend: url, logLevel: 'silent' });
    const workerEnv = { CELERIAC_BROKER_URL: url, CELERIAC_RESULT_BACKEND: url, CELERIAC_LOG_FORMAT: 'json', LEDGER: ledger, ...env };
    return { queue, ledger, app, workerEnv };
  };
  const admin = redis.server ? new Redis(url) : null;
  after(() => admin?.disconnect());
  const meta = async (id: string) => JSON.parse((await admin!.get(`celery-task-meta-${id}`)) ?? 'null') as Record<string, unknown> | null;

  it('a CPU-bound runaway (while true) is logged with its task, and the health probe gets no answer', async () => {
    const { queue, ledger, app, workerEnv } = setup('wd-spin', { CELERIAC_EVENT_LOOP_BLOCKED_MS: '300' });
    const port = await freePort();
    const worker = startWorker(TASKS, queue, workerEnv, ['--metrics-port', String(port)]);
    const healthz = (timeoutMs?: number) =>
      fetch(`http://127.0.0.1:${port}/healthz`, timeoutMs === undefined ? {} : { signal: AbortSignal.timeout(timeoutMs) }).then((r) => r.status);
    try {
      await withOutputOf({ worker }, async () => {
        await eventually(async () => assert.equal(await healthz(), 200));
        const r = await app.sendTask('sd.spin', [], {}, { queue });
        await eventually(() => assert.equal(started(ledger).length, 1));
        const line = await eventually(() => {
          const l = logLines(worker).find((x) => String(x.msg).startsWith('event loop blocked'));
          assert.ok(l, 'a watchdog line');
          return l;
        });
        assert.equal(line.taskId, r.id);
        assert.equal(line.taskName, 'sd.spin');
        assert.equal(line.component, 'watchdog');
        assert.match(String(line.msg), new RegExp(`by task sd\\.spin\\[${r.id}\\]`));
        // Kubernetes' view: a probe with a timeout (the probe's timeoutSeconds) fails; the loop never comes back.
        await assert.rejects(healthz(2_000), /TimeoutError|aborted/);
      });
    } finally {
      await stopProcess(worker, 'SIGKILL');
      await app.close();
    }
  });

  it('an early-acked task blocking the loop past its hard limit is stored FAILURE(TimeLimitExceeded) by the watchdog thread', async () => {
    const { queue, app, workerEnv } = setup('wd-hard', { CELERIAC_EVENT_LOOP_BLOCKED_MS: '300' });
    const worker = startWorker(TASKS, queue, workerEnv, ['--metrics-port', String(await freePort())]);
    try {
      await withOutputOf({ worker }, async () => {
        // sd.spin never yields (timeLimit 1 s): only the watchdog thread can record it before Kubernetes kills the worker.
        const r = await app.sendTask('sd.spin', [], {}, { queue });
        const err = await r.get({ timeout: 30_000 }).then(
          () => assert.fail('expected the task to fail'),
          (e: unknown) => e,
        );
        assert.ok(err instanceof TaskFailedError, String(err));
        assert.equal(err.excType, 'TimeLimitExceeded');
        assert.equal(err.excModule, 'billiard.exceptions');
        await eventually(() =>
          assert.ok(
            logLines(worker).some(
              (l) => String(l.msg).includes('the watchdog stored FAILURE(TimeLimitExceeded)') && l.taskId === r.id && l.component === 'watchdog',
            ),
          ),
        );
      });
    } finally {
      await stopProcess(worker, 'SIGKILL');
      await app.close();
    }
  });

  /** Starts a worker with 4 slots, HANG=1 (sd.wait waits until revoked), a metrics port; runs `body`; stops it. */
  async function withBlockingWorker(
    name: string,
    body: (o: {
      queue: string;
      ledger: string;
      app: ReturnType<typeof createApp>;
      worker: Started;
      get: (p: string) => Promise<{ status: number; text: string }>;
    }) => Promise<void>,
    env: Record<string, string> = {},
  ) {
    const { queue, ledger, app, workerEnv } = setup(name, { CELERIAC_EVENT_LOOP_BLOCKED_MS: '300', HANG: '1', ...env });
    const port = await freePort();
    const worker = startWorker(TASKS, queue, workerEnv, ['--metrics-port', String(port), '-c', '4']);
    const get = (p: string) => fetch(`http://127.0.0.1:${port}${p}`).then(async (r) => ({ status: r.status, text: await r.text() }));
    try {
      await withOutputOf({ worker }, async () => {
        await eventually(async () => assert.equal((await get('/healthz')).status, 200));
        await body({ queue, ledger, app, worker, get });
      });
    } finally {
      await stopProcess(worker);
      await app.close();
    }
  }
  it('a task that blocked the loop past the threshold: /healthz 503 naming it while it runs, lag exported, healthy again once it ends', async () => {
    await withBlockingWorker('wd-block', async ({ queue, app, worker, get }) => {
      const release = join(dir, `${queue}.release`);
      const blocker = await app.sendTask('sd.blockUntil', [release], {}, { queue });
      // The watchdog thread logs while the loop is still blocked; then the test lets the task go on.
      await eventually(() => assert.ok(logLines(worker).some((l) => String(l.msg).startsWith('event loop blocked') && l.taskId === blocker.id)));
      writeFileSync(release, '');
      await eventually(async () => {
        const h = await get('/healthz');
        assert.equal(h.status, 503);
        assert.match(h.text, new RegExp(`task sd\\.blockUntil\\[${blocker.id}\\] blocked the event loop`));
      });
      const lag = /^celeriac_event_loop_lag_seconds (\S+)$/m.exec((await get('/metrics')).text);
      // The loop beats every 100 ms, so a block the thread saw at 300 ms since the last beat is a
      // lag of at least 200 ms beyond the expected beat (the gauge's lower bound, not a timing).
      assert.ok(lag && Number(lag[1]) >= 0.2, `lag gauge past the threshold less one beat: ${lag?.[0]}`);
      assert.equal(await (await app.sendTask('sd.quick', [21], {}, { queue })).get({ timeout: 10_000 }), 42, 'other tasks run again');
      await blocker.revoke({ terminate: true });
      await eventually(async () => assert.equal((await get('/healthz')).status, 200, 'healthy once the blocking task ended'));
      // The line comes through the worker's stdout pipe, maybe after /healthz already answered.
      await eventually(() => assert.ok(logLines(worker).some((l) => String(l.msg).startsWith('event loop unblocked after') && l.taskId === blocker.id)));
    });
  });

  /** Starts sd.wait (it waits), then `blocking` (it holds the loop until `release` exists); returns the watchdog's line. */
  async function blockBesideAWaitingTask(o: { queue: string; ledger: string; app: ReturnType<typeof createApp>; worker: Started }, blocking: string) {
    const waiting = await o.app.sendTask('sd.wait', [], {}, { queue: o.queue });
    await eventually(() => assert.equal(started(o.ledger).length, 1));
    const release = join(dir, `${o.queue}.release`);
    const blocker = await o.app.sendTask(blocking, [release], {}, { queue: o.queue });
    const line = await eventually(() => {
      const l = logLines(o.worker).find((x) => String(x.msg).startsWith('event loop blocked'));
      assert.ok(l, 'a watchdog line');
      return l;
    });
    return { waiting, blocker, line, release };
  }

  it('with another task in flight, the block is blamed on the task whose function holds the loop, and only on it', async () => {
    await withBlockingWorker('wd-two', async (w) => {
      const { waiting, blocker, line, release } = await blockBesideAWaitingTask(w, 'sd.blockUntil');
      const { get } = w;
      assert.equal(line.taskId, blocker.id);
      assert.equal(line.candidates, undefined);
      writeFileSync(release, '');
      await eventually(async () => assert.match((await get('/healthz')).text, new RegExp(`task sd\\.blockUntil\\[${blocker.id}\\] blocked the event loop`)));
      await waiting.revoke({ terminate: true });
      await blocker.revoke({ terminate: true });
      await eventually(async () => assert.equal((await get('/healthz')).status, 200, 'healthy once the blocking task ended'));
    });
  });

  it('a block the stack cannot pin on one task names none: it lists the tasks in flight, and the worker stays healthy', async () => {
    await withBlockingWorker('wd-unsure', async (w) => {
      // Blocks in a helper after the helper's await: the task's own function is not on the stack.
      const { waiting, blocker, line, release } = await blockBesideAWaitingTask(w, 'sd.blockInHelper');
      const { app, queue, get } = w;
      assert.equal(line.taskId, undefined, 'no task named as certain');
      const ids = (line.candidates as { taskId: string }[]).map((c) => c.taskId).sort();
      assert.deepEqual(ids, [waiting.id, blocker.id].sort());
      assert.match(String(line.msg), /cannot be told apart among the tasks in flight/);
      writeFileSync(release, '');
      // Neither task is known to have blocked: no 503 (Kubernetes would restart a worker that may be healthy).
      assert.equal(await (await app.sendTask('sd.quick', [21], {}, { queue })).get({ timeout: 10_000 }), 42, 'the loop runs again');
      assert.equal((await get('/healthz')).status, 200);
      await waiting.revoke({ terminate: true });
      await blocker.revoke({ terminate: true });
    });
  });

  it('with eventLoopBlockedExact, a block in a helper after its await is still named: the task whose awaits lead there', async () => {
    await withBlockingWorker(
      'wd-exact',
      async (w) => {
        const { waiting, blocker, line, release } = await blockBesideAWaitingTask(w, 'sd.blockInHelper');
        assert.equal(line.taskId, blocker.id);
        assert.equal(line.candidates, undefined);
        writeFileSync(release, '');
        await eventually(async () =>
          assert.match((await w.get('/healthz')).text, new RegExp(`task sd\\.blockInHelper\\[${blocker.id}\\] blocked the event loop`)),
        );
        await waiting.revoke({ terminate: true });
        await blocker.revoke({ terminate: true });
      },
      { CELERIAC_EVENT_LOOP_BLOCKED_EXACT: '1' },
    );
  });

  /**
   * Starts a worker running an early-ack task that waits until cut off, does `cut` to the worker,
   * and checks the exit code and that the task is stored FAILURE(WorkerLostError) with `why` in
   * its message, as Celery's meta (Python rebuilds billiard's exception from it), and logged.
   */
  async function earlyAckCutOff(o: {
    name: string;
    env: Record<string, string>;
    args?: string[];
    cut: (w: Started, send: (task: string) => Promise<unknown>) => Promise<void>;
    exit: number;
    why: RegExp;
  }) {
    const { queue, ledger, app, workerEnv } = setup(o.name, { HANG: '1', ...o.env });
    const worker = startWorker(TASKS, queue, workerEnv, o.args);
    try {
      await withOutputOf({ worker }, async () => {
        const r = await app.sendTask('sd.wait', [], {}, { queue });
        await eventually(() => assert.equal(started(ledger).length, 1));
        await o.cut(worker, (task) => app.sendTask(task, [], {}, { queue }));
        assert.equal(await exited(worker), o.exit);
        const m = await meta(r.id);
        assert.equal(m?.status, 'FAILURE');
        const exc = m?.result as { exc_type: string; exc_module: string; exc_message: string[] };
        assert.equal(exc.exc_type, 'WorkerLostError');
        assert.equal(exc.exc_module, 'billiard.exceptions');
        assert.match(exc.exc_message[0]!, o.why);
        await assert.rejects(r.get({ timeout: 5_000 }), (err: unknown) => err instanceof TaskFailedError && /WorkerLostError/.test(err.message));
        assert.ok(
          logLines(worker).some((l) => l.taskId === r.id && /WorkerLostError/.test(String(l.msg))),
          'the loss is logged with the task',
        );
      });
    } finally {
      await stopProcess(worker, 'SIGKILL');
      await app.close();
    }
  }

  it('SIGTERM during a long early-ack task past the shutdown timeout: FAILURE(WorkerLostError) stored, as Celery reads it', () =>
    earlyAckCutOff({
      name: 'sd-early',
      env: { CELERIAC_SHUTDOWN_TIMEOUT_MS: '300' },
      cut: async (w) => void w.kill('SIGTERM'),
      exit: 0,
      why: /^Worker exited prematurely: warm shutdown timeout/,
    }));

  it('a second SIGTERM (cold shutdown) cuts an early-ack task off at once: FAILURE(WorkerLostError)', () =>
    earlyAckCutOff({
      name: 'sd-cold',
      env: { CELERIAC_SHUTDOWN_TIMEOUT_MS: '600000' },
      cut: async (w) => {
        w.kill('SIGTERM');
        await eventually(() => assert.ok(logLines(w).some((l) => /warm shutdown requested/.test(String(l.msg)))));
        w.kill('SIGTERM');
      },
      exit: 0,
      why: /cold shutdown \(second SIGTERM\)/,
    }));

  it('an uncaught exception: the running early-ack task is stored FAILURE(WorkerLostError) before the process exits 1', () =>
    earlyAckCutOff({
      name: 'sd-crash',
      env: {},
      args: ['-c', '2'],
      cut: async (_w, send) => void (await send('sd.crashLater')),
      exit: 1,
      why: /the worker crashed \(a bug outside the task\)/,
    }));

  for (const c of [
    { task: 'sd.waitLate', value: 'done late', why: 'acksLate: the message goes back to the queue' },
    { task: 'sd.waitRepublished', value: 'done again', why: 'early ack with republishOnWorkerLost: the message is published again' },
  ]) {
    it(`SIGTERM past the shutdown timeout, ${c.why}, and another worker runs it`, async () => {
      const { queue, ledger, app, workerEnv } = setup('sd-back', { CELERIAC_SHUTDOWN_TIMEOUT_MS: '300' });
      const first = startWorker(TASKS, queue, { ...workerEnv, HANG: '1' });
      let second: Started | undefined;
      try {
        await withOutputOf({ first, second: { output: () => second?.output() ?? '' } }, async () => {
          const r = await app.sendTask(c.task, [], {}, { queue });
          await eventually(() => assert.equal(started(ledger).length, 1));
          first.kill('SIGTERM');
          assert.equal(await exited(first), 0);
          assert.equal(await admin!.llen(queue), 1, 'the message is back in the queue');
          assert.equal((await meta(r.id))?.status ?? 'PENDING', 'PENDING', 'no failure stored');
          second = startWorker(TASKS, queue, workerEnv);
          assert.equal(await r.get({ timeout: 20_000 }), c.value);
          const runs = started(ledger);
          assert.equal(runs.length, 2);
          assert.ok(runs[1]!.endsWith(` ${second.pid}`), 'the second run was on the other worker');
        });
      } finally {
        await stopProcess(first, 'SIGKILL');
        await stopProcess(second);
        await app.close();
      }
    });
  }

  it('SIGKILL (no handler runs) with a stateDir: the next worker on the folder stores the early-acked task FAILURE(WorkerLostError); a task done before keeps SUCCESS', async () => {
    const { queue, ledger, app, workerEnv } = setup('sd-kill');
    const stateEnv = { ...workerEnv, CELERIAC_STATE_DIR: join(dir, `${queue}.state`) };
    const first = startWorker(TASKS, queue, { ...stateEnv, HANG: '1' }, ['-c', '2']);
    let second: Started | undefined;
    try {
      await withOutputOf({ first, second: { output: () => second?.output() ?? '' } }, async () => {
        const done = await app.sendTask('sd.quick', [21], {}, { queue });
        assert.equal(await done.get({ timeout: 20_000 }), 42);
        const r = await app.sendTask('sd.wait', [], {}, { queue });
        await eventually(() => assert.equal(started(ledger).length, 1));
        first.kill('SIGKILL');
        await exited(first);
        assert.equal((await meta(r.id))?.status ?? 'PENDING', 'PENDING', 'nothing could store it at the kill');
        second = startWorker(TASKS, queue, stateEnv);
        const err = await r.get({ timeout: 20_000 }).then(
          () => assert.fail('expected the task to fail'),
          (e: unknown) => e,
        );
        assert.ok(err instanceof TaskFailedError, String(err));
        assert.equal(err.excType, 'WorkerLostError');
        assert.match(err.excMessage, /killed while the task ran/);
        assert.equal(await done.get({ timeout: 5_000 }), 42, 'a finished task is not touched');
        await eventually(() => assert.ok(logLines(second!).some((l) => /were running when the previous worker was killed/.test(String(l.msg)))));
        // Settled once: a third worker on the folder finds nothing left.
        await eventually(() => assert.deepEqual(readdirSync(stateEnv.CELERIAC_STATE_DIR), []));
      });
    } finally {
      await stopProcess(first, 'SIGKILL');
      await stopProcess(second);
      await app.close();
    }
  });

  it('a stateDir with notes a worker cannot settle as before: an unreadable note is kept aside, a refused message stored FAILURE and dead-lettered, the rest settled, and the worker serves', async () => {
    const { queue, app, workerEnv } = setup('sd-bad-notes');
    const stateDir = join(dir, `${queue}.state`);
    const ledger = new StartedLedger(stateDir);
    await ledger.takeLeftover(); // creates the folder
    const info = { queue, exchange: '', routingKey: queue, redelivered: false };
    const task = (id: string) => encodeTask({ id, name: 'sd.wait', args: [], kwargs: {}, origin: 'test', serializer: 'json' });
    const lost = randomUUID();
    const refused = randomUUID();
    await ledger.add({ message: task(lost), info });
    await ledger.add({ message: { ...task(refused), contentType: 'application/x-python-serialize' }, info });
    writeFileSync(join(stateDir, '7.json'), '{"envelope": {"body": "eyJ'); // broken by something outside the worker
    writeFileSync(join(stateDir, '8.json.tmp'), '{"envel'); // a kill while writing: its message was never acknowledged
    const w = startWorker(TASKS, queue, { ...workerEnv, CELERIAC_STATE_DIR: stateDir });
    try {
      await withOutputOf({ w }, async () => {
        const lostErr = await app
          .asyncResult(lost)
          .get({ timeout: 20_000 })
          .then(
            () => assert.fail('expected FAILURE'),
            (e: unknown) => e,
          );
        assert.ok(lostErr instanceof TaskFailedError, String(lostErr));
        assert.equal(lostErr.excType, 'WorkerLostError');
        const refusedErr = await app
          .asyncResult(refused)
          .get({ timeout: 20_000 })
          .then(
            () => assert.fail('expected FAILURE'),
            (e: unknown) => e,
          );
        assert.ok(refusedErr instanceof TaskFailedError, String(refusedErr));
        assert.equal(refusedErr.excType, 'ContentDisallowed');
        // Stored first, then dead-lettered: get() may answer in between.
        await eventually(async () => assert.equal(await admin!.llen(`${queue}.dead`), 1, 'the refused message is kept in the dead-letter queue'));
        const done = await app.sendTask('sd.quick', [4], {}, { queue });
        assert.equal(await done.get({ timeout: 20_000 }), 8, 'the worker serves after the bad notes');
        // sd.quick's own note goes once its outcome is recorded, just after get() answers.
        await eventually(() => assert.deepEqual(readdirSync(stateDir).sort(), ['7.json.unreadable']));
        // The worker's output reaches the test through a pipe, a little after it is written.
        await eventually(() => assert.ok(logLines(w).some((l) => l.level === 50 && /cannot be read .*kept as .*7\.json\.unreadable/.test(String(l.msg)))));
      });
    } finally {
      await stopProcess(w);
      await app.close();
    }
  });
});
