/**
 * celeriac's crontab against Python Celery's own: for each crontab, Celery's beat loop (ask
 * crontab.is_due, which rests on remaining_estimate, and sleep what it answers) gives the fire
 * times after a start instant, and celeriac's crontab().nextAfter must give the same ones. Cases cover Celery's syntax (steps,
 * stepped ranges, lists, day and month names, day of month AND day of week) and DST in both
 * directions in Europe and America.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { beatTaskId } from '../../runtime/src/beat/scheduler.js';
import { crontab } from '../../runtime/src/beat/schedules.js';
import { eventually } from '../support/eventually.js';
import { repoRoot, startProcess, stopProcess } from '../support/processes.js';
import { uniqueName, useRedis } from '../support/servers.js';
import { pythons, skipReason, startPyWorker } from './interop-suite.js';

interface Case {
  readonly fields: { minute?: string; hour?: string; day_of_week?: string; day_of_month?: string; month_of_year?: string };
  readonly tz: string;
  readonly start: string;
  readonly n: number;
  /**
   * Why Celery 5.2 is not asked: it has no month names; a wall time skipped by spring-forward it
   * runs at the end of the gap (03:00), where 5.7, which celeriac follows, runs it at the old
   * offset (03:30).
   */
  readonly notIn52?: string;
}

const CASES: Case[] = [
  { fields: { minute: '*/15' }, tz: 'UTC', start: '2026-01-01T00:07:00Z', n: 8 },
  { fields: { minute: '0', hour: '9-17', day_of_week: 'mon-fri' }, tz: 'Europe/Paris', start: '2026-01-02T15:30:00Z', n: 12 },
  { fields: { minute: '0', hour: '4', day_of_week: 'sun' }, tz: 'UTC', start: '2026-01-01T00:00:00Z', n: 4 },
  { fields: { minute: '0', hour: '0', day_of_month: '13', day_of_week: 'fri' }, tz: 'UTC', start: '2026-01-01T00:00:00Z', n: 3 },
  { fields: { minute: '30', hour: '6', day_of_month: '1-7', day_of_week: 'mon' }, tz: 'Asia/Tokyo', start: '2026-01-01T00:00:00Z', n: 4 },
  { fields: { minute: '0', hour: '0', day_of_month: '1', month_of_year: '*/3' }, tz: 'UTC', start: '2026-01-15T00:00:00Z', n: 4 },
  { fields: { minute: '0', hour: '12', day_of_month: '1', month_of_year: 'jan,jul' }, tz: 'UTC', start: '2026-02-01T00:00:00Z', n: 3, notIn52: 'month names' },
  { fields: { minute: '1-30/7', hour: '*/6' }, tz: 'UTC', start: '2026-01-01T00:00:00Z', n: 10 },
  { fields: { minute: '0,20,40', hour: '8' }, tz: 'America/Los_Angeles', start: '2026-01-01T00:00:00Z', n: 6 },
  { fields: { minute: '0', hour: '0', day_of_month: '29', month_of_year: '2' }, tz: 'UTC', start: '2026-01-01T00:00:00Z', n: 2 },
  // DST: spring forward (a skipped wall time) and fall back (a repeated hour)
  { fields: { minute: '30', hour: '2' }, tz: 'Europe/Paris', start: '2026-03-27T00:00:00Z', n: 4, notIn52: 'skipped 02:30' },
  { fields: { minute: '30', hour: '2' }, tz: 'Europe/Paris', start: '2026-10-23T00:00:00Z', n: 4 },
  { fields: { minute: '*/30' }, tz: 'Europe/Paris', start: '2026-03-28T23:45:00Z', n: 8 },
  { fields: { minute: '*/30' }, tz: 'Europe/Paris', start: '2026-10-24T23:15:00Z', n: 8 },
  { fields: { minute: '0', hour: '*' }, tz: 'America/New_York', start: '2026-11-01T04:30:00Z', n: 5 },
  { fields: { minute: '0', hour: '2' }, tz: 'America/New_York', start: '2026-03-07T00:00:00Z', n: 3 },
  { fields: { minute: '15', hour: '1' }, tz: 'America/New_York', start: '2026-10-31T00:00:00Z', n: 3 },
];

function celeryTimes(python: string, cases: readonly Case[]): string[][] {
  const r = spawnSync(python, [join(repoRoot, 'test/interop/fixtures/celery_crontab_times.py')], { input: JSON.stringify(cases), encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`celery_crontab_times.py exited with ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as string[][];
}

function celeriacTimes(c: Case): string[] {
  const f = c.fields;
  const s = crontab({ minute: f.minute, hour: f.hour, dayOfWeek: f.day_of_week, dayOfMonth: f.day_of_month, monthOfYear: f.month_of_year }, c.tz);
  const out: string[] = [];
  let t = Date.parse(c.start);
  for (let i = 0; i < c.n; i++) out.push(new Date((t = s.nextAfter(t))).toISOString().replace('.000Z', 'Z'));
  return out;
}

for (const py of pythons) {
  describe(`crontab fire times: celeriac = ${py.label}`, { skip: skipReason(py, false) }, () => {
    const cases = py.required ? CASES : CASES.filter((c) => !c.notIn52);
    const expected = py.exe ? celeryTimes(py.exe, cases) : [];
    cases.forEach((c, i) => {
      it(`${JSON.stringify(c.fields)} in ${c.tz} from ${c.start}`, () => {
        assert.deepEqual(celeriacTimes(c), expected[i]);
      });
    });
  });
}

const redis = await useRedis();
after(() => redis.server?.stop());

describe('celeriac beat -> Python Celery worker (Redis)', { skip: skipReason(pythons[0]!, redis.skip) }, () => {
  it('runs every task beat sends, as any beat-sent task', async () => {
    const url = redis.server!.url;
    const name = uniqueName('beat-py');
    const queue = `${name}-q`;
    const { NODE_TEST_CONTEXT: _ctx, ...baseEnv } = process.env;
    const py = startPyWorker(pythons[0]!, url, url, queue);
    const beat = startProcess(
      process.execPath,
      [join(repoRoot, 'dist/runtime/src/cli/main.js'), 'beat', '-A', join(repoRoot, 'dist/test/interop/fixtures/beat-py-app.js')],
      {
        env: { ...baseEnv, CELERIAC_BROKER_URL: url, CELERIAC_APP_NAME: name, BEAT_QUEUE: queue },
      },
    );
    const raw = new Redis(url);
    try {
      const lastRun = async () => {
        const v = await raw.hget(`celeriac-beat:${name}:last-run`, 'add');
        assert.ok(v, 'beat recorded no run yet');
        return Number(v);
      };
      const first = await eventually(lastRun);
      await eventually(async () => assert.ok((await lastRun()) >= first + 1_500, 'three runs sent'));
      await stopProcess(beat);
      const last = await lastRun();
      for (let t = first + 500; t <= last; t += 500) {
        const meta = await eventually(async () => {
          const text = await raw.get(`celery-task-meta-${beatTaskId('add', t)}`);
          assert.ok(text, `no result for the run at ${new Date(t).toISOString()}`);
          return JSON.parse(text) as { status: string; result: unknown };
        });
        assert.deepEqual([meta.status, meta.result], ['SUCCESS', 5]);
      }
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- beat ---\n${beat.output()}\n--- python ---\n${py.output()}`, { cause: err });
    } finally {
      await stopProcess(beat);
      await stopProcess(py);
      raw.disconnect();
    }
  });
});
