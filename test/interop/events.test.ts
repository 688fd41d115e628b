/**
 * Events across the boundary, on Redis and RabbitMQ, with Celery 5.7 and 5.2:
 * - Celery's own EventReceiver (fixtures/py_events.py) receives a celeriac worker's events, and
 *   each event type carries the same fields as the one a Python worker sends for the same task;
 * - task-sent from a celeriac client matches a Python client's;
 * - `celeriac events --dump` prints a Python worker's events;
 * - a real Flower (5.7's virtualenv) lists a celeriac worker and its tasks from events alone.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../runtime/src/index.js';
import { createEventDispatcher } from '../../runtime/src/events/dispatcher.js';
import type { CeleryEvent } from '../../runtime/src/protocol/events.js';
import { eventually } from '../support/eventually.js';
import { startFlower } from '../support/flower.js';
import { pythonWorkerArgs, repoRoot, startProcess, startWorker, stopProcess, withOutputOf, type Started } from '../support/processes.js';
import { uniqueName, useRabbit, useRedis, type ServiceResult } from '../support/servers.js';
import { fixtures, pythonEnv, pythons, skipReason, type PythonRuntime } from './interop-suite.js';

const redis = await useRedis();
const rabbit = await useRabbit();
after(async () => {
  await redis.server?.stop();
  await rabbit.server?.stop();
});

const brokers: { name: string; service: ServiceResult; backend: (url: string) => string }[] = [
  { name: 'redis', service: redis, backend: (url) => url },
  { name: 'amqp', service: rabbit, backend: () => 'rpc://' },
];

/** The events a process prints as JSON lines (fixtures/py_events.py), in arrival order. */
function eventsOf(proc: Started): CeleryEvent[] {
  const events: CeleryEvent[] = [];
  let partial = '';
  proc.stdout!.on('data', (b: Buffer) => {
    const lines = (partial + b.toString()).split('\n');
    partial = lines.pop()!;
    for (const l of lines) if (l.startsWith('{')) events.push(JSON.parse(l) as CeleryEvent);
  });
  return events;
}

/** Fields of an event without the receiver's own (`local_received`), sorted. */
const fieldsOf = (e: CeleryEvent | undefined) =>
  Object.keys(e ?? {})
    .filter((k) => k !== 'local_received')
    .sort();

/**
 * Sends probe events from this process until the receiver prints one: PUB/SUB keeps nothing for
 * late subscribers, so this is how a test knows the receiver is listening.
 */
async function waitListening(app: App, events: CeleryEvent[]): Promise<void> {
  const probe = createEventDispatcher({ broker: await app.broker(), hostname: uniqueName('probe') + '@test', log: app.log, taskEvents: false });
  await eventually(
    async () => {
      probe.send('worker-heartbeat', { freq: 2, active: 0, processed: 0 });
      await probe.flush();
      assert.ok(
        events.some((e) => e.hostname === probe.hostname),
        'the receiver has not printed a probe yet',
      );
    },
    { timeoutMs: 60_000, intervalMs: 300 },
  );
}

function find(events: CeleryEvent[], type: string, where: Partial<Record<string, unknown>>): CeleryEvent | undefined {
  return events.find((e) => e.type === type && Object.entries(where).every(([k, v]) => e[k] === v));
}

async function waitFor(events: CeleryEvent[], type: string, where: Partial<Record<string, unknown>>): Promise<CeleryEvent> {
  return eventually(
    () => {
      const e = find(events, type, where);
      assert.ok(e, `no ${type} event with ${JSON.stringify(where)} yet`);
      return e;
    },
    { timeoutMs: 60_000 },
  );
}

