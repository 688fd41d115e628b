// Schedule maths that needs no Python: intervals, Celery's crontab reading (day fields ANDed),
// refused syntax, and which missed runs beat sends. Against Celery itself: test/interop/beat-schedule.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { crontab, every } from '../../../../runtime/src/beat/schedules.js';
import { beatTaskId, dueRuns } from '../../../../runtime/src/beat/scheduler.js';
import { ConfigError } from '../../../../runtime/src/errors.js';

const at = (iso: string) => Date.parse(iso);
const iso = (ms: number) => new Date(ms).toISOString();

describe('every()', () => {
  it('counts from the previous scheduled run, so runs never drift', () => {
    assert.equal(every(30_000).nextAfter(1_000), 31_000);
  });
  it('refuses a non-positive interval', () => {
    assert.throws(() => every(0), ConfigError);
  });
});

describe('crontab()', () => {
  it('reads Celery fields: */15 minutes, an hour range and weekday names', () => {
    const s = crontab({ minute: '*/15', hour: '9-17', dayOfWeek: 'mon-fri' });
    // Saturday 2026-01-03 -> Monday 09:00 UTC
    assert.equal(iso(s.nextAfter(at('2026-01-03T10:00:00Z'))), '2026-01-05T09:00:00.000Z');
    assert.equal(iso(s.nextAfter(at('2026-01-05T09:00:00Z'))), '2026-01-05T09:15:00.000Z');
  });
  it('reads a field given as undefined as *', () => {
    assert.equal(iso(crontab({ minute: '0', hour: undefined }).nextAfter(at('2026-01-01T10:30:00Z'))), '2026-01-01T11:00:00.000Z');
  });
  it('runs a wall time skipped by spring-forward at the old offset, and a repeated one once (Celery)', () => {
    const s = crontab({ minute: 30, hour: 2 }, 'Europe/Paris');
    assert.equal(iso(s.nextAfter(at('2026-03-28T12:00:00Z'))), '2026-03-29T01:30:00.000Z'); // 02:30 CET = 03:30 CEST
    assert.equal(iso(s.nextAfter(at('2026-10-24T12:00:00Z'))), '2026-10-25T00:30:00.000Z'); // first 02:30 (CEST)
    assert.equal(iso(s.nextAfter(at('2026-10-25T00:30:00Z'))), '2026-10-26T01:30:00.000Z');
  });
  it('takes the five fields as one cron string', () => {
    assert.equal(iso(crontab('0 4 * * sun').nextAfter(at('2026-01-01T00:00:00Z'))), '2026-01-04T04:00:00.000Z');
  });
  it('ANDs day of month with day of week, as Celery (Friday the 13th, not every Friday)', () => {
    assert.equal(iso(crontab({ minute: 0, hour: 0, dayOfMonth: 13, dayOfWeek: 'fri' }).nextAfter(at('2026-01-01T00:00:00Z'))), '2026-02-13T00:00:00.000Z');
  });
  it('runs strictly after the given instant, at minute resolution', () => {
    const s = crontab({ minute: '*' });
    assert.equal(iso(s.nextAfter(at('2026-01-01T10:00:00Z'))), '2026-01-01T10:01:00.000Z');
    assert.equal(iso(s.nextAfter(at('2026-01-01T10:00:30Z'))), '2026-01-01T10:01:00.000Z');
  });
  it('reads wall-clock times in the timezone', () => {
    assert.equal(iso(crontab({ minute: 0, hour: 9 }, 'America/New_York').nextAfter(at('2026-07-01T00:00:00Z'))), '2026-07-01T13:00:00.000Z');
  });
  it('refuses a wrap-around range with a hint, a bad field and an unknown timezone', () => {
    assert.throws(() => crontab({ hour: '22-2' }), /wrap-around range 22-2.*22-23,0-2/);
    assert.throws(() => crontab({ minute: '61' }), ConfigError);
    assert.throws(() => crontab('* * *'), /expected 5 fields/);
    assert.throws(() => crontab({}, 'Mars/Olympus'), /not an IANA timezone/);
  });
});

describe('dueRuns()', () => {
  const entry = { schedule: every(1_000) };
  it('sends every run missed within the grace period (a leader handover)', () => {
    assert.deepEqual(dueRuns(entry, 0, 3_500, { catchUp: false, graceMs: 10_000 }), { runs: [1_000, 2_000, 3_000], dropped: 0 });
  });
  it('collapses runs missed longer ago into the recent ones, as Celery runs a late entry once', () => {
    assert.deepEqual(dueRuns(entry, 0, 10_500, { catchUp: false, graceMs: 1_000 }), { runs: [10_000], dropped: 9 });
    assert.deepEqual(dueRuns(entry, 0, 10_500, { catchUp: false, graceMs: 100 }), { runs: [10_000], dropped: 9 });
    assert.deepEqual(dueRuns(entry, 0, 10_500, { catchUp: false, graceMs: 2_000 }), { runs: [9_000, 10_000], dropped: 8 });
  });
  it('sends them all with catch-up', () => {
    assert.equal(dueRuns(entry, 0, 10_500, { catchUp: true, graceMs: 100 }).runs.length, 10);
  });
  it('sends nothing before the next run', () => {
    assert.deepEqual(dueRuns(entry, 0, 999, { catchUp: false, graceMs: 0 }).runs, []);
  });
});

describe('beatTaskId()', () => {
  it('is one UUID per entry and run, the same in every process', () => {
    assert.equal(beatTaskId('a', 1_000), beatTaskId('a', 1_000));
    assert.notEqual(beatTaskId('a', 1_000), beatTaskId('a', 2_000));
    assert.notEqual(beatTaskId('a', 1_000), beatTaskId('b', 1_000));
    assert.match(beatTaskId('a', 1_000), /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});
