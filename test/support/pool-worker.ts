/**
 * A worker of one pool kind in this process, on its own queue, running the tasks of a fixture
 * module (runners of threads and processes import that module themselves), and a client app on
 * the same broker and backend.
 */
import { createApp, type App } from '../../runtime/src/index.js';
import { createWorker, type Worker } from '../../runtime/src/worker/worker.js';
import { uniqueName } from './servers.js';

export interface PoolWorkerOptions {
  readonly url: string;
  readonly pool: 'event-loop' | 'threads' | 'processes';
  /** File URL of the fixture module that exports `app`. */
  readonly tasksModule: string;
  /** The app's name; the node name is `<name>@test`. */
  readonly name: string;
  /** More config of the worker's app. */
  readonly extra?: Record<string, unknown>;
  /** Called with the worker's app and the client before they are used (signals, components). */
  readonly prepare?: (app: App) => void;
}

export async function startPoolWorker(o: PoolWorkerOptions): Promise<{ worker: Worker; client: App; queue: string }> {
  const queue = uniqueName(`${o.name}-${o.pool}`);
  const { app } = (await import(o.tasksModule)) as { app: App };
  // One module instance per test process: each worker needs a fresh app with the same tasks.
  const own = createApp({
    name: o.name,
    hostname: `${o.name}@test`,
    broker: o.url,
    backend: o.url,
    queues: [queue],
    concurrency: 2,
    metricsPort: 0,
    logLevel: 'silent',
    ...o.extra,
  });
  for (const t of app.tasks.values()) own.task(t.name, t.fn, t.options);
  o.prepare?.(own);
  const worker = createWorker(own, { pool: o.pool, tasksModule: o.tasksModule });
  await worker.start();
  const client = createApp({ broker: o.url, backend: o.url, defaultQueue: queue, logLevel: 'silent' });
  o.prepare?.(client);
  return { worker, client, queue };
}
