/**
 * Celery's autoscaler (`worker/autoscale.py`, `--autoscale=max,min`): the pool has between `min`
 * and `max` slots; it grows at once to the tasks held (running and reserved), and shrinks back
 * only after `keepaliveMs` without a scale-up or a new task (Celery's AUTOSCALE_KEEPALIVE, 30 s).
 * `step()` runs every second and on each received task; remote control's `autoscale` calls
 * `update()`.
 */
import type { Logger } from 'pino';
import type { Pool } from '../pools/pool.js';
import { AUTOSCALE_KEEPALIVE_MS, decideAutoscale } from '../pools/autoscale.js';

export interface AutoscalerDeps {
  readonly pool: Pool;
  /** Tasks the worker holds now, running or waiting for a slot (Celery's `reserved_requests`). */
  readonly held: () => number;
  /** After a resize: the consumer's slots gauge and free slots follow. */
  readonly onResize: () => void;
  readonly log: Logger;
  /** Injected for tests. */
  readonly now?: () => number;
  readonly keepaliveMs?: number;
}

export class Autoscaler {
  private lastActive: number;
  private readonly now: () => number;

  constructor(
    private readonly deps: AutoscalerDeps,
    public max: number,
    public min: number,
  ) {
    this.now = deps.now ?? Date.now;
    this.lastActive = this.now();
  }

  /** A task arrived: it delays the next scale-down (Celery's on_task_received). */
  taskReceived(): void {
    this.lastActive = this.now();
  }

  /** Grows to the work held (up to max), or shrinks to it (down to min) once idle for the keepalive. */
  step(): void {
    const size = this.deps.pool.size;
    const next = decideAutoscale({
      size,
      held: this.deps.held(),
      limits: { max: this.max, min: this.min },
      now: this.now(),
      lastGrowAt: this.lastActive,
      keepaliveMs: this.deps.keepaliveMs ?? AUTOSCALE_KEEPALIVE_MS,
    });
    if (next === null) return;
    if (next > size) this.lastActive = this.now();
    this.resize(next, next > size ? 'scaling up' : 'scaling down');
  }

  /** Changes the range (remote control's `autoscale`), resizing into it at once; returns [max, min]. */
  update(max: number | null, min: number | null): [number, number] {
    if (max !== null) {
      if (max < this.deps.pool.size) this.resize(max, 'new autoscale maximum');
      this.max = max;
    }
    if (min !== null) {
      if (min > this.deps.pool.size) this.resize(min, 'new autoscale minimum');
      this.min = min;
    }
    return [this.max, this.min];
  }

  /** The `autoscaler` entry of `stats`, as Celery's. */
  info(): { max: number; min: number; current: number; qty: number } {
    return { max: this.max, min: this.min, current: this.deps.pool.size, qty: this.deps.held() };
  }

  private resize(size: number, why: string): void {
    this.deps.log.info({ from: this.deps.pool.size, to: size }, `autoscaler: ${why}`);
    this.deps.pool.resize(size);
    this.deps.onResize();
  }
}
