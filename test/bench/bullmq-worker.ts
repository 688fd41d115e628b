/**
 * The BullMQ worker process of the benchmark: argv queue name, Redis port, concurrency. Reports
 * its completed count to the parent over IPC (at most every 20 ms), with the time the last of them
 * completed (epoch ms, performance.timeOrigin + now()), so the report's delay is not measured.
 */
import { Worker } from 'bullmq';

const [name, port, concurrency] = process.argv.slice(2);
let completed = 0;
let at = 0;
let timer: NodeJS.Timeout | null = null;
const report = () => {
  timer = null;
  process.send?.({ completed, at });
};
const worker = new Worker(name!, async (job) => (job.data as { a: number; b: number }).a + (job.data as { a: number; b: number }).b, {
  connection: { host: '127.0.0.1', port: Number(port) },
  concurrency: Number(concurrency),
});
worker.on('completed', () => {
  completed++;
  at = performance.timeOrigin + performance.now();
  timer ??= setTimeout(report, 20);
});
process.on('SIGTERM', () => {
  void worker.close().then(() => process.exit(0));
});
