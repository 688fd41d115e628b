/**
 * The autoscaler inside the operator: the WorkerPool reconciler's `decideReplicas` hook.
 *
 * Per pool and poll, three named steps:
 * - `observe`: read the broker backlog (every queue of the pool, every priority list), the
 *   workers' in-flight tasks and counters (scraped from the pool's ready pods) and any Prometheus
 *   metrics;
 * - `decide()` (decide.ts, pure): the replica count;
 * - `act`: carry it out drain-first, planned by scale-plan.ts (pure) and executed through
 *   worker-client.ts (/drain, /resume) and a pod-deletion-cost patch:
 * 1. pods still starting go first (the ReplicaSet deletes them before ready ones);
 * 2. ready pods chosen as victims (idle first, then fewest tasks) are told to drain (GET /drain:
 *    stop consuming, give back prefetched messages, finish running tasks);
 * 3. a drained pod that reports no task gets `controller.kubernetes.io/pod-deletion-cost: -1000`
 *    and replicas drop by one, so the ReplicaSet removes exactly that pod.
 * Pools of Python Celery workers (spec.celery) read in-flight work and drain through Celery's own
 * remote control instead (celery-pool.ts: inspect, cancel_consumer, add_consumer); the rest is the same.
 * Replicas never drop while a pod that is not a victim is still starting (the ReplicaSet would
 * delete that one instead). Between polls, the event trigger (work-trigger.ts) watches each
 * pool's backlog and wakes this hook through `onWake` when work arrives that the pool cannot
 * absorb; the measured pod start (pod-start.ts) feeds `decide()` and the schedule lead. State (rate EWMAs, HPA history, drains) lives in memory per pool;
 * after a restart the first polls rebuild it, erring on the side of more replicas.
 */
import type { Logger } from 'pino';
import { rfc3339 } from '../k8s/conditions.js';
import { resources, type KubeClient } from '../k8s/kube-client.js';
import { resolveBrokerUrl } from '../reconcilers/broker-check.js';
import { DEFAULTS } from '../reconcilers/worker-deployment.js';
import { fixedReplicas, type DecideReplicas, type DecideReplicasInput, type ReplicaDecision } from '../reconcilers/worker-pool.js';
import { POOL_LABEL, type KubeObject, type TaskQueue, type WorkerPool } from '../types.js';
import { createAmqpQueueSource } from '../metric-sources/amqp-queue.js';
import { createPrometheusSource } from '../metric-sources/prometheus.js';
import { createRedisListSource } from '../metric-sources/redis-list.js';
import {
  createWorkerMetricsSource,
  type ScrapeTarget,
  scrapeWorker,
  type WorkerMetricsSource,
  dueWithin,
  type WorkerReading,
  type WorkerSample,
} from '../metric-sources/worker-metrics.js';
import { MetricSourceError, type MetricSource } from '../metric-sources/source.js';
import { decide, reactionMs, type AutoscalerState, type ExtraMetric, type WorkObservation } from './decide.js';
import { measuredPodStartMs } from './pod-start.js';
import { createWorkTrigger, type WorkTrigger } from './work-trigger.js';
import { drainsToCancel, planScale, type PodView } from './scale-plan.js';
import { createWorkerClient, type WorkerClient } from './worker-client.js';
import { connectCeleryPool, type CeleryPoolConnection } from './celery-pool.js';
import { scheduleLeadMetric, untilLeadWindow } from './schedule-lead.js';
import { InvalidAutoscalingError, resolvePolicy, type AutoscalerPolicy, type AutoscalingSpec } from './policy.js';

/** The pod fields the autoscaler reads. */
interface Pod extends KubeObject {
  spec?: { containers?: { name: string; ports?: { name?: string; containerPort: number }[] }[] };
  status?: {
    phase?: string;
    podIP?: string;
    conditions?: { type: string; status: string; lastTransitionTime?: string }[];
    containerStatuses?: { name: string; started?: boolean }[];
  };
}

