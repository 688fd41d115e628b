/**
 * celeriac/testing: helpers for users' tests. An app on an isolated memory:// broker and
 * backend, and a worker for it in the same process, no server and no metrics port.
 */
import { randomUUID } from 'node:crypto';
import { createApp, type App, type AppOptions } from '../app/app.js';
import { createWorker, type Worker } from '../worker/worker.js';

/** An app whose broker and backend are private to it (memory://<random>). */
export function createTestApp(options: AppOptions = {}): App {
  const space = `memory://test-${randomUUID()}`;
  return createApp({ logLevel: 'silent', ...options, broker: space, backend: space, metricsPort: null });
}

/** Starts an in-process worker for `app`; call `stop()` when done. */
export async function startTestWorker(app: App): Promise<Worker> {
  const worker = createWorker(app);
  await worker.start();
  return worker;
}
