/**
 * Beat high availability on Redis: three `celeriac beat` processes, the leader killed with -9
 * twice (then the next leader) while entries fire every 700 ms and 1 s. Every run from the first to the last is sent exactly
 * once: the task ids (one per entry and run, beatTaskId) of the messages in the queue are exactly
 * the consecutive runs that end at each entry's last recorded run, none twice.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { beatTaskId } from '../../runtime/src/beat/scheduler.js';
import { eventually } from '../support/eventually.js';
import { repoRoot, startProcess, stopProcess, type Started } from '../support/processes.js';
import { uniqueName, useRedis } from '../support/servers.js';

const redis = await useRedis();
after(() => redis.server?.stop());

const ENTRIES = { tick: { task: 'beat.tick', everyMs: 1_000 }, tock: { task: 'beat.tock', everyMs: 700 } };

describe('celeriac beat: three processes, the leader killed with -9 twice', { skip: redis.skip }, () => {
  const url = redis.server?.url ?? '';
  const name = uniqueName('beat-ha');
  const queue = `${name}-q`;
  const prefix = `celeriac-beat:${name}`;
  const { NODE_TEST_CONTEXT: _ctx, ...baseEnv } = process.env;
  const beats: Started[] = [];
  const raw = redis.skip ? undefined : new Redis(url);
  after(async () => {
    await Promise.all(beats.map((b) => stopProcess(b, 'SIGKILL')));
    raw?.disconnect();
  });
  const startBeat = () => {
    const b = startProcess(
      process.execPath,
      [join(repoRoot, 'dist/runtime/src/cli/main.js'), 'beat', '-A', join(repoRoot, 'dist/test/integration/fixtures/beat-app.js'), '--lease-ms', '3000'],
      {
        env: { ...baseEnv, CELERIAC_BROKER_URL: url, CELERIAC_APP_NAME: name, BEAT_QUEUE: queue },
      },
    );
    beats.push(b);
    return b;
  };
  const sent = async () => {
    const bodies = await raw!.lrange(queue, 0, -1);
    const byTask = new Map<string, string[]>();
    for (const b of bodies) {
      const h = (JSON.parse(b) as { headers: { task: string; id: string } }).headers;
      byTask.set(h.task, [...(byTask.get(h.task) ?? []), h.id]);
    }
    return byTask;
  };
  const leaderPid = async () => {
    const owner = await raw!.get(`${prefix}:leader`);
    return owner ? Number(/^beat-(\d+)@/.exec(owner)?.[1]) : undefined;
  };

  it('hands over without a duplicate or a missed run', async (t) => {
    for (let i = 0; i < 3; i++) startBeat();
    const output = () => beats.map((b, i) => `--- beat ${i} (pid ${b.pid}) ---\n${b.output()}`).join('\n');
    try {
      // Kill the leader twice: the second leader too, so the last beat standing finishes.
      const killed: number[] = [];
      for (let round = 0; round < 2; round++) {
        const leader = await eventually(
          async () => {
            const pid = await leaderPid();
            assert.ok(pid && beats.some((b) => b.pid === pid) && !killed.includes(pid), 'a live beat leads');
            assert.ok(((await sent()).get('beat.tick') ?? []).length >= 4 * (round + 1), 'the leader sent runs');
            return pid;
          },
          { timeoutMs: 60_000 },
        );
        await stopProcess(
          beats.find((b) => b.pid === leader),
          'SIGKILL',
        );
        killed.push(leader);
      }
      const before = (await sent()).get('beat.tick')!.length;
      await eventually(
        async () => {
          const pid = await leaderPid();
          assert.ok(pid && !killed.includes(pid), 'the third beat leads');
          assert.ok((await sent()).get('beat.tick')!.length >= before + 6, 'the last leader sent runs');
        },
        { timeoutMs: 60_000 },
      );
      await Promise.all(beats.map((b) => stopProcess(b, 'SIGTERM')));
      const last = await raw!.hgetall(`${prefix}:last-run`);
      const byTask = await sent();
      for (const [entry, { task, everyMs }] of Object.entries(ENTRIES)) {
        const ids = byTask.get(task) ?? [];
        assert.equal(new Set(ids).size, ids.length, `${entry}: a run was sent twice`);
        const lastRun = Number(last[entry]);
        const expected = ids.map((_, k) => beatTaskId(entry, lastRun - k * everyMs));
        assert.deepEqual(new Set(ids), new Set(expected), `${entry}: the ${ids.length} runs sent are not the consecutive runs ending at the last one`);
        t.diagnostic(`${entry} (every ${everyMs} ms): ${ids.length} runs sent, consecutive, none twice`);
      }
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${output()}`, { cause: err });
    }
  });
});
