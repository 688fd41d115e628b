/**
 * Eager mode, Celery's `task_always_eager` for users' unit tests: `delay()` and `applyAsync()` run
 * the task in this process and resolve with a result that is already ready. A failed task makes
 * them reject with the very error the task threw, as `task_eager_propagates` re-raises the
 * original exception; with `propagate: false` they resolve and the result holds the failure
 * (its `get()` throws TaskFailedError, as for a task run by a remote worker).
 *
 * The task runs through a real worker on a private memory:// broker and backend, so arguments,
 * retries, time limits and stored states behave as in production. What is eager: Task calls only.
 * `app.sendTask()` and what a worker sends on a task's behalf (retries, links, chain steps) are sent
 * as usual and run by the same in-process worker, as Celery's send_task is never eager.
 */
import { randomUUID } from 'node:crypto';
import { interceptSends, type App } from '../app/app.js';
import { CeleriacError, TaskFailedError } from '../errors.js';
import { createEventLoopPool, type Pool } from '../pools/pool.js';
import { createWorker, type Worker } from '../worker/worker.js';

/** Options of {@link useEagerMode}. */
export interface EagerOptions {
  /** Reject delay() with the error object the task threw (Celery's task_eager_propagates); default true. */
  readonly propagate?: boolean;
  /** Longest a call waits for its task, in ms (default 30000): a task that never ends fails the test. */
  readonly timeoutMs?: number;
  /** Log level of the app and its in-process worker (default "silent"). */
  readonly logLevel?: string;
}

/** An app in eager mode; `stop()` it after the tests. */
export interface EagerMode {
  /** The in-process worker that runs the tasks. */
  readonly worker: Worker;
  /** Stops the worker and sends normally again (the app stays on its memory:// broker). */
  stop(): Promise<void>;
}

/**
 * Makes `app` eager. Call it before the app's first send or connection (in a test's `before`):
 * it moves the app onto a private memory:// broker and backend, so no server is needed.
 */
export async function useEagerMode(app: App, opts: EagerOptions = {}): Promise<EagerMode> {
  const space = `memory://eager-${randomUUID()}`;
  try {
    app.configure({ brokerUrl: space, resultBackend: space, metricsPort: 'none', logLevel: opts.logLevel ?? 'silent' });
  } catch (err) {
    throw new CeleriacError(
      'E_EAGER_LATE',
      'useEagerMode(app) must run before the app sends its first task or connects to its broker (call it in before/beforeAll)',
      { cause: err },
    );
  }
  const propagate = opts.propagate ?? true;
  const thrown = new Map<string, unknown>();
  const worker = createWorker(app, { pool: keepingErrors(createEventLoopPool(app.config.concurrency), thrown) });
  await worker.start();
  const timeout = opts.timeoutMs ?? 30_000;
  const remove = interceptSends(app, async (call, send) => {
    const result = await send();
    if (!call.viaTask) return result;
    try {
      await result.get({ timeout, propagate });
    } catch (err) {
      // The stored failure of a task that threw here: the caller gets what the task threw.
      if (err instanceof TaskFailedError && thrown.has(result.id)) throw thrown.get(result.id);
      throw err;
    } finally {
      thrown.delete(result.id);
    }
    return result;
  });
  return {
    worker,
    async stop() {
      remove();
      await worker.stop();
    },
  };
}

/** The event-loop pool, keeping the error of each task that failed by throwing, by task id. */
function keepingErrors(pool: Pool, thrown: Map<string, unknown>): Pool {
  return {
    kind: pool.kind,
    get size() {
      return pool.size;
    },
    start: () => pool.start(),
    async run(input) {
      const outcome = await pool.run(input);
      if (outcome.state === 'FAILURE') thrown.set(input.req.id, outcome.error);
      return outcome;
    },
    resize: (n) => pool.resize(n),
    onResize: (listener) => pool.onResize?.(listener),
    stop: (o) => pool.stop(o),
  };
}
