/**
 * Celery's autoscaler (celery/worker/autoscale.py): once a second, grow the pool at once to the
 * number of tasks the worker holds (running + reserved), up to MAX; shrink it towards that number,
 * down to MIN, only when it last grew more than `keepaliveMs` ago (Celery's AUTOSCALE_KEEPALIVE,
 * 30 s), so a bursty queue does not make the pool flap. The pure rule; worker/autoscaler.ts runs it.
 */
import { ConfigError } from '../errors.js';

export interface AutoscaleLimits {
  readonly max: number;
  readonly min: number;
}

/** Parses Celery's `--autoscale MAX,MIN` (MIN defaults to 1 here: a pool always keeps one slot). */
export function parseAutoscale(text: string): AutoscaleLimits {
  const [max, min = '1'] = text.split(',').map((s) => s.trim());
  const limits = { max: Number(max), min: Math.max(1, Number(min)) };
  if (!Number.isInteger(limits.max) || !Number.isInteger(limits.min) || limits.max < limits.min) {
    throw new ConfigError([`autoscale: expected MAX,MIN with MAX >= MIN >= 1, got "${text}"`]);
  }
  return limits;
}

/** The pool size to move to, or null to stay (pure: the clock is passed in). */
export function decideAutoscale(i: {
  readonly size: number;
  /** Tasks the worker holds: running and reserved (Celery's len(state.reserved_requests)). */
  readonly held: number;
  readonly limits: AutoscaleLimits;
  readonly now: number;
  readonly lastGrowAt: number;
  readonly keepaliveMs: number;
}): number | null {
  const up = Math.min(i.held, i.limits.max);
  if (up > i.size) return up;
  const down = Math.max(i.held, i.limits.min);
  if (down < i.size && i.now - i.lastGrowAt > i.keepaliveMs) return down;
  return null;
}

/** Celery's AUTOSCALE_KEEPALIVE: no shrink within this long of the last growth or received task. */
export const AUTOSCALE_KEEPALIVE_MS = 30_000;
