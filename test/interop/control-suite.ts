/**
 * Remote control across the language boundary, on one broker: Python Celery's `celery inspect`,
 * `celery control` and `app.control` against a celeriac worker (every command, values checked:
 * the rate limit really limits, revoke really revokes, shutdown really stops the worker warm), and
 * `celeriac inspect`/`celeriac control` against a Python worker. Tasks are sent and their results
 * read by a celeriac client in this process (rpc:// results reach only their sender).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { createApp } from '../../runtime/src/index.js';
import { queueInfo } from '../../runtime/src/protocol/control.js';
import { eventually } from '../support/eventually.js';
import { startFlower, type RunningFlower } from '../support/flower.js';
import { pythonWorkerArgs, repoRoot, startProcess, startWorker, withOutputOf } from '../support/processes.js';
import { uniqueName } from '../support/servers.js';
import { fixtures, pythonEnv, pythons, skipReason, startPyWorker, stopProcess } from './interop-suite.js';

const run = promisify(execFile);

export interface ControlInteropOptions {
  readonly broker: 'redis' | 'amqp';
  readonly brokerUrl: string;
  readonly backendUrl: string;
  readonly skip: string | false;
}

type PyControlOp =
  | { op: 'inspect'; fn: string; args?: unknown[]; destination?: string[]; timeout?: number }
  | { op: 'control'; fn: string; args?: unknown[]; kwargs?: Record<string, unknown> };

/** A celeriac worker on `queue` named `node` (fixtures/ts-tasks.ts), two slots. */
function startNamedWorker(o: ControlInteropOptions, queue: string, node: string, pool: readonly string[] = ['-c', '2']) {
  return startWorker('dist/test/interop/fixtures/ts-tasks.js', queue, { CELERIAC_BROKER_URL: o.brokerUrl, CELERIAC_RESULT_BACKEND: o.backendUrl }, [
    '-n',
    node,
    ...pool,
    '-l',
    'info',
  ]);
}

