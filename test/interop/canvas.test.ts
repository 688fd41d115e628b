/**
 * The canvas across languages, results in Redis (Celery's chord join lives there): Python builds
 * chains, groups and chords of TypeScript and Python tasks, TypeScript builds them of Python
 * tasks, and each mixed canvas gives what the same canvas gives on a Python-only fleet. On Redis
 * and on RabbitMQ (with the Redis result backend), for Celery 5.7 and 5.2.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { applySignature, chain, chord, chunks, createApp, group, GroupResult, signature, type AsyncResult } from '../../runtime/src/index.js';
import { CanvasError, TaskFailedError } from '../../runtime/src/errors.js';
import { withOutputOf } from '../support/processes.js';
import { uniqueName, useRabbit, useRedis } from '../support/servers.js';
import { pythonClient, pythonEnv, pythons, skipReason, startPyWorker, startTsWorker, stopProcess, type PyCanvas } from './interop-suite.js';

const redis = await useRedis();
const rabbit = await useRabbit();
after(async () => {
  await redis.server?.stop();
  await rabbit.server?.stop();
});
const redisUrl = redis.server?.url ?? 'redis://127.0.0.1:1/0';

const brokers = [
  { broker: 'redis', url: redisUrl, skip: redis.skip },
  { broker: 'amqp', url: rabbit.server?.url ?? 'amqp://127.0.0.1:1', skip: redis.skip || rabbit.skip },
] as const;

for (const b of brokers) {
  for (const py of pythons) {
    describe(`${py.label} canvas <-> celeriac on ${b.broker} (results in Redis)`, { skip: skipReason(py, b.skip) }, () => {
      const tsQueue = uniqueName('ts-canvas');
      const pyQueue = uniqueName('py-canvas');
      let tsWorker: ReturnType<typeof startTsWorker> | undefined;
      let pyWorker: ReturnType<typeof startPyWorker> | undefined;
      const app = createApp({ name: 'canvas-client', broker: b.url, backend: redisUrl, logLevel: 'warn' });
      before(() => {
        tsWorker = startTsWorker(b.url, redisUrl, tsQueue);
        pyWorker = startPyWorker(py, b.url, redisUrl, pyQueue);
      });
      after(async () => {
        await app.close();
        await stopProcess(tsWorker);
        await stopProcess(pyWorker);
      });
      const withLogs = <T>(f: () => Promise<T>): Promise<T> => withOutputOf({ 'TS worker': tsWorker, 'Python worker': pyWorker }, f);

      // Task references: `ts` runs on the TypeScript worker, `py` on the Python one.
      const ts = (name: string, ...args: unknown[]): PyCanvas => ({ sig: `interop.${name}`, args, queue: tsQueue });
      const pyT = (name: string, ...args: unknown[]): PyCanvas => ({ sig: `pyinterop.${name}`, args, queue: pyQueue });
      /** The same canvas with every task on the Python worker: what Celery alone computes. */
      const pythonOnly = (c: PyCanvas): PyCanvas => {
        if ('chain' in c) return { chain: c.chain.map(pythonOnly) };
        if ('group' in c) return { group: c.group.map(pythonOnly) };
        if ('chord' in c) return { chord: c.chord.map(pythonOnly), body: pythonOnly(c.body) };
        if ('chunks' in c) return { ...c, chunks: { ...c.chunks, sig: c.chunks.sig.replace(/^interop\./, 'pyinterop.'), queue: pyQueue } };
        if ('starmap' in c) return { ...c, starmap: { ...c.starmap, sig: c.starmap.sig.replace(/^interop\./, 'pyinterop.'), queue: pyQueue } };
        if ('map' in c) return { ...c, map: { ...c.map, sig: c.map.sig.replace(/^interop\./, 'pyinterop.'), queue: pyQueue } };
        return { ...c, sig: c.sig.replace(/^interop\./, 'pyinterop.'), queue: pyQueue, args: c.sig === 'interop.replace' ? [c.args![0], pyQueue] : c.args };
      };

      it('Python builds chord, chain and group of TypeScript and Python tasks; results equal a Python-only fleet', () =>
        withLogs(async () => {
          const canvases: [string, PyCanvas, unknown][] = [
            ['chord of TS tasks, Python body', { chord: [ts('add', 1, 1), ts('add', 2, 2)], body: pyT('total') }, 6],
            ['chord of Python tasks, TS body', { chord: [pyT('add', 1, 1), pyT('add', 2, 2)], body: ts('total') }, 6],
            ['chord with a mixed header', { chord: [ts('add', 1, 1), pyT('add', 2, 2), ts('add', 3, 3)], body: pyT('total') }, 12],
            ['chain of mixed tasks', { chain: [ts('add', 1, 1), pyT('add', 10), ts('add', 100)] }, 112],
            ['group of mixed tasks', { group: [ts('add', 1, 1), pyT('add', 2, 2), ts('add', 3, 3)] }, [2, 4, 6]],
            ['group in a chain (a chord)', { chain: [ts('add', 1, 1), { group: [pyT('add', 10), ts('add', 20)] }, ts('total'), pyT('add', 1000)] }, 1034],
            ['chord in a chain', { chain: [pyT('add', 1, 2), { chord: [ts('add', 1), pyT('add', 2)], body: ts('total') }] }, 9],
            [
              'chunks of a TS task',
              {
                chunks: { sig: 'interop.add', queue: tsQueue },
                it: [
                  [1, 1],
                  [2, 2],
                  [3, 3],
                ],
                n: 2,
              },
              [[2, 4], [6]],
            ],
            [
              'starmap of a TS task',
              {
                starmap: { sig: 'interop.add', queue: tsQueue },
                it: [
                  [1, 2],
                  [3, 4],
                ],
              },
              [3, 7],
            ],
            ['map of a TS task', { map: { sig: 'interop.total', queue: tsQueue }, it: [[1, 2], [3]] }, [3, 3]],
          ];
          const env = pythonEnv(b.url, redisUrl, pyQueue);
          const mixed = await pythonClient(py.exe!, env, [...canvases.map(([, c]) => ({ op: 'canvas' as const, canvas: c }))]);
          const alone = await pythonClient(py.exe!, env, [...canvases.map(([, c]) => ({ op: 'canvas' as const, canvas: pythonOnly(c) }))]);
          canvases.forEach(([what, , expected], i) => {
            assert.equal(mixed[i]!.error, undefined, `${what}: ${JSON.stringify(mixed[i]!.error)}`);
            assert.deepEqual(mixed[i]!.result, expected, what);
            assert.deepEqual(mixed[i]!.result, alone[i]!.result, `${what}: equal to the Python-only fleet`);
          });
        }));

      it('Python chord whose TypeScript header task fails: the body fails with ChordError naming the task', () =>
        withLogs(async () => {
          const env = pythonEnv(b.url, redisUrl, pyQueue);
          const canvas: PyCanvas = { chord: [ts('add', 1, 1), ts('fail')], body: pyT('total') };
          const [failed] = await pythonClient(py.exe!, env, [{ op: 'canvas', canvas, own: true }]);
          const [alone] = await pythonClient(py.exe!, env, [{ op: 'canvas', canvas: pythonOnly(canvas), own: true }]);
          // get() raises the failed header's own error first (Celery follows parents), as on a Python-only fleet.
          assert.equal(failed!.error?.type, 'ValueError');
          assert.equal(failed!.error?.type, alone!.error?.type);
          assert.equal(failed!.own?.type, 'ChordError');
          assert.equal(failed!.own?.module, 'celery.exceptions');
          assert.match(failed!.own!.message!, /^Dependency [0-9a-f-]{36} raised ValueError\('bad value 7'\)$/);
          assert.equal(alone!.own?.type, 'ChordError', 'the same on a Python-only fleet');
          assert.match(alone!.own!.message!, /^Dependency [0-9a-f-]{36} raised ValueError\('bad value', 7\)$/);
        }));

      it('TypeScript builds chord, chain and group of Python tasks; Python restores a group TypeScript saved', () =>
        withLogs(async () => {
          const pyAdd = (...args: number[]) => signature('pyinterop.add', args, {}, { queue: pyQueue });
          const tsTotal = signature('interop.total', [], {}, { queue: tsQueue });
          const c1 = (await applySignature(app, chord([pyAdd(1, 1), pyAdd(2, 2)], tsTotal))) as AsyncResult;
          assert.equal(await c1.get({ timeout: 60_000 }), 6);
          const c2 = (await applySignature(
            app,
            chord([pyAdd(1, 1), signature('interop.add', [5, 5], {}, { queue: tsQueue })], signature('pyinterop.total', [], {}, { queue: pyQueue })),
          )) as AsyncResult;
          assert.equal(await c2.get({ timeout: 60_000 }), 12);
          const ch = (await applySignature(app, chain(pyAdd(1, 1), signature('interop.add', [10], {}, { queue: tsQueue }), pyAdd(100)))) as AsyncResult;
          assert.equal(await ch.get({ timeout: 60_000 }), 112);
          const g = (await applySignature(app, group([pyAdd(1, 2), pyAdd(3, 4)]))) as GroupResult;
          assert.deepEqual(await g.get({ timeout: 60_000 }), [3, 7]);
          await g.save();
          const [restored] = await pythonClient(py.exe!, pythonEnv(b.url, redisUrl, pyQueue), [{ op: 'restore_group', id: g.id }]);
          assert.deepEqual(
            restored!.ids,
            g.results.map((r) => r.id),
          );
          assert.deepEqual(restored!.result, [3, 7]);
          const parts = (await applySignature(
            app,
            chunks(
              signature('pyinterop.add', [], {}, { queue: pyQueue }),
              [
                [1, 1],
                [2, 2],
                [3, 3],
              ],
              2,
            ),
          )) as GroupResult;
          assert.deepEqual(await parts.get({ timeout: 60_000 }), [[2, 4], [6]], 'chunks of a Python task, run by celery.starmap on the Python worker');
          const bad = (await applySignature(app, chord([pyAdd(1, 1), signature('pyinterop.fail', [], {}, { queue: pyQueue })], tsTotal))) as AsyncResult;
          await assert.rejects(
            bad.get({ timeout: 60_000 }),
            (err: unknown) => err instanceof TaskFailedError && err.excType === 'ChordError' && /Dependency .* raised ValueError/.test(err.excMessage),
          );
        }));
    });
  }
}

describe('chords on rpc:// (RabbitMQ)', { skip: rabbit.skip }, () => {
  it('are refused at call time, clearly, before any task is sent', async () => {
    const app = createApp({ name: 'rpc-chord', broker: rabbit.server!.url, backend: 'rpc://', logLevel: 'silent' });
    try {
      const queue = uniqueName('rpc-chord');
      const broker = await app.broker();
      await assert.rejects(
        applySignature(app, chord([signature('interop.add', [1, 1], {}, { queue })], signature('interop.total', [], {}, { queue }))),
        (err: unknown) => err instanceof CanvasError && /rpc/.test(err.message) && /redis:\/\//.test(err.message),
      );
      assert.equal(await broker.depth(queue), 0, 'no header task was sent');
    } finally {
      await app.close();
    }
  });
});
