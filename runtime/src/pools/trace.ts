/**
 * Runs one task and turns whatever happens into an outcome: a task's own error is an outcome,
 * never a rejection. Applies soft and hard time limits, autoretry and max retries.
 */
import type { Logger } from 'pino';
import type { DeliveryInfo } from '../brokers/broker.js';
import { CeleriacError, Ignore, Reject, Replace, Retry } from '../errors.js';
import { buildMeta, tracebackOf, type TaskMeta } from '../protocol/result-meta.js';
import type { SignatureDict, TaskRequest } from '../protocol/task-message.js';
import { bindArguments } from '../app/arguments.js';
import { isAutoretry, maxRetriesOf, retryDelay, type Task, type TaskContext, type TaskOptions } from '../app/task.js';
import type { Signals } from '../app/signals.js';

export type TaskOutcome =
  | { readonly state: 'SUCCESS'; readonly value: unknown; readonly runtimeMs: number }
  | { readonly state: 'FAILURE'; readonly error: unknown; readonly runtimeMs: number }
  | { readonly state: 'RETRY'; readonly retry: Retry; readonly runtimeMs: number }
  | { readonly state: 'REJECTED'; readonly requeue: boolean; readonly reason: string; readonly runtimeMs: number }
  | { readonly state: 'IGNORED'; readonly runtimeMs: number }
  | { readonly state: 'REPLACED'; readonly signature: SignatureDict; readonly runtimeMs: number }
  | { readonly state: 'REVOKED'; readonly reason: string; readonly runtimeMs: number };

/** Raised in a task (through ctx.signal) when its soft time limit passes. */
export class SoftTimeLimitExceeded extends CeleriacError {
  constructor(limitMs: number) {
    super('E_SOFT_TIME_LIMIT', `SoftTimeLimitExceeded(${limitMs / 1000})`);
  }
}

/** The failure stored when a task passes its hard time limit (billiard's name, for Python peers). */
export class TimeLimitExceeded extends CeleriacError {
  readonly excModule = 'billiard.exceptions';
  constructor(limitMs: number) {
    super('E_TIME_LIMIT', String(limitMs / 1000));
  }
}

const HARD_LIMIT = Symbol('hard time limit');

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return (typeof v === 'object' || typeof v === 'function') && v !== null && typeof (v as PromiseLike<unknown>).then === 'function';
}
/** Abort reasons that stop waiting for the task, or end its runner (a soft time limit only asks it to stop). */
export const isKill = (reason: unknown) => reason === 'terminated' || reason === 'shutdown';
const KILLED = Symbol('killed');

/**
 * How the worker stops a running task: revoke(terminate) aborts it with 'terminated', a cold
 * shutdown with 'shutdown', a soft time limit with SoftTimeLimitExceeded. ctx.signal's
 * AbortController is made only when something reads it (most tasks never do, and one per task
 * costs the hot path); an abort before that is carried over.
 */
export class TaskControl {
  private ctl: AbortController | null = null;
  private listeners: ((reason: unknown) => void)[] | null = null;
  aborted = false;
  reason: unknown = undefined;

  /** ctx.signal: aborted with the same reason. */
  get signal(): AbortSignal {
    if (!this.ctl) {
      this.ctl = new AbortController();
      if (this.aborted) this.ctl.abort(this.reason);
    }
    return this.ctl.signal;
  }

  /** Aborts once: later calls do nothing, as AbortController's. */
  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.ctl?.abort(reason);
    const ls = this.listeners;
    this.listeners = null;
    if (ls) for (const l of ls) l(reason);
  }

  /** Calls `listener` once at the abort; returns what removes it. */
  onAbort(listener: (reason: unknown) => void): () => void {
    (this.listeners ??= []).push(listener);
    return () => {
      const i = this.listeners?.indexOf(listener) ?? -1;
      if (i >= 0) this.listeners!.splice(i, 1);
    };
  }
}

export interface TraceInput {
  readonly task: Task;
  readonly req: TaskRequest;
  readonly info: DeliveryInfo;
  readonly hostname: string;
  readonly log: Logger;
  /**
   * The task's one control (ctx.signal). The worker aborts it with reason 'terminated'
   * (revoke) or 'shutdown' (cold shutdown); the soft time limit aborts it too.
   */
  readonly ctl: TaskControl;
  /** What the task may do to the canvas around it (ctx.addToChord, ctx.applyChild); the worker gives it. */
  readonly canvas?: TaskCanvas;
  /**
   * The pool enforces the hard time limit itself by terminating the runner (threads, processes):
   * trace then only applies the soft limit.
   */
  readonly hardLimitByPool?: boolean;
  /** Content type of the task message: the serializer by which values cross to a runner (default JSON). */
  readonly contentType?: string;
  /**
   * Stores a state of this task for ctx.updateState (the worker's backend, or a runner's own, as a
   * Celery prefork child writes to the backend itself). Absent: updateState rejects.
   */
  readonly storeState?: (meta: TaskMeta) => Promise<void>;
  /** The app's signals: taskPrerun, the outcome's taskSuccess/Failure/Retry and taskPostrun are sent here, where the task runs. */
  readonly signals?: Signals;
}

