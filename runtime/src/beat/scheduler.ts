/**
 * Beat: sends each schedule entry's task when it is due, from whichever of any number of beat
 * processes holds the store's leader lease (schedule-store.ts).
 *
 * Semantics (and where they depart from Celery's beat, a singleton):
 * - Runs are slots: an entry's next run is computed from its last *scheduled* run (not from when
 *   it was sent), kept in the store, so a restart or a new leader neither repeats nor skips one.
 *   An entry seen for the first time starts from now (Celery's default last_run_at).
 * - Runs missed for less than `graceMs` (default two leases: a leader handover) are all sent. Older
 *   missed runs (beat was down) collapse into one run, as Celery does, unless `catchUp` sends
 *   them all.
 * - Each run is sent through App.sendTask (routes apply) with a task id derived from the entry
 *   name and the slot, then recorded. A leader killed between the two leaves the run unrecorded:
 *   its successor sends it again with the same id (at-least-once, never a new id for a slot).
 * - A leader sends only while its lease is surely valid (the renew call started less than one
 *   lease ago), and the store refuses to record a run for a process that no longer leads.
 */
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { App } from '../app/app.js';
import type { BeatEntry, BeatSchedule } from '../app/beat-schedule.js';
import { CLOSE_TIMEOUT_MS, within } from '../transport/wait.js';
import type { ScheduleStore } from './schedule-store.js';

export interface BeatOptions {
  readonly store: ScheduleStore;
  /** Entries to run; default app.beatSchedule. */
  readonly schedule?: BeatSchedule;
  /** Leader lease (ms, default 15000). A dead leader is replaced within about 1.3 leases. */
  readonly leaseMs?: number;
  /** Send every run missed while no beat ran, not only the latest (default false, as Celery). */
  readonly catchUp?: boolean;
  /** Missed runs younger than this are always all sent (default 2 × leaseMs). */
  readonly graceMs?: number;
  /** Identity in the lease (default beat-<pid>@<host>-<random>). */
  readonly owner?: string;
  readonly now?: () => number;
}

/** Most runs sent for one entry in one pass with catch-up; the rest follow on the next passes. */
const MAX_RUNS_PER_PASS = 1000;

