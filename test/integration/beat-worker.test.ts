/**
 * `celeriac worker -B` on the embedded file:// broker and store: two workers each run beat, one
 * leads, and the tasks it sends run once each, consecutive runs with none missing.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { beatTaskId } from '../../runtime/src/beat/scheduler.js';
import { eventually } from '../support/eventually.js';
import { startWorker, stopProcess, type Started } from '../support/processes.js';

const ENTRIES = { tick: { task: 'beat.tick', everyMs: 1_000 }, tock: { task: 'beat.tock', everyMs: 700 } };

describe('celeriac worker -B (file://)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-beat-worker-'));
  const ledger = join(dir, 'ledger.txt');
  const workers: Started[] = [];
  after(async () => {
    await Promise.all(workers.map((w) => stopProcess(w, 'SIGKILL')));
    rmSync(dir, { recursive: true, force: true });
  });
  const ran = () => {
    const byTask = new Map<string, string[]>();
    for (const line of existsSync(ledger) ? readFileSync(ledger, 'utf8').trim().split('\n') : []) {
      const [id, task] = line.split(' ') as [string, string];
      byTask.set(task, [...(byTask.get(task) ?? []), id]);
    }
    return byTask;
  };

  it('runs each scheduled run once with two workers running beat', async () => {
    const { NODE_TEST_CONTEXT: _ctx, ...baseEnv } = process.env;
    for (let i = 0; i < 2; i++) {
      workers.push(
        startWorker(
          'dist/test/integration/fixtures/beat-app.js',
          'beatq',
          { ...baseEnv, CELERIAC_BROKER_URL: `file://${dir}/broker`, BEAT_QUEUE: 'beatq', LEDGER: ledger },
          ['-B', '--schedule', `file://${dir}/beat`, '--lease-ms', '3000'],
        ),
      );
    }
    const output = () => workers.map((w, i) => `--- worker ${i} ---\n${w.output()}`).join('\n');
    try {
      await eventually(() => assert.ok((ran().get('beat.tick') ?? []).length >= 5 && (ran().get('beat.tock') ?? []).length >= 5));
      // Stop beat first (SIGTERM stops it before the worker), then let the workers finish what was sent.
      await Promise.all(workers.map((w) => stopProcess(w, 'SIGTERM')));
      const last = JSON.parse(readFileSync(join(dir, 'beat', 'celeriac-beat:celeriac.last-run.json'), 'utf8')) as Record<string, number>;
      for (const [entry, { task, everyMs }] of Object.entries(ENTRIES)) {
        const ids = ran().get(task) ?? [];
        assert.equal(new Set(ids).size, ids.length, `${entry}: a run ran twice`);
        // The last one or two runs sent may still sit in the queue when the workers stop.
        const runs = (skip: number) => new Set(ids.map((_, k) => beatTaskId(entry, last[entry]! - (k + skip) * everyMs)));
        const ok = [0, 1, 2].some((skip) => [...runs(skip)].every((id) => ids.includes(id)));
        assert.ok(ok, `${entry}: the ${ids.length} runs that ran are not consecutive runs ending at or just before the last one`);
      }
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${output()}`, { cause: err });
    }
  });
});