/** A task's `[hard, soft]` time limits in ms: Celery's timelimit header over the task's own options. */
export function timeLimitsOf(task: Task, req: TaskRequest): { hardMs: number | null; softMs: number | null } {
  // Celery's timelimit header is [hard, soft] in seconds.
  const [hard, soft] = req.timelimit;
  return {
    hardMs: hard !== null ? hard * 1000 : (task.options.timeLimit ?? null),
    softMs: soft !== null ? soft * 1000 : (task.options.softTimeLimit ?? null),
  };
}

/** The canvas operations of a running task, bound to its request by the worker. */
export type TaskCanvas = Pick<TaskContext, 'addToChord' | 'applyChild'>;

/** The two canvas operations, by name (what a runner asks the worker for). */
export type CanvasOp = keyof TaskCanvas;

/** A task run without a worker (unit tests of trace and of pools) has no canvas around it. */
export const NO_CANVAS: TaskCanvas = {
  addToChord: () => Promise.reject(new CeleriacError('E_NO_WORKER', 'addToChord() needs a task run by a worker')),
  applyChild: () => Promise.reject(new CeleriacError('E_NO_WORKER', 'applyChild() needs a task run by a worker')),
};

/**
 * Runs the task with Celery's task signals and the task's hooks (TaskHooks) around it, in
 * Celery's order: taskPrerun, beforeStart, the run, then onSuccess + taskSuccess, onFailure +
 * taskFailure or onRetry + taskRetry, then afterReturn and taskPostrun. A terminated run has
 * neither outcome hooks nor postrun (Celery's child is killed); the worker sends taskRevoked.
 */
export function trace(i: TraceInput): Promise<TaskOutcome> {
  const opts = i.task.options;
  const s = i.signals;
  const hooked = opts.onSuccess || opts.onFailure || opts.onRetry || opts.afterReturn;
  const signalled = s && (s.has('taskPrerun') || s.has('taskSuccess') || s.has('taskFailure') || s.has('taskRetry') || s.has('taskPostrun'));
  // Most tasks have neither: the run alone, without the steps (and promises) around it.
  return hooked || signalled ? traceHooked(i) : traceRun(i);
}

async function traceHooked(i: TraceInput): Promise<TaskOutcome> {
  const { signals, req, task } = i;
  const opts = task.options;
  const run = { sender: req.name, taskId: req.id, task, args: req.args, kwargs: req.kwargs };
  if (signals?.has('taskPrerun')) await signals.send('taskPrerun', run, i.log);
  let ctx!: TaskContext;
  const o = await traceRun(i, (c) => (ctx = c));
  if (o.state === 'REVOKED') return o;
  /** A base class hook after the outcome: its error is logged, the outcome stays (see TaskHooks). */
  const hook = async <H extends 'onSuccess' | 'onFailure' | 'onRetry' | 'afterReturn'>(name: H, ...args: Parameters<NonNullable<TaskOptions[H]>>) => {
    const fn = opts[name] as ((this: TaskContext, ...a: typeof args) => void | Promise<void>) | undefined;
    if (!fn) return;
    try {
      await fn.apply(ctx, args);
    } catch (err) {
      i.log.error({ err, hook: name }, `the task's ${name} hook failed; the task's outcome stands`);
    }
  };
  const { args, kwargs } = req;
  if (o.state === 'SUCCESS') {
    await hook('onSuccess', o.value, args, kwargs);
    if (signals?.has('taskSuccess')) await signals.send('taskSuccess', { sender: req.name, taskId: req.id, result: o.value }, i.log);
  }
  if (o.state === 'FAILURE') {
    const traceback = tracebackOf(o.error);
    await hook('onFailure', o.error, args, kwargs, traceback);
    if (signals?.has('taskFailure')) await signals.send('taskFailure', { ...run, exception: o.error, traceback }, i.log);
  }
  if (o.state === 'RETRY') {
    const reason = o.retry.exc ?? o.retry;
    await hook('onRetry', reason, args, kwargs, tracebackOf(reason));
    if (signals?.has('taskRetry')) await signals.send('taskRetry', { sender: req.name, request: req, reason }, i.log);
  }
  const retval = o.state === 'SUCCESS' ? o.value : o.state === 'FAILURE' ? o.error : o.state === 'RETRY' ? o.retry : null;
  // Celery's Task.replace ends the run with Ignore: it says IGNORED.
  const state = o.state === 'REPLACED' ? 'IGNORED' : o.state;
  await hook('afterReturn', state, retval, args, kwargs);
  if (signals?.has('taskPostrun')) await signals.send('taskPostrun', { ...run, retval, state }, i.log);
  return o;
}

