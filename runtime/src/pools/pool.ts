/**
 * The pool seam: where task functions run. The consumer decides when (slots, ETA, rate limits);
 * a pool only runs.
 *
 * | pool         | Celery alias | a task runs                          | hard limit, terminate       |
 * |--------------|--------------|--------------------------------------|-----------------------------|
 * | `event-loop` | `solo`       | as an async call on the worker's loop | stops waiting, cannot stop it |
 * | `threads`    | `threads`    | in one of `size` worker_threads      | terminates the thread       |
 * | `processes`  | `prefork`    | in one of `size` forked children     | kills the child             |
 */
import type { Logger } from 'pino';
import type { Config, PoolName } from '../app/config.js';
import type { AutoscaleLimits } from './autoscale.js';
import { spawnProcess } from './processes.js';
import { checkPoolSize, createRunnerPool } from './runners.js';
import { spawnThread } from './threads.js';
import { trace, type TaskOutcome, type TraceInput } from './trace.js';

/** Where tasks run: the worker's event loop, worker_threads, or forked child processes. */
export type PoolKind = 'event-loop' | 'threads' | 'processes';

/** Celery's names: `solo` runs in the worker process (here: its event loop), `prefork` forks children. */
export function poolKind(name: PoolName): PoolKind {
  return name === 'solo' ? 'event-loop' : name === 'prefork' ? 'processes' : name;
}

export interface Pool {
  readonly kind: PoolKind;
  /** Tasks that may run at once: slots (event-loop, threads) or children (processes). Read it each time. */
  readonly size: number;
  start(): Promise<void>;
  /** Resolves SUCCESS | FAILURE | RETRY | …: a task's own error is an outcome, never a rejection. */
  run(input: TraceInput): Promise<TaskOutcome>;
  /** Grows or shrinks the pool (autoscale, pool_grow/pool_shrink); a running task is never cut. */
  resize(size: number): void;
  /** False while the pool cannot run tasks at all (no runner could start lately): /healthz says so. */
  healthy?(): boolean;
  /** Called after each resize, so the consumer can start waiting tasks in new slots at once. */
  onResize?(listener: (size: number) => void): void;
  stop(opts: { graceful: boolean; timeoutMs: number }): Promise<void>;
  /** Changes how many tasks may run at once (remote control's pool_grow/pool_shrink); `size` >= 1. */
  resize(size: number): void;
}

/**
 * Runs tasks on the worker's own event loop: right for I/O-bound tasks (most queue work). It
 * cannot preempt: past its hard limit a task is stored FAILURE(TimeLimitExceeded) and its slot
 * is given to the next task, but its body goes on until it returns (ctx.signal is aborted so a
 * task that listens can stop); a CPU-bound loop blocks the whole worker. Use threads or
 * processes for such tasks.
 */
export function createEventLoopPool(initialSize: number): Pool {
  let size = initialSize;
  const listeners: ((size: number) => void)[] = [];
  return {
    kind: 'event-loop',
    get size() {
      return size;
    },
    async start() {},
    run: trace,
    resize(n) {
      size = checkPoolSize(n);
      for (const l of listeners) l(size);
    },
    onResize(listener) {
      listeners.push(listener);
    },
    async stop() {},
  };
}

/** How a pool is made: its kind, slots, the tasks module its runners import, and per-runner limits. */
export interface PoolOptions {
  readonly size: number;
  /** File URL of the module that defines the app (threads and processes import it). */
  readonly tasksModule?: string;
  /** The worker's resolved configuration, applied in each runner. */
  readonly config: Record<string, unknown>;
  readonly maxTasksPerChild: number | null;
  readonly maxMemoryPerChildKib: number | null;
  readonly log: Logger;
}

/** The pool of a kind (Celery's names accepted). */
export function createPool(name: PoolName, o: PoolOptions): Pool {
  const kind = poolKind(name);
  if (kind === 'event-loop') {
    if (o.maxTasksPerChild !== null || o.maxMemoryPerChildKib !== null) {
      o.log.warn('maxTasksPerChild and maxMemoryPerChildKib apply to the threads and processes pools only: ignored by the event-loop pool');
    }
    return createEventLoopPool(o.size);
  }
  return createRunnerPool({ ...o, kind, tasksModule: o.tasksModule ?? '', spawn: kind === 'threads' ? spawnThread : spawnProcess });
}

/** The worker's pool as its configuration says: kind, size (autoscale's MIN when set) and runner limits. */
export function createPoolFromConfig(config: Config, o: { name?: PoolName; tasksModule?: string; log: Logger; autoscale: AutoscaleLimits | null }): Pool {
  return createPool(o.name ?? config.pool, {
    size: o.autoscale?.min ?? config.concurrency,
    tasksModule: o.tasksModule,
    config: { ...config },
    maxTasksPerChild: config.maxTasksPerChild,
    maxMemoryPerChildKib: config.maxMemoryPerChildKib,
    log: o.log,
  });
}
