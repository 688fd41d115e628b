/**
 * Beat schedules: a fixed interval, or a crontab with Celery's five fields and syntax
 * (`*`, `*\/15`, ranges `1-5`, stepped ranges `1-30/3`, lists `0,30`, day and month names) in an
 * IANA timezone. The cron maths is croner's (https://github.com/hexagon/croner), configured as
 * Celery reads a crontab:
 * - day of month AND day of week must both match (Celery's crontab.remaining_delta requires all
 *   fields; Vixie cron ORs the two day fields);
 * - minute resolution (5 fields, second 0);
 * - wall-clock times in the entry's timezone, with DST resolved as Celery does: croner finds the
 *   next matching wall-clock time after the previous run's wall-clock time (croner runs in UTC on
 *   wall-clock values), and that wall time becomes an instant as Python's zoneinfo reads it with
 *   fold=0: a time skipped by spring-forward takes the offset from before the change (02:30 in
 *   Paris on the spring-forward day runs at 03:30 CEST), a repeated time runs once, at its first
 *   occurrence. Checked against Python Celery in test/interop/beat-schedule.test.ts.
 * Not accepted (Celery accepts them): wrap-around ranges such as `22-2` (write `22-23,0-2`).
 */
import { createRequire } from 'node:module';
import type { Cron } from 'croner';
import type { Schedule } from '../app/beat-schedule.js';
import { ConfigError } from '../errors.js';

/**
 * croner, loaded by the first crontab(): every program imports this module through the package's
 * index, and only a beat with a crontab entry needs the cron maths (croner's CommonJS build: the
 * call is synchronous).
 */
let CronClass: typeof Cron | undefined;
const loadCron = (): typeof Cron => (CronClass ??= (createRequire(import.meta.url)('croner') as { Cron: typeof Cron }).Cron);

/** Celery's crontab fields, each a string in crontab syntax or a number; `*` when left out. */
export interface CrontabFields {
  readonly minute?: string | number;
  readonly hour?: string | number;
  readonly dayOfWeek?: string | number;
  readonly dayOfMonth?: string | number;
  readonly monthOfYear?: string | number;
}

/** Runs every `ms` milliseconds, counted from the previous scheduled run (so runs never drift). */
export function every(ms: number): Schedule {
  if (!Number.isFinite(ms) || ms <= 0) throw new ConfigError([`every(${ms}): the interval must be a positive number of milliseconds`]);
  return { nextAfter: (afterMs) => afterMs + ms, text: `<freq: ${ms / 1000}s>` };
}

/** Throws ConfigError unless `tz` is an IANA timezone name this Node knows. */
function checkTimezone(tz: string): void {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
  } catch {
    throw new ConfigError([`timezone "${tz}": not an IANA timezone name (e.g. "UTC", "Europe/Paris")`]);
  }
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** UTC offset (ms) of `timezone` at instant `ms`. */
function offsetMs(ms: number, timezone: string): number {
  let f = formatters.get(timezone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: timezone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(timezone, f);
  }
  const p = Object.fromEntries(f.formatToParts(new Date(ms)).map((x) => [x.type, Number(x.value)]));
  const wall = Date.UTC(p.year!, p.month! - 1, p.day!, p.hour!, p.minute!, p.second!);
  return wall - Math.floor(ms / 1000) * 1000;
}

/**
 * The instant of a wall-clock time (given as ms whose UTC fields are the wall fields), read as
 * Python's zoneinfo does with fold=0: in a gap, with the offset from before it; when repeated, the
 * first occurrence.
 */
function wallToInstant(wall: number, timezone: string): number {
  const before = offsetMs(wall - 86_400_000, timezone);
  const after = offsetMs(wall + 86_400_000, timezone);
  const candidates = [wall - before, wall - after].filter((t) => t + offsetMs(t, timezone) === wall);
  return candidates.length > 0 ? Math.min(...candidates) : wall - before;
}

const WRAP_RANGE = /(^|,)(\w+)-(\w+)/g;
const NAMES: Record<string, number> = {
  sun: 0,
  mon: 1,
  tue: 2,
  wed: 3,
  thu: 4,
  fri: 5,
  sat: 6,
  jan: 1,
  feb: 2,
  mar: 3,
  apr: 4,
  may: 5,
  jun: 6,
  jul: 7,
  aug: 8,
  sep: 9,
  oct: 10,
  nov: 11,
  dec: 12,
};
const asNumber = (tok: string): number => (/^\d+$/.test(tok) ? Number(tok) : (NAMES[tok.toLowerCase().slice(0, 3)] ?? NaN));

/** Celery wraps `22-2` around the field's end; croner rejects it, so say how to write it. */
function rejectWrapAround(field: string, value: string): void {
  for (const m of value.matchAll(WRAP_RANGE)) {
    const [from, to] = [asNumber(m[2]!), asNumber(m[3]!)];
    if (from > to) throw new ConfigError([`crontab ${field} "${value}": wrap-around range ${m[2]}-${m[3]} is not supported; split it (e.g. 22-23,0-2)`]);
  }
}

/**
 * A crontab schedule: `crontab({ minute: '*\/15', hour: '9-17', dayOfWeek: 'mon-fri' }, 'Europe/Paris')`
 * or the five fields as one string, `crontab('*\/15 9-17 * * mon-fri', 'Europe/Paris')`
 * (minute hour day-of-month month day-of-week, the cron order). Timezone default UTC.
 */
export function crontab(fields: CrontabFields | string, timezone = 'UTC'): Schedule {
  checkTimezone(timezone);
  let f: Required<CrontabFields>;
  if (typeof fields === 'string') {
    const parts = fields.trim().split(/\s+/);
    if (parts.length !== 5) throw new ConfigError([`crontab "${fields}": expected 5 fields (minute hour day-of-month month day-of-week), got ${parts.length}`]);
    const [minute, hour, dayOfMonth, monthOfYear, dayOfWeek] = parts as [string, string, string, string, string];
    f = { minute, hour, dayOfMonth, monthOfYear, dayOfWeek };
  } else {
    // `?? '*'`, not a spread of defaults: a field given as undefined means `*` too.
    f = {
      minute: fields.minute ?? '*',
      hour: fields.hour ?? '*',
      dayOfWeek: fields.dayOfWeek ?? '*',
      dayOfMonth: fields.dayOfMonth ?? '*',
      monthOfYear: fields.monthOfYear ?? '*',
    };
  }
  const s = (v: string | number) => String(v).trim();
  for (const [k, v] of Object.entries(f)) rejectWrapAround(k, s(v));
  const pattern = `${s(f.minute)} ${s(f.hour)} ${s(f.dayOfMonth)} ${s(f.monthOfYear)} ${s(f.dayOfWeek)}`;
  let cron: Cron;
  try {
    cron = new (loadCron())(pattern, { timezone: 'UTC', mode: '5-part', domAndDow: true, paused: true });
  } catch (err) {
    throw new ConfigError([`crontab "${pattern}": ${(err as Error).message}`]);
  }
  return {
    nextAfter(afterMs) {
      let wall = afterMs + offsetMs(afterMs, timezone);
      for (;;) {
        const next = cron.nextRun(new Date(wall));
        // A pattern that can never match again (e.g. 31 in February only) has no next run.
        if (!next) return Infinity;
        const at = wallToInstant(next.getTime(), timezone);
        // After a repeated hour the next wall time can map before `afterMs`: look further.
        if (at > afterMs) return at;
        wall = next.getTime();
      }
    },
    text: `<crontab: ${pattern} (m/h/dM/MY/d) ${timezone}>`,
  };
}
