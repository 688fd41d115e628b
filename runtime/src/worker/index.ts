/** celeriac/worker: run a worker from code instead of the CLI. */
export { createWorker, type Worker, type WorkerOptions } from './worker.js';
export { createEventLoopPool, type Pool } from '../pools/pool.js';
export type { TaskOutcome } from '../pools/trace.js';
