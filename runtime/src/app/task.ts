/**
 * Tasks as users define and call them: options, the context a running task sees, and the
 * retry maths (Celery's get_exponential_backoff_interval).
 */
import type { Logger } from 'pino';
import { Retry } from '../errors.js';
import type { TaskState } from '../protocol/result-meta.js';
import type { SignatureDict } from '../protocol/task-message.js';
import type { KwargsOf } from './arguments.js';
import type { AsyncResult, ResultSet } from './result.js';

/**
 * Hooks of a task or of a family of tasks: the methods a Celery `base=` class overrides, called
 * where the task runs with `this` the task's context, in Celery's order: taskPrerun signal,
 * beforeStart, the task, onSuccess | onFailure | onRetry, the outcome's signal, afterReturn,
 * taskPostrun signal. A throw in beforeStart fails the task as the task's own error would; a
 * throw in the others is logged and leaves the outcome as it is.
 */
export interface TaskHooks {
  /** Just before the task function (Celery's before_start). */
  readonly beforeStart?: (this: TaskContext, args: readonly unknown[], kwargs: Readonly<Record<string, unknown>>) => void | Promise<void>;
  /** After a success, with the value (Celery's on_success). */
  readonly onSuccess?: (this: TaskContext, retval: unknown, args: readonly unknown[], kwargs: Readonly<Record<string, unknown>>) => void | Promise<void>;
  /** After a failure, with the error and its traceback text (Celery's on_failure). */
  readonly onFailure?: ErrorHook;
  /** When the task will be retried, with the error that caused it, or the Retry (Celery's on_retry). */
  readonly onRetry?: ErrorHook;
  /** After any outcome but a terminated run: SUCCESS, FAILURE, RETRY, REJECTED or IGNORED (Celery's after_return). */
  readonly afterReturn?: (
    this: TaskContext,
    state: string,
    retval: unknown,
    args: readonly unknown[],
    kwargs: Readonly<Record<string, unknown>>,
  ) => void | Promise<void>;
}

/** TaskHooks.onFailure and onRetry: the error, the task's arguments, the error's traceback text. */
export type ErrorHook = (
  this: TaskContext,
  exc: unknown,
  args: readonly unknown[],
  kwargs: Readonly<Record<string, unknown>>,
  traceback: string | null,
) => void | Promise<void>;

/**
 * Shared options and hooks of a family of tasks (Celery's `base=` class): give it as the `base`
 * option of each; a task's own options and hooks win over its base's, a base may have a base.
 *
 * ```ts
 * const withDb: TaskBase = { acksLate: true, maxRetries: 5, afterReturn() { db.release(this.id); } };
 * app.task('shop.charge', charge, { base: withDb });
 * ```
 */
export type TaskBase = TaskOptions;

/** A task's options with its bases' under them (the nearest base wins), without `base`. */
export function resolveBase(options: TaskOptions): TaskOptions {
  const { base, ...own } = options;
  return base ? { ...resolveBase(base), ...own } : own;
}

/** Options of one task (Celery's task attributes). Durations are milliseconds. */
export interface TaskOptions extends TaskHooks {
  /** The family this task belongs to: its options and hooks apply unless the task sets its own. */
  readonly base?: TaskBase;
  /** Retries allowed before the error is final (default 3, Celery's; null = forever). Read by `maxRetriesOf` only. */
  readonly maxRetries?: number | null;
  /** Delay of ctx.retry() without a countdown, and of autoretry without backoff (default 180000). */
  readonly defaultRetryDelay?: number;
  /** Errors that retry the task by themselves: classes, or error names (`err.name`). */
  readonly autoretryFor?: readonly (string | (abstract new (...args: never[]) => Error))[];
  /** Exponential backoff for autoretry: true = 1 s factor, a number = factor in ms. */
  readonly retryBackoff?: boolean | number;
  /** Cap of the backoff (default 600000). */
  readonly retryBackoffMax?: number;
  /** Full jitter on the backoff (default true), as Celery. */
  readonly retryJitter?: boolean;
  /** Acknowledge after running instead of at start (default: config acksLate). */
  readonly acksLate?: boolean;
  /**
   * Celery's task_reject_on_worker_lost: with acksLate, a message whose runner died (a killed
   * child or thread, a cut-off shutdown) is given back to the queue instead of stored as
   * FAILURE(WorkerLostError). The task may then run twice: make it idempotent.
   */
  readonly rejectOnWorkerLost?: boolean;
  /**
   * Early ack only: a run cut off by shutdown (the shutdown timeout, a cold shutdown, a crash) is
   * published again to its queue, same id, instead of stored FAILURE(WorkerLostError). Only for
   * idempotent tasks: the cut-off run may have done part of its work.
   */
  readonly republishOnWorkerLost?: boolean;
  /** Store no result. */
  readonly ignoreResult?: boolean;
  /** Store STARTED when the task starts (default: config trackStarted). */
  readonly trackStarted?: boolean;
  /** Celery rate limit: "10/s", "100/m", "1000/h" (per worker). */
  readonly rateLimit?: string | null;
  /** Hard limit: the task is failed with TimeLimitExceeded after this long. */
  readonly timeLimit?: number | null;
  /** Soft limit: ctx.signal aborts with SoftTimeLimitExceeded after this long. */
  readonly softTimeLimit?: number | null;
  /** Queue this task is sent to unless the caller says otherwise; wins over the app's routes, as Celery's Task.queue. */
  readonly queue?: string;
  /**
   * Parameter names, in order, so keyword arguments bind as in Python (`sep='-'` fills the
   * parameter named `sep`); one name per parameter of the function (`app.task` checks the count
   * where the types allow). Without them a keyword argument fails the task with TypeError.
   */
  readonly params?: readonly string[];
  /** The task reads keyword arguments from `this.kwargs` itself: they are not bound to parameters. */
  readonly readsKwargs?: boolean;
}