/** ctx.replace() of every run: no state of its own. */
function replaceWith(sig: SignatureDict): never {
  throw new Replace(sig);
}

/**
 * The Retry to return for a run, or throws the final error once the limit is reached: the one
 * path of ctx.retry() and autoretry, as Celery's autoretry calls task.retry().
 */
function nextRetry(opts: TaskOptions, req: TaskRequest, r: Parameters<TaskContext['retry']>[0] = {}): Retry {
  const max = maxRetriesOf(opts, r.maxRetries);
  if (max !== null && req.retries >= max) {
    // Past max retries Celery raises the original exception (or MaxRetriesExceededError).
    if (r.exc !== undefined) throw r.exc;
    throw Object.assign(new CeleriacError('E_MAX_RETRIES', `Can't retry ${req.name}[${req.id}] args:${req.argsrepr} kwargs:${req.kwargsrepr}`), {
      name: 'MaxRetriesExceededError',
      excModule: 'celery.exceptions',
    });
  }
  const countdown = r.eta ? r.eta.getTime() - Date.now() : (r.countdown ?? retryDelay(opts, req.retries));
  return new Retry(Math.max(0, countdown), r.exc ?? null, r.eta ?? null);
}

/**
 * The TaskContext of one run (`this` of the task function). A class, not an object literal: a
 * literal with getters is a dictionary-mode object, about 1 us and a kilobyte of garbage per run
 * to build. `log` and `signal` are getters (the child logger and the AbortController are made
 * only for a task that reads them); so are the methods, each made on first read and kept (most
 * tasks call none of them): a task may still destructure them (`const { retry } = this`).
 */
class RunContext implements TaskContext {
  readonly id: string;
  readonly name: string;
  readonly retries: number;
  readonly hostname: string;
  readonly parentId: string | null;
  readonly rootId: string;
  readonly groupId: string | null;
  readonly args: readonly unknown[];
  readonly kwargs: Readonly<Record<string, unknown>>;
  readonly eta: Date | null;
  readonly expires: Date | null;
  readonly replace: TaskContext['replace'] = replaceWith;
  readonly #i: TraceInput;
  #deliveryInfo: TaskContext['deliveryInfo'] | null = null;
  #retry: TaskContext['retry'] | null = null;
  #updateState: TaskContext['updateState'] | null = null;

  constructor(i: TraceInput) {
    const { req } = i;
    this.#i = i;
    this.id = req.id;
    this.name = req.name;
    this.retries = req.retries;
    this.hostname = i.hostname;
    this.parentId = req.parentId;
    this.rootId = req.rootId;
    this.groupId = req.group;
    this.args = req.args;
    this.kwargs = req.kwargs;
    this.eta = req.eta;
    this.expires = req.expires;
  }

  get deliveryInfo(): TaskContext['deliveryInfo'] {
    const { info } = this.#i;
    return (this.#deliveryInfo ??= { queue: info.queue, exchange: info.exchange, routingKey: info.routingKey, redelivered: info.redelivered });
  }

  get retry(): TaskContext['retry'] {
    const i = this.#i;
    return (this.#retry ??= (r = {}) => {
      throw nextRetry(i.task.options, i.req, r);
    });
  }

  get addToChord(): TaskContext['addToChord'] {
    return (this.#i.canvas ?? NO_CANVAS).addToChord;
  }

  get applyChild(): TaskContext['applyChild'] {
    return (this.#i.canvas ?? NO_CANVAS).applyChild;
  }

  get updateState(): TaskContext['updateState'] {
    const i = this.#i;
    return (this.#updateState ??= async (u) => {
      if (!i.storeState) throw new CeleriacError('E_NO_WORKER', 'updateState() needs a task run by a worker');
      // Celery's store_result(request=...): children [] inside a worker, the request's group and parent.
      const { req } = i;
      await i.storeState(buildMeta(req.id, u.state, u.meta ?? null, { groupId: req.group, parentId: req.parentId }));
    });
  }

  /** Read on use: the per-task child logger costs only tasks that log. */
  get log(): Logger {
    return this.#i.log;
  }

  get signal(): AbortSignal {
    return this.#i.ctl.signal;
  }
}

/**
 * What stops waiting for a run on this event loop (it cannot be killed): a hard limit,
 * revoke(terminate) or a cold shutdown; made only for a run that returns a promise.
 */
class Stops {
  #off: (() => void) | null = null;
  #timer: NodeJS.Timeout | null = null;

