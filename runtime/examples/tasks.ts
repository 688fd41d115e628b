/**
 * Example tasks for the demo (`npm start`) and a template for your own module:
 * `celeriac worker -A dist/runtime/examples/tasks.js`.
 */
import { createApp, type TaskContext } from '../src/index.js';

export const app = createApp({ name: 'demo', defaultQueue: 'celeriac.demo', logLevel: 'warn' });

/** Succeeds at once. */
export const add = app.task('demo.add', (a: number, b: number) => a + b);

/** Fails on its first two runs, retries itself 300 ms later, then succeeds. */
export const flaky = app.task(
  'demo.flaky',
  function (this: TaskContext, word: string) {
    if (this.retries < 2) this.retry({ countdown: 300, exc: new Error(`${word}: service not ready (attempt ${this.retries + 1})`) });
    return `${word} after ${this.retries} retries`;
  },
  { maxRetries: 5 },
);

/** Always fails: shows how a failure arrives at the caller. */
export const divide = app.task('demo.divide', (a: number, b: number) => {
  if (b === 0) throw Object.assign(new Error('division by zero'), { name: 'ZeroDivisionError' });
  return a / b;
});