/** Options of one call (Celery's apply_async options). Durations are milliseconds. */
export interface ApplyOptions {
  /** Run no earlier than this many ms from now. */
  readonly countdown?: number;
  /** Run no earlier than this time. */
  readonly eta?: Date;
  /** Discard (REVOKED, "expired") if not started by then: ms from now, or a time. */
  readonly expires?: number | Date;
  /** Queue to send to: wins over the task's queue option and the app's routes (Celery's order). */
  readonly queue?: string;
  /** 0-9. On RabbitMQ and the embedded brokers 9 is served first; on Redis 0 is (as kombu). */
  readonly priority?: number;
  /** Use this id instead of a new UUID. */
  readonly taskId?: string;
  /** Extra message headers. */
  readonly headers?: Record<string, unknown>;
  /** Tasks applied with the result after success (signatures). */
  readonly link?: SignatureDict | readonly SignatureDict[];
  /** Tasks applied with the task id after failure. */
  readonly linkError?: SignatureDict | readonly SignatureDict[];
  /** Retry publishing when the broker is briefly unreachable (default true). */
  readonly retry?: boolean;
  readonly parentId?: string;
  readonly rootId?: string;
  readonly group?: string;
  readonly groupIndex?: number;
  readonly shadow?: string;
  /** `[hard, soft]` limits for this call, in ms. */
  readonly timeLimit?: number;
  readonly softTimeLimit?: number;
  readonly ignoreResult?: boolean;
}

/** What a running task sees as `this` (define the task with `function`, not an arrow). */
export interface TaskContext {
  readonly id: string;
  readonly name: string;
  readonly retries: number;
  /** The worker's node name. */
  readonly hostname: string;
  readonly deliveryInfo: { readonly queue: string; readonly exchange: string; readonly routingKey: string; readonly redelivered: boolean };
  readonly parentId: string | null;
  readonly rootId: string;
  readonly groupId: string | null;
  readonly args: readonly unknown[];
  readonly kwargs: Readonly<Record<string, unknown>>;
  readonly eta: Date | null;
  readonly expires: Date | null;
  /** A logger bound to this task's id and name. */
  readonly log: Logger;
  /** Aborted on soft time limit, on revoke with terminate, and on cold shutdown. */
  readonly signal: AbortSignal;
  /**
   * Re-runs the task later with `retries + 1`; throws, so `throw ctx.retry(...)` or just call it.
   * Past maxRetries it throws `exc` (FAILURE) instead; `maxRetries` here overrides the task option
   * for this call (null = forever, see maxRetriesOf).
   */
  retry(opts?: { countdown?: number; eta?: Date; exc?: unknown; maxRetries?: number | null }): never;
  /**
   * Replaces this task with a signature (a task or a canvas), as Celery's Task.replace: it runs in
   * this task's place, its result stored under this task's id, and the task's chain, links and
   * chord continue from it. Throws, like retry().
   */
  replace(sig: SignatureDict): never;
  /**
   * Adds `sig` to the chord this task is a header part of, as Celery's Task.add_to_chord: it is
   * sent at once with this task's group, index and chord body, and the body waits for its result
   * too. Throws ValueError ("Current task is not member of any chord") outside a chord.
   */
  addToChord(sig: SignatureDict): Promise<AsyncResult>;
  /**
   * Applies a signature (a task or a canvas) as this task's child, as `sig.delay()` inside a
   * Celery task: its parent is this task, its root this task's root, and its result goes into
   * the `children` stored with this task's result (Celery's add_to_parent), where Python's
   * `AsyncResult(id).children` and `collect()` find it.
   */
  applyChild(sig: SignatureDict, call?: ChildCall): Promise<AsyncResult | ResultSet>;
  /**
   * Stores a state of this task now, as Celery's `self.update_state(state=..., meta=...)`: any
   * string (a custom state such as `PROGRESS`) with `meta` as its result, so Python's
   * `AsyncResult(id).state` / `.info` and celeriac's `AsyncResult.follow()` see it while the task
   * runs. The final state (SUCCESS, FAILURE...) still comes from the task's outcome.
   */
  updateState(update: StateUpdate): Promise<void>;
}

