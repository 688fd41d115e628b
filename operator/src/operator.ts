/**
 * The operator as a library: informers for TaskQueues, WorkerPools and their Deployments, and
 * TaskSchedules, their controllers, leader election, and readiness. main.ts wraps it in a process; tests run it in-process.
 */
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { createController, type Controller, type Watch } from './k8s/controller.js';
import { createEventRecorder, type EventRecorder } from './k8s/events.js';
import { createInformer, keyOf, type Informer } from './k8s/informer.js';
import { resources, type KubeClient } from './k8s/kube-client.js';
import { createLeaderElector, type LeaderElector } from './k8s/leader-election.js';
import type { OperatorMetrics } from './metrics.js';
import { createTaskQueueReconciler } from './reconcilers/task-queue.js';
import { createTaskScheduleReconciler } from './reconcilers/task-schedule.js';
import { createWorkerPoolReconciler, type DecideReplicas } from './reconcilers/worker-pool.js';
import { LEGACY_FINALIZER, POOL_LABEL, type Deployment, type KubeObject, type TaskQueue, type TaskSchedule, type WorkerPool } from './types.js';

export interface OperatorOptions {
  kube: KubeClient;
  log: Logger;
  metrics: OperatorMetrics;
  /** Watch only this namespace; all namespaces when absent. */
  namespace?: string;
  /** Run controllers only while holding the Lease `leaseNamespace/leaseName`. */
  leaderElection?: {
    leaseNamespace: string;
    leaseName?: string;
    identity?: string;
    leaseDurationMs?: number;
    renewDeadlineMs?: number;
    retryPeriodMs?: number;
  };
  /** The autoscaler's hook (see reconcilers/worker-pool.ts); default keeps spec.replicas. */
  decideReplicas?: DecideReplicas;
  /**
   * The autoscaler's event trigger: given a function that reconciles a WorkerPool key now, it
   * calls it when work arrives between polls (Autoscaler.onWake).
   */
  onWorkerPoolWake?: (listener: (key: string) => void) => void;
  /** Concurrent reconciles per controller. */
  workers?: number;
  /** Timeout of a TaskQueue's broker check. */
  brokerCheckTimeoutMs?: number;
  /** Every object is reconciled at least this often. */
  resyncMs?: number;
  /** How soon a WorkerPool with missing replicas is looked at again (default WAITING_RECHECK_MS). */
  waitingRecheckMs?: number;
  /** Informer watchdog: restart a watch still open this long after its server-side timeout. */
  watchGraceMs?: number;
  /** Called when leadership is lost (main exits so the pod restarts clean). */
  onLeadershipLost?: () => void;
}

export interface Operator {
  /** Starts informers and (when leader) controllers; resolves once the caches are filled. */
  start(): Promise<void>;
  /** Stops controllers (waiting for running reconciles), releases the lease, stops informers. */
  stop(): Promise<void>;
  /** Caches synced: the /readyz answer. */
  readonly ready: boolean;
  readonly isLeader: boolean;
  readonly events: EventRecorder;
}

/** Enqueue on create/delete and when the spec (generation) or deletion state changed, not on status writes. */
function specChanged(obj: KubeObject, old?: KubeObject): boolean {
  if (!old) return true;
  return (
    obj.metadata.generation !== old.metadata.generation ||
    obj.metadata.deletionTimestamp !== old.metadata.deletionTimestamp ||
    (obj.metadata.finalizers ?? []).join() !== (old.metadata.finalizers ?? []).join()
  );
}

function credentialsOf(obj: KubeObject | undefined): string | undefined {
  return (obj as TaskQueue | undefined)?.status?.credentialsHash;
}

/** A TaskQueue's BrokerReachable status and reason: its pools carry a broker failure in Degraded. */
function brokerReachability(obj: KubeObject | undefined): string {
  const c = (obj as TaskQueue | undefined)?.status?.conditions?.find((x) => x.type === 'BrokerReachable');
  return c ? `${c.status}/${c.reason}` : '';
}

