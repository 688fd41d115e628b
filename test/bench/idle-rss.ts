/**
 * The resident memory of an idle worker: a fresh worker process on an empty queue, measured
 * `settleMs` after its /metrics first answers (time for start-up garbage to be collected).
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** VmRSS of `pid` in MB, or undefined when it is gone. */
function rssMb(pid: number | undefined): number | undefined {
  if (!pid) return undefined;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined; // the process ended: no figure
  }
}

/** Starts a worker with `start` (serving /metrics on `metricsPort`), waits until it answers, then settles and measures. */
export async function idleWorkerRssMb(start: () => ChildProcess, metricsPort: number, settleMs = 5_000): Promise<number | undefined> {
  const worker = start();
  try {
    for (let i = 0; i < 600; i++) {
      const up = await fetch(`http://127.0.0.1:${metricsPort}/metrics`).then(
        (r) => r.ok,
        () => false,
      );
      if (up) break;
      await sleep(50);
    }
    await sleep(settleMs);
    return rssMb(worker.pid);
  } finally {
    worker.kill('SIGTERM');
    await new Promise((r) => (worker.exitCode !== null || worker.signalCode !== null ? r(null) : worker.once('exit', r)));
  }
}
