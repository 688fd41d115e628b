/**
 * Tasks of the broker fault tests. Every run appends a line to FAULT_LOG, so a test can count
 * how often each task ran. FAULT_ACKS_LATE=1 makes them late-ack; FAULT_TASK_MS is their duration.
 */
import { appendFileSync } from 'node:fs';
import { createApp, type TaskContext } from '../../../runtime/src/index.js';

const log = process.env.FAULT_LOG!;
const ms = Number(process.env.FAULT_TASK_MS ?? 1);
export const app = createApp({ name: 'faults', acksLate: process.env.FAULT_ACKS_LATE === '1' });

app.task('faults.record', async (n: number) => {
  await new Promise((r) => setTimeout(r, ms));
  appendFileSync(log, `${n}\n`);
  return n;
});

/** Writes "start" when it begins and "done" when it ends, with the worker's pid. */
app.task('faults.slow', async function (this: TaskContext) {
  appendFileSync(log, `start ${process.pid}\n`);
  await new Promise((r) => setTimeout(r, ms));
  appendFileSync(log, `done ${process.pid}\n`);
});