/** What TaskContext.updateState stores: the state, and its meta (Celery's `result` of that state). */
export interface StateUpdate {
  readonly state: TaskState;
  /** JSON-serializable details, e.g. `{ current, total }` for PROGRESS (default null). */
  readonly meta?: unknown;
}

/** Arguments and options of TaskContext.applyChild (Celery's `sig.apply_async(args, kwargs, **options)`). */
export interface ChildCall {
  /** Prepended to the signature's args unless it is immutable. */
  readonly args?: readonly unknown[];
  /** Merged over the signature's kwargs. */
  readonly kwargs?: Record<string, unknown>;
  readonly options?: ApplyOptions;
}

/**
 * A task function: `this` is the TaskContext (use a `function`). There is deliberately no
 * AsyncLocalStorage lookup: its promise hooks cost every task about a tenth of its CPU.
 */
export type TaskFn<A extends unknown[], R> = (this: TaskContext, ...args: A) => R | Promise<R>;

/** A registered task; `P` are its declared parameter names (TaskOptions.params). */
export interface Task<A extends unknown[] = unknown[], R = unknown, P extends readonly string[] = readonly string[]> {
  readonly name: string;
  readonly options: Readonly<TaskOptions>;
  readonly fn: TaskFn<A, R>;
  /** Sends the task with positional args; resolves once the broker has the message. */
  delay(...args: A): Promise<AsyncResult<Awaited<R>>>;
  /**
   * Sends the task with args, kwargs and options. Keywords are checked against the declared names
   * first when the task is registered here (Celery's `typing` check): a TypeError at call time.
   */
  applyAsync(args?: Partial<A>, kwargs?: KwargsOf<A, P>, options?: ApplyOptions): Promise<AsyncResult<Awaited<R>>>;
  /** A signature of this task, for link/linkError and canvas; leading args only (a chain step gets the previous result in front). */
  s(...args: Partial<A>): SignatureDict;
  /** An immutable signature: the parent's result is not prepended. */
  si(...args: Partial<A>): SignatureDict;
}

/** Celery's Task.max_retries default. */
export const DEFAULT_MAX_RETRIES = 3;

/**
 * The retry limit in force: a per-call `override` (ctx.retry's maxRetries) over the task option
 * over Celery's default 3; `null` means forever at either level. The one place that reads the
 * default, so this.retry() and autoretry cannot disagree. (Celery's retry(max_retries=None) means
 * "use the default"; here undefined does, and null is "forever" everywhere.)
 */
export function maxRetriesOf(opts: TaskOptions, override?: number | null): number | null {
  if (override !== undefined) return override;
  return opts.maxRetries === undefined ? DEFAULT_MAX_RETRIES : opts.maxRetries;
}

/** Celery's exponential backoff with full jitter, in ms. */
export function backoffDelay(retries: number, factorMs: number, maxMs: number, jitter: boolean, random: () => number = Math.random): number {
  const countdown = Math.min(maxMs, factorMs * 2 ** retries);
  return jitter ? Math.floor(random() * (countdown + 1)) : countdown;
}

/** Resolves the delay of the next retry for a task's options. */
export function retryDelay(opts: TaskOptions, retries: number, random: () => number = Math.random): number {
  if (opts.retryBackoff) {
    const factor = opts.retryBackoff === true ? 1000 : opts.retryBackoff;
    return backoffDelay(retries, factor, opts.retryBackoffMax ?? 600_000, opts.retryJitter ?? true, random);
  }
  return opts.defaultRetryDelay ?? 180_000;
}

/** True when `err` is one the task retries by itself. */
export function isAutoretry(opts: TaskOptions, err: unknown): boolean {
  if (!opts.autoretryFor || !(err instanceof Error) || err instanceof Retry) return false;
  return opts.autoretryFor.some((t) => (typeof t === 'string' ? t === err.name : err instanceof t));
}

/** Parses a Celery rate limit ("10/s", "100/m", "1000/h", or a plain number per second) to tasks/s. */
export function parseRateLimit(limit: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:\/\s*([smh]))?\s*$/.exec(limit);
  if (!m) throw new Error(`Invalid rateLimit "${limit}": use "<n>/s", "<n>/m" or "<n>/h"`);
  const per = m[2] === 'm' ? 60 : m[2] === 'h' ? 3600 : 1;
  return Number(m[1]) / per;
}
