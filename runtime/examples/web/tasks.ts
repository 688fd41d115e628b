/**
 * The worker module of the web examples: the app and its tasks. The web servers beside it
 * (express.ts, fastify.ts, next/app/api/tasks/route.ts) import it to send tasks; a worker runs it:
 *
 *   celeriac worker -A dist/runtime/examples/web/tasks.js
 *
 * The broker and backend come from CELERIAC_BROKER_URL / CELERIAC_RESULT_BACKEND, else file://
 * (a folder under the current directory: web servers and workers on one machine, no server).
 */
import { createApp } from '../../src/index.js';

export const app = createApp({ name: 'web' });

/** Adds two numbers: the task the examples enqueue. */
export const add = app.task('web.add', (a: number, b: number) => a + b);

/** Fails when asked to divide by zero: shows how a failure reaches the status endpoint. */
export const divide = app.task('web.divide', (a: number, b: number) => {
  if (b === 0) throw Object.assign(new Error('division by zero'), { name: 'ZeroDivisionError' });
  return a / b;
});
