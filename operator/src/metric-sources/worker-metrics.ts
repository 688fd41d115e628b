/**
 * The workers' own view, scraped from each pod's /metrics (celeriac runtime, prom-client text
 * format): in-flight tasks `celeriac_worker_tasks{state=active|reserved|scheduled}`, draining
 * `celeriac_worker_draining`, and the counters the rate model needs:
 * `celeriac_tasks_received_total`, `celeriac_task_duration_seconds_sum` / `_count`; and the
 * ETA tasks held and due soon, `celeriac_worker_scheduled_due_tasks{within_seconds}` (issue 19).
 * Targets come from the caller (the pool's ready pods); no target means no worker, so zero.
 * A reading is typed (`WorkerReading`: the sums plus each pod's sample), not a `MetricValue`:
 * the autoscaler needs every part of it, by name.
 * A pod that cannot be scraped fails the read: in-flight work must never be silently missed.
 * The text-format parser is hand-written: it reads six sample names, far less than a library.
 */
import { SCHEDULED_DUE_BUCKETS } from '../../../runtime/src/metrics/worker-metrics.js';
import { abortable, MetricSourceError } from './source.js';

export interface ScrapeTarget {
  readonly pod: string;
  /** e.g. http://10.1.2.3:9540/metrics */
  readonly url: string;
}

export interface WorkerMetricsOptions {
  targets: () => Promise<readonly ScrapeTarget[]>;
  timeoutMs?: number;
}

/** Per-pod figures from one scrape. */
export interface WorkerSample {
  active: number;
  reserved: number;
  scheduled: number;
  draining: boolean;
  received: number;
  completed: number;
  serviceSeconds: number;
  /** ETA tasks due within each bucket's seconds (cumulative); empty from a worker without the gauge. */
  scheduledDue: Map<number, number>;
}

/** One read over all the pool's ready pods: sums, and each pod's own sample. */
export interface WorkerReading {
  /** A, R, S: tasks running, prefetched, and held for their ETA. */
  readonly active: number;
  readonly reserved: number;
  readonly scheduled: number;
  /** Of `active`, tasks running on pods that are draining. */
  readonly drainingActive: number;
  /** Counters summed over the pods (they drop when a pod goes away); null when not known. */
  readonly received: number | null;
  readonly completed: number | null;
  readonly serviceSeconds: number | null;
  /** ETA tasks due within each bucket's seconds, summed over the pods (see dueWithin). */
  readonly scheduledDue: ReadonlyMap<number, number>;
  readonly byPod: ReadonlyMap<string, WorkerSample>;
}

/** The workers' figures for the autoscaler (not a MetricSource: its reading has named parts). */
export interface WorkerMetricsSource {
  /** worker-metrics: celeriac's /metrics; celery-workers: Celery's remote control (celery-workers.ts). */
  readonly kind: 'worker-metrics' | 'celery-workers';
  /** Scrapes every target; rejects with MetricSourceError naming the pod that failed. */
  read(signal: AbortSignal): Promise<WorkerReading>;
  close(): Promise<void>;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/;

/** Sums the samples celeriac's autoscaler reads from one /metrics page. */
export function parseWorkerMetrics(text: string): WorkerSample {
  const s: WorkerSample = { active: 0, reserved: 0, scheduled: 0, draining: false, received: 0, completed: 0, serviceSeconds: 0, scheduledDue: new Map() };
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const [, name, labels = '', raw] = m;
    const v = Number(raw);
    if (!Number.isFinite(v)) continue;
    switch (name) {
      case 'celeriac_worker_tasks': {
        const state = /state="([^"]*)"/.exec(labels)?.[1];
        if (state === 'active' || state === 'reserved' || state === 'scheduled') s[state] += v;
        break;
      }
      case 'celeriac_worker_draining':
        s.draining = v > 0;
        break;
      case 'celeriac_tasks_received_total':
        s.received += v;
        break;
      case 'celeriac_task_duration_seconds_count':
        s.completed += v;
        break;
      case 'celeriac_task_duration_seconds_sum':
        s.serviceSeconds += v;
        break;
      case 'celeriac_worker_scheduled_due_tasks': {
        const within = Number(/within_seconds="([^"]*)"/.exec(labels)?.[1]);
        if (Number.isFinite(within)) s.scheduledDue.set(within, (s.scheduledDue.get(within) ?? 0) + v);
        break;
      }
    }
  }
  return s;
}

