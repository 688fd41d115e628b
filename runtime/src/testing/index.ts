/**
 * celeriac/testing: helpers for users' own tests. An app on an isolated memory:// broker and
 * backend with a worker in the same process; eager mode (Celery's task_always_eager); and a
 * recorder to assert which tasks were sent. See docs/testing.md.
 */
import { randomUUID } from 'node:crypto';
import { createApp, type App, type AppOptions } from '../app/app.js';
import { createWorker, type Worker } from '../worker/worker.js';

export { useEagerMode, type EagerMode, type EagerOptions } from './eager.js';
export { recordSends, type RecordOptions, type SendRecorder, type SentMatch, type SentTask } from './recorder.js';

/** An app whose broker and backend are private to it (memory://<random>). */
export function createTestApp(options: AppOptions = {}): App {
  const space = `memory://test-${randomUUID()}`;
  return createApp({ logLevel: 'silent', ...options, broker: space, backend: space, metricsPort: null });
}

/**
 * Starts an in-process worker for `app`; call `stop()` when done. When the app's metrics port is
 * taken (a dev worker, another test file), its /metrics is served on a free port instead.
 */
export async function startTestWorker(app: App): Promise<Worker> {
  const worker = createWorker(app, { anyMetricsPortWhenTaken: true });
  await worker.start();
  return worker;
}
