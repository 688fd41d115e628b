/**
 * The operator's Prometheus metrics, one registry per operator instance (two instances can run in
 * one process, as the leader-election tests do). Names follow controller-runtime and client-go's
 * workqueue so existing dashboards apply.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { WorkerPoolAutoscalingStatus } from './types.js';

export interface OperatorMetrics {
  readonly registry: Registry;
  readonly reconcileTotal: Counter<'controller' | 'result'>;
  readonly reconcileDuration: Histogram<'controller'>;
  readonly workqueueDepth: Gauge<'name'>;
  readonly workqueueAdds: Counter<'name'>;
  readonly workqueueRetries: Counter<'name'>;
  /** Replicas the operator (or the autoscaler through it) wants for a pool. */
  readonly desiredReplicas: Gauge<'namespace' | 'workerpool'>;
  /** Replicas the pool's Deployment reports. */
  readonly workerPoolReplicas: Gauge<'namespace' | 'workerpool'>;
  readonly leader: Gauge;
  /**
   * Records an autoscaler poll of a pool: each metric it read (`backlog`, `inFlight`, extra
   * metrics by name) and the pods it is draining; null (no autoscaling) drops those series.
   */
  setAutoscaling(namespace: string, name: string, status: WorkerPoolAutoscalingStatus | null | undefined): void;
  /** Drops the per-pool series of a deleted WorkerPool. */
  forgetWorkerPool(namespace: string, name: string): void;
}

/** Creates the operator's metrics in their own registry (`defaultMetrics` adds process metrics). */
export function createOperatorMetrics(o: { registry?: Registry; defaultMetrics?: boolean } = {}): OperatorMetrics {
  const registry = o.registry ?? new Registry();
  if (o.defaultMetrics) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const desiredReplicas = new Gauge({
    name: 'celeriac_autoscaler_desired_replicas',
    help: 'Replicas the operator wants for a WorkerPool (autoscaler decision, or spec.replicas).',
    labelNames: ['namespace', 'workerpool'] as const,
    registers,
  });
  const workerPoolReplicas = new Gauge({
    name: 'celeriac_operator_workerpool_replicas',
    help: "Replicas reported by a WorkerPool's Deployment.",
    labelNames: ['namespace', 'workerpool'] as const,
    registers,
  });
  const metricValue = new Gauge({
    name: 'celeriac_autoscaler_metric_value',
    help: "Each autoscaling metric of a WorkerPool at the autoscaler's last poll: backlog (broker), inFlight (workers), extra metrics by name.",
    labelNames: ['namespace', 'workerpool', 'metric'] as const,
    registers,
  });
  const drainingPods = new Gauge({
    name: 'celeriac_autoscaler_draining_pods',
    help: 'Pods of a WorkerPool the autoscaler has told to drain before their removal.',
    labelNames: ['namespace', 'workerpool'] as const,
    registers,
  });
  /** Metric names last set per pool, so a metric that stops being read loses its series. */
  const metricNames = new Map<string, readonly string[]>();
  const setAutoscaling = (namespace: string, workerpool: string, status: WorkerPoolAutoscalingStatus | null | undefined) => {
    const key = `${namespace}/${workerpool}`;
    const metrics = status?.metrics ?? [];
    for (const old of metricNames.get(key) ?? []) if (!metrics.some((m) => m.name === old)) metricValue.remove({ namespace, workerpool, metric: old });
    for (const m of metrics) metricValue.set({ namespace, workerpool, metric: m.name }, m.value);
    metricNames.set(
      key,
      metrics.map((m) => m.name),
    );
    if (status) drainingPods.set({ namespace, workerpool }, status.draining?.length ?? 0);
    else drainingPods.remove({ namespace, workerpool });
  };
  return {
    registry,
    reconcileTotal: new Counter({
      name: 'celeriac_operator_reconcile_total',
      help: 'Reconciles by controller and result (success, requeue_after, error, terminal).',
      labelNames: ['controller', 'result'] as const,
      registers,
    }),
    reconcileDuration: new Histogram({
      name: 'celeriac_operator_reconcile_duration_seconds',
      help: 'Time per reconcile.',
      labelNames: ['controller'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    workqueueDepth: new Gauge({ name: 'workqueue_depth', help: 'Keys waiting in the work queue.', labelNames: ['name'] as const, registers }),
    workqueueAdds: new Counter({ name: 'workqueue_adds_total', help: 'Keys added to the work queue.', labelNames: ['name'] as const, registers }),
    workqueueRetries: new Counter({
      name: 'workqueue_retries_total',
      help: 'Rate-limited re-adds (retries after errors).',
      labelNames: ['name'] as const,
      registers,
    }),
    desiredReplicas,
    workerPoolReplicas,
    leader: new Gauge({ name: 'celeriac_operator_leader', help: '1 while this instance is the leader (or runs without leader election).', registers }),
    setAutoscaling,
    forgetWorkerPool(namespace, name) {
      setAutoscaling(namespace, name, null);
      metricNames.delete(`${namespace}/${name}`);
      desiredReplicas.remove({ namespace, workerpool: name });
      workerPoolReplicas.remove({ namespace, workerpool: name });
    },
  };
}
