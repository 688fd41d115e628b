/**
 * Lead time before a known scheduled run (issue 13): a WorkerPool with
 * spec.autoscaling.scheduleLeadSeconds gets an extra metric "schedule" that asks for one replica
 * from that long before the next run of a TaskSchedule on one of its queues, so a pool at zero is
 * warm when the run's task arrives. After the run, the task's own work keeps the pool up, and the
 * usual cooldown takes it back down.
 */
import type { ExtraMetric } from './decide.js';

export const SCHEDULE_METRIC = 'schedule';

/** The "schedule" metric, or null when the pool has no lead time or no run is known. */
export function scheduleLeadMetric(nextRunMs: number | null | undefined, leadSeconds: number | undefined, now: number): ExtraMetric | null {
  if (!leadSeconds || nextRunMs === null || nextRunMs === undefined) return null;
  return { name: SCHEDULE_METRIC, value: nextRunMs - now <= leadSeconds * 1000 ? 1 : 0, targetAverageValue: 1, activationValue: 0 };
}

/** How long until the lead window of the next run opens (null: no run known, or already open). */
export function untilLeadWindow(nextRunMs: number | null | undefined, leadSeconds: number | undefined, now: number): number | null {
  if (!leadSeconds || nextRunMs === null || nextRunMs === undefined) return null;
  const wait = nextRunMs - leadSeconds * 1000 - now;
  return wait > 0 ? wait : null;
}
