/**
 * The BullMQ worker process of the benchmark: argv queue name, Redis port, concurrency. Reports
 * its completed count to the parent over IPC (at most every 20 ms, and at each 1000th job).
 */
import { Worker } from 'bullmq';

const [name, port, concurrency] = process.argv.slice(2);
let completed = 0;
let timer: NodeJS.Timeout | null = null;
const report = () => {
  timer = null;
  process.send?.({ completed });
};
const worker = new Worker(name!, async (job) => (job.data as { a: number; b: number }).a + (job.data as { a: number; b: number }).b, {
  connection: { host: '127.0.0.1', port: Number(port) },
  concurrency: Number(concurrency),
});
worker.on('completed', () => {
  completed++;
  timer ??= setTimeout(report, 20);
});
process.on('SIGTERM', () => {
  void worker.close().then(() => process.exit(0));
});
