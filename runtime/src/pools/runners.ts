/**
 * A pool of runners, each a thread or a child process that runs one task at a time
 * (./runner-entry.ts): Celery's prefork model, with threads as the lighter variant. What the
 * worker gains over the event-loop pool is the right to stop a task: a hard time limit, a revoke
 * with terminate or a cold shutdown terminates the runner and starts a new one, and the worker
 * keeps serving.
 *
 * - Hard limit: the runner is terminated; the task is FAILURE(TimeLimitExceeded).
 * - A runner dying mid-task (SIGKILL, OOM, process.exit in a task): FAILURE(WorkerLostError) in
 *   billiard's words ("Worker exited prematurely: signal 9 (SIGKILL) Job: 7."); the consumer gives
 *   the message back instead when the task has acksLate and rejectOnWorkerLost.
 * - maxTasksPerChild / maxMemoryPerChildKib: checked after each task; the runner that crossed the
 *   line is replaced then, never during a task (Celery's rules and units).
 * - resize(n): more runners at once; fewer as runners become idle (a running task is never cut).
 */
import { constants } from 'node:os';
import type { Logger } from 'pino';
import { ConfigError, WorkerLostError } from '../errors.js';
import { backoffDelay } from '../transport/backoff.js';
import { resultTuple, type CanvasResult } from '../canvas/apply.js';
import { crossError, crossRequest, uncrossError, uncrossOutcome, type CrossedRequest, type FromRunner, type ToRunner } from './crossing.js';
import type { Pool } from './pool.js';
import { isKill, NO_CANVAS, timeLimitsOf, TimeLimitExceeded, type TaskOutcome, type TraceInput } from './trace.js';

/** How a runner ended: an exit code, or the signal that killed it. */
export interface RunnerExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** One thread or child process, as the pool drives it (threads.ts, processes.ts). */
export interface RunnerHandle {
  /** Thread id or pid, for logs. */
  readonly id: number;
  send(m: ToRunner): void;
  onMessage(fn: (m: FromRunner) => void): void;
  /** Called once, when the runner has ended for whatever reason. */
  onExit(fn: (e: RunnerExit) => void): void;
  /** Ends the runner at once, whatever it is doing (a busy loop included). */
  kill(): void;
}

export interface RunnerPoolOptions {
  readonly kind: 'threads' | 'processes';
  readonly size: number;
  readonly spawn: (log: Logger) => RunnerHandle;
  /** File URL of the module that defines the app and its tasks. */
  readonly tasksModule: string;
  /** The worker's resolved configuration, applied on top of the runner's app. */
  readonly config: Record<string, unknown>;
  readonly maxTasksPerChild: number | null;
  readonly maxMemoryPerChildKib: number | null;
  readonly log: Logger;
}

interface Runner {
  readonly handle: RunnerHandle;
  state: 'starting' | 'idle' | 'busy' | 'ending';
  tasks: number;
  /** Set while a task runs: settles it when the runner ends under it. */
  onLost: ((e: RunnerExit) => void) | null;
  onDone: ((m: Extract<FromRunner, { type: 'done' }>) => void) | null;
  /** Set while a task runs: does its this.addToChord() / this.applyChild() calls. */
  onCanvas: ((m: Extract<FromRunner, { type: 'canvas' }>) => void) | null;
  /** Replace after the current task (maxTasksPerChild, maxMemoryPerChildKib). */
  retire: boolean;
}

/** Failed runner starts in a row after which a pool with no runner left reports itself unhealthy. */
const UNHEALTHY_AFTER_FAILED_STARTS = 3;

/** billiard's human_status: "signal 9 (SIGKILL)" or "exitcode 1". */
function exitStatus(e: RunnerExit): string {
  if (e.signal) return `signal ${constants.signals[e.signal] ?? '?'} (${e.signal})`;
  return `exitcode ${e.code ?? 'unknown'}`;
}

/** A pool size as resize() accepts it: an integer >= 1. */
export function checkPoolSize(n: number): number {
  if (!Number.isInteger(n) || n < 1) throw new ConfigError([`pool size: expected an integer >= 1, got ${n}`]);
  return n;
}

