/**
 * Runners as worker_threads: each thread has its own V8 isolate and event loop, so a CPU-bound
 * task runs beside the worker's loop and Worker.terminate() stops even `while (true) {}`. Lighter
 * than processes (no new Node process, ~10 MB per thread) but one heap limit and one crash domain:
 * native code that aborts takes the whole worker with it.
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { RunnerHandle } from './runners.js';
import type { FromRunner } from './crossing.js';

const ENTRY = new URL('./runner-entry.js', import.meta.url);

export function spawnThread(log: Logger): RunnerHandle {
  const w = new Worker(ENTRY);
  // An exception nothing caught in the thread (a throw in a stray timer): the thread ends with
  // exit code 1, which settles its task as WorkerLostError. Unhandled, it would end the worker.
  w.on('error', (err) => log.error({ err, runner: w.threadId }, `runner thread failed: ${err.message}`));
  return {
    id: w.threadId,
    send: (m) => w.postMessage(m),
    onMessage: (fn) => void w.on('message', (m: FromRunner) => fn(m)),
    onExit: (fn) => void w.once('exit', (code) => fn({ code, signal: null })),
    // terminate() cuts the isolate's execution; the exit event follows.
    kill: () => void w.terminate(),
  };
}
