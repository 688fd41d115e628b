/**
 * AsyncResult: a handle on one task's state and result, as Celery's.
 * The state methods read the backend each time (Celery's properties do the same I/O).
 */
import { TaskFailedError, TaskRevokedError } from '../errors.js';
import { exceptionMessage, isExceptionDict, READY_STATES, type TaskMeta, type TaskState } from '../protocol/result-meta.js';
import type { ResultBackend } from '../backends/result-backend.js';
import { sleep } from '../transport/wait.js';

/** How often follow() reads the state unless told otherwise. */
const FOLLOW_INTERVAL_MS = 250;

/** What an AsyncResult needs from its app. */
export interface ResultHost {
  backend(): Promise<ResultBackend>;
  revoke(taskId: string, opts: { terminate: boolean }): Promise<void>;
}

/** A set of results (a GroupResult), as the parent of an AsyncResult. */
export interface ResultSet {
  readonly id: string;
  /** The members; a member that is a group is itself a ResultSet. */
  readonly results: readonly (AsyncResult | ResultSet)[];
}

/** A handle on one task: its state, its result, waiting for it, revoking it (Celery's AsyncResult). */
export class AsyncResult<R = unknown> {
  /**
   * The result this one follows, when a canvas applied here says so: the previous step of a
   * chain, or the header (a ResultSet) of a chord's body. Null otherwise (as Celery's).
   */
  parent: AsyncResult | ResultSet | null = null;

  constructor(
    /** The task id. */
    readonly id: string,
    private readonly host: ResultHost,
  ) {}

  /** The stored meta, or a PENDING meta when nothing is stored. */
  async meta(): Promise<TaskMeta> {
    const m = await (await this.host.backend()).get(this.id);
    return m ?? { status: 'PENDING', result: null, traceback: null, children: null, date_done: null, task_id: this.id };
  }

  /** PENDING, STARTED, RETRY, SUCCESS, FAILURE, REVOKED, or a custom state. */
  async state(): Promise<TaskState> {
    return (await this.meta()).status;
  }

  /** True once the task is SUCCESS, FAILURE or REVOKED. */
  async ready(): Promise<boolean> {
    return READY_STATES.has(await this.state());
  }

  /** True once the task is SUCCESS. */
  async successful(): Promise<boolean> {
    return (await this.state()) === 'SUCCESS';
  }

  /** True once the task is FAILURE. */
  async failed(): Promise<boolean> {
    return (await this.state()) === 'FAILURE';
  }

  /** The stored result: the value on SUCCESS, the exception dict on FAILURE/RETRY/REVOKED. */
  async result(): Promise<unknown> {
    return (await this.meta()).result;
  }

  /**
   * Celery's `AsyncResult.info`: the stored result, which for a custom state is the meta the task
   * gave to `updateState` (e.g. `{ current, total }` while PROGRESS).
   */
  async info(): Promise<unknown> {
    return this.result();
  }

  /**
   * The task's states as they change, until it is ready: yields the meta first as it is now, then
   * each time its state or its meta changes (a PROGRESS with a new `current` is a change), and
   * ends after the SUCCESS, FAILURE or REVOKED meta. It reads the backend every `intervalMs`
   * (default 250), so a state that lasts less may be missed, as with polling Celery's `.state`.
   *
   * ```ts
   * for await (const m of result.follow()) if (m.status === 'PROGRESS') console.log(m.result);
   * ```
   */
  async *follow(opts: { intervalMs?: number; signal?: AbortSignal } = {}): AsyncGenerator<TaskMeta, void, undefined> {
    let last: string | null = null;
    for (;;) {
      opts.signal?.throwIfAborted();
      const meta = await this.meta();
      const seen = JSON.stringify([meta.status, meta.result]);
      if (seen !== last) {
        last = seen;
        yield meta;
      }
      if (READY_STATES.has(meta.status)) return;
      await sleep(opts.intervalMs ?? FOLLOW_INTERVAL_MS, opts.signal);
    }
  }

  /** The remote traceback text, when the task failed. */
  async traceback(): Promise<string | null> {
    return (await this.meta()).traceback;
  }

  /**
   * Waits for the task to be ready and returns its value. A failed task throws TaskFailedError
   * (with the remote type and message), a revoked one TaskRevokedError, unless `propagate` is false.
   */
  async get(opts: { timeout?: number; propagate?: boolean; interval?: number; signal?: AbortSignal } = {}): Promise<R> {
    const backend = await this.host.backend();
    const meta = await backend.waitReady(this.id, {
      timeoutMs: opts.timeout ?? 24 * 3600_000,
      intervalMs: opts.interval,
      signal: opts.signal,
    });
    if (opts.propagate !== false) throwIfFailed(meta);
    return meta.result as R;
  }

  /**
   * What the task sent when it finished (Celery's `children`): the next chain step, links, a
   * canvas it applied; a group among them as a ResultSet. Empty until the task is ready.
   */
  async children(): Promise<(AsyncResult | ResultSet)[]> {
    const stored = (await this.meta()).children;
    return Array.isArray(stored) ? stored.map((t) => this.fromTuple(t)).filter((r) => r !== null) : [];
  }

  /** A result from Celery's result tuple `[[id, parent], members | null]`, or null when it is not one. */
  private fromTuple(t: unknown): AsyncResult | ResultSet | null {
    if (!Array.isArray(t) || !Array.isArray(t[0]) || typeof t[0][0] !== 'string') return null;
    const id = t[0][0];
    if (!Array.isArray(t[1])) return new AsyncResult(id, this.host);
    const results = t[1].map((m) => this.fromTuple(m)).filter((r): r is AsyncResult => r instanceof AsyncResult);
    return { id, results };
  }

  /** Deletes the stored result. */
  async forget(): Promise<void> {
    await (await this.host.backend()).forget(this.id);
  }

  /** Revokes the task on every worker; `terminate` also aborts it if it is running. */
  async revoke(opts: { terminate?: boolean } = {}): Promise<void> {
    await this.host.revoke(this.id, { terminate: opts.terminate ?? false });
  }

  /** The task id. */
  toString(): string {
    return this.id;
  }
}

/** Throws the error a FAILURE or REVOKED meta stands for. */
export function throwIfFailed(meta: TaskMeta): void {
  if (meta.status === 'FAILURE') {
    const r = meta.result;
    if (isExceptionDict(r)) throw new TaskFailedError(meta.task_id, r.exc_type, exceptionMessage(r), r.exc_module, meta.traceback);
    throw new TaskFailedError(meta.task_id, 'Exception', String(r), null, meta.traceback);
  }
  if (meta.status === 'REVOKED') {
    const r = meta.result;
    throw new TaskRevokedError(meta.task_id, isExceptionDict(r) ? exceptionMessage(r) : 'revoked');
  }
}