interface PoolEntry {
  key: string;
  /** What the sources were built from; a change rebuilds them. */
  fingerprint: string;
  broker: MetricSource | null;
  brokerError: string | null;
  workers: WorkerMetricsSource;
  /** spec.celery pools: remote control instead of /metrics and /drain. */
  celery: CeleryPoolConnection | null;
  /** Each pod's sample from the last good worker read (a failed read keeps the previous one). */
  lastByPod: ReadonlyMap<string, WorkerSample>;
  extra: { name: string; source: MetricSource; target: number; activation: number }[];
  state: AutoscalerState | null;
  /** The event trigger's backlog watch (null: polled only, or no broker). */
  trigger: WorkTrigger | null;
  /** Pods told to drain, by name. */
  draining: Set<string>;
  targets: ScrapeTarget[];
}

export interface AutoscalerOptions {
  kube: KubeClient;
  log: Logger;
  /** Timeout of one broker read, scrape or drain request. */
  timeoutMs?: number;
  /** Period of the event trigger's backlog read (work-trigger.ts). */
  watchIntervalMs?: number;
}

export interface Autoscaler {
  readonly decideReplicas: DecideReplicas;
  /**
   * Where the event trigger sends a pool's key (`namespace/name`) to reconcile it now; the
   * operator points it at the WorkerPool controller's queue. Without a listener nothing wakes.
   */
  onWake(listener: (key: string) => void): void;
  /** Closes every metric source. */
  close(): Promise<void>;
}

const DELETION_COST = 'controller.kubernetes.io/pod-deletion-cost';