/** Builds the operator (informers, the TaskQueue and WorkerPool controllers, optional leader election); call start(). */
export function createOperator(o: OperatorOptions): Operator {
  const log = o.log.child({ component: 'operator' });
  const informerOpts = { kube: o.kube, log, namespace: o.namespace, watchGraceMs: o.watchGraceMs };
  const taskQueues = createInformer<TaskQueue>({ ...informerOpts, resource: resources.taskQueues });
  const workerPools = createInformer<WorkerPool>({ ...informerOpts, resource: resources.workerPools });
  const deployments = createInformer<Deployment>({ ...informerOpts, resource: resources.deployments, labelSelector: POOL_LABEL });
  const taskSchedules = createInformer<TaskSchedule>({ ...informerOpts, resource: resources.taskSchedules });
  const informers: Informer<KubeObject>[] = [taskQueues, workerPools, deployments, taskSchedules] as unknown as Informer<KubeObject>[];
  const events = createEventRecorder({ kube: o.kube, log });

  const poolsUsingQueue: Watch<KubeObject> = {
    informer: taskQueues as unknown as Informer<KubeObject>,
    map: (tq) =>
      workerPools
        .list(tq.metadata.namespace)
        .filter((p) => p.spec.queues.includes(tq.metadata.name))
        .map(keyOf),
  };
  const poolOfDeployment: Watch<KubeObject> = {
    informer: deployments as unknown as Informer<KubeObject>,
    map: (d) => {
      const owner = d.metadata.ownerReferences?.find((r) => r.controller && r.kind === 'WorkerPool');
      return owner ? [`${d.metadata.namespace}/${owner.name}`] : [];
    },
  };
  const common = { kube: o.kube, events, log, metrics: o.metrics, workers: o.workers, resyncMs: o.resyncMs, enqueueUpdate: specChanged };
  const workerPoolController = createController<WorkerPool>({
    ...common,
    informer: workerPools,
    // A TaskQueue's spec, or its Secret's credentials (status.credentialsHash), change the pods;
    // its broker reachability changes the pool's Degraded condition.
    watches: [
      {
        ...poolsUsingQueue,
        enqueueUpdate: (tq, old) => specChanged(tq, old) || credentialsOf(tq) !== credentialsOf(old) || brokerReachability(tq) !== brokerReachability(old),
      },
      poolOfDeployment,
    ],
    reconciler: createWorkerPoolReconciler({
      taskQueues,
      deployments,
      taskSchedules,
      metrics: o.metrics,
      decideReplicas: o.decideReplicas,
      resyncMs: o.resyncMs,
      waitingRecheckMs: o.waitingRecheckMs,
    }),
    legacyFinalizers: [LEGACY_FINALIZER],
  });
  const controllers: Controller[] = [
    createController<TaskQueue>({ ...common, informer: taskQueues, reconciler: createTaskQueueReconciler({ checkTimeoutMs: o.brokerCheckTimeoutMs }) }),
    workerPoolController,
    // Periodic tasks, sent by the leader only (controllers run under leader election).
    createController<TaskSchedule>({ ...common, informer: taskSchedules, reconciler: createTaskScheduleReconciler({ taskQueues, resyncMs: o.resyncMs }) }),
  ];
  // A wake from the event trigger is an ordinary add: de-duplicated with polls and informer events.
  o.onWorkerPoolWake?.((key) => workerPoolController.queue.add(key));

  const stopAll = new AbortController();
  let running: Promise<unknown> | null = null;
  let elector: LeaderElector | null = null;

  function runControllers(signal: AbortSignal): Promise<void[]> {
    o.metrics.leader.set(1);
    return Promise.all(controllers.map((c) => c.run(signal)));
  }

  return {
    events,
    get ready() {
      return informers.every((i) => i.synced);
    },
    get isLeader() {
      return elector ? elector.isLeader : running !== null;
    },
    async start() {
      for (const i of informers) i.start();
      await Promise.all(informers.map((i) => i.waitForSync(stopAll.signal)));
      log.info({ namespace: o.namespace ?? '(all)' }, 'caches synced');
      const le = o.leaderElection;
      if (!le) {
        running = runControllers(stopAll.signal);
        return;
      }
      elector = createLeaderElector({
        kube: o.kube,
        log,
        namespace: le.leaseNamespace,
        name: le.leaseName ?? 'celeriac-operator',
        identity: le.identity ?? `${hostname()}_${process.pid}`,
        leaseDurationMs: le.leaseDurationMs,
        renewDeadlineMs: le.renewDeadlineMs,
        retryPeriodMs: le.retryPeriodMs,
        onStartedLeading: (signal) => runControllers(signal),
        onStoppedLeading: (reason) => {
          o.metrics.leader.set(0);
          if (reason === 'lost') o.onLeadershipLost?.();
        },
      });
      running = elector.run(stopAll.signal);
    },
    async stop() {
      stopAll.abort();
      await running;
      await events.flush();
      await Promise.all(informers.map((i) => i.stop()));
      log.info('operator stopped');
    },
  };
}
