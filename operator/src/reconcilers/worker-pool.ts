/**
 * WorkerPool reconciler: resolves the pool's TaskQueues, decides the replica count (through the
 * injected `decideReplicas`, which the autoscaler replaces; the default keeps spec.replicas), applies
 * the Deployment and PodDisruptionBudget by server-side apply, and writes status (replicas from the
 * Deployment, desiredReplicas, selector for the scale subresource, conditions Ready / Progressing /
 * ScalingActive / Degraded). Once a pool is gone, cleanup deletes what it owned (no finalizer).
 */
import { apply, isControlledBy, patchStatusIfChanged } from '../k8s/apply.js';
import { findCondition, rfc3339, setCondition, type ConditionInput } from '../k8s/conditions.js';
import type { Informer } from '../k8s/informer.js';
import { resources } from '../k8s/kube-client.js';
import { Action, TerminalError, type ReconcileContext, type Reconciler } from '../k8s/reconciler.js';
import { KubeApiError } from '../errors.js';
import type { OperatorMetrics } from '../metrics.js';
import {
  type Condition,
  type Deployment,
  type KubeObject,
  type TaskQueue,
  type TaskSchedule,
  type WorkerPool,
  type WorkerPoolAutoscalingStatus,
  type WorkerPoolStatus,
  POOL_LABEL,
} from '../types.js';
import { credentialsHash } from './broker-check.js';
import { DEFAULTS, poolSelectorString, sameBroker, WORKER_CONTAINER, workerDeployment, workerDisruptionBudget } from './worker-deployment.js';

/** What `decideReplicas` returns. */
export interface ReplicaDecision {
  replicas: number;
  /** ScalingActive condition: True when an autoscaler is steering the count. */
  active: boolean;
  /**
   * CamelCase reason and a sentence, for the ScalingActive condition. The sentence says why the
   * count is what it is, so the scale Event carries it too ("Scaled Deployment shop from 5 to 2
   * replicas: work proposes 2 replicas ...").
   */
  reason: string;
  message: string;
  /** Written to status.autoscaling (null clears it). */
  autoscalingStatus?: WorkerPoolAutoscalingStatus | null;
  /** Look again after this long (the autoscaler's polling interval). */
  requeueAfterMs?: number;
}

export interface DecideReplicasInput {
  pool: WorkerPool;
  queues: readonly TaskQueue[];
  /** Epoch ms of the next run of a TaskSchedule on one of the pool's queues (null: none known). */
  nextScheduledRunMs?: number | null;
  /** The pool's Deployment as last seen, if it exists. */
  deployment: Deployment | undefined;
  ctx: ReconcileContext;
}

/**
 * The hook the autoscaler plugs into. It is called on every reconcile of a pool that is not
 * paused; the reconciler writes what it returns to the Deployment, so nothing else scales it.
 */
export type DecideReplicas = (input: DecideReplicasInput) => Promise<ReplicaDecision>;

/** Default: spec.replicas; with spec.autoscaling but no autoscaler, keep the count within [min, max]. */
export const fixedReplicas: DecideReplicas = async ({ pool, deployment }) => {
  const a = pool.spec.autoscaling;
  if (!a) {
    return {
      replicas: pool.spec.replicas ?? DEFAULTS.replicas,
      active: false,
      reason: 'FixedReplicas',
      message: 'spec.autoscaling is not set: replicas follow spec.replicas',
      autoscalingStatus: null,
    };
  }
  const min = a.minReplicas ?? 1;
  const current = deployment?.spec?.replicas ?? min;
  return {
    replicas: Math.min(a.maxReplicas, Math.max(min, current)),
    active: false,
    reason: 'NoAutoscaler',
    message: 'spec.autoscaling is set but no autoscaler is configured in this operator; replicas are kept within [minReplicas, maxReplicas]',
  };
};

