/** celeriac/worker: run a worker from code instead of the CLI. */
export { createWorker, type Worker, type WorkerOptions } from './worker.js';
export type { WorkerMetrics } from '../metrics/worker-metrics.js';
export { createEventLoopPool, type Pool } from '../pools/pool.js';
export type { TaskOutcome, TraceInput } from '../pools/trace.js';