function isReady(p: Pod): boolean {
  return p.status?.phase === 'Running' && (p.status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
}

/** Rounded to `digits` decimals (status values, not arithmetic). */
function rounded(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function load(s: WorkerSample): number {
  return s.active + s.reserved + s.scheduled;
}

/** The in-flight source of a Celery pool whose broker could not be resolved: every read fails, saying why. */
function unreadableCeleryPool(why: string | null): WorkerMetricsSource {
  return {
    kind: 'celery-workers',
    read: async () => {
      throw new MetricSourceError('celery-workers', `no remote control without the broker: ${why ?? 'unknown error'}`);
    },
    close: async () => {},
  };
}

export function createAutoscaler(o: AutoscalerOptions): Autoscaler {
  const pools = new Map<string, PoolEntry>();
  const log = o.log.child({ component: 'autoscaler' });
  let wakeListener: ((key: string) => void) | null = null;

  async function closeEntry(e: PoolEntry): Promise<void> {
    pools.delete(e.key);
    await Promise.all([e.broker?.close(), e.trigger?.close(), e.workers.close(), e.celery?.close(), ...e.extra.map((x) => x.source.close())]);
  }

  async function entryFor(pool: WorkerPool, queues: readonly TaskQueue[], input: DecideReplicasInput, policy: AutoscalerPolicy): Promise<PoolEntry> {
    const key = `${pool.metadata.namespace ?? 'default'}/${pool.metadata.name}`;
    const fingerprint = JSON.stringify([
      queues.map((q) => [q.metadata.name, q.metadata.resourceVersion]),
      pool.spec.autoscaling?.metrics ?? [],
      policy.eventDriven,
      pool.spec.celery ?? null,
    ]);
    const old = pools.get(key);
    if (old && old.fingerprint === fingerprint && old.broker) return old;
    if (old) await closeEntry(old);
    let broker: MetricSource | null = null;
    let brokerError: string | null = null;
    let trigger: WorkTrigger | null = null;
    let celery: CeleryPoolConnection | null = null;
    const names = queues.map((q) => q.spec.queue.name);
    try {
      const first = queues[0]!;
      const url = (await resolveBrokerUrl(input.ctx.kube, first)).toString();
      const backlogSource = () =>
        first.spec.broker.type === 'redis'
          ? createRedisListSource({ url, queues: names, timeoutMs: o.timeoutMs })
          : createAmqpQueueSource({ url, queues: names, timeoutMs: o.timeoutMs });
      broker = backlogSource();
      if (policy.eventDriven) {
        trigger = createWorkTrigger({
          source: backlogSource(),
          wake: () => wakeListener?.(key),
          log: log.child({ namespace: pool.metadata.namespace, name: pool.metadata.name }),
          watchIntervalMs: o.watchIntervalMs,
          timeoutMs: o.timeoutMs,
        });
      }
      if (pool.spec.celery) {
        celery = connectCeleryPool({
          brokerUrl: url,
          queues: names,
          celery: pool.spec.celery,
          targets: async () => entry.targets,
          isDraining: (pod) => entry.draining.has(pod),
          log,
          timeoutMs: o.timeoutMs,
        });
      }
    } catch (err) {
      brokerError = (err as Error).message;
    }
    const entry: PoolEntry = {
      key,
      fingerprint,
      broker,
      brokerError,
      celery,
      workers:
        celery?.workers ??
        (pool.spec.celery ? unreadableCeleryPool(brokerError) : createWorkerMetricsSource({ targets: async () => entry.targets, timeoutMs: o.timeoutMs })),
      extra: (pool.spec.autoscaling?.metrics ?? []).flatMap((m, i) =>
        m.type === 'prometheus' && m.prometheus
          ? [
              {
                name: `prometheus[${i}]`,
                source: createPrometheusSource({ ...m.prometheus, timeoutMs: o.timeoutMs }),
                target: m.prometheus.targetAverageValue,
                activation: m.prometheus.activationValue ?? 0,
              },
            ]
          : [],
      ),
      lastByPod: new Map(),
      state: old?.state ?? null,
      trigger,
      draining: old?.draining ?? new Set(),
      targets: [],
    };
    pools.set(key, entry);
    return entry;
  }

  async function readOrNull<T>(source: { read(signal: AbortSignal): Promise<T> } | null, signal: AbortSignal, problems: string[]): Promise<T | null> {
    if (!source) return null;
    try {
      return await source.read(signal);
    } catch (err) {
      problems.push((err as Error).message);
      return null;
    }
  }

  async function decideReplicas(input: DecideReplicasInput): Promise<ReplicaDecision> {
    const { pool, queues, deployment, ctx } = input;
    const key = `${pool.metadata.namespace ?? 'default'}/${pool.metadata.name}`;
    const spec = pool.spec.autoscaling;
    if (!spec) {
      const e = pools.get(key);
      if (e) await closeEntry(e);
      return fixedReplicas(input);
    }
    const concurrency = pool.spec.concurrency ?? DEFAULTS.concurrency;
    const current = deployment?.spec?.replicas ?? pool.status?.desiredReplicas ?? spec.minReplicas ?? 1;
    let policy: AutoscalerPolicy;
    try {
      policy = resolvePolicy(spec as AutoscalingSpec, concurrency);
    } catch (err) {
      if (!(err instanceof InvalidAutoscalingError)) throw err;
      return {
        replicas: Math.min(spec.maxReplicas, Math.max(spec.minReplicas ?? 1, current)),
        active: false,
        reason: 'InvalidAutoscaling',
        message: err.message,
      };
    }
    const entry = await entryFor(pool, queues, input, policy);
    const ns = pool.metadata.namespace ?? 'default';
    const podList = await ctx.kube.list<Pod>(resources.pods, { namespace: ns, labelSelector: `${POOL_LABEL}=${pool.metadata.name}` });
    const pods = podList.items.filter((p) => !p.metadata.deletionTimestamp);
    const port = pool.spec.metricsPort ?? DEFAULTS.metricsPort;
    for (const name of entry.draining) if (!pods.some((p) => p.metadata.name === name)) entry.draining.delete(name);
    // Celery workers have no /metrics and stay Ready while drained (their probe is inspect ping).
    if (!pool.spec.celery) await adoptDrains(entry, pods, port, ctx.log);
    // Ready pods, and the pods we drain: their readiness (/readyz) fails once draining, but only
    // their metrics tell when they are idle and can go (and their running tasks are still work).
    entry.targets = pods
      .filter((p) => (isReady(p) || entry.draining.has(p.metadata.name)) && p.status?.podIP)
      .map((p) => ({ pod: p.metadata.name, url: `http://${p.status!.podIP}:${port}/metrics` }));

    const observed = await observe(entry, policy);
    const { problems } = observed;
    const now = ctx.now().getTime();
    const podStartMs = measuredPodStartMs(pods);
    // Known scheduled runs are led by scheduleLeadSeconds, else by the measured horizon (issue 19).
    const leadSeconds = spec.scheduleLeadSeconds ?? Math.ceil(reactionMs(policy, podStartMs ?? undefined) / 1000);
    const lead = scheduleLeadMetric(input.nextScheduledRunMs, leadSeconds, now);
    // ETA tasks the workers hold and that come due within the horizon count as work now (issue 19).
    const dueSoon = dueWithin(observed.scheduledDue, reactionMs(policy, podStartMs ?? undefined) / 1000);
    const work: WorkObservation = { ...observed.work, dueSoon, ...(lead ? { extra: [...(observed.work.extra ?? []), lead] } : {}) };
    const committed = Math.max(0, current - entry.draining.size);
    const d = decide(
      entry.state,
      { specReplicas: committed, readyReplicas: deployment?.status?.readyReplicas, podStartMs: podStartMs ?? undefined, work },
      policy,
      now,
    );
    entry.state = d.state;
    if (problems.length > 0) ctx.log.warn({ problems }, 'autoscaler metrics could not be read');

    const client = entry.celery?.client ?? createWorkerClient({ port, timeoutMs: o.timeoutMs });
    const replicas = await act(ctx.kube, ns, entry, pods, d.replicas, committed, current, client, ctx.log);
    entry.trigger?.decided({
      backlog: work.backlog,
      slots: Math.max(0, replicas - entry.draining.size) * concurrency,
      activationThreshold: policy.activationThreshold,
      tolerance: policy.behavior.scaleUp.tolerance,
    });
    const rates = d.state.rates;
    const scaling = d.conditions.find((c) => c.type === 'ScalingActive');
    const fallback = d.conditions.find((c) => c.type === 'Fallback');
    const lastActive = d.state.lastActiveAt;
    return {
      replicas,
      active: scaling?.status ?? true,
      reason: scaling?.reason ?? d.reason,
      // The decision's own sentence: what proposed the count and what held or limited it.
      message: [d.message, ...problems].join('; '),
      // Every field, every time: an empty value says "none now" (issue 21: a merged status kept
      // `fallback: true` after the broker recovered and listed deleted pods as draining).
      autoscalingStatus: {
        metrics: d.metrics.map((m) => ({ name: m.name, value: m.value })),
        desiredReplicas: d.replicas,
        reason: d.reason,
        message: d.message,
        winner: d.winner,
        lastActiveTime: lastActive !== null ? rfc3339(new Date(lastActive)) : null,
        failures: d.state.failures,
        fallback: fallback !== undefined,
        draining: [...entry.draining].sort(),
        scaleDownWindowSeconds: Math.round(d.scaleDownWindowMs / 1000),
        // What feeds the decision (issue 19): null until measured.
        podStartSeconds: podStartMs !== null ? rounded(podStartMs / 1000) : null,
        serviceTimeSeconds: rates && rates.serviceSamples > 0 ? rounded(rates.serviceTime, 3) : null,
        eventDriven: entry.trigger !== null,
        ...(entry.celery ? { celeryEvents: entry.celery.workers.eventsState() } : {}),
      },
      // Look again when the lead window of the next scheduled run opens, if that comes first.
      requeueAfterMs: Math.min(policy.pollingIntervalMs, untilLeadWindow(input.nextScheduledRunMs, leadSeconds, now) ?? Infinity),
    };
  }

  /**
   * Pods that report draining although this autoscaler did not drain them: a previous leader told
   * them to drain and lost its lease (or the operator restarted) before it removed them. Draining
   * turned them NotReady (/readyz), so they are neither scraped nor counted as serving, and they
   * look like pods still starting, which holds every scale-down: they would stay forever. Their
   * own metrics say they drain; adopted, they are removed once idle, or resumed on a scale-up.
   * Only NotReady pods whose worker has started (its startup probe passed) are asked.
   */
  async function adoptDrains(entry: PoolEntry, pods: readonly Pod[], port: number, log: Logger): Promise<void> {
    const unknown = pods.filter(
      (p) => !isReady(p) && !entry.draining.has(p.metadata.name) && p.status?.podIP && (p.status.containerStatuses ?? []).some((c) => c.started === true),
    );
    const signal = AbortSignal.timeout(o.timeoutMs ?? 3000);
    await Promise.all(
      unknown.map(async (p) => {
        try {
          const sample = await scrapeWorker(`http://${p.status!.podIP}:${port}/metrics`, signal, o.timeoutMs ?? 3000);
          if (!sample.draining) return;
          entry.draining.add(p.metadata.name);
          log.info({ pod: p.metadata.name }, 'adopted a pod that drains (drained before this operator took over)');
        } catch (err) {
          // A NotReady pod that does not answer is not known to drain: its own probes deal with
          // it, and the next poll asks again. The scale decision goes on without it.
          log.warn({ err, pod: p.metadata.name }, 'a NotReady worker pod did not answer /metrics: not known to be draining');
        }
      }),
    );
  }

  /** Step 1: every source of the pool, read at once; a failed read is null in `work` and a line in `problems`. */
  async function observe(
    entry: PoolEntry,
    policy: AutoscalerPolicy,
  ): Promise<{ work: WorkObservation; scheduledDue: ReadonlyMap<number, number>; problems: string[] }> {
    const problems: string[] = entry.brokerError ? [entry.brokerError] : [];
    const signal = AbortSignal.timeout(Math.max(1000, policy.pollingIntervalMs));
    const [backlog, workers, ...extraValues] = await Promise.all([
      readOrNull(entry.broker, signal, problems),
      readOrNull<WorkerReading>(entry.workers, signal, problems),
      ...entry.extra.map((x) => readOrNull(x.source, signal, problems)),
    ]);
    if (workers) entry.lastByPod = workers.byPod;
    const extra: ExtraMetric[] = entry.extra.map((x, i) => ({
      name: x.name,
      value: extraValues[i]?.value ?? null,
      targetAverageValue: x.target,
      activationValue: x.activation,
    }));
    return {
      work: {
        backlog: backlog?.value ?? null,
        reserved: workers?.reserved ?? null,
        active: workers?.active ?? null,
        scheduled: workers?.scheduled ?? null,
        drainingActive: workers?.drainingActive,
        receivedTotal: workers?.received ?? null,
        completedTotal: workers?.completed ?? null,
        serviceSecondsTotal: workers?.serviceSeconds ?? null,
        extra,
      },
      scheduledDue: workers?.scheduledDue ?? new Map(),
      problems,
    };
  }

  /** Step 3: carries the decided count out drain-first (scale-plan.ts); returns the replica count to write. */
  async function act(
    kube: KubeClient,
    ns: string,
    e: PoolEntry,
    pods: Pod[],
    target: number,
    committed: number,
    current: number,
    workers: WorkerClient,
    plog: Logger,
  ): Promise<number> {
    const ipOf = (name: string) => pods.find((p) => p.metadata.name === name)?.status?.podIP ?? null;
    const cancel = drainsToCancel(
      [...e.draining].map((name) => ({ name, ip: ipOf(name) })),
      target,
      committed,
    );
    let resumed = 0;
    for (const { name, ip } of cancel.candidates) {
      if (resumed >= cancel.wanted) break;
      try {
        await workers.resume({ name, ip });
        e.draining.delete(name);
        resumed++;
        plog.info({ pod: name }, 'drain cancelled: the pod consumes again');
      } catch (err) {
        // It stays draining and is removed when idle; a new pod takes its place.
        plog.warn({ err, pod: name }, 'resume request failed');
      }
    }
    const views: PodView[] = pods.map((p) => {
      const sample = e.lastByPod.get(p.metadata.name);
      return { name: p.metadata.name, ready: isReady(p), draining: e.draining.has(p.metadata.name), load: sample ? load(sample) : null };
    });
    const plan = planScale(views, target, committed + resumed, current);
    for (const name of plan.remove) {
      await kube.patch(resources.pods, ns, name, { metadata: { annotations: { [DELETION_COST]: '-1000' } } });
      e.draining.delete(name);
    }
    if (plan.remove.length > 0) plog.info({ pods: plan.remove }, 'drained pods removed');
    for (const name of plan.drain) {
      const ip = ipOf(name);
      if (!ip) {
        plog.warn({ pod: name }, 'cannot drain a pod without an IP; it stays a full member');
        continue;
      }
      try {
        await workers.drain({ name, ip });
        e.draining.add(name);
      } catch (err) {
        // The pod stays a full member; the next poll picks a victim again.
        plog.warn({ err, pod: name }, 'drain request failed');
      }
    }
    return plan.replicas;
  }

  return {
    decideReplicas,
    onWake(listener) {
      wakeListener = listener;
    },
    async close() {
      await Promise.all([...pools.values()].map(closeEntry));
    },
  };
}