export interface WorkerPoolReconcilerOptions {
  taskQueues: Informer<TaskQueue>;
  deployments: Informer<Deployment>;
  metrics: OperatorMetrics;
  decideReplicas?: DecideReplicas;
  /** TaskSchedules, for the autoscaler's lead time before a scheduled run (scheduleLeadSeconds). */
  taskSchedules?: Informer<TaskSchedule>;
  /** Requeue period of a pool without autoscaling. */
  resyncMs?: number;
  /** How soon a pool with missing replicas is looked at again (default WAITING_RECHECK_MS). */
  waitingRecheckMs?: number;
}

type StatusPatch = { [K in keyof WorkerPoolStatus]?: WorkerPoolStatus[K] | null };

export function createWorkerPoolReconciler(o: WorkerPoolReconcilerOptions): Reconciler<WorkerPool> {
  const decide = o.decideReplicas ?? fixedReplicas;
  const resyncMs = o.resyncMs ?? 5 * 60_000;
  const waitingRecheckMs = o.waitingRecheckMs ?? WAITING_RECHECK_MS;

  /** The earliest status.nextScheduleTime of the TaskSchedules sending to these queues. */
  function nextScheduledRun(ns: string, queueNames: readonly string[]): number | null {
    const times = (o.taskSchedules?.list(ns) ?? [])
      .filter((t) => queueNames.includes(t.spec.taskQueueRef.name) && !t.spec.suspend && t.status?.nextScheduleTime)
      .map((t) => Date.parse(t.status!.nextScheduleTime!));
    return times.length > 0 ? Math.min(...times) : null;
  }

  /** Records a problem that blocks the pool: Ready=False and Degraded=True with the same reason. */
  async function degraded(pool: WorkerPool, ctx: ReconcileContext, reason: string, message: string): Promise<Action> {
    const now = ctx.now();
    const generation = pool.metadata.generation;
    let conditions: Condition[] = setCondition(
      pool.status?.conditions,
      { type: 'Ready', status: 'False', reason, message, observedGeneration: generation },
      now,
    );
    conditions = setCondition(conditions, { type: 'Degraded', status: 'True', reason, message, observedGeneration: generation }, now);
    const changed = await patchStatusIfChanged(ctx.kube, resources.workerPools, pool, {
      observedGeneration: generation,
      selector: poolSelectorString(pool),
      conditions,
    });
    if (changed) ctx.events.record(pool, 'Warning', reason, message);
    ctx.log.warn({ reason }, message);
    return Action.requeue(resyncMs);
  }

  return {
    name: 'workerpool',

    async reconcile(pool, ctx) {
      const ns = pool.metadata.namespace ?? 'default';
      const name = pool.metadata.name;
      const queues: TaskQueue[] = [];
      const missing: string[] = [];
      for (const q of pool.spec.queues) {
        const tq = o.taskQueues.get(ns, q);
        if (tq) queues.push(tq);
        else missing.push(q);
      }
      if (missing.length > 0) {
        return degraded(
          pool,
          ctx,
          'TaskQueueNotFound',
          `TaskQueue ${missing.map((m) => `"${m}"`).join(', ')} not found in namespace "${ns}"; create it or fix spec.queues`,
        );
      }
      const first = queues[0] as TaskQueue;
      const other = queues.find((q) => !sameBroker(q.spec.broker, first.spec.broker));
      if (other) {
        const message = `TaskQueues "${first.metadata.name}" and "${other.metadata.name}" use different brokers; a worker has one broker, so split them into two WorkerPools`;
        await degraded(pool, ctx, 'BrokerMismatch', message);
        // The spec cannot work: no retries until the pool or one of its TaskQueues changes.
        throw new TerminalError('BrokerMismatch', message);
      }

      const existing = o.deployments.get(ns, name) ?? (await ctx.kube.get<Deployment>(resources.deployments, ns, name)) ?? undefined;
      if (existing && !isControlledBy(existing, pool)) {
        return degraded(
          pool,
          ctx,
          'DeploymentConflict',
          `Deployment "${name}" exists and is not managed by this WorkerPool; delete it or rename the WorkerPool`,
        );
      }

      let decision: ReplicaDecision;
      if (pool.spec.paused) {
        const fallback = (await fixedReplicas({ pool, queues, deployment: existing, ctx })).replicas;
        decision = {
          replicas: existing?.spec?.replicas ?? fallback,
          active: false,
          reason: 'Paused',
          message: 'spec.paused is true: replicas are frozen',
        };
      } else {
        decision = await decide({ pool, queues, deployment: existing, ctx, nextScheduledRunMs: nextScheduledRun(ns, pool.spec.queues) });
      }

      let applied: Deployment;
      try {
        const hash = await credentialsHash(ctx.kube, first);
        applied = await apply<Deployment>(
          ctx.kube,
          resources.deployments,
          workerDeployment({ pool, queues, replicas: decision.replicas, credentialsHash: hash }),
        );
        const pdb = workerDisruptionBudget(pool);
        if (pdb) await apply(ctx.kube, resources.podDisruptionBudgets, pdb);
        else await deleteOwned(ctx, resources.podDisruptionBudgets, pool);
      } catch (err) {
        // Say it in status (e.g. RBAC forbids the write), then let the controller retry with backoff.
        if (err instanceof KubeApiError) {
          await degraded(pool, ctx, 'ApplyFailed', `could not apply the Deployment or PodDisruptionBudget: ${err.message}`).catch((e: unknown) =>
            ctx.log.warn({ err: e }, 'could not write the ApplyFailed condition either'),
          );
        }
        throw err;
      }
      const previousReplicas = existing?.spec?.replicas;
      if (!existing) {
        ctx.events.record(pool, 'Normal', 'CreatedDeployment', `Created Deployment ${name} with ${decision.replicas} replicas`);
      } else if (previousReplicas !== decision.replicas) {
        ctx.events.record(
          pool,
          'Normal',
          'ScaledDeployment',
          `Scaled Deployment ${name} from ${previousReplicas ?? 0} to ${decision.replicas} replicas: ${decision.message}`,
        );
        ctx.log.info({ from: previousReplicas, to: decision.replicas, reason: decision.reason }, 'scaled');
      }

      const waiting = await writeStatus(pool, applied, decision, brokerProblem(queues), ctx);
      o.metrics.desiredReplicas.set({ namespace: ns, workerpool: name }, decision.replicas);
      o.metrics.workerPoolReplicas.set({ namespace: ns, workerpool: name }, applied.status?.replicas ?? 0);
      o.metrics.setAutoscaling(ns, name, decision.autoscalingStatus);
      const poll = pool.spec.autoscaling ? (pool.spec.autoscaling.pollingIntervalSeconds ?? 5) * 1000 : resyncMs;
      // Replicas missing: look again soon, since a worker that crash-loops changes no Deployment
      // field that would wake this reconciler (the Ready condition then says WorkerFailing).
      return Action.requeue(Math.min(decision.requeueAfterMs ?? poll, waiting ? waitingRecheckMs : Infinity));
    },

    async cleanup({ namespace, name }, ctx) {
      // The garbage collector does this through the owner references; doing it here as well makes
      // the deletion complete where none runs and lets us say so in the log.
      const ns = namespace ?? 'default';
      const deleted = [await deleteOrphan(ctx, resources.deployments, ns, name), await deleteOrphan(ctx, resources.podDisruptionBudgets, ns, name)];
      o.metrics.forgetWorkerPool(ns, name);
      if (deleted.some(Boolean)) ctx.log.info('WorkerPool deleted: deleted its Deployment and PodDisruptionBudget');
    },
  };

  /** Writes the pool's status; returns true while replicas are missing (not all wanted are ready). */
  async function writeStatus(pool: WorkerPool, dep: Deployment, d: ReplicaDecision, broker: BrokerProblem | null, ctx: ReconcileContext): Promise<boolean> {
    const now = ctx.now();
    const generation = pool.metadata.generation;
    const prev = pool.status ?? {};
    const replicas = dep.status?.replicas ?? 0;
    const ready = dep.status?.readyReplicas ?? 0;
    const updated = dep.status?.updatedReplicas ?? 0;
    const rolledOut = (dep.status?.observedGeneration ?? 0) >= (dep.metadata.generation ?? 0) && updated >= d.replicas && replicas === d.replicas;
    const c = (input: ConditionInput, list: Condition[] | undefined) => setCondition(list, { ...input, observedGeneration: generation }, now);
    let conditions = prev.conditions;
    // Replicas missing: a worker that keeps exiting (a bad image, a tasks module that is not there,
    // a broker that refuses it) says why, instead of an endless "waiting".
    const failing = d.replicas > 0 && ready < d.replicas ? await failingWorker(pool, ctx) : null;
    conditions = c(
      d.replicas === 0
        ? { type: 'Ready', status: 'True', reason: 'ScaledToZero', message: 'no replicas wanted' }
        : ready >= d.replicas
          ? { type: 'Ready', status: 'True', reason: 'ReplicasReady', message: `${ready}/${d.replicas} replicas ready` }
          : failing
            ? { type: 'Ready', status: 'False', reason: 'WorkerFailing', message: `${ready}/${d.replicas} replicas ready; ${failing}` }
            : { type: 'Ready', status: 'False', reason: 'WaitingForReplicas', message: `${ready}/${d.replicas} replicas ready` },
      conditions,
    );
    const wasReady = findCondition(prev.conditions, 'Ready');
    if (failing && wasReady?.reason !== 'WorkerFailing') ctx.events.record(pool, 'Warning', 'WorkerFailing', failing);
    conditions = c(
      rolledOut
        ? { type: 'Progressing', status: 'False', reason: 'RolloutComplete', message: `Deployment ${dep.metadata.name} has ${replicas} up-to-date replicas` }
        : {
            type: 'Progressing',
            status: 'True',
            reason: 'RollingOut',
            message: `Deployment ${dep.metadata.name}: ${updated} of ${d.replicas} replicas updated, ${replicas} running`,
          },
      conditions,
    );
    conditions = c({ type: 'ScalingActive', status: d.active ? 'True' : 'False', reason: d.reason, message: d.message }, conditions);
    conditions = c(
      broker
        ? { type: 'Degraded', status: 'True', reason: broker.reason, message: broker.message }
        : { type: 'Degraded', status: 'False', reason: 'AsExpected', message: 'the Deployment and PodDisruptionBudget are applied' },
      conditions,
    );
    const wasDegraded = findCondition(prev.conditions, 'Degraded');
    if (broker && (wasDegraded?.status !== 'True' || wasDegraded.reason !== broker.reason)) ctx.events.record(pool, 'Warning', broker.reason, broker.message);
    const next: StatusPatch = {
      observedGeneration: generation,
      replicas,
      readyReplicas: ready,
      desiredReplicas: d.replicas,
      selector: poolSelectorString(pool),
      deploymentName: dep.metadata.name,
      lastScaleTime: prev.desiredReplicas !== undefined && prev.desiredReplicas !== d.replicas ? rfc3339(now) : (prev.lastScaleTime ?? null),
      conditions,
    };
    if (d.autoscalingStatus !== undefined) next.autoscaling = d.autoscalingStatus === null ? null : replacing(prev.autoscaling, d.autoscalingStatus);
    await patchStatusIfChanged(ctx.kube, resources.workerPools, pool, next);
    return d.replicas > 0 && ready < d.replicas;
  }
}

