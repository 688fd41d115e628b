/**
 * Eager mode, Celery's `task_always_eager` for users' unit tests: `delay()` and `applyAsync()` run
 * the task in this process and resolve with a result that is already ready. A failed task makes
 * them reject with TaskFailedError (its remote type, message and traceback), as
 * `task_eager_propagates`; with `propagate: false` they resolve and the result holds the failure.
 *
 * The task runs through a real worker on a private memory:// broker and backend, so arguments,
 * retries, time limits and stored states behave as in production. What is eager: Task calls only.
 * `app.sendTask()` and what a worker sends on a task's behalf (retries, links, chain steps) are sent
 * as usual and run by the same in-process worker, as Celery's send_task is never eager.
 */
import { randomUUID } from 'node:crypto';
import { interceptSends, type App } from '../app/app.js';
import { CeleriacError } from '../errors.js';
import { createWorker, type Worker } from '../worker/worker.js';

/** Options of {@link useEagerMode}. */
export interface EagerOptions {
  /** Reject delay() with the task's error (Celery's task_eager_propagates); default true. */
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
  const worker = createWorker(app);
  await worker.start();
  const propagate = opts.propagate ?? true;
  const timeout = opts.timeoutMs ?? 30_000;
  const remove = interceptSends(app, async (call, send) => {
    const result = await send();
    if (call.viaTask) await result.get({ timeout, propagate });
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