for (const b of brokers) {
  for (const py of pythons) {
    const skip = skipReason(py, b.service.skip);
    describe(`events: celeriac <-> ${py.label} on ${b.name}`, { skip }, () => {
      const url = b.service.server?.url ?? '';
      const backend = b.backend(url);
      const tsQueue = uniqueName('ev-ts');
      const pyQueue = uniqueName('ev-py');
      const tsHost = `${tsQueue}@localhost`;
      const pyHost = `${pyQueue}@localhost`;
      let app: App;
      let receiver: Started;
      let received: CeleryEvent[];
      let tsWorker: Started | undefined;
      let pyWorker: Started | undefined;
      const procs = () => ({ receiver, 'TS worker': tsWorker, 'Python worker': pyWorker });

      before(async () => {
        app = createApp({ broker: url, backend, taskSendSentEvent: true, logLevel: 'warn' });
        receiver = startProcess(py.exe!, [join(fixtures, 'py_events.py'), url], { env: pythonEnv(url, backend, pyQueue), cwd: fixtures });
        received = eventsOf(receiver);
        await withOutputOf(procs(), () => waitListening(app, received));
        tsWorker = startWorker('dist/test/interop/fixtures/ts-tasks.js', tsQueue, { CELERIAC_BROKER_URL: url, CELERIAC_RESULT_BACKEND: backend }, [
          '-E',
          '-l',
          'warn',
          '-n',
          tsHost,
        ]);
        const pyArgs = pythonWorkerArgs('py_tasks', pyQueue, pyHost).filter((a) => a !== '--without-heartbeat');
        pyWorker = startProcess(py.exe!, [...pyArgs, '-E'], { env: pythonEnv(url, backend, pyQueue), cwd: fixtures });
      });
      after(async () => {
        await stopProcess(tsWorker);
        await stopProcess(pyWorker);
        await stopProcess(receiver);
        await app?.close();
      });

      it("sends each worker and task event with the fields a Python worker sends, and Celery's values", () =>
        withOutputOf(procs(), async () => {
          const run = async (prefix: string, queue: string) => {
            const send = (name: string, args: unknown[] = [], o: Record<string, unknown> = {}) => app.sendTask(`${prefix}.${name}`, args, {}, { queue, ...o });
            return {
              add: await send('add', [2, 3]),
              fail: await send('fail'),
              flaky: await send('flaky', ['w']),
              reject: await send('reject'),
              // Expires while held for its ETA (on RabbitMQ an already expired message never arrives:
              // Celery and celeriac set its TTL).
              expired: await send('add', [1, 1], { countdown: 6000, expires: 4000 }),
            };
          };
          // Both workers consume before anything is sent: the `expired` message must reach them before its TTL.
          await waitFor(received, 'worker-online', { hostname: tsHost });
          await waitFor(received, 'worker-online', { hostname: pyHost });
          const ts = await run('interop', tsQueue);
          const pyr = await run('pyinterop', pyQueue);
          for (const [host, ids] of [
            [tsHost, ts],
            [pyHost, pyr],
          ] as const) {
            await waitFor(received, 'worker-online', { hostname: host });
            await waitFor(received, 'worker-heartbeat', { hostname: host });
            await waitFor(received, 'task-succeeded', { hostname: host, uuid: ids.add.id });
            await waitFor(received, 'task-failed', { hostname: host, uuid: ids.fail.id });
            await waitFor(received, 'task-retried', { hostname: host, uuid: ids.flaky.id });
            await waitFor(received, 'task-succeeded', { hostname: host, uuid: ids.flaky.id });
            await waitFor(received, 'task-rejected', { hostname: host, uuid: ids.reject.id });
            await waitFor(received, 'task-revoked', { hostname: host, uuid: ids.expired.id });
          }
          const pick = (host: string, type: string, id?: string) => find(received, type, id ? { hostname: host, uuid: id } : { hostname: host });
          const pairs: [string, string | undefined, string | undefined][] = [
            ['worker-online', undefined, undefined],
            ['worker-heartbeat', undefined, undefined],
            ['task-received', ts.add.id, pyr.add.id],
            ['task-started', ts.add.id, pyr.add.id],
            ['task-succeeded', ts.add.id, pyr.add.id],
            ['task-failed', ts.fail.id, pyr.fail.id],
            ['task-retried', ts.flaky.id, pyr.flaky.id],
            ['task-rejected', ts.reject.id, pyr.reject.id],
            ['task-revoked', ts.expired.id, pyr.expired.id],
          ];
          for (const [type, tsId, pyId] of pairs) {
            assert.deepEqual(fieldsOf(pick(tsHost, type, tsId)), fieldsOf(pick(pyHost, type, pyId)), `${type}: celeriac's fields differ from Python's`);
          }

          // Values, as a Python monitor reads them.
          const hb = pick(tsHost, 'worker-heartbeat')!;
          assert.equal(hb.freq, 2);
          assert.equal(hb.sw_ident, 'celeriac');
          assert.equal(hb.sw_sys, pick(pyHost, 'worker-heartbeat')!.sw_sys);
          assert.equal(hb.utcoffset, pick(pyHost, 'worker-heartbeat')!.utcoffset);
          assert.ok(Array.isArray(hb.loadavg) && hb.loadavg.length === 3);
          for (const [host, ids, name] of [
            [tsHost, ts, 'interop.add'],
            [pyHost, pyr, 'pyinterop.add'],
          ] as const) {
            const rcv = pick(host, 'task-received', ids.add.id)!;
            assert.deepEqual(
              {
                name: rcv.name,
                args: rcv.args,
                kwargs: rcv.kwargs,
                retries: rcv.retries,
                eta: rcv.eta,
                expires: rcv.expires,
                root_id: rcv.root_id,
                parent_id: rcv.parent_id,
              },
              { name, args: '(2, 3)', kwargs: '{}', retries: 0, eta: null, expires: null, root_id: ids.add.id, parent_id: null },
              host,
            );
            const ok = pick(host, 'task-succeeded', ids.add.id)!;
            assert.equal(ok.result, '5');
            assert.equal(typeof ok.runtime, 'number');
            assert.ok((ok.runtime as number) >= 0 && (ok.runtime as number) < 60);
            const failed = pick(host, 'task-failed', ids.fail.id)!;
            // Python's fixture raises ValueError("bad value", 7), celeriac's ValueError('bad value 7');
            // Celery 5.2 sends "ExceptionWithTraceback()" here (billiard's wrapper).
            assert.match(String(failed.exception), /^ValueError\('bad value', 7\)$|^ValueError\('bad value 7'\)$|^ExceptionWithTraceback\(\)$/);
            assert.match(String(failed.traceback), /^Traceback \(most recent call last\):/);
            assert.match(String(pick(host, 'task-retried', ids.flaky.id)!.exception), /^Retry\(Retry\(\.\.\.\), \w+\('not yet.*'\), 0\.3\)$/);
            assert.equal(pick(host, 'task-rejected', ids.reject.id)!.requeue, false);
            const revoked = pick(host, 'task-revoked', ids.expired.id)!;
            assert.deepEqual(
              { terminated: revoked.terminated, signum: revoked.signum, expired: revoked.expired },
              { terminated: false, signum: null, expired: true },
            );
            // Lamport clock: strictly increasing per sender.
            const clocks = received.filter((e) => e.hostname === host).map((e) => e.clock);
            assert.ok(
              clocks.every((c, i) => i === 0 || c > clocks[i - 1]!),
              `${host} clocks not increasing: ${clocks.join(',')}`,
            );
          }
          assert.equal(pick(tsHost, 'task-failed', ts.fail.id)!.exception, "ValueError('bad value 7')");
        }));

      it("sends task-sent from a client with taskSendSentEvent, with a Python client's fields", () =>
        withOutputOf(procs(), async () => {
          const r = await app.sendTask('interop.add', [4, 5], {}, { queue: tsQueue });
          const mine = await waitFor(received, 'task-sent', { uuid: r.id });
          const script = [
            'import sys',
            'from celery import Celery',
            'app = Celery(broker=sys.argv[1])',
            'app.conf.task_send_sent_event = True',
            "print(app.send_task('pyinterop.add', (4, 5), queue=sys.argv[2]).id, flush=True)",
          ].join('\n');
          const client = startProcess(py.exe!, ['-c', script, url, pyQueue], { env: pythonEnv(url, backend, pyQueue), cwd: fixtures });
          await new Promise((resolve) => client.once('exit', resolve));
          const pyId = client.output().trim().split('\n').pop()!;
          const theirs = await waitFor(received, 'task-sent', { uuid: pyId });
          assert.deepEqual(fieldsOf(mine), fieldsOf(theirs));
          assert.equal(mine.hostname, app.origin);
          assert.deepEqual(
            { name: mine.name, args: mine.args, kwargs: mine.kwargs, retries: mine.retries, queue: mine.queue },
            { name: 'interop.add', args: '(4, 5)', kwargs: '{}', retries: 0, queue: tsQueue },
          );
        }));

      it('sends worker-offline on warm shutdown, as a Python worker', () =>
        withOutputOf(procs(), async () => {
          await stopProcess(tsWorker);
          await stopProcess(pyWorker);
          const mine = await waitFor(received, 'worker-offline', { hostname: tsHost });
          const theirs = await waitFor(received, 'worker-offline', { hostname: pyHost });
          assert.deepEqual(fieldsOf(mine), fieldsOf(theirs));
        }));
    });
  }

  // `celeriac events --dump` and Flower need only one Python; 5.7's virtualenv has Flower.
  const py57: PythonRuntime = pythons[0]!;
  const skip = skipReason(py57, b.service.skip);
  describe(`celeriac events --dump and Flower on ${b.name}`, { skip }, () => {
    const url = b.service.server?.url ?? '';
    const backend = b.backend(url);

    it("celeriac events --dump prints a Python worker's events", async () => {
      const queue = uniqueName('ev-dump');
      const host = `${queue}@localhost`;
      const dump = startProcess(process.execPath, [join(repoRoot, 'dist/runtime/src/cli/main.js'), 'events', '--dump', '-b', url], { env: process.env });
      const pyArgs = pythonWorkerArgs('py_tasks', queue, host).filter((a) => a !== '--without-heartbeat');
      const worker = startProcess(py57.exe!, [...pyArgs, '-E'], { env: pythonEnv(url, backend, queue), cwd: fixtures });
      const app = createApp({ broker: url, backend, logLevel: 'warn' });
      try {
        await withOutputOf({ dump, worker }, async () => {
          // Heartbeats every 2 s: the first one printed means the dump is listening.
          await eventually(() => assert.match(dump.output(), new RegExp(`^${host} \\[[-0-9 :.]+\\] heartbeat: `, 'm')), { timeoutMs: 60_000 });
          const r = await app.sendTask('pyinterop.add', [2, 3], {}, { queue });
          await eventually(
            () => {
              const out = dump.output();
              assert.match(out, new RegExp(`^${host} \\[[^\\]]+\\] task received: pyinterop\\.add\\(${r.id}\\) args=\\(2, 3\\) kwargs=\\{\\}`, 'm'));
              assert.match(
                out,
                new RegExp(`^${host} \\[[^\\]]+\\] task succeeded: pyinterop\\.add\\(${r.id}\\) args=\\(2, 3\\) kwargs=\\{\\} .*result=5`, 'm'),
              );
            },
            { timeoutMs: 60_000 },
          );
        });
      } finally {
        await stopProcess(worker);
        await stopProcess(dump);
        await app.close();
      }
    });

    it('Flower lists a celeriac worker online with its counts, and its tasks with args, result and runtime', async () => {
      const queue = uniqueName('ev-flower');
      const host = `${queue}@localhost`;
      const flower = await startFlower({ python: py57.exe!, brokerUrl: url });
      const worker = startWorker('dist/test/interop/fixtures/ts-tasks.js', queue, { CELERIAC_BROKER_URL: url, CELERIAC_RESULT_BACKEND: backend }, [
        '-E',
        '-l',
        'warn',
        '-n',
        host,
      ]);
      const app = createApp({ broker: url, backend, logLevel: 'warn' });
      const get = async (path: string) => {
        const r = await fetch(`${flower.url}${path}`);
        assert.equal(r.status, 200, `${path}: HTTP ${r.status}`);
        return (await r.json()) as Record<string, any>;
      };
      try {
        await withOutputOf({ worker }, async () => {
          // Online first (Flower subscribes after it starts): tasks sent later are all seen.
          await eventually(async () => assert.ok((await get('/workers?json=1')).data.some((w: any) => w.hostname === host && w.status === true)), {
            timeoutMs: 60_000,
          });
          const add = await app.sendTask('interop.add', [2, 3], {}, { queue });
          const fail = await app.sendTask('interop.fail', [], {}, { queue });
          await add.get({ timeout: 30_000 });
          await eventually(async () => {
            const info = await get(`/api/task/info/${add.id}`);
            assert.equal(info.state, 'SUCCESS');
            assert.equal(info.name, 'interop.add');
            assert.equal(info.args, '(2, 3)');
            assert.equal(info.kwargs, '{}');
            assert.equal(info.result, '5');
            assert.equal(typeof info.runtime, 'number');
            assert.equal(info.worker, host);
            const failed = await get(`/api/task/info/${fail.id}`);
            assert.equal(failed.state, 'FAILURE');
            assert.equal(failed.exception, "ValueError('bad value 7')");
            assert.match(failed.traceback, /^Traceback/);
            const tasks = await get(`/api/tasks?workername=${encodeURIComponent(host)}`);
            assert.deepEqual(Object.keys(tasks).sort(), [add.id, fail.id].sort());
            const w = (await get('/workers?json=1')).data.find((x: any) => x.hostname === host);
            assert.equal(w.status, true);
            assert.equal(w.sw_ident, 'celeriac');
            assert.equal(typeof w.active, 'number');
            assert.equal(w.processed, 2, 'processed comes from the heartbeat after both tasks');
            assert.equal(w['task-succeeded'], 1);
            assert.equal(w['task-failed'], 1);
          });
        });
      } finally {
        await stopProcess(worker);
        await flower.stop();
        await app.close();
      }
    });
  });
}