/** How soon a pool with missing replicas is looked at again (its pods may be failing). */
export const WAITING_RECHECK_MS = 15_000;

/** The worker container's state, as much of a Pod as failingWorker reads. */
interface WorkerPodView extends KubeObject {
  status?: {
    containerStatuses?: {
      name: string;
      restartCount: number;
      state?: { waiting?: { reason?: string } };
      lastState?: { terminated?: { exitCode: number; reason?: string; message?: string } };
    }[];
  };
}

/**
 * Why the pool's workers keep exiting, from the first pod whose worker container has restarted
 * after a failed exit: the exit code and the end of its termination message (the worker's last
 * log lines, terminationMessagePolicy FallbackToLogsOnError). Null when no worker is failing.
 */
async function failingWorker(pool: WorkerPool, ctx: ReconcileContext): Promise<string | null> {
  const pods = await ctx.kube.list<WorkerPodView>(resources.pods, { namespace: pool.metadata.namespace, labelSelector: `${POOL_LABEL}=${pool.metadata.name}` });
  for (const p of pods.items) {
    const w = p.status?.containerStatuses?.find((s) => s.name === WORKER_CONTAINER);
    const last = w?.lastState?.terminated;
    if (!w || !last || last.exitCode === 0 || w.restartCount === 0) continue;
    const tail = (last.message ?? '').trim().split('\n').slice(-3).join(' | ').slice(-600);
    const waiting = w.state?.waiting?.reason ? ` (${w.state.waiting.reason})` : '';
    return `pod ${p.metadata.name}: the worker exited with code ${last.exitCode}${last.reason ? ` (${last.reason})` : ''} ${w.restartCount} time(s)${waiting}${tail ? `: ${tail}` : ''}`;
  }
  return null;
}

