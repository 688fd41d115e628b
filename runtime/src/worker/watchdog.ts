/**
 * The event-loop watchdog. The event-loop pool runs tasks on the worker's own loop and cannot
 * preempt them: a task that computes for a long time (or forever) stops every other task, the
 * broker heartbeats and the HTTP endpoint. The loop cannot watch itself while it is blocked, so
 * the watchdog runs in a worker thread (./watchdog-thread.ts) that shares one small
 * SharedArrayBuffer with it:
 *
 * - the loop writes a heartbeat there every BEAT_MS; the thread sees how long it is overdue;
 * - past `eventLoopBlockedMs` the thread pauses the loop through the inspector, reads the tasks in
 *   flight (read then from their sources, {@link Watchdog.watch}) and the paused call stack, resumes
 *   the loop, and logs the block itself (synchronous writes to stdout: the loop may never come
 *   back). The task is named as the blocker only when its own function is on the stack and no
 *   other task in flight has a function there; otherwise the log lists the tasks in flight as
 *   candidates and names none. An AsyncLocalStorage would be exact, but on Node 20 an active one
 *   runs a promise hook on every promise (about 18% of the worker's CPU per task): it is used
 *   only with `eventLoopBlockedExact` ({@link Watchdog.runAs});
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
/**
 * Where the thread's inspector evaluation finds the tasks in flight (one registry per process, see
 * `sources`): a function returning `[json of Registry, ...the tasks' distinct functions]`.
 */
export const IN_FLIGHT_KEY = Symbol.for('celeriac.watchdog.inFlight');

/** A place in a script, as the inspector gives it (0-based). */
export interface Location {
  readonly scriptId: string;
  readonly lineNumber: number;
  readonly columnNumber?: number;
}

/** A function's start as the inspector gives it ([[FunctionLocation]], a frame's functionLocation), as a comparable key. */
export const locationKey = (l: Location) => `${l.scriptId}:${l.lineNumber}:${l.columnNumber ?? 0}`;

/**
 * Which tasks in flight hold the paused loop: those whose own function is on the stack. One such
 * task is the blocker for certain; with none or several, the tasks in flight are candidates
 * (a block in code the task called after an `await` in a helper, or a timer it set, does not show
 * the task's function on the stack, and two runs of one task function look alike).
 */
export function blame(
  inFlight: readonly InFlight[],
  fnLocations: readonly (string | null)[],
  frames: readonly { readonly functionLocation?: Location }[],
): { task: BlockingTask | null; candidates: BlockingTask[] } {
  const onStack = new Set(frames.flatMap((f) => (f.functionLocation ? [locationKey(f.functionLocation)] : [])));
  const blamed = inFlight.filter((t) => {
    const loc = fnLocations[t.fn];
    return loc !== null && loc !== undefined && onStack.has(loc);
  });
  if (blamed.length === 1) return { task: blamed[0]!.task, candidates: [] };
  return { task: null, candidates: (blamed.length > 1 ? blamed : inFlight).map((t) => t.task) };
}

/** What the thread reads at a block: the tasks in flight, and with `exact` the one running. */
export interface Registry {
  readonly inFlight: readonly InFlight[];
  /** With eventLoopBlockedExact: the id of the task whose async context runs (null: none); else absent. */
  readonly running?: string | null;
}

/** A task in flight as the thread reads it: `fn` indexes the functions after the JSON. */
export interface InFlight {
  readonly task: BlockingTask;
  readonly fn: number;
}

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
  /**
   * The task whose code held the loop, or null when it cannot be told for certain (see
   * `candidates`), when no task ran, or when the block ended before inspection.
   */
  readonly task: BlockingTask | null;
  /** When `task` is null: the tasks in flight then, one of which may hold the loop (or none). */
  readonly candidates: readonly BlockingTask[];
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

/** A task in flight, as its source gives it when the thread reads it. */
export interface Tracked {
  readonly task: BlockingTask;
  readonly fn: unknown;
}
/**
 * Where the tasks in flight are read, one source per consumer in the process (see watch): called
 * only when the thread inspects a block, so a task costs the watchdog nothing as it starts and ends.
 */
const sources = new Set<() => Iterable<Tracked>>();
/** Set only with eventLoopBlockedExact: an active one costs a promise hook on every promise. */
let running: AsyncLocalStorage<string> | null = null;
(globalThis as Record<symbol, unknown>)[IN_FLIGHT_KEY] = () => {
  const fns: unknown[] = [];
  const tasks: InFlight[] = [];
  for (const source of sources) {
    for (const t of source()) {
      let i = fns.indexOf(t.fn);
      if (i < 0) i = fns.push(t.fn) - 1;
      tasks.push({ task: t.task, fn: i });
    }
  }
  // The wire's JSON: the failure a task carries may hold its arguments (resultExtended), BigInts included.
  const registry: Registry = running ? { inFlight: tasks, running: running.getStore() ?? null } : { inFlight: tasks };
  return [stringifyJson(registry), ...fns];
};

export interface Watchdog {
  /**
   * Reads the tasks in flight from `source` when the thread inspects a block, until stop(): each
   * task with its own function (`fn`: a block with it on the stack is blamed on that task). The
   * source builds them then, not as each task starts (most are never inspected).
   */
  watch(source: () => Iterable<Tracked>): void;
  /** A task starts running: the thread starts with the first one (an idle worker that ran none stays light). */
  taskStarting(): void;
  /**
   * True with `exact`: only then does {@link Watchdog.runAs} do anything, so a caller without it
   * may call the task directly (no closure per task).
   */
  readonly exact: boolean;
  /** Runs `fn` as the tracked task `taskId` (with `exact`: a block in anything it awaits is named); else just runs it. */
  runAs<T>(taskId: string, fn: () => T): T;
  /** The block past the threshold whose task is still running (`isRunning`), or null: /healthz answers 503 meanwhile. */
  stuck(isRunning: (taskId: string) => boolean): (BlockReport & { readonly task: BlockingTask }) | null;
  /** The longest lag since the previous call, in ms (the metric's value at each scrape). */
  takeMaxLagMs(): number;
  stop(): Promise<void>;
}

const now = () => performance.timeOrigin + performance.now();

/**
 * Starts the watchdog. Its thread (a V8 isolate of its own: about 10 MB of RSS on Node 20, 19 MB
 * on Node 24; `resourceLimits` do not shrink it, node's bootstrap is most of it) starts with the
 * first task started ({@link Watchdog.taskStarting}): it exists to name and fail blocking tasks, and a
 * worker that has run none stays light while idle. Until then the lag gauge reads 0.
 */
export async function startWatchdog(opts: { thresholdMs: number; exact?: boolean; log: Logger; results: WatchdogResults | null }): Promise<Watchdog> {
  if (opts.exact) running ??= new AsyncLocalStorage<string>();
  const als = opts.exact ? running : null;
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
  const watched: (() => Iterable<Tracked>)[] = [];
  return {
    watch(source) {
      watched.push(source);
      sources.add(source);
    },
    taskStarting() {
      if (!thread) startThread();
    },
    exact: als !== null,
    runAs: (taskId, fn) => (als ? als.run(taskId, fn) : fn()),
    stuck(isRunning) {
      for (const [id, r] of blocks) {
        if (isRunning(id)) return r;
        blocks.delete(id);
      }
      return null;
    },
    takeMaxLagMs: () => Number(Atomics.exchange(slots, 1, 0n)),
    async stop() {
      for (const source of watched) sources.delete(source);
      clearInterval(ticker);
      await thread?.terminate();
    },
  };
}
