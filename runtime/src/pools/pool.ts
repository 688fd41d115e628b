/**
 * The pool seam: where task functions run. The consumer decides when (slots, ETA, rate limits);
 * a pool only runs. `event-loop` runs tasks as concurrent async calls in the worker process;
 * thread and process pools come later behind the same interface.
 */
import { trace, type TaskOutcome, type TraceInput } from './trace.js';

export interface Pool {
  readonly kind: 'event-loop' | 'threads' | 'prefork';
  /** Tasks that may run at once. */
  readonly size: number;
  start(): Promise<void>;
  /** Resolves SUCCESS | FAILURE | RETRY | …: a task's own error is an outcome, never a rejection. */
  run(input: TraceInput): Promise<TaskOutcome>;
  stop(opts: { graceful: boolean; timeoutMs: number }): Promise<void>;
  /** Changes how many tasks may run at once (remote control's pool_grow/pool_shrink); `size` >= 1. */
  resize(size: number): void;
}

/** Runs tasks on the worker's own event loop: right for I/O-bound tasks (most queue work). */
export function createEventLoopPool(size: number): Pool {
  let slots = size;
  return {
    kind: 'event-loop',
    get size() {
      return slots;
    },
    async start() {},
    run: trace,
    async stop() {},
    resize(n) {
      // Slots only: the consumer starts fewer or more tasks from now on; running ones finish.
      slots = n;
    },
  };
}
