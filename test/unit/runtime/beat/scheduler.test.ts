// Beat on the file:// store and the memory broker, with a clock the test moves: restarts neither
// repeat nor skip a run; a second beat waits while the first leads; missed runs and catch-up.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createApp } from '../../../../runtime/src/app/app.js';
import { every } from '../../../../runtime/src/beat/schedules.js';
import { createBeat, type BeatOptions } from '../../../../runtime/src/beat/scheduler.js';
import { createScheduleStore } from '../../../../runtime/src/beat/schedule-store.js';
import { eventually } from '../../../support/eventually.js';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-beat-'));
  dirs.push(dir);
  const app = createApp({
    broker: `memory://${dir.split('/').pop()}`,
    backend: 'memory://',
    logLevel: 'silent',
    beatSchedule: { tick: { task: 'tick', schedule: every(1_000), args: [1] } },
  });
  let clock = 1_000_000;
  const store = () => createScheduleStore(`file://${dir}`, { logger: app.log });
  const depth = async () => (await app.broker()).depth('celery');
  /** Runs one beat at the current clock until `done`, then stops it. */
  async function runBeat(done: () => Promise<void>, o: Partial<BeatOptions> = {}) {
    const beat = createBeat(app, { store: await store(), leaseMs: 60_000, now: () => clock, ...o });
    await beat.start();
    try {
      await eventually(done);
    } finally {
      await beat.stop();
    }
  }
  return { app, store, depth, runBeat, setClock: (t: number) => (clock = t), dir };
}

describe('beat scheduler (file store)', () => {
  it('restarts neither repeat nor skip a run', async () => {
    const s = setup();
    const lastRun = async () => (await (await s.store()).lastRuns()).get('tick');
    await s.runBeat(async () => assert.equal(await lastRun(), 1_000_000)); // first sight: counted from now
    s.setClock(1_005_500);
    await s.runBeat(async () => assert.equal(await s.depth(), 5));
    s.setClock(1_006_000);
    await s.runBeat(async () => assert.equal(await lastRun(), 1_006_000));
    assert.equal(await s.depth(), 6);
    await s.app.close();
  });

  it('lets only the lease holder send', async () => {
    const s = setup();
    const first = createBeat(s.app, { store: await s.store(), leaseMs: 3_000, owner: 'one' });
    await first.start();
    await eventually(() => assert.ok(first.leading));
    const second = createBeat(s.app, { store: await s.store(), leaseMs: 3_000, owner: 'two' });
    await second.start();
    const store = await s.store();
    assert.equal(await store.lead('two', 3_000), false);
    assert.equal(await store.recordRun('two', 'tick', 1), false, 'a process without the lease cannot record');
    assert.equal(second.leading, false);
    await first.stop(); // releases the lease
    await eventually(() => assert.ok(second.leading));
    await second.stop();
    await s.app.close();
  });

  it('collapses runs missed while down into the recent ones, unless catch-up', async () => {
    const s = setup();
    await s.runBeat(async () => assert.ok((await (await s.store()).lastRuns()).has('tick')));
    s.setClock(1_000_000 + 3_600_000);
    // an hour down: the 3 runs of the last 2 s grace are sent, the 3597 before them are not
    await s.runBeat(async () => assert.equal(await s.depth(), 3), { graceMs: 2_000 });
    s.setClock(1_000_000 + 3_610_000);
    await s.runBeat(async () => assert.equal(await s.depth(), 13), { graceMs: 2_000, catchUp: true });
    await s.app.close();
  });
});