/** The pool's reading from each pod's sample: the sums, and the samples by pod. */
export function readingOf(byPod: ReadonlyMap<string, WorkerSample>): WorkerReading {
  const sum = { active: 0, reserved: 0, scheduled: 0, drainingActive: 0, received: 0, completed: 0, serviceSeconds: 0 };
  const scheduledDue = new Map<number, number>();
  for (const s of byPod.values()) {
    for (const [within, n] of s.scheduledDue) scheduledDue.set(within, (scheduledDue.get(within) ?? 0) + n);
    sum.active += s.active;
    sum.reserved += s.reserved;
    sum.scheduled += s.scheduled;
    if (s.draining) sum.drainingActive += s.active;
    sum.received += s.received;
    sum.completed += s.completed;
    sum.serviceSeconds += s.serviceSeconds;
  }
  return { ...sum, scheduledDue, byPod };
}

/**
 * ETA tasks due within `leadSeconds`: the count of the smallest bucket at or above the lead
 * (they come due a little early rather than late); beyond the largest bucket, the largest.
 * 0 when the workers export no buckets (older workers, Celery workers).
 */
export function dueWithin(scheduledDue: ReadonlyMap<number, number>, leadSeconds: number): number {
  const buckets = [...scheduledDue.keys()].sort((a, b) => a - b);
  const bucket = buckets.find((b) => b >= leadSeconds) ?? buckets.at(-1);
  return bucket === undefined ? 0 : scheduledDue.get(bucket)!;
}

/** Buckets of SCHEDULED_DUE_BUCKETS from due times (ms), as a celeriac worker exports them; for workers that list ETAs instead (Celery's inspect scheduled). */
export function scheduledDueOf(dueTimes: readonly number[], now: number): Map<number, number> {
  return new Map(SCHEDULED_DUE_BUCKETS.map((b) => [b, dueTimes.filter((t) => t <= now + b * 1000).length]));
}

/** The bucket of SCHEDULED_DUE_BUCKETS that `dueWithin` counts for a lead (the simulator's workers export the same). */
export function dueBucketSeconds(leadSeconds: number): number {
  return SCHEDULED_DUE_BUCKETS.find((b) => b >= leadSeconds) ?? SCHEDULED_DUE_BUCKETS.at(-1)!;
}

/** One pod's /metrics page, read and summed; rejects on a network error, a timeout or a non-2xx answer. */
export async function scrapeWorker(url: string, signal: AbortSignal, timeoutMs: number): Promise<WorkerSample> {
  const res = await fetch(url, { signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) });
  if (!res.ok) throw new Error(`${url} answered ${res.status} ${res.statusText}`);
  return parseWorkerMetrics(await res.text());
}

export function createWorkerMetricsSource(o: WorkerMetricsOptions): WorkerMetricsSource {
  const timeoutMs = o.timeoutMs ?? 3000;
  const scrape = (t: ScrapeTarget, signal: AbortSignal) => scrapeWorker(t.url, signal, timeoutMs);

  async function readOnce(signal: AbortSignal): Promise<WorkerReading> {
    const targets = await o.targets();
    const samples = await Promise.all(
      targets.map(async (t) => {
        try {
          return [t.pod, await scrape(t, signal)] as const;
        } catch (err) {
          throw new MetricSourceError('worker-metrics', `scraping pod ${t.pod} failed: ${(err as Error).message}`, { cause: err });
        }
      }),
    );
    return readingOf(new Map(samples));
  }

  return {
    kind: 'worker-metrics',
    read(signal) {
      return abortable(readOnce(signal), signal, 'worker-metrics');
    },
    async close() {},
  };
}