  /** Resolves KILLED at a kill, HARD_LIMIT when `hardMs` (if any) passes. */
  wait(ctl: TaskControl, hardMs: number | null): Promise<typeof HARD_LIMIT | typeof KILLED> {
    return new Promise((resolve) => {
      if (ctl.aborted && isKill(ctl.reason)) return resolve(KILLED);
      this.#off = ctl.onAbort((reason) => {
        if (isKill(reason)) resolve(KILLED);
      });
      if (hardMs) this.#timer = setTimeout(() => resolve(HARD_LIMIT), hardMs);
    });
  }

  clear(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#off?.();
  }
}

async function traceRun(i: TraceInput, onContext?: (ctx: TaskContext) => void): Promise<TaskOutcome> {
  const { task, req } = i;
  const opts = task.options;
  const started = performance.now();
  const { ctl } = i;
  const ctx = new RunContext(i);

  onContext?.(ctx);
  const { softMs, hardMs } = timeLimitsOf(task, req);
  const soft = softMs ? setTimeout(() => ctl.abort(new SoftTimeLimitExceeded(softMs)), softMs) : null;
  // The task runs on this event loop and cannot be killed: a hard limit, revoke(terminate) or a
  // cold shutdown stops waiting for it (and aborts ctx.signal) instead.
  const waitHard = i.hardLimitByPool ? null : hardMs;
  let stops: Stops | null = null;
  /** The run while it may still settle after the outcome (a promise raced against the stops). */
  let run: PromiseLike<unknown> | null = null;
  try {
    let value: unknown;
    if (!opts.beforeStart && !ctl.aborted) {
      // Most runs: the function called at once. A value that is not a promise is the outcome
      // (nothing could stop a synchronous run); a promise is raced against the stops, as below.
      const ret: unknown = task.fn.apply(ctx, bindArguments(req.name, opts, req.args, req.kwargs) as never);
      if (isThenable(ret)) {
        try {
          value = await Promise.race([(run = ret), (stops = new Stops()).wait(ctl, waitHard)]);
        } catch (err) {
          // The task's own abort listener ran before ours (it was added first) and rejected.
          if (!(ctl.aborted && isKill(ctl.reason))) throw err;
          value = KILLED;
        }
        // A kill wins a tie: a run that settled because of the abort (a listener on ctx.signal) is revoked.
        if (value !== HARD_LIMIT && ctl.aborted && isKill(ctl.reason)) value = KILLED;
      } else value = ret;
    } else {
      const stopped = (stops = new Stops()).wait(ctl, waitHard);
      run = Promise.resolve().then(async () => {
        const bound = bindArguments(req.name, opts, req.args, req.kwargs);
        // Celery's before_start runs inside the task's try: its error is the task's.
        if (opts.beforeStart) await opts.beforeStart.call(ctx, req.args, req.kwargs);
        return task.fn.apply(ctx, bound as never);
      });
      value = await Promise.race([run, stopped]);
    }
    if (value === KILLED) return { state: 'REVOKED', reason: String(ctl.reason), runtimeMs: performance.now() - started };
    // A task that held the loop past its hard limit returns before the limit's timer can fire:
    // it is past its limit all the same (and the watchdog thread may have stored that already).
    if (value === HARD_LIMIT || (waitHard && performance.now() - started > waitHard)) {
      ctl.abort(new TimeLimitExceeded(hardMs!));
      // Keep the task's own later rejection from becoming an unhandled one.
      run?.then(undefined, (err: unknown) => i.log.debug({ err }, 'task failed after its hard time limit'));
      return { state: 'FAILURE', error: new TimeLimitExceeded(hardMs!), runtimeMs: performance.now() - started };
    }
    return { state: 'SUCCESS', value, runtimeMs: performance.now() - started };
  } catch (err) {
    const runtimeMs = performance.now() - started;
    if (err instanceof Retry) return { state: 'RETRY', retry: err, runtimeMs };
    if (err instanceof Reject) return { state: 'REJECTED', requeue: err.requeue, reason: err.reason, runtimeMs };
    if (err instanceof Ignore) return { state: 'IGNORED', runtimeMs };
    if (err instanceof Replace) return { state: 'REPLACED', signature: err.signature as SignatureDict, runtimeMs };
    if (!isAutoretry(opts, err)) return { state: 'FAILURE', error: err, runtimeMs };
    try {
      return { state: 'RETRY', retry: nextRetry(opts, req, { exc: err }), runtimeMs: performance.now() - started };
    } catch (final) {
      return { state: 'FAILURE', error: final, runtimeMs: performance.now() - started };
    }
  } finally {
    if (soft) clearTimeout(soft);
    stops?.clear();
  }
}
