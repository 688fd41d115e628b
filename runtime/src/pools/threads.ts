/**
 * Runners as worker_threads: each thread has its own V8 isolate and event loop, so a CPU-bound
 * task runs beside the worker's loop and Worker.terminate() stops even `while (true) {}`. Lighter
 * than processes (no new Node process, ~10 MB per thread) but one heap limit and one crash domain:
 * native code that aborts takes the whole worker with it.
 */
import { Worker } from 'node:worker_threads';
import type { RunnerHandle } from './runners.js';
import type { FromRunner } from './crossing.js';

const ENTRY = new URL('./runner-entry.js', import.meta.url);

export function spawnThread(): RunnerHandle {
  const w = new Worker(ENTRY);
  return {
    id: w.threadId,
    send: (m) => w.postMessage(m),
    onMessage: (fn) => void w.on('message', (m: FromRunner) => fn(m)),
    onExit: (fn) => void w.once('exit', (code) => fn({ code, signal: null })),
    // terminate() cuts the isolate's execution; the exit event follows.
    kill: () => void w.terminate(),
  };
}