/** A TaskQueue of the pool that cannot reach its broker, as the pool's Degraded reason and message. */
interface BrokerProblem {
  reason: string;
  message: string;
}

/**
 * The first of the pool's TaskQueues whose last broker check failed (its BrokerReachable
 * condition, written by the TaskQueue reconciler): the workers share that broker, so they cannot
 * work either, whatever their Deployment says.
 */
export function brokerProblem(queues: readonly TaskQueue[]): BrokerProblem | null {
  for (const q of queues) {
    const c = findCondition(q.status?.conditions, 'BrokerReachable');
    if (c?.status === 'False') {
      return { reason: c.reason, message: `TaskQueue "${q.metadata.name}" cannot reach its broker: ${c.message}` };
    }
  }
  return null;
}

/**
 * `next` as a merge patch that replaces `prev` whole: a merge patch keeps keys it does not name,
 * so every key of `prev` that `next` leaves out (or sets to null) is sent as null, which removes
 * it. Keys absent from both are not sent, so an unchanged object compares equal and is not written.
 */
export function replacing<T extends object>(prev: T | undefined, next: T): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(next)) if (v !== null && v !== undefined) out[k] = v;
  for (const k of Object.keys(prev ?? {})) if (!(k in out)) out[k] = null;
  return out as T;
}

/** Deletes the pool's object of this type if the pool controls it; true if something was deleted. */
async function deleteOwned(ctx: ReconcileContext, rt: (typeof resources)[keyof typeof resources], pool: WorkerPool): Promise<boolean> {
  const obj = await ctx.kube.get<KubeObject>(rt, pool.metadata.namespace, pool.metadata.name);
  if (!obj || !isControlledBy(obj, pool)) return false;
  return ctx.kube.delete(rt, pool.metadata.namespace, pool.metadata.name);
}

/** Deletes the object of this type that a WorkerPool named `name`, now gone, controlled; true if something was deleted. */
async function deleteOrphan(ctx: ReconcileContext, rt: (typeof resources)[keyof typeof resources], namespace: string, name: string): Promise<boolean> {
  const obj = await ctx.kube.get<KubeObject>(rt, namespace, name);
  const owned = obj?.metadata.ownerReferences?.some((r) => r.controller && r.kind === 'WorkerPool' && r.name === name) ?? false;
  return owned ? ctx.kube.delete(rt, namespace, name) : false;
}