export function controlInteropSuite(o: ControlInteropOptions): void {
  for (const py of pythons) {
    const skip = skipReason(py, o.skip);

    describe(`${py.label} controls a celeriac worker on ${o.broker}`, { skip }, () => {
      const queue = uniqueName('ctl');
      const node = `${queue}@localhost`;
      const env = pythonEnv(o.brokerUrl, o.backendUrl, queue);
      let worker: ReturnType<typeof startWorker> | undefined;
      const app = createApp({ name: 'ctl-client', broker: o.brokerUrl, backend: o.backendUrl, logLevel: 'warn' });
      const one = { destination: [node], timeout: 10 };
      const reply = { destination: [node], reply: true, timeout: 10 };

      const pyControl = async (ops: PyControlOp[]): Promise<unknown[]> => {
        const { stdout } = await run(py.exe!, [join(fixtures, 'py_control.py'), JSON.stringify(ops)], { env, cwd: fixtures, timeout: 120_000 });
        const lines = stdout.trim().split('\n');
        return JSON.parse(lines[lines.length - 1]!) as unknown[];
      };
      const celery = async (...args: string[]): Promise<string> => {
        const { stdout } = await run(py.exe!, ['-m', 'celery', '-A', 'py_tasks', ...args, '-d', node, '-t', '10'], { env, cwd: fixtures, timeout: 120_000 });
        return stdout;
      };
      const withLogs = <T>(f: () => Promise<T>): Promise<T> => withOutputOf({ 'TS worker': worker }, f);

      before(async () => {
        worker = startNamedWorker(o, queue, node);
        await withLogs(() => eventually(async () => assert.equal((await app.control.ping({ destination: [node], timeoutMs: 1000 })).length, 1)));
      });
      after(async () => {
        await stopProcess(worker);
        await app.close();
      });

      it('celery inspect / celery control (the CLI): ping, registered, active_queues, rate_limit', () =>
        withLogs(async () => {
          const ping = await celery('inspect', 'ping');
          assert.match(ping, new RegExp(`-> +${node}: OK\\s+pong`));
          assert.match(await celery('inspect', 'registered'), /\* interop\.add\n/);
          assert.match(await celery('inspect', 'active_queues'), new RegExp(`'name': '${queue}'`));
          assert.match(await celery('control', 'rate_limit', 'interop.join', '100/m'), /new rate limit set successfully/);
          assert.match(await celery('inspect', 'registered'), /\* interop\.join \[rate_limit=100\/m\]/);
          assert.match(await celery('control', 'rate_limit', 'interop.join', ''), /rate limit disabled successfully/);
        }));

      it('app.control inspect: ping, stats, registered, active_queues, conf, report, clock; destination filtering', () =>
        withLogs(async () => {
          const [ping, nobody, stats, registered, queues, conf, report, clock] = (await pyControl([
            { op: 'control', fn: 'ping', kwargs: { destination: [node], timeout: 10 } },
            { op: 'control', fn: 'ping', kwargs: { destination: ['nobody@nowhere'], timeout: 0.5 } },
            { op: 'inspect', fn: 'stats', ...one },
            { op: 'inspect', fn: 'registered', ...one },
            { op: 'inspect', fn: 'active_queues', ...one },
            { op: 'inspect', fn: 'conf', ...one },
            { op: 'inspect', fn: 'report', ...one },
            { op: 'inspect', fn: 'clock', ...one },
          ])) as Record<string, any>[];
          assert.deepEqual(ping, [{ [node]: { ok: 'pong' } }]);
          assert.deepEqual(nobody, []);
          const s = stats![node];
          assert.equal(s.pid, worker!.pid);
          assert.equal(s.pool['max-concurrency'], 2);
          assert.equal(s.broker.transport, o.broker);
          assert.equal(typeof s.uptime, 'number');
          assert.equal(s.broker.password, undefined);
          const names = registered![node] as string[];
          assert.ok(names.includes('interop.add') && names.includes('interop.block'), names.join(', '));
          assert.ok(!names.some((n) => n.startsWith('celery.')), 'no celery.* builtins');
          assert.deepEqual(queues![node], [queueInfo(queue)]);
          assert.equal(conf![node].worker_concurrency, 2);
          const password = new URL(o.brokerUrl).password;
          if (password) assert.ok(!JSON.stringify([conf, stats]).includes(`:${password}@`), 'no password in conf or stats');
          assert.match(report![node].ok, /celeriac/);
          assert.equal(typeof clock![node].clock, 'number');
        }));

      it('active, reserved, scheduled, query_task; revoke with terminate and plain revoke', () =>
        withLogs(async () => {
          const b1 = await app.sendTask('interop.block', [60_000], {}, { queue });
          const b2 = await app.sendTask('interop.block', [60_000], {}, { queue });
          const waiting = await app.sendTask('interop.add', [1, 2], {}, { queue });
          const later = await app.sendTask('interop.add', [3, 4], {}, { queue, countdown: 60_000 });
          const [active, reserved, scheduled, query] = await eventually(async () => {
            const r = (await pyControl([
              { op: 'inspect', fn: 'active', ...one },
              { op: 'inspect', fn: 'reserved', ...one },
              { op: 'inspect', fn: 'scheduled', ...one },
              { op: 'inspect', fn: 'query_task', args: [b1.id, waiting.id, later.id, 'unknown'], ...one },
            ])) as Record<string, any>[];
            assert.equal(r[0]![node].length, 2);
            assert.equal(r[1]![node].length, 1);
            assert.equal(r[2]![node].length, 1);
            return r.map((x) => x[node]);
          });
          assert.deepEqual(new Set(active.map((a: any) => a.id)), new Set([b1.id, b2.id]));
          assert.equal(active[0].name, 'interop.block');
          assert.deepEqual(active[0].args, [60_000]);
          assert.equal(active[0].hostname, node);
          assert.equal(typeof active[0].time_start, 'number');
          assert.equal(reserved[0].id, waiting.id);
          assert.equal(scheduled[0].request.id, later.id);
          assert.equal(scheduled[0].priority, 6);
          assert.match(scheduled[0].eta, /^\d{4}-\d\d-\d\dT/);
          assert.deepEqual(Object.keys(query).sort(), [b1.id, waiting.id, later.id].sort());
          assert.equal(query[b1.id][0], 'active');
          assert.equal(query[waiting.id][0], 'reserved');
          assert.equal(query[later.id][0], 'scheduled');
          const [terminated, revoked] = (await pyControl([
            { op: 'control', fn: 'revoke', args: [b1.id], kwargs: { terminate: true, signal: 'SIGTERM', ...reply } },
            { op: 'control', fn: 'revoke', args: [[b2.id, later.id]], kwargs: { terminate: true, ...reply } },
          ])) as Record<string, any>[][];
          assert.deepEqual(terminated, [{ [node]: { ok: `terminate: ${b1.id}` } }]);
          assert.deepEqual(revoked, [{ [node]: { ok: `terminate: ${b2.id}` } }]);
          for (const r of [b1, b2]) assert.equal(await r.get({ timeout: 30_000 }).catch((e: Error) => e.name), 'TaskRevokedError');
          assert.equal(await waiting.get({ timeout: 30_000 }), 3);
          const [list] = (await pyControl([{ op: 'inspect', fn: 'revoked', ...one }])) as Record<string, string[]>[];
          assert.ok(list![node]!.includes(later.id), 'the ETA task is in the revoked set');
          // Celery's plain revoke (no reply, as Flower sends it): once the worker has the id, a
          // message with that id is discarded as REVOKED instead of run.
          const id = randomUUID();
          await pyControl([{ op: 'control', fn: 'revoke', args: [id] }]);
          await eventually(async () => {
            const [r] = (await pyControl([{ op: 'inspect', fn: 'revoked', ...one }])) as Record<string, string[]>[];
            assert.ok(r![node]!.includes(id));
          });
          const plain = await app.sendTask('interop.add', [5, 5], {}, { queue, taskId: id });
          assert.equal(await plain.get({ timeout: 30_000 }).catch((e: Error) => e.name), 'TaskRevokedError');
        }));

      it('rate_limit really limits the rate; time_limit really limits the time', () =>
        withLogs(async () => {
          const [set, unknown, bad] = (await pyControl([
            { op: 'control', fn: 'rate_limit', args: ['interop.total', '1/m'], kwargs: reply },
            { op: 'control', fn: 'rate_limit', args: ['no.such.task', '1/m'], kwargs: reply },
            { op: 'control', fn: 'rate_limit', args: ['interop.total', 'x/m'], kwargs: reply },
          ])) as unknown[];
          assert.deepEqual(set, [{ [node]: { ok: 'new rate limit set successfully' } }]);
          assert.deepEqual(unknown, [{ [node]: { error: 'unknown task' } }]);
          assert.deepEqual(bad, [{ [node]: { error: `Invalid rate limit string: ValueError("could not convert string to float: 'x'")` } }]);
          const first = await app.sendTask<number>('interop.total', [[1, 2]], {}, { queue });
          assert.equal(await first.get({ timeout: 30_000 }), 3);
          const second = await app.sendTask<number>('interop.total', [[3, 4]], {}, { queue });
          // One a minute: the second waits for a token, held by the worker (listed as scheduled).
          await eventually(async () => {
            const [s] = (await pyControl([{ op: 'inspect', fn: 'scheduled', ...one }])) as Record<string, any>[];
            // (The ETA task revoked above stays listed until its time comes, as in Celery.)
            assert.ok(
              s![node].some((e: any) => e.request.id === second.id),
              JSON.stringify(s),
            );
          });
          await pyControl([{ op: 'control', fn: 'revoke', args: [second.id], kwargs: { terminate: false } }]);

          const [limited] = (await pyControl([
            { op: 'control', fn: 'time_limit', args: ['interop.block'], kwargs: { soft: null, hard: 1, ...reply } },
          ])) as unknown[];
          assert.deepEqual(limited, [{ [node]: { ok: 'time limits set successfully' } }]);
          const slow = await app.sendTask('interop.block', [60_000], {}, { queue });
          const err = await slow.get({ timeout: 30_000 }).then(
            () => null,
            (e: { excType?: string }) => e,
          );
          assert.equal(err?.excType, 'TimeLimitExceeded');
          const [cleared] = (await pyControl([
            { op: 'control', fn: 'time_limit', args: ['interop.block'], kwargs: { soft: null, hard: null, ...reply } },
          ])) as unknown[];
          assert.deepEqual(cleared, [{ [node]: { ok: 'time limits set successfully' } }]);
        }));

      it('add_consumer, cancel_consumer, pool_grow, pool_shrink, autoscale', () =>
        withLogs(async () => {
          const extra = `${queue}-extra`;
          const [added] = (await pyControl([{ op: 'control', fn: 'add_consumer', args: [extra], kwargs: reply }])) as unknown[];
          assert.deepEqual(added, [{ [node]: { ok: `add consumer ${extra}` } }]);
          const r = await app.sendTask<number>('interop.add', [20, 22], {}, { queue: extra });
          assert.equal(await r.get({ timeout: 30_000 }), 42);
          const [queues, cancelled] = (await pyControl([
            { op: 'inspect', fn: 'active_queues', ...one },
            { op: 'control', fn: 'cancel_consumer', args: [extra], kwargs: reply },
          ])) as any[];
          assert.deepEqual(
            queues[node].map((q: any) => q.name),
            [queue, extra],
          );
          assert.deepEqual(cancelled, [{ [node]: { ok: `no longer consuming from ${extra}` } }]);
          await eventually(async () => {
            const [q] = (await pyControl([{ op: 'inspect', fn: 'active_queues', ...one }])) as any[];
            assert.deepEqual(
              q[node].map((x: any) => x.name),
              [queue],
            );
          });
          const [grow, afterGrow, shrink, afterShrink, autoscale] = (await pyControl([
            { op: 'control', fn: 'pool_grow', args: [3], kwargs: reply },
            { op: 'inspect', fn: 'stats', ...one },
            { op: 'control', fn: 'pool_shrink', args: [1], kwargs: reply },
            { op: 'inspect', fn: 'stats', ...one },
            { op: 'control', fn: 'autoscale', args: [4, 2], kwargs: reply },
          ])) as any[];
          assert.deepEqual(grow, [{ [node]: { ok: 'pool will grow' } }]);
          assert.equal(afterGrow[node].pool['max-concurrency'], 5);
          assert.deepEqual(shrink, [{ [node]: { ok: 'pool will shrink' } }]);
          assert.equal(afterShrink[node].pool['max-concurrency'], 4);
          assert.deepEqual(autoscale, [{ [node]: { error: "ValueError('Autoscale not enabled')" } }]);
        }));

      it("a Python worker starting with mingle learns the celeriac worker's revoked ids (hello)", async () => {
        const id = randomUUID();
        const [flagged] = (await pyControl([{ op: 'control', fn: 'revoke', args: [id], kwargs: reply }])) as unknown[];
        assert.deepEqual(flagged, [{ [node]: { ok: `tasks {'${id}'} flagged as revoked` } }]);
        const pyQueue = `${queue}-mingle`;
        const pyNode = `${pyQueue}@localhost`;
        // Mingle on: at start the Python worker asks every worker for its revoked set and clock.
        const args = pythonWorkerArgs('py_tasks', pyQueue, pyNode).filter((a) => a !== '--without-mingle');
        const pyWorker = startProcess(py.exe!, args, { env: pythonEnv(o.brokerUrl, o.backendUrl, pyQueue), cwd: fixtures });
        try {
          await withOutputOf({ 'TS worker': worker, 'Python worker': pyWorker }, () =>
            eventually(async () => {
              const [r] = (await pyControl([{ op: 'inspect', fn: 'revoked', destination: [pyNode], timeout: 5 }])) as Record<string, string[]>[];
              assert.ok(r?.[pyNode]?.includes(id), `the Python worker's revoked set: ${JSON.stringify(r)}`);
            }),
          );
          assert.doesNotMatch(pyWorker.output(), /mingle: sync with .* failed/);
        } finally {
          await stopProcess(pyWorker);
        }
      });

      it('autoscale against a worker started with --autoscale 3,1: the range changes, pool_grow is refused', async () => {
        const autoQueue = `${queue}-auto`;
        const autoNode = `${autoQueue}@localhost`;
        const auto = startNamedWorker(o, autoQueue, autoNode, ['--autoscale', '3,1']);
        try {
          await withOutputOf({ 'autoscaling TS worker': auto }, async () => {
            await eventually(async () => assert.equal((await app.control.ping({ destination: [autoNode], timeoutMs: 1000 })).length, 1));
            const to = { destination: [autoNode], reply: true, timeout: 10 };
            const [before, scaled, after, grow] = (await pyControl([
              { op: 'inspect', fn: 'stats', destination: [autoNode], timeout: 10 },
              { op: 'control', fn: 'autoscale', args: [5, 2], kwargs: to },
              { op: 'inspect', fn: 'stats', destination: [autoNode], timeout: 10 },
              { op: 'control', fn: 'pool_grow', args: [1], kwargs: to },
            ])) as any[];
            assert.deepEqual(before[autoNode].autoscaler, { max: 3, min: 1, current: 1, qty: 0 });
            assert.deepEqual(scaled, [{ [autoNode]: { ok: 'autoscale now max=5 min=2' } }]);
            assert.deepEqual(after[autoNode].autoscaler, { max: 5, min: 2, current: 2, qty: 0 });
            assert.equal(after[autoNode].pool['max-concurrency'], 2);
            assert.deepEqual(grow, [{ [autoNode]: { error: 'pool_grow is not supported with autoscale. Adjust autoscale range instead.' } }]);
          });
        } finally {
          await stopProcess(auto);
        }
      });

      it('shutdown stops the worker with a warm shutdown: the running task finishes', () =>
        withLogs(async () => {
          // Long enough to be running when Python's shutdown arrives (a Python process starts in seconds).
          const r = await app.sendTask('interop.block', [10_000], {}, { queue });
          await eventually(async () => assert.equal((await app.control.active({ destination: [node], timeoutMs: 5000 }))[node]?.length, 1));
          const exited = new Promise<number | null>((resolve) => worker!.once('exit', (code) => resolve(code)));
          await pyControl([{ op: 'control', fn: 'shutdown', kwargs: { destination: [node] } }]);
          assert.equal(await exited, 0);
          assert.match(worker!.output(), /warm shutdown requested by remote control/);
          assert.equal(await r.get({ timeout: 30_000 }), 'slept 10000');
        }));
    });

    // Flower 2.2 is in the Celery 5.7 virtualenv only.
    describe(
      `Flower (${py.label}) controls a celeriac worker on ${o.broker} through its HTTP API`,
      { skip: skip || (py.label === 'Celery 5.7' ? false : 'Flower is installed with Celery 5.7 only') },
      () => {
        const queue = uniqueName('flower');
        const node = `${queue}@localhost`;
        let worker: ReturnType<typeof startWorker> | undefined;
        let flower: RunningFlower | undefined;
        const app = createApp({ name: 'flower-client', broker: o.brokerUrl, backend: o.backendUrl, logLevel: 'warn' });
        const api = async (method: 'GET' | 'POST', path: string, form?: Record<string, string>) => {
          const res = await fetch(`${flower!.url}${path}`, {
            method,
            body: form ? new URLSearchParams(form) : undefined,
          });
          const text = await res.text();
          assert.equal(res.status, 200, `${method} ${path}: ${res.status} ${text}`);
          return JSON.parse(text) as Record<string, any>;
        };
        const withLogs = <T>(f: () => Promise<T>): Promise<T> => withOutputOf({ 'TS worker': worker, Flower: flower?.process }, f);

        before(async () => {
          worker = startNamedWorker(o, queue, node);
          flower = await startFlower({
            python: py.exe!,
            brokerUrl: o.brokerUrl,
            app: 'flower_app',
            cwd: fixtures,
            env: pythonEnv(o.brokerUrl, o.backendUrl, queue),
          });
        });
        after(async () => {
          await stopProcess(worker);
          await flower?.stop();
          await app.close();
        });

        it('/api/workers lists the worker with stats, registered tasks, active queues and conf (from pidbox)', () =>
          withLogs(async () => {
            const w = await eventually(async () => {
              // Flower asks each method with its own 1 s timeout and keeps the answers of earlier refreshes.
              const all = await api('GET', '/api/workers?refresh=1');
              assert.ok(all[node], `worker listed (got ${Object.keys(all).join(', ')})`);
              for (const method of ['stats', 'registered', 'active_queues', 'conf']) assert.ok(all[node][method], `${method} answered`);
              return all[node];
            });
            assert.equal(w.stats.pid, worker!.pid);
            assert.equal(w.stats.pool['max-concurrency'], 2);
            assert.ok(w.registered.includes('interop.add'), w.registered.join(', '));
            assert.deepEqual(w.active_queues, [queueInfo(queue)]);
            assert.equal(w.conf.worker_concurrency, 2);
            const one = await eventually(async () => {
              const w1 = (await api('GET', `/api/workers?refresh=1&workername=${encodeURIComponent(node)}`))[node];
              for (const method of ['active', 'reserved', 'scheduled', 'revoked']) assert.ok(w1[method], `${method} answered`);
              return w1;
            });
            assert.deepEqual(one.active, []);
            assert.deepEqual(one.reserved, []);
          }));

        it('rate limit, revoke (terminate) and shutdown buttons work', () =>
          withLogs(async () => {
            await api('GET', '/api/workers?refresh=1');
            const limited = await api('POST', '/api/task/rate-limit/interop.total', { workername: node, ratelimit: '5/m' });
            assert.deepEqual(limited, { message: 'new rate limit set successfully' });
            assert.ok((await app.control.registered({ destination: [node], timeoutMs: 5000 }))[node]!.includes('interop.total [rate_limit=5/m]'));

            const r = await app.sendTask('interop.block', [60_000], {}, { queue });
            await eventually(async () => assert.equal((await app.control.active({ destination: [node], timeoutMs: 5000 }))[node]?.length, 1));
            const revoked = await api('POST', `/api/task/revoke/${r.id}?terminate=true`);
            assert.deepEqual(revoked, { message: `Revoked '${r.id}'` });
            assert.equal(await r.get({ timeout: 30_000 }).catch((e: Error) => e.name), 'TaskRevokedError');

            const exited = new Promise<number | null>((resolve) => worker!.once('exit', (code) => resolve(code)));
            assert.deepEqual(await api('POST', `/api/worker/shutdown/${encodeURIComponent(node)}`), { message: 'Shutting down!' });
            assert.equal(await exited, 0);
          }));
      },
    );

    describe(`celeriac inspect/control -> ${py.label} worker on ${o.broker}`, { skip }, () => {
      const queue = uniqueName('pyctl');
      const node = `${queue}@localhost`;
      let pyWorker: ReturnType<typeof startPyWorker> | undefined;
      const cli = async (...args: string[]): Promise<string> => {
        const { stdout } = await run(process.execPath, [join(repoRoot, 'dist/runtime/src/cli/main.js'), ...args, '-b', o.brokerUrl, '-d', node, '-t', '5000'], {
          timeout: 60_000,
        });
        return stdout;
      };
      before(() => {
        pyWorker = startPyWorker(py, o.brokerUrl, o.backendUrl, queue);
      });
      after(() => stopProcess(pyWorker));

      it('ping, stats, registered, active_queues, rate_limit', () =>
        withOutputOf({ 'Python worker': pyWorker }, async () => {
          const ping = await eventually(async () => JSON.parse(await cli('inspect', 'ping', '--json')) as unknown);
          assert.deepEqual(ping, { [node]: { ok: 'pong' } });
          const stats = JSON.parse(await cli('inspect', 'stats', '--json'))[node];
          assert.equal(stats.pid, pyWorker!.pid);
          assert.equal(stats.pool['max-concurrency'], 1);
          const registered = JSON.parse(await cli('inspect', 'registered', '--json'))[node] as string[];
          assert.ok(registered.includes('pyinterop.add'), registered.join(', '));
          const queues = JSON.parse(await cli('inspect', 'active_queues', '--json'))[node];
          assert.equal(queues[0].name, queue);
          assert.match(await cli('control', 'rate_limit', 'pyinterop.add', '10/m'), new RegExp(`-> ${node}: OK\\n\\s+new rate limit set successfully`));
          const after = JSON.parse(await cli('inspect', 'registered', '--json'))[node] as string[];
          assert.ok(after.includes('pyinterop.add [rate_limit=10/m]'), after.join(', '));
        }));
    });
  }
}
