/**
 * Preloaded into the soak's worker (`node --import`): every second it writes the worker's RSS and
 * the longest event-loop stall of that second (perf_hooks monitorEventLoopDelay, 10 ms resolution)
 * as one JSON line to the file named by BENCH_LOOP_FILE, which the bench reads back.
 */
import { appendFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { isMainThread } from 'node:worker_threads';

const file = process.env.BENCH_LOOP_FILE;
// --import runs in worker threads too (the watchdog's): only the main loop is measured.
if (file && isMainThread) {
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  const timer = setInterval(() => {
    // Values are ns between the 10 ms timer's runs: the stall is what exceeds the timer's period.
    const line = { t: Date.now(), rssMb: process.memoryUsage.rss() / 2 ** 20, maxStallMs: Math.max(0, h.max / 1e6 - 10) };
    h.reset();
    appendFileSync(file, `${JSON.stringify(line)}\n`);
  }, 1_000);
  timer.unref();
}
