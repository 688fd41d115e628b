/**
 * The event-loop watchdog. The event-loop pool runs tasks on the worker's own loop and cannot
 * preempt them: a task that computes for a long time (or forever) stops every other task, the
 * broker heartbeats and the HTTP endpoint. The loop cannot watch itself while it is blocked, so
 * the watchdog runs in a worker thread (./watchdog-thread.ts) that shares one small
 * SharedArrayBuffer with it:
 *
 * - the loop writes a heartbeat there every BEAT_MS; the thread sees how long it is overdue;
 * - past `eventLoopBlockedMs` the thread pauses the loop through the inspector, reads which task
 *   is running (an AsyncLocalStorage store, set by {@link Watchdog.runAs}), resumes it, and logs
 *   the block with that task, itself (synchronous writes to stdout: the loop may never come back);
 * - it keeps the longest block since the last scrape, exported as the gauge
 *   `celeriac_event_loop_lag_seconds`;
 * - an early-acked task still blocking the loop past its hard time limit is stored
 *   FAILURE(TimeLimitExceeded) by the thread, through its own result-backend connection: its
 *   message is gone, and Kubernetes kills a worker whose probes time out without running any
 *   handler, which would leave the task PENDING forever. (A late-ack task goes back to its queue
 *   when the worker dies; rpc:// and memory:// results cannot be reached from the thread.)
 *
 * Health: while the loop is blocked nothing on it can answer, so an HTTP probe times out (that is
 * how Kubernetes sees it: the probe's timeoutSeconds); once it answers again, /healthz stays 503
 * as long as the task that blocked it past the threshold is still running (it will likely block
 * again). A task that blocked once and ended leaves the worker healthy.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { stringifyJson } from '../protocol/json.js';
import type { TaskMeta } from '../protocol/result-meta.js';

/** How often the loop writes its heartbeat. */
const BEAT_MS = 100;
/** Heartbeat slots: [0] last beat (ms since time origin), [1] longest lag since the last scrape (ms). */
const SLOTS = 2;
/** Where the thread's inspector evaluation finds the running task (one per process, see runAs). */
export const CURRENT_TASK_KEY = Symbol.for('celeriac.watchdog.currentTask');

/** A task as the watchdog names it. */
export interface BlockingTask {
  readonly id: string;
  readonly name: string;
  /**
   * For an early-acked task with a hard time limit whose result is stored: the thread stores
   * `failure` once `atMs` (epoch ms) passes while the task still blocks the loop.
   */
  readonly hardLimit?: { readonly atMs: number; readonly limitMs: number; readonly failure: TaskMeta };
}

/** Where the thread stores results: the worker's result backend, when a thread can reach it. */
export interface WatchdogResults {
  readonly url: string;
  readonly expiresMs: number | null;
  readonly chordOrdered: boolean;
  readonly dateTags: boolean;
}

/** What the thread reports after a block past the threshold (see watchdog-thread.ts). */
export interface BlockReport {
  readonly blockedMs: number;
  /** The task whose code held the loop, or null when none (or the block ended before inspection). */
  readonly task: BlockingTask | null;
}

/** Sent from the worker to the watchdog thread as workerData. */
export interface WatchdogThreadData {
  readonly beats: SharedArrayBuffer;
  readonly beatMs: number;
  readonly thresholdMs: number;
  readonly logLevel: string;
  readonly logBindings: Record<string, unknown>;
  readonly results: WatchdogResults | null;
}

const currentTask = new AsyncLocalStorage<BlockingTask>();
// The wire's JSON: the failure a task carries may hold its arguments (resultExtended), BigInts included.
(globalThis as Record<symbol, unknown>)[CURRENT_TASK_KEY] = () => stringifyJson(currentTask.getStore() ?? null);

export interface Watchdog {
  /** Runs `fn` as `task`: a block inside it (and in everything it awaits) is blamed on that task. */
  runAs<T>(task: BlockingTask, fn: () => T): T;
  /** The block past the threshold whose task is still running (`isRunning`), or null: /healthz answers 503 meanwhile. */
  stuck(isRunning: (taskId: string) => boolean): (BlockReport & { readonly task: BlockingTask }) | null;
  /** The longest lag since the previous call, in ms (the metric's value at each scrape). */
  takeMaxLagMs(): number;
  stop(): Promise<void>;
}

const now = () => performance.timeOrigin + performance.now();

/**
 * Starts the watchdog. Its thread (a V8 isolate of its own: about 10 MB) starts with the first
 * task run through {@link Watchdog.runAs}: it exists to name and fail blocking tasks, and a
 * worker that has run none stays light while idle. Until then the lag gauge reads 0.
 */
export async function startWatchdog(opts: { thresholdMs: number; log: Logger; results: WatchdogResults | null }): Promise<Watchdog> {
  const beats = new SharedArrayBuffer(SLOTS * BigInt64Array.BYTES_PER_ELEMENT);
  const slots = new BigInt64Array(beats);
  const beat = () => Atomics.store(slots, 0, BigInt(Math.round(now())));
  beat();
  const ticker = setInterval(beat, BEAT_MS);
  ticker.unref();
  const data: WatchdogThreadData = {
    beats,
    beatMs: BEAT_MS,
    thresholdMs: opts.thresholdMs,
    logLevel: opts.log.level,
    logBindings: { ...opts.log.bindings(), component: 'watchdog' },
    results: opts.results,
  };
  // Blocks whose task may still be running, by task id.
  const blocks = new Map<string, BlockReport & { readonly task: BlockingTask }>();
  let thread: Worker | null = null;
  const startThread = (): void => {
    beat(); // the time before the first task is not a block
    const t = (thread = new Worker(new URL('./watchdog-thread.js', import.meta.url), { workerData: data }));
    t.unref();
    t.on('message', (r: BlockReport) => {
      if (r.task) blocks.set(r.task.id, { ...r, task: r.task });
    });
    t.on('error', (err) => {
      // The worker keeps serving without it; Kubernetes still sees probes time out on a blocked loop.
      opts.log.error({ err }, 'the event-loop watchdog thread failed: blocks are no longer logged or measured');
    });
  };
  return {
    runAs(task, fn) {
      if (!thread) startThread();
      return currentTask.run(task, fn);
    },
    stuck(isRunning) {
      for (const [id, r] of blocks) {
        if (isRunning(id)) return r;
        blocks.delete(id);
      }
      return null;
    },
    takeMaxLagMs: () => Number(Atomics.exchange(slots, 1, 0n)),
    async stop() {
      clearInterval(ticker);
      await thread?.terminate();
    },
  };
}
