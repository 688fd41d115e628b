/**
 * What an app declares for beat (Celery's `beat_schedule`): entries by name, each a task, its
 * call and a schedule. The schedule is a seam: beat/schedules.ts implements interval and crontab.
 */
import type { SendOptions } from './send.js';

/** When an entry is due: the first fire time strictly after a given instant. */
export interface Schedule {
  /** Epoch ms of the first run strictly after `afterMs` (Celery's remaining_estimate, made absolute). */
  nextAfter(afterMs: number): number;
  /** Human text for logs and `celeriac beat --list`, e.g. `<crontab: 0 9 * * mon-fri (m/h/dM/MY/d) Europe/Paris>`. */
  readonly text: string;
}

/** One beat_schedule entry (Celery: name -> {task, schedule, args, kwargs, options}). */
export interface BeatEntry {
  /** Task name; it may live in another worker or language. */
  readonly task: string;
  readonly schedule: Schedule;
  readonly args?: readonly unknown[];
  readonly kwargs?: Record<string, unknown>;
  /** Send options (queue, priority, expires, headers…), routed like any sendTask. */
  readonly options?: SendOptions;
}

/** beat_schedule: entry name -> entry. */
export type BeatSchedule = Readonly<Record<string, BeatEntry>>;
