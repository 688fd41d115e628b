/** The benchmark's task module: a no-op that adds two numbers, and 5 ms of CPU. Broker and backend from env. */
import { createApp } from '../../runtime/src/index.js';

export const app = createApp({ name: 'bench', logLevel: 'warn' });
export const add = app.task('bench.add', (a: number, b: number) => a + b);
export const total = app.task('bench.total', (xs: number[]) => xs.reduce((a, b) => a + b, 0));
/** Spins the CPU for 5 ms (the pool bench: work that blocks a runner). */
export const cpu5 = app.task('bench.cpu5', (a: number, b: number) => {
  const end = performance.now() + 5;
  while (performance.now() < end);
  return a + b;
});
