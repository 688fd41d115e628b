/**
 * The event trigger (issue 19): instead of waiting up to `pollingIntervalSeconds` for the next
 * poll, the autoscaler watches the pool's broker backlog with a fast, cheap read (pipelined LLEN
 * of every priority list on Redis, a passive queue declare on RabbitMQ) every `watchIntervalMs`
 * and wakes the pool's reconcile when work arrived that the pool cannot absorb: the same pure
 * `decide()` then runs within about a second of the change, with the same stabilization and flap
 * damping (its windows and policies are in time, not in polls, so deciding sooner is never
 * jumpier).
 *
 * Only growth wakes: a backlog appearing at zero replicas, or growing since the last decision by
 * more than the HPA tolerance of the pool's slots. A shrinking backlog (scale-down) has no hurry
 * and waits for the poll. Wakes are at least `minGapMs` apart.
 *
 * Why a watch and not notifications: Redis keyspace notifications are off by default
 * (`notify-keyspace-events`) and often not configurable on managed Redis; RabbitMQ's
 * management-API rates lag by their stats interval (5 s by default). A read of a few list
 * lengths every half second costs the broker next to nothing and works everywhere.
 */
import type { Logger } from 'pino';
import type { MetricSource } from '../metric-sources/source.js';

/** What the last decision saw and left in place; wakes are measured against it. */
export interface DecidedLevel {
  /** Ready messages the decision saw (null: the read failed). */
  readonly backlog: number | null;
  /** Task slots the pool has after the decision (replicas x concurrency). */
  readonly slots: number;
  /** Work above this activates a pool at zero. */
  readonly activationThreshold: number;
  /** Relative change of the pool's slots that counts as no change (HPA tolerance, scale-up). */
  readonly tolerance: number;
}

/**
 * Whether a backlog read between decisions should wake the pool now (pure): at zero slots, work
 * above the activation threshold; else growth by more than `tolerance` of the slots (at least 1).
 */
export function shouldWake(level: DecidedLevel, backlog: number): boolean {
  if (level.slots === 0) return backlog > level.activationThreshold;
  const base = level.backlog ?? 0;
  return backlog - base >= Math.max(1, Math.ceil(level.tolerance * level.slots));
}

export interface WorkTriggerOptions {
  /** A source of its own (not shared with the poll's reads). */
  readonly source: MetricSource;
  /** Called to run the pool's reconcile now. */
  readonly wake: () => void;
  readonly log: Logger;
  /** Period of the backlog read, ms. */
  readonly watchIntervalMs?: number;
  /** Smallest time between two wakes, ms. */
  readonly minGapMs?: number;
  /** Timeout of one read, ms. */
  readonly timeoutMs?: number;
}

export interface WorkTrigger {
  /** The decision just made; the trigger measures growth from here. */
  decided(level: DecidedLevel): void;
  /** Wakes sent so far (for status and tests). */
  readonly wakes: number;
  /** Stops watching and closes the source. */
  close(): Promise<void>;
}

export const WORK_TRIGGER_DEFAULTS = Object.freeze({ watchIntervalMs: 500, minGapMs: 1000 });

/** Starts watching at once; nothing wakes until the first `decided()`. */
export function createWorkTrigger(o: WorkTriggerOptions): WorkTrigger {
  const watchIntervalMs = o.watchIntervalMs ?? WORK_TRIGGER_DEFAULTS.watchIntervalMs;
  const minGapMs = o.minGapMs ?? WORK_TRIGGER_DEFAULTS.minGapMs;
  const stop = new AbortController();
  let level: DecidedLevel | null = null;
  let lastWakeAt = -Infinity;
  let wakes = 0;
  let failing = false;

  async function loop(): Promise<void> {
    while (!stop.signal.aborted) {
      const started = Date.now();
      try {
        const { value } = await o.source.read(AbortSignal.any([stop.signal, AbortSignal.timeout(o.timeoutMs ?? 5000)]));
        if (failing) o.log.info('backlog watch reads again');
        failing = false;
        // A wake is pending until the decision reports back: one per change, not one per read.
        if (level && shouldWake(level, value) && Date.now() - lastWakeAt >= minGapMs) {
          lastWakeAt = Date.now();
          wakes++;
          level = null;
          o.wake();
        }
      } catch (err) {
        if (stop.signal.aborted) return;
        // The poll still decides (and reports the broker failure in status); the watch only
        // speeds decisions up, so it logs once per outage and keeps trying.
        if (!failing) o.log.warn({ err }, 'backlog watch failed; decisions wait for the poll until it reads again');
        failing = true;
      }
      const wait = Math.max(0, watchIntervalMs - (Date.now() - started));
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, wait);
        stop.signal.addEventListener(
          'abort',
          () => {
            clearTimeout(t);
            resolve();
          },
          { once: true },
        );
      });
    }
  }
  const running = loop();

  return {
    decided(l) {
      level = l;
    },
    get wakes() {
      return wakes;
    },
    async close() {
      stop.abort();
      await running;
      await o.source.close();
    },
  };
}
