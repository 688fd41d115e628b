/**
 * The worker's Prometheus metrics (prom-client), on a registry of its own so that several workers
 * in one process (tests) do not collide. Names follow ../../shared/spec/operator.md §4; the
 * operator's autoscaler reads `celeriac_worker_tasks{state}` as in-flight work.
 */
import { createRequire } from 'node:module';
import type { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { registerEventLoopLag } from './event-loop-lag.js';
import { registerProcessCpu } from './process-cpu.js';

type PromClient = typeof import('prom-client');
/**
 * The parts of prom-client the worker uses, required one by one: its index also loads the
 * Pushgateway (http, https, tls) and the cluster aggregator (cluster, child_process), a few MB
 * an idle worker need not hold. prom-client has no `exports` map, so these paths are public files.
 */
function promClientParts(): Pick<PromClient, 'Registry' | 'Counter' | 'Gauge' | 'Histogram'> & { defaultMetrics: DefaultMetric[] } {
  const require = createRequire(import.meta.url);
  return {
    Registry: require('prom-client/lib/registry') as PromClient['Registry'],
    Counter: require('prom-client/lib/counter') as PromClient['Counter'],
    Gauge: require('prom-client/lib/gauge') as PromClient['Gauge'],
    Histogram: require('prom-client/lib/histogram') as PromClient['Histogram'],
    defaultMetrics: DEFAULT_METRICS.map((m) => require(`prom-client/lib/metrics/${m}`) as DefaultMetric),
  };
}

/** A module of prom-client's default metrics: registers its metrics on a registry. */
type DefaultMetric = (registry: Registry, config: Record<string, unknown>) => void;

/**
 * prom-client's default metrics (its defaultMetrics.js, version 15) but the event-loop lag family,
 * which ./event-loop-lag.ts registers under the same names at a fraction of the scrape cost, and
 * the CPU family, which ./process-cpu.ts registers without loading @opentelemetry/api.
 */
const DEFAULT_METRICS = [
  'processStartTime',
  'osMemoryHeap',
  'processOpenFileDescriptors',
  'processMaxFileDescriptors',
  ...(typeof process.getActiveResourcesInfo === 'function' ? ['processResources'] : []),
  'processHandles',
  'processRequests',
  'heapSizeAndUsed',
  'heapSpacesSizeAndUsed',
  'version',
  'gc',
];

export interface WorkerMetrics {
  readonly registry: Registry;
  readonly received: Counter<'queue' | 'task'>;
  readonly completed: Counter<'queue' | 'task' | 'outcome'>;
  readonly duration: Histogram<'queue' | 'task'>;
  readonly wait: Histogram<'queue' | 'task'>;
  readonly inFlight: Gauge<'state'>;
  readonly slots: Gauge;
  readonly busySlots: Gauge;
  readonly draining: Gauge;
  readonly deadLettered: Counter<'queue' | 'reason'>;
  /** The longest event-loop block since the previous scrape (worker/watchdog.ts). */
  readonly eventLoopLag: Gauge;
  /** ETA/countdown tasks held here and due within `within_seconds` (SCHEDULED_DUE_BUCKETS, cumulative). */
  readonly scheduledDue: Gauge<'within_seconds'>;
  /** Runs `fn` before each scrape, to set gauges from live state. */
  onCollect(fn: () => void): void;
}

export type Outcome = 'succeeded' | 'failed' | 'retried' | 'revoked' | 'rejected';

export function createWorkerMetrics(): WorkerMetrics {
  const { Registry, Counter, Gauge, Histogram, defaultMetrics } = promClientParts();
  const registry = new Registry();
  registerProcessCpu(registry, Counter); // first, where prom-client lists it
  for (const register of defaultMetrics) register(registry, { eventLoopMonitoringPrecision: 10 });
  registerEventLoopLag(registry, Gauge, 10);
  const registers = [registry];
  const collectors: (() => void)[] = [];
  const collect = () => {
    for (const fn of collectors) fn();
  };
  return {
    onCollect: (fn) => collectors.push(fn),
    registry,
    received: new Counter({ name: 'celeriac_tasks_received_total', help: 'Task messages received by this worker.', labelNames: ['queue', 'task'], registers }),
    completed: new Counter({
      name: 'celeriac_tasks_completed_total',
      help: 'Tasks finished, by outcome.',
      labelNames: ['queue', 'task', 'outcome'],
      registers,
    }),
    duration: new Histogram({
      name: 'celeriac_task_duration_seconds',
      help: 'Time a task ran.',
      labelNames: ['queue', 'task'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800],
      registers,
    }),
    wait: new Histogram({
      name: 'celeriac_task_wait_seconds',
      help: 'Time from due (sent, or ETA) to start.',
      labelNames: ['queue', 'task'],
      buckets: [0.001, 0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800],
      registers,
    }),
    inFlight: new Gauge({
      name: 'celeriac_worker_tasks',
      help: 'Tasks held by this worker: active (running), reserved (prefetched), scheduled (ETA held).',
      labelNames: ['state'],
      registers,
      collect,
    }),
    slots: new Gauge({ name: 'celeriac_worker_slots', help: 'Tasks this worker can run at once.', registers }),
    busySlots: new Gauge({ name: 'celeriac_worker_busy_slots', help: 'Slots running a task now.', registers }),
    draining: new Gauge({ name: 'celeriac_worker_draining', help: '1 while the worker has stopped consuming (drain or shutdown).', registers }),
    eventLoopLag: new Gauge({
      name: 'celeriac_event_loop_lag_seconds',
      help: 'Longest delay of the worker event loop since the previous scrape (measured off the loop, so a block in progress counts).',
      registers,
    }),
    scheduledDue: new Gauge({
      name: 'celeriac_worker_scheduled_due_tasks',
      help: 'ETA/countdown tasks held by this worker and due within within_seconds (cumulative; overdue ones count in every bucket).',
      labelNames: ['within_seconds'],
      registers,
    }),
    deadLettered: new Counter({
      name: 'celeriac_messages_dead_lettered_total',
      help: 'Messages moved to <queue>.dead, by reason.',
      labelNames: ['queue', 'reason'],
      registers,
    }),
  };
}

/**
 * Buckets (s) of `celeriac_worker_scheduled_due_tasks`: the autoscaler counts ETA tasks due within
 * its lead time (decision delay + measured pod start, issue 19) as work ahead of their due time,
 * taking the smallest bucket at or above the lead.
 */
export const SCHEDULED_DUE_BUCKETS: readonly number[] = Object.freeze([5, 10, 15, 20, 30, 45, 60, 120, 300]);

/**
 * Sets the scheduled-due gauge at `now` (ms) from `countDueBy(ats)`: for each bucket's end time
 * (ms, ascending), the tasks due at or before it (one pass over the ETA heap for all buckets).
 */
export function setScheduledDue(gauge: WorkerMetrics['scheduledDue'], countDueBy: (ats: readonly number[]) => readonly number[], now: number): void {
  const counts = countDueBy(SCHEDULED_DUE_BUCKETS.map((s) => now + s * 1000));
  SCHEDULED_DUE_BUCKETS.forEach((s, i) => gauge.set({ within_seconds: String(s) }, counts[i] ?? 0));
}
