/** celeriac/worker: run a worker from code instead of the CLI. */
export { createWorker, type Worker, type WorkerOptions } from './worker.js';
export type { TaskLabels, TaskSecondsHistogram, WorkerMetrics } from '../metrics/worker-metrics.js';
export { createEventLoopPool, createPool, type Pool, type PoolKind, type PoolOptions } from '../pools/pool.js';
export { TaskControl, type TaskCanvas, type TaskOutcome, type TraceInput } from '../pools/trace.js';