export function createRunnerPool(o: RunnerPoolOptions): Pool {
  if (!o.tasksModule) {
    throw new ConfigError([
      `pool ${o.kind}: the runners need the tasks module (the CLI passes -A; createWorker(app, { pool: '${o.kind}', tasksModule: import.meta.url }))`,
    ]);
  }
  const log = o.log.child({ component: 'pool', pool: o.kind });
  if (String(o.config.brokerUrl).startsWith('memory:')) {
    log.warn(
      `the ${o.kind} pool with a memory:// broker: a task that sends tasks or reads results from a runner reaches the runner's own memory, not the worker's`,
    );
  }
  // A thread's stdout is no terminal: runners log as the worker decided ('auto' resolved here).
  const logFormat = o.config.logFormat === 'auto' ? (process.stdout.isTTY ? 'pretty' : 'json') : o.config.logFormat;
  const runnerConfig = { ...o.config, logFormat };
  const runners = new Set<Runner>();
  const waiting: ((r: Runner) => void)[] = [];
  const resizeListeners: ((size: number) => void)[] = [];
  let size = o.size;
  let jobs = 0;
  let stopping = false;
  /** Failed starts in a row: paces restarts of a module that cannot load (a bad edit under --watch). */
  let failedStarts = 0;
  let firstStart: { resolve: () => void; reject: (e: unknown) => void } | null = null;

  const live = () => [...runners].filter((r) => r.state !== 'ending');

  /** Hands an idle runner to the next waiting task, or retires it when there are too many. */
  function release(r: Runner): void {
    // Being terminated (its task's hard limit fired as the task finished): its exit replaces it.
    if (r.state === 'ending') return;
    if (r.retire || live().length > size) return end(r);
    r.state = 'idle';
    const next = waiting.shift();
    if (next) {
      r.state = 'busy';
      next(r);
    }
  }

  function end(r: Runner): void {
    r.state = 'ending';
    r.handle.kill();
  }

  /** Starts runners until there are `size` (not while stopping). */
  function fill(): void {
    while (!stopping && live().length < size) spawnOne();
  }

  function spawnOne(): void {
    const handle = o.spawn(log);
    const r: Runner = { handle, state: 'starting', tasks: 0, onLost: null, onDone: null, onCanvas: null, retire: false };
    runners.add(r);
    handle.onMessage((m) => {
      if (m.type === 'ready') {
        failedStarts = 0;
        log.debug({ runner: handle.id }, 'runner ready');
        firstStart?.resolve();
        return release(r);
      }
      if (m.type === 'fatal') {
        const err = uncrossError(m.error, 'json');
        failedStarts++;
        log.error({ err, runner: handle.id }, `runner could not load the tasks module: ${(err as Error).message ?? String(err)}`);
        firstStart?.reject(err);
        return end(r);
      }
      if (m.type === 'canvas') return r.onCanvas?.(m);
      r.onDone?.(m);
    });
    handle.onExit((e) => {
      runners.delete(r);
      const lost = r.onLost;
      r.onLost = r.onDone = r.onCanvas = null;
      if (lost) lost(e);
      else if (r.state === 'starting') {
        // Died before it could say whether the module loads (a crash in native code, an OOM).
        failedStarts++;
        const err = new WorkerLostError(`runner exited while loading the tasks module: ${exitStatus(e)}`);
        log.error({ err, runner: handle.id }, err.message);
        firstStart?.reject(err);
      } else if (r.state !== 'ending') log.warn({ runner: handle.id, exit: exitStatus(e) }, 'idle runner exited; starting another');
      if (stopping) return;
      if (failedStarts > 0) {
        // A module that cannot load would otherwise be restarted in a tight loop.
        setTimeout(fill, backoffDelay(failedStarts, 500, 10_000)).unref();
      } else fill();
    });
    handle.send({ type: 'init', tasksModule: o.tasksModule, config: runnerConfig, measureMemory: o.maxMemoryPerChildKib !== null });
  }

  function acquire(): Promise<Runner> {
    const idle = [...runners].find((r) => r.state === 'idle');
    if (idle) {
      idle.state = 'busy';
      return Promise.resolve(idle);
    }
    return new Promise((resolve) => waiting.push(resolve));
  }

  async function run(i: TraceInput): Promise<TaskOutcome> {
    const r = await acquire();
    const started = performance.now();
    const runtimeMs = () => performance.now() - started;
    if (i.ctl.aborted && isKill(i.ctl.reason)) {
      // Revoked with terminate (or a cold shutdown) while it waited for a runner: it never started.
      release(r);
      return { state: 'REVOKED', reason: String(i.ctl.reason), runtimeMs: 0 };
    }
    const job = jobs++;
    let crossed: CrossedRequest;
    try {
      crossed = crossRequest(i.req, i.contentType ?? 'application/json');
    } catch (err) {
      // Arguments the wire decoded but cannot encode again: the task fails, the runner stays.
      release(r);
      return { state: 'FAILURE', error: err, runtimeMs: 0 };
    }
    const { hardMs } = timeLimitsOf(i.task, i.req);
    return new Promise<TaskOutcome>((resolve) => {
      let timer: NodeJS.Timeout | null = null;
      /** Why the worker itself ended the runner, when it did. */
      let endedBy: TaskOutcome | null = null;
      let offAbort = () => {};
      const finish = (outcome: TaskOutcome) => {
        if (timer) clearTimeout(timer);
        offAbort();
        r.onLost = r.onDone = r.onCanvas = null;
        resolve(outcome);
      };
      const onAbort = (reason: unknown) => {
        // A soft time limit aborts the runner's own signal (trace runs there); revoke(terminate) and cold shutdown end it.
        if (!isKill(reason)) return;
        i.log.info({ runner: r.handle.id, reason }, 'terminating the runner of the task');
        endedBy = { state: 'REVOKED', reason: String(reason), runtimeMs: runtimeMs() };
        end(r);
      };
      r.onCanvas = (m) => {
        const canvas = i.canvas ?? NO_CANVAS;
        const applied = m.op === 'addToChord' ? canvas.addToChord(m.sig) : canvas.applyChild(m.sig, m.childCall);
        applied.then(
          (res) => r.handle.send({ type: 'canvas-done', call: m.call, tuple: resultTuple(res as CanvasResult) }),
          (err: unknown) => r.handle.send({ type: 'canvas-failed', call: m.call, error: crossError(err, crossed.serializer) }),
        );
      };
      r.onDone = (m) => {
        // The worker already ended this runner (hard limit, terminate) as the task finished: what the
        // worker decided and logged stands, not the late "done" (release() leaves an ending runner).
        if (endedBy) {
          finish(endedBy);
          return release(r);
        }
        r.tasks++;
        if (o.maxTasksPerChild !== null && r.tasks >= o.maxTasksPerChild) {
          log.info({ runner: r.handle.id, tasks: r.tasks }, `runner reached maxTasksPerChild (${o.maxTasksPerChild}): replacing it`);
          r.retire = true;
        } else if (o.maxMemoryPerChildKib !== null && m.memoryKib > o.maxMemoryPerChildKib) {
          log.warn(
            { runner: r.handle.id, memoryKib: m.memoryKib },
            `runner uses ${m.memoryKib} KiB, over maxMemoryPerChildKib (${o.maxMemoryPerChildKib}): replacing it`,
          );
          r.retire = true;
        }
        let outcome: TaskOutcome;
        try {
          outcome = uncrossOutcome(m.outcome, crossed.serializer);
        } catch (err) {
          outcome = { state: 'FAILURE', error: err, runtimeMs: runtimeMs() };
        }
        finish(outcome);
        release(r);
      };
      r.onLost = (e) => {
        if (endedBy) return finish(endedBy);
        const err = new WorkerLostError(`Worker exited prematurely: ${exitStatus(e)} Job: ${job}.`);
        i.log.error({ err, runner: r.handle.id }, 'the runner of the task died under it');
        finish({ state: 'FAILURE', error: err, runtimeMs: runtimeMs() });
      };
      if (hardMs) {
        timer = setTimeout(() => {
          i.log.error({ runner: r.handle.id, hardMs }, `hard time limit (${hardMs / 1000}s) exceeded: terminating the runner`);
          endedBy = { state: 'FAILURE', error: new TimeLimitExceeded(hardMs), runtimeMs: runtimeMs() };
          end(r);
        }, hardMs);
      }
      offAbort = i.ctl.onAbort(onAbort);
      r.handle.send({ type: 'run', job, request: crossed, info: i.info, hostname: i.hostname });
    });
  }

  const pool: Pool = {
    kind: o.kind,
    get size() {
      return size;
    },
    start() {
      const ready = new Promise<void>((resolve, reject) => (firstStart = { resolve, reject }));
      fill();
      // The worker starts once one runner could load the module: fail fast when none can.
      return ready.then(
        () => void (firstStart = null),
        async (err: unknown) => {
          firstStart = null;
          await pool.stop({ graceful: false, timeoutMs: 0 });
          throw err;
        },
      );
    },
    run,
    healthy() {
      // Starts keep failing and no runner is left: tasks wait for nothing. Kubernetes restarts the pod.
      return failedStarts < UNHEALTHY_AFTER_FAILED_STARTS || [...runners].some((r) => r.state === 'idle' || r.state === 'busy');
    },
    resize(n: number) {
      size = checkPoolSize(n);
      for (const r of live()) if (live().length > size && r.state === 'idle') end(r);
      fill();
      for (const l of resizeListeners) l(size);
    },
    onResize(listener) {
      resizeListeners.push(listener);
    },
    async stop() {
      stopping = true;
      const exits = [...runners].map((r) => new Promise<void>((resolve) => r.handle.onExit(() => resolve())));
      for (const r of runners) end(r);
      await Promise.all(exits);
    },
  };
  return pool;
}
