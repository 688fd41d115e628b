/**
 * TaskQueue reconciler: checks the broker every checkIntervalSeconds and reports it in status
 * (conditions BrokerReachable and Ready with a reason and message that say what to fix, depth,
 * consumers, lastChecked). A broken broker is a status, not a reconcile error.
 */
import { BrokerCheckError } from '../errors.js';
import { patchStatusIfChanged } from '../k8s/apply.js';
import { rfc3339, setCondition, findCondition } from '../k8s/conditions.js';
import { resources } from '../k8s/kube-client.js';
import { Action, type ReconcileContext, type Reconciler } from '../k8s/reconciler.js';
import type { TaskQueue, TaskQueueStatus } from '../types.js';
import { checkBroker, credentialsHash, type BrokerCheckResult } from './broker-check.js';

export interface TaskQueueReconcilerOptions {
  /** Connect/command timeout of a broker check. */
  checkTimeoutMs?: number;
  /** Replaceable for tests of the status logic; defaults to the real check. */
  check?: typeof checkBroker;
}

export function createTaskQueueReconciler(o: TaskQueueReconcilerOptions = {}): Reconciler<TaskQueue> {
  const check = o.check ?? checkBroker;
  return {
    name: 'taskqueue',
    async reconcile(tq: TaskQueue, ctx: ReconcileContext): Promise<Action> {
      const now = ctx.now();
      const generation = tq.metadata.generation;
      let result: BrokerCheckResult | null = null;
      let failure: BrokerCheckError | null = null;
      try {
        result = await check(ctx.kube, tq, { timeoutMs: o.checkTimeoutMs });
      } catch (err) {
        if (!(err instanceof BrokerCheckError)) throw err;
        failure = err;
      }
      const wasReachable = findCondition(tq.status?.conditions, 'BrokerReachable')?.status;
      let conditions = tq.status?.conditions;
      const next: { [K in keyof TaskQueueStatus]?: TaskQueueStatus[K] | null } = { observedGeneration: generation, lastChecked: rfc3339(now) };
      if (result) {
        conditions = setCondition(
          conditions,
          { type: 'BrokerReachable', status: 'True', reason: 'Connected', message: `connected to ${result.url}`, observedGeneration: generation },
          now,
        );
        conditions = setCondition(
          conditions,
          {
            type: 'Ready',
            status: 'True',
            reason: 'BrokerReachable',
            message: `queue "${tq.spec.queue.name}" on ${result.url}: ${result.depth} waiting${result.note ? `; ${result.note}` : ''}`,
            observedGeneration: generation,
          },
          now,
        );
        Object.assign(next, {
          depth: result.depth,
          inFlight: result.inFlight ?? null,
          consumers: result.consumers ?? null,
          brokerUrl: result.url,
        });
        if (wasReachable === 'False') ctx.events.record(tq, 'Normal', 'BrokerReachable', `broker reachable again: ${result.url}`);
      } else if (failure) {
        conditions = setCondition(
          conditions,
          { type: 'BrokerReachable', status: 'False', reason: failure.reason, message: failure.message, observedGeneration: generation },
          now,
        );
        conditions = setCondition(
          conditions,
          { type: 'Ready', status: 'False', reason: failure.reason, message: failure.message, observedGeneration: generation },
          now,
        );
        ctx.events.record(tq, 'Warning', failure.reason, failure.message);
        ctx.log.warn({ reason: failure.reason, err: failure }, 'broker check failed');
      }
      next.conditions = conditions;
      // Published whether or not the broker answers: a rotated Secret must roll the workers either way.
      next.credentialsHash = await credentialsHash(ctx.kube, tq);
      await patchStatusIfChanged(ctx.kube, resources.taskQueues, tq, next);
      return Action.requeue((tq.spec.checkIntervalSeconds ?? 30) * 1000);
    },
  };
}
