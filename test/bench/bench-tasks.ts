/** The benchmark's task module: a no-op that adds two numbers. Broker and backend from env. */
import { createApp } from '../../runtime/src/index.js';

export const app = createApp({ name: 'bench', logLevel: 'warn' });
export const add = app.task('bench.add', (a: number, b: number) => a + b);
export const total = app.task('bench.total', (xs: number[]) => xs.reduce((a, b) => a + b, 0));
