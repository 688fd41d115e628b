/**
 * The operator's Prometheus metrics, one registry per operator instance (two instances can run in
 * one process, as the leader-election tests do). Names follow controller-runtime and client-go's
 * workqueue so existing dashboards apply.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

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
    forgetWorkerPool(namespace, name) {
      desiredReplicas.remove({ namespace, workerpool: name });
      workerPoolReplicas.remove({ namespace, workerpool: name });
    },
  };
}
