/**
 * Extending the worker (issue 20) in each pool on a real Redis: a task's custom state with its
 * meta (ctx.updateState) is stored as Celery stores it and followed by AsyncResult.follow(); the
 * signals are sent in Celery's order, with its arguments, where Celery sends them (task run
 * signals where the task runs, the others in the worker), recorded by fixtures/extending-tasks.ts.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { TaskRevokedError, type App } from '../../runtime/src/index.js';
import type { TaskMeta } from '../../runtime/src/protocol/result-meta.js';
import { eventually } from '../support/eventually.js';
import { repoRoot } from '../support/processes.js';
import { startPoolWorker } from '../support/pool-worker.js';
import { useRedis } from '../support/servers.js';

const redis = await useRedis();
const dir = mkdtempSync(join(tmpdir(), 'celeriac-extending-'));
after(async () => {
  await redis.server?.stop();
  rmSync(dir, { recursive: true, force: true });
});
const url = redis.server?.url ?? 'redis://127.0.0.1:1/0';
const TASKS = pathToFileURL(join(repoRoot, 'dist/test/integration/fixtures/extending-tasks.js')).href;

interface Sent {
  signal: string;
  pid: number;
  thread: number;
  sender?: string;
  taskId?: string;
  [field: string]: unknown;
}

const readLedger = (file: string): Sent[] =>
  existsSync(file)
    ? readFileSync(file, 'utf8')
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Sent)
    : [];

const { recordSignals } = (await import(TASKS)) as { recordSignals: (a: App) => void };

for (const pool of ['event-loop', 'threads', 'processes'] as const) {
  describe(`extending the worker, ${pool} pool`, { skip: redis.skip }, () => {
    const ledger = join(dir, `${pool}.ledger`);
    let started: Awaited<ReturnType<typeof startPoolWorker>>;
    before(async () => {
      // Runners inherit the environment: they write their signals to the same ledger.
      process.env.EXT_LEDGER = ledger;
      started = await startPoolWorker({ url, pool, tasksModule: TASKS, name: 'ext', extra: { resultExtended: true }, prepare: recordSignals });
    });
    after(async () => {
      await started?.worker.stop();
      await started?.client.close();
    });

    /** The signals sent for one task id, once `last` is among them. */
    const signalsOf = (taskId: string, last: string) =>
      eventually(() => {
        const sent = readLedger(ledger).filter((s) => s.taskId === taskId);
        assert.ok(
          sent.some((s) => s.signal === last),
          `${last} sent for ${taskId}: ${JSON.stringify(sent)}`,
        );
        return sent;
      });
    /** Where the task runs: the worker itself for the event-loop pool, else a runner. */
    const inRunner = (s: Sent) =>
      pool === 'processes' ? s.pid !== process.pid : pool === 'threads' ? s.thread !== 0 : s.pid === process.pid && s.thread === 0;
    const inWorker = (s: Sent) => s.pid === process.pid && s.thread === 0;

    it('success: publish signals in the client, received in the worker, prerun, success and postrun where the task runs', async () => {
      const r = await started.client.sendTask('ext.add', [2, 3]);
      assert.equal(await r.get({ timeout: 30_000 }), 5, 'a throwing prerun handler does not change the outcome');
      const all = await signalsOf(r.id, 'taskPostrun');
      // The client's afterTaskPublish and the worker's taskReceived race (as in Celery): apart.
      const [before, afterPublish] = all.filter((s) => s.signal.endsWith('Publish')) as [Sent, Sent];
      assert.deepEqual([before.signal, afterPublish.signal], ['beforeTaskPublish', 'afterTaskPublish']);
      const sent = all.filter((s) => !s.signal.endsWith('Publish'));
      assert.deepEqual(
        sent.map((s) => s.signal),
        ['taskReceived', 'taskPrerun', 'prerunOfAddOnly', 'taskSuccess', 'taskPostrun'],
      );
      const [received, prerun, , success, postrun] = sent as [Sent, Sent, Sent, Sent, Sent];
      assert.deepEqual(before.args, [2, 3]);
      assert.equal(before.routingKey, started.queue);
      assert.equal(afterPublish.header, 'set by beforeTaskPublish');
      assert.equal(received.header, 'set by beforeTaskPublish', 'a header added by beforeTaskPublish travels with the message');
      assert.ok(inWorker(received), 'taskReceived in the worker');
      assert.deepEqual(
        { sender: prerun.sender, task: prerun.task, args: prerun.args, kwargs: prerun.kwargs },
        { sender: 'ext.add', task: 'ext.add', args: [2, 3], kwargs: {} },
      );
      assert.ok(inRunner(prerun) && inRunner(success) && inRunner(postrun), `run signals where the task runs: ${JSON.stringify(sent)}`);
      assert.equal(success.result, 5);
      assert.deepEqual({ state: postrun.state, retval: postrun.retval }, { state: 'SUCCESS', retval: 5 });
    });

    it('failure: prerun, failure with the error and traceback, postrun FAILURE; a handler for another task is not called', async () => {
      const r = await started.client.sendTask('ext.fail', []);
      await assert.rejects(r.get({ timeout: 30_000 }), /boom/);
      const sent = (await signalsOf(r.id, 'taskPostrun')).filter((s) => !s.signal.endsWith('Publish'));
      assert.deepEqual(
        sent.map((s) => s.signal),
        ['taskReceived', 'taskPrerun', 'taskFailure', 'taskPostrun'],
      );
      const failure = sent[2]!;
      assert.deepEqual(
        { exception: failure.exception, args: failure.args, traceback: failure.traceback },
        { exception: 'Error: boom', args: [], traceback: 'string' },
      );
      assert.deepEqual({ state: sent[3]!.state, retval: sent[3]!.retval }, { state: 'FAILURE', retval: 'Error: boom' });
    });

    it('retry: prerun, retry with the reason, postrun RETRY, then the retried run received and succeeding', async () => {
      const r = await started.client.sendTask('ext.retryOnce', []);
      assert.equal(await r.get({ timeout: 30_000 }), 'second run');
      const sent = await eventually(async () => {
        const s = await signalsOf(r.id, 'taskSuccess');
        // The retry's afterTaskPublish may land after the retried run (the sender's publish
        // continuation races the worker, as in Celery): wait on the worker's signals only.
        assert.equal(s.filter((x) => !x.signal.endsWith('Publish')).at(-1)?.signal, 'taskPostrun');
        return s;
      });
      assert.deepEqual(
        sent.filter((s) => !s.signal.endsWith('Publish')).map((s) => s.signal),
        ['taskReceived', 'taskPrerun', 'taskRetry', 'taskPostrun', 'taskReceived', 'taskPrerun', 'taskSuccess', 'taskPostrun'],
      );
      const retry = sent.find((s) => s.signal === 'taskRetry')!;
      assert.equal(retry.reason, 'Error: again');
      assert.deepEqual(
        sent.filter((s) => s.signal === 'taskPostrun').map((s) => s.state),
        ['RETRY', 'SUCCESS'],
      );
    });

    it('revoked before running (expired): only taskRevoked, in the worker', async () => {
      const r = await started.client.sendTask('ext.add', [1, 1], {}, { expires: new Date(Date.now() - 60_000) });
      await assert.rejects(r.get({ timeout: 30_000 }), TaskRevokedError);
      const sent = (await signalsOf(r.id, 'taskRevoked')).filter((s) => !s.signal.endsWith('Publish'));
      assert.deepEqual(
        sent.map((s) => [s.signal, s.terminated, s.signum, s.expired]),
        [['taskRevoked', false, null, true]],
      );
      assert.ok(inWorker(sent[0]!));
    });

    it('revoked with terminate while running: received, prerun, then taskRevoked(terminated, signum 15) in the worker, no postrun', async () => {
      const gate = join(dir, `${pool}.wait.gate`);
      try {
        const r = await started.client.sendTask('ext.wait', [gate]);
        await signalsOf(r.id, 'taskPrerun');
        await r.revoke({ terminate: true });
        await assert.rejects(r.get({ timeout: 30_000 }), TaskRevokedError);
        const sent = (await signalsOf(r.id, 'taskRevoked')).filter((s) => !s.signal.endsWith('Publish'));
        assert.deepEqual(
          sent.map((s) => s.signal),
          ['taskReceived', 'taskPrerun', 'taskRevoked'],
        );
        assert.deepEqual([sent[2]!.terminated, sent[2]!.signum, sent[2]!.expired], [true, 15, false]);
        assert.ok(inWorker(sent[2]!));
      } finally {
        // The event-loop pool cannot stop the body: let it end.
        writeFileSync(gate, '');
      }
    });

    it('unknown task: taskUnknown in the worker with the name', async () => {
      const r = await started.client.sendTask('ext.nope', []);
      await assert.rejects(r.get({ timeout: 30_000 }), /NotRegistered/);
      const sent = (await signalsOf(r.id, 'taskUnknown')).filter((s) => !s.signal.endsWith('Publish'));
      assert.deepEqual(
        sent.map((s) => [s.signal, s.sender, s.name]),
        [['taskUnknown', 'ext.nope', 'ext.nope']],
      );
    });

    it('task base: its hooks run where the task runs, between the signals in Celery order; a throwing afterReturn leaves SUCCESS', async () => {
      const r = await started.client.sendTask('ext.based', [21]);
      assert.equal(await r.get({ timeout: 30_000 }), 42);
      const sent = (await signalsOf(r.id, 'taskPostrun')).filter((s) => !s.signal.endsWith('Publish'));
      assert.deepEqual(
        sent.map((s) => s.signal),
        ['taskReceived', 'taskPrerun', 'beforeStart', 'onSuccess', 'taskSuccess', 'afterReturn', 'taskPostrun'],
      );
      assert.deepEqual(sent[2]!.args, [21]);
      assert.equal(sent[3]!.retval, 42);
      assert.deepEqual([sent[5]!.state, sent[5]!.retval], ['SUCCESS', 42]);
      assert.ok(sent.slice(1).every(inRunner), JSON.stringify(sent));
    });

    it("task base: the base's options apply (retry delay 0, maxRetries 1); onRetry, then onFailure, each with afterReturn", async () => {
      const r = await started.client.sendTask('ext.basedFlaky', []);
      await assert.rejects(r.get({ timeout: 30_000 }), /flaky 1/);
      const sent = await eventually(async () => {
        const s = (await signalsOf(r.id, 'onFailure')).filter((x) => !x.signal.endsWith('Publish') && !x.signal.startsWith('task'));
        assert.equal(s.at(-1)?.signal, 'afterReturn');
        return s;
      });
      assert.deepEqual(
        sent.map((s) => [s.signal, s.exc ?? s.state ?? null]),
        [
          ['beforeStart', null],
          ['onRetry', 'Error: flaky 0'],
          ['afterReturn', 'RETRY'],
          ['beforeStart', null],
          ['onFailure', 'Error: flaky 1'],
          ['afterReturn', 'FAILURE'],
        ],
      );
      assert.equal(sent[4]!.traceback, 'string');
    });

    it('updateState stores PROGRESS with its meta as Celery does, and follow() yields it, then SUCCESS', async () => {
      const { client } = started;
      const gate = join(dir, `${pool}.gate`);
      const r = await client.sendTask('ext.progress', [3, gate]);
      const seen: TaskMeta[] = [];
      for await (const m of r.follow({ intervalMs: 20 })) {
        seen.push(m);
        if (m.status === 'PROGRESS' && (m.result as { current: number }).current === 3) {
          assert.deepEqual(await r.info(), { current: 3, total: 3 });
          writeFileSync(gate, '');
        }
      }
      const progress = seen.filter((m) => m.status === 'PROGRESS');
      const last = progress.at(-1)!;
      assert.deepEqual(last.result, { current: 3, total: 3 });
      // Celery's field order and values for a non-ready state stored from inside a task.
      assert.deepEqual(Object.keys(last), [
        'status',
        'result',
        'traceback',
        'children',
        'date_done',
        'name',
        'args',
        'kwargs',
        'worker',
        'retries',
        'queue',
        'task_id',
      ]);
      assert.equal(last.date_done, null);
      assert.deepEqual(last.children, []);
      assert.equal((last as unknown as { worker: string }).worker, 'ext@test');
      // Every change is yielded once, in order, and the iteration ends with the ready state.
      const currents = progress.map((m) => (m.result as { current: number }).current);
      assert.deepEqual(currents, [...currents].sort(), 'progress only goes forward');
      assert.equal(new Set(currents).size, currents.length, 'no repeats');
      assert.equal(seen.at(-1)!.status, 'SUCCESS');
      assert.equal(seen.at(-1)!.result, 'done');
    });

    it('worker signals: init, ready, heartbeat, shutting down (warm), shutdown in the worker; process init in each runner (in the worker for event-loop, as Celery solo)', async () => {
      started.worker.heartbeat();
      await started.worker.stop();
      const sent = readLedger(ledger).filter((s) => s.signal.startsWith('worker') || s.signal === 'heartbeatSent');
      const inMain = sent.filter((s) => s.signal !== 'workerProcessInit');
      assert.deepEqual(
        inMain.map((s) => s.signal).filter((n, i, all) => n !== 'heartbeatSent' || all.indexOf(n) === i),
        ['workerInit', 'workerReady', 'heartbeatSent', 'workerShuttingDown', 'workerShutdown'],
      );
      assert.ok(
        inMain.every((s) => inWorker(s) && s.sender === 'ext@test'),
        JSON.stringify(inMain),
      );
      assert.equal(inMain.find((s) => s.signal === 'workerShuttingDown')!.how, 'warm');
      const processInit = sent.filter((s) => s.signal === 'workerProcessInit');
      if (pool === 'event-loop') {
        // As Celery's solo pool: once, in the worker.
        assert.equal(processInit.length, 1);
        assert.ok(inWorker(processInit[0]!));
      } else {
        assert.ok(processInit.length >= 2, `one per runner: ${JSON.stringify(processInit)}`);
        assert.ok(processInit.every((s) => inRunner(s)));
      }
      // Sent before the worker is ready: the pool starts first.
      assert.ok(sent.findIndex((s) => s.signal === 'workerProcessInit') < sent.findIndex((s) => s.signal === 'workerReady'));
    });
  });
}