/** The task id of an entry's run at `slotMs`: the same in every beat process (a UUID, v5 layout). */
export function beatTaskId(entry: string, slotMs: number): string {
  const h = createHash('sha1').update(`celeriac-beat\0${entry}\0${slotMs}`).digest();
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/**
 * The runs of `entry` due at `now` after `last`, oldest first, with how many missed runs were
 * dropped (collapsed into the latest) because they are older than `graceMs` and catch-up is off.
 */
export function dueRuns(
  entry: Pick<BeatEntry, 'schedule'>,
  last: number,
  now: number,
  o: { catchUp: boolean; graceMs: number },
): { runs: number[]; dropped: number } {
  const runs: number[] = [];
  let missed = 0;
  let latest: number | undefined;
  for (let t = entry.schedule.nextAfter(last); t <= now; t = entry.schedule.nextAfter(t)) {
    if (o.catchUp) {
      runs.push(t);
      if (runs.length === MAX_RUNS_PER_PASS) break; // the rest on the next pass, oldest first
    } else if (t >= now - o.graceMs) runs.push(t);
    else missed++;
    latest = t;
  }
  // Celery runs a late entry once: the latest missed run stands for the others.
  if (runs.length === 0 && latest !== undefined) return { runs: [latest], dropped: missed - 1 };
  return { runs, dropped: missed };
}

export interface Beat {
  /** Starts the loop; resolves once it runs (it keeps running until stop()). */
  start(): Promise<void>;
  /** Stops sending, gives the lease up, and closes the store. */
  stop(): Promise<void>;
  /** True while this process leads. */
  readonly leading: boolean;
}

export function createBeat(app: App, o: BeatOptions): Beat {
  const schedule = o.schedule ?? app.beatSchedule;
  const leaseMs = o.leaseMs ?? 15_000;
  const graceMs = o.graceMs ?? 2 * leaseMs;
  const catchUp = o.catchUp ?? false;
  const now = o.now ?? Date.now;
  const owner = o.owner ?? `beat-${process.pid}@${hostname()}-${Math.random().toString(36).slice(2, 8)}`;
  const log: Logger = app.log.child({ component: 'beat', owner });
  const store = o.store;
  const abort = new AbortController();
  let leading = false;
  let validUntil = 0;
  let lastRuns = new Map<string, number>();
  let loop: Promise<void> | null = null;
  let wake: (() => void) | null = null;

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(resolve, Math.max(0, ms));
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });

  /** Sends the due runs of one entry; false when leadership is lost or the broker failed. */
  async function runEntry(name: string, entry: BeatEntry): Promise<boolean> {
    const last = lastRuns.get(name);
    if (last === undefined) {
      const start = now();
      if (!(await store.recordRun(owner, name, start))) return false;
      lastRuns.set(name, start);
      log.info({ entry: name, schedule: entry.schedule.text }, 'beat entry added: first run counted from now');
      return true;
    }
    const { runs, dropped } = dueRuns(entry, last, now(), { catchUp, graceMs });
    if (dropped > 0) log.warn({ entry: name, missed: dropped }, 'runs missed while no beat was running were skipped (catch-up is off); sending the latest');
    for (const slot of runs) {
      if (abort.signal.aborted || now() >= validUntil) return false;
      const taskId = beatTaskId(name, slot);
      try {
        await app.sendTask(entry.task, entry.args ?? [], entry.kwargs ?? {}, { ...entry.options, taskId });
      } catch (err) {
        // Not recorded, so the next pass sends this run again with the same id.
        log.error({ err, entry: name, task: entry.task, scheduledAt: new Date(slot).toISOString() }, 'beat could not send a scheduled task; will retry');
        return false;
      }
      if (!(await store.recordRun(owner, name, slot))) {
        log.warn({ entry: name, taskId }, 'beat lost the lease while sending; the new leader takes over from the last recorded run');
        return false;
      }
      lastRuns.set(name, slot);
      log.info({ entry: name, task: entry.task, taskId, scheduledAt: new Date(slot).toISOString() }, 'beat sent scheduled task');
    }
    return true;
  }

  /** Time of the next due run over all entries. */
  const nextDue = () => Math.min(...Object.entries(schedule).map(([name, e]) => e.schedule.nextAfter(lastRuns.get(name) ?? now())));

  async function pass(): Promise<number> {
    const started = now();
    let leads: boolean;
    try {
      leads = await store.lead(owner, leaseMs);
    } catch (err) {
      // The store is unreachable: we cannot know we lead, so we do not send; try again soon.
      log.warn({ err }, 'beat cannot reach its schedule store; not sending until it answers');
      leads = false;
    }
    if (leads && !leading) {
      lastRuns = await store.lastRuns();
      log.info({ store: store.kind }, 'beat is the leader');
    } else if (!leads && leading) log.warn('beat is no longer the leader');
    leading = leads;
    const renewAt = started + leaseMs / 3;
    if (!leads) return renewAt;
    validUntil = started + leaseMs;
    for (const [name, entry] of Object.entries(schedule)) if (!(await runEntry(name, entry))) break;
    return Math.min(renewAt, nextDue());
  }

  async function run(): Promise<void> {
    while (!abort.signal.aborted) {
      let next: number;
      try {
        next = await pass();
      } catch (err) {
        // One failed pass (e.g. the store failed mid-read) must not end beat: log and retry after a pause.
        log.error({ err }, 'beat pass failed; retrying');
        leading = false;
        next = now() + leaseMs / 3;
      }
      if (!abort.signal.aborted) await sleep(next - now());
    }
  }

  return {
    get leading() {
      return leading;
    },
    async start() {
      if (Object.keys(schedule).length === 0) log.warn('beat has no schedule entries (createApp({ beatSchedule }))');
      log.info(
        { entries: Object.fromEntries(Object.entries(schedule).map(([n, e]) => [n, `${e.task} ${e.schedule.text}`])), leaseMs, catchUp },
        'beat starting',
      );
      loop = run();
    },
    async stop() {
      abort.abort();
      wake?.();
      // A pass may wait on the store or the broker, and on a frozen link neither ever answers:
      // stopping must not wait for them (an unreleased lease simply expires).
      if (loop && !(await within(loop, CLOSE_TIMEOUT_MS))) log.warn('beat stopped while a pass still waited on its schedule store or broker');
      if (leading && !(await within(store.release(owner), CLOSE_TIMEOUT_MS))) log.warn('beat could not release its lease; it expires on its own');
      leading = false;
      await store.close();
    },
  };
}
