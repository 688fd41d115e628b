/**
 * The worker's Prometheus metrics (prom-client), on a registry of its own so that several workers
 * in one process (tests) do not collide. Names follow ../../shared/spec/operator.md §4; the
 * operator's autoscaler reads `celeriac_worker_tasks{state}` as in-flight work.
 */
import { createRequire } from 'node:module';
import type { Counter, Gauge, Metric, Registry } from 'prom-client';
import { registerEventLoopLag } from './event-loop-lag.js';
import { registerProcessCpu } from './process-cpu.js';

type PromClient = typeof import('prom-client');
/**
 * The parts of prom-client the worker uses, required one by one: its index also loads the
 * Pushgateway (http, https, tls) and the cluster aggregator (cluster, child_process), a few MB
 * an idle worker need not hold. prom-client has no `exports` map, so these paths are public files.
 */
function promClientParts(): Pick<PromClient, 'Registry' | 'Counter' | 'Gauge'> & { defaultMetrics: DefaultMetric[] } {
  const require = createRequire(import.meta.url);
  return {
    Registry: require('prom-client/lib/registry') as PromClient['Registry'],
    Counter: require('prom-client/lib/counter') as PromClient['Counter'],
    Gauge: require('prom-client/lib/gauge') as PromClient['Gauge'],
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

/** The labels of the per-task metrics. */
export interface TaskLabels {
  readonly queue: string;
  readonly task: string;
}

/** A histogram of seconds by queue and task (`celeriac_task_duration_seconds`, `celeriac_task_wait_seconds`). */
export interface TaskSecondsHistogram {
  /** One observation, in seconds. */
  observe(labels: TaskLabels, seconds: number): void;
}

export interface WorkerMetrics {
  readonly registry: Registry;
  /** The worker counts receipts on its hot path and adds them here at each scrape. */
  readonly received: Counter<'queue' | 'task'>;
  readonly completed: Counter<'queue' | 'task' | 'outcome'>;
  readonly duration: TaskSecondsHistogram;
  readonly wait: TaskSecondsHistogram;
  /** @internal The per-task metrics of one queue and task name, made on first use and kept (one lookup per task). */
  task(queue: string, task: string): TaskMetrics;
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
  const { Registry, Counter, Gauge, defaultMetrics } = promClientParts();
  const registry = new Registry();
  registerProcessCpu(registry, Counter); // first, where prom-client lists it
  for (const register of defaultMetrics) register(registry, { eventLoopMonitoringPrecision: 10 });
  registerEventLoopLag(registry, Gauge, 10);
  const registers = [registry];
  const collectors: (() => void)[] = [];
  const collect = () => {
    for (const fn of collectors) fn();
  };
  const duration = new TaskHistogram('celeriac_task_duration_seconds', 'Time a task ran.', [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800]);
  const wait = new TaskHistogram('celeriac_task_wait_seconds', 'Time from due (sent, or ETA) to start.', [0.001, 0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800]);
  const byQueue = new Map<string, Map<string, TaskMetrics>>();
  /** The same, in the order they were made (the order of their series on /metrics, as prom-client's). */
  const all: TaskMetrics[] = [];
  const received: Counter<'queue' | 'task'> = new Counter({
    name: 'celeriac_tasks_received_total',
    help: 'Task messages received by this worker.',
    labelNames: ['queue', 'task'],
    registers,
    // What the hot path counted since the previous scrape.
    collect() {
      for (const t of all) t.flushReceived(received);
    },
  });
  const completed: Counter<'queue' | 'task' | 'outcome'> = new Counter({
    name: 'celeriac_tasks_completed_total',
    help: 'Tasks finished, by outcome.',
    labelNames: ['queue', 'task', 'outcome'],
    registers,
  });
  // Registered as custom metrics: prom-client's registry takes any object with its get() contract.
  registry.registerMetric(duration as unknown as Metric);
  registry.registerMetric(wait as unknown as Metric);
  return {
    onCollect: (fn) => collectors.push(fn),
    registry,
    received,
    completed,
    duration,
    wait,
    task(queue, task) {
      let tasks = byQueue.get(queue);
      if (!tasks) byQueue.set(queue, (tasks = new Map()));
      let t = tasks.get(task);
      if (!t) {
        tasks.set(task, (t = new TaskMetrics({ queue, task }, completed, wait, duration)));
        all.push(t);
      }
      return t;
    },
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

/**
 * One queue and task name's share of the per-task metrics, as the consumer updates them: into
 * plain fields and arrays, not through prom-client's inc()/observe(), which build a label hash
 * string and check the labels on every call (about 1 µs per task for the four). `completed` still
 * goes to prom-client at once (its labels object made once here): the bench counts completions
 * there (test/bench/completion-counter.ts).
 */
export class TaskMetrics {
  #received = 0;
  readonly #waits: HistogramSeries;
  readonly #runs: HistogramSeries;
  readonly #outcomes = new Map<Outcome, { readonly queue: string; readonly task: string; readonly outcome: Outcome }>();

  constructor(
    readonly labels: TaskLabels,
    private readonly completedCounter: Counter<'queue' | 'task' | 'outcome'>,
    wait: TaskHistogram,
    duration: TaskHistogram,
  ) {
    this.#waits = wait.series(labels);
    this.#runs = duration.series(labels);
  }

  /** A task message received (celeriac_tasks_received_total, added at the next scrape). */
  received(): void {
    this.#received++;
  }

  /** Seconds from due to start (celeriac_task_wait_seconds). */
  waited(seconds: number): void {
    this.#waits.observe(seconds);
  }

  /** Seconds the task ran (celeriac_task_duration_seconds). */
  ran(seconds: number): void {
    this.#runs.observe(seconds);
  }

  /** A task finished with `outcome` (celeriac_tasks_completed_total). */
  completed(outcome: Outcome): void {
    let labels = this.#outcomes.get(outcome);
    if (!labels) this.#outcomes.set(outcome, (labels = { ...this.labels, outcome }));
    this.completedCounter.inc(labels);
  }

  /** @internal Adds what was received since the previous scrape to the counter. */
  flushReceived(counter: Counter<'queue' | 'task'>): void {
    if (this.#received === 0) return;
    counter.inc(this.labels, this.#received);
    this.#received = 0;
  }
}

/** A histogram as prom-client's registry reads it (the shape its Histogram gives; its typings say otherwise). */
interface HistogramData {
  readonly name: string;
  readonly help: string;
  readonly type: 'histogram';
  readonly aggregator: 'sum';
  readonly values: HistogramValue[];
}

/** One line of it: `metricName{labels,sharedLabels} value`. */
interface HistogramValue {
  readonly labels: Readonly<Record<string, string | number>>;
  readonly sharedLabels?: TaskLabels;
  readonly value: number;
  readonly metricName: string;
  readonly exemplar: null | undefined;
}

/** One label set of a TaskHistogram: counts per bucket (not cumulative), sum and count. */
class HistogramSeries {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly labels: TaskLabels,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length);
  }

  /** As prom-client's observe(): the first bucket whose bound is at or above `v`; past the last, only +Inf (the count). */
  observe(v: number): void {
    if (!Number.isFinite(v)) throw new TypeError(`Value is not a valid number: ${v}`);
    const { bounds } = this;
    for (let i = 0; i < bounds.length; i++) {
      if (v <= bounds[i]!) {
        this.counts[i]!++;
        break;
      }
    }
    this.sum += v;
    this.count++;
  }
}

/**
 * A histogram by queue and task whose series are kept by their users (TaskMetrics), so that an
 * observation is a few array writes. Registered on the worker's prom-client registry as a custom
 * metric (its get() contract: name, help, type, values): /metrics shows it exactly as a
 * prom-client Histogram with these buckets and labels (the unit test compares the two).
 */
export class TaskHistogram implements TaskSecondsHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #series = new Map<string, Map<string, HistogramSeries>>();
  /** The same, in the order they were made (their order on /metrics, as prom-client's). */
  readonly #all: HistogramSeries[] = [];

  constructor(
    readonly name: string,
    readonly help: string,
    readonly bounds: readonly number[],
  ) {}

  /** The series of `labels`, made on first use. */
  series(labels: TaskLabels): HistogramSeries {
    let tasks = this.#series.get(labels.queue);
    if (!tasks) this.#series.set(labels.queue, (tasks = new Map()));
    let s = tasks.get(labels.task);
    if (!s) {
      tasks.set(labels.task, (s = new HistogramSeries({ queue: labels.queue, task: labels.task }, this.bounds)));
      this.#all.push(s);
    }
    return s;
  }

  /** One observation (a caller that observes often keeps a series instead). */
  observe(labels: TaskLabels, v: number): void {
    this.series(labels).observe(v);
  }

  /** prom-client's contract: values with the series labels shared, as its Histogram gives them. */
  getForPromString(): HistogramData {
    const values: HistogramValue[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.#all) {
      let acc = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        acc += s.counts[i]!;
        values.push({ labels: { le: this.bounds[i]! }, sharedLabels: s.labels, value: acc, metricName: bucket, exemplar: null });
      }
      values.push({ labels: { le: '+Inf' }, sharedLabels: s.labels, value: s.count, metricName: bucket, exemplar: null });
      values.push({ labels: {}, sharedLabels: s.labels, value: s.sum, metricName: `${this.name}_sum`, exemplar: undefined });
      values.push({ labels: {}, sharedLabels: s.labels, value: s.count, metricName: `${this.name}_count`, exemplar: undefined });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  /** prom-client's get(): the same values with the series labels merged in (registry.getMetricsAsJSON). */
  async get(): Promise<HistogramData> {
    const data = this.getForPromString();
    return { ...data, values: data.values.map(({ sharedLabels, labels, ...rest }) => ({ ...rest, labels: { ...labels, ...sharedLabels } })) };
  }

  /** registry.resetMetrics(): every series back to zero (the series stay, held by their users). */
  reset(): void {
    for (const s of this.#all) {
      s.counts.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }
}
