/**
 * A keyed work queue with client-go's guarantees: a key waiting is queued once however often it is
 * added; a key being processed is never handed to a second worker, and an add during processing
 * queues it again when `done` is called; delayed adds keep the earliest due time.
 */
import type { RateLimiter } from './backoff.js';

export interface WorkQueue {
  add(key: string): void;
  /** Adds after `ms` (the earliest pending time wins). */
  addAfter(key: string, ms: number): void;
  /** Adds after the rate limiter's delay for this key (counts a failure). */
  addRateLimited(key: string): void;
  /** Clears the key's failure count. */
  forget(key: string): void;
  retries(key: string): number;
  /** Next key to process, or undefined once shut down. Call `done(key)` after processing. */
  get(): Promise<string | undefined>;
  done(key: string): void;
  /** Keys waiting (not counting delayed or in-process ones). */
  readonly length: number;
  shutDown(): void;
}

export interface WorkQueueOptions {
  rateLimiter: RateLimiter;
  onAdd?: () => void;
  onRetry?: () => void;
}

/** Creates an empty queue; retries go through `rateLimiter`. */
export function createWorkQueue(o: WorkQueueOptions): WorkQueue {
  const queue: string[] = [];
  const dirty = new Set<string>();
  const processing = new Set<string>();
  const timers = new Map<string, { due: number; timer: NodeJS.Timeout }>();
  const waiters: ((key: string | undefined) => void)[] = [];
  let shuttingDown = false;

  function add(key: string): void {
    if (shuttingDown || dirty.has(key)) return;
    o.onAdd?.();
    dirty.add(key);
    if (processing.has(key)) return;
    const w = waiters.shift();
    if (w) {
      dirty.delete(key);
      processing.add(key);
      w(key);
    } else {
      queue.push(key);
    }
  }

  function addAfter(key: string, ms: number): void {
    if (shuttingDown) return;
    if (ms <= 0) return add(key);
    const due = Date.now() + ms;
    const pending = timers.get(key);
    if (pending && pending.due <= due) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      timers.delete(key);
      add(key);
    }, ms);
    timers.set(key, { due, timer });
  }

  return {
    add,
    addAfter,
    addRateLimited(key) {
      o.onRetry?.();
      addAfter(key, o.rateLimiter.when(key));
    },
    forget(key) {
      o.rateLimiter.forget(key);
    },
    retries(key) {
      return o.rateLimiter.retries(key);
    },
    get() {
      if (shuttingDown) return Promise.resolve(undefined);
      const key = queue.shift();
      if (key !== undefined) {
        dirty.delete(key);
        processing.add(key);
        return Promise.resolve(key);
      }
      return new Promise((resolve) => waiters.push(resolve));
    },
    done(key) {
      processing.delete(key);
      if (dirty.has(key)) {
        dirty.delete(key);
        add(key);
      }
    },
    get length() {
      return queue.length;
    },
    shutDown() {
      shuttingDown = true;
      for (const { timer } of timers.values()) clearTimeout(timer);
      timers.clear();
      queue.length = 0;
      for (const w of waiters.splice(0)) w(undefined);
    },
  };
}
