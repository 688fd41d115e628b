/**
 * TaskSchedule reconciler: the operator as Celery beat. Controllers run only on the elected
 * leader, so one process sends. Each reconcile sends the runs due since status.lastScheduleTime
 * (or the object's creation) to the TaskQueue's broker and queue, through celeriac's App.sendTask
 * (the message any beat-sent task is), records each run in status, and requeues for the next one.
 *
 * - Runs are slots of the schedule (beat/scheduler.ts dueRuns): missed by at most catchUpSeconds
 *   (an operator failover) they are all sent; older ones collapse into one run, as Celery beat,
 *   and a Missed Warning event says how many.
 * - A run's task id is derived from namespace/name and the slot (beatTaskId): a leader that dies
 *   between the send and the status write is followed by one that sends the same id again.
 * - The status write carries the resourceVersion read: a stale leader's write fails (409).
 */
import type { App } from '../../../runtime/src/app/app.js';
import { createApp } from '../../../runtime/src/app/app.js';
import type { Schedule } from '../../../runtime/src/app/beat-schedule.js';
import { beatTaskId, dueRuns } from '../../../runtime/src/beat/scheduler.js';
import { crontab, every } from '../../../runtime/src/beat/schedules.js';
import { redactUrl } from '../../../runtime/src/errors.js';
import { BrokerCheckError, TerminalError } from '../errors.js';
import { patchStatusIfChanged } from '../k8s/apply.js';
import { rfc3339, setCondition } from '../k8s/conditions.js';
import type { Informer } from '../k8s/informer.js';
import { resources } from '../k8s/kube-client.js';
import { Action, type ReconcileContext, type Reconciler } from '../k8s/reconciler.js';
import type { Condition, TaskQueue, TaskSchedule, TaskScheduleStatus } from '../types.js';
import { resolveBrokerUrl } from './broker-check.js';

export interface TaskScheduleReconcilerOptions {
  readonly taskQueues: Informer<TaskQueue>;
  /** Longest wait between two reconciles of a schedule (its next run is usually sooner). */
  readonly resyncMs?: number;
  /** The App that sends to a broker URL; default createApp (closed after each use). */
  readonly appFor?: (brokerUrl: string, ctx: ReconcileContext) => App;
}

/** The schedule a TaskSchedule spec describes; ConfigError when it cannot work. */
function scheduleOf(ts: TaskSchedule): Schedule {
  const s = ts.spec.schedule;
  return s.cron !== undefined ? crontab(s.cron, s.timeZone ?? 'UTC') : every((s.everySeconds ?? 0) * 1000);
}

export function createTaskScheduleReconciler(o: TaskScheduleReconcilerOptions): Reconciler<TaskSchedule> {
  const resyncMs = o.resyncMs ?? 300_000;
  // env {}: the TaskQueue's broker URL is the whole config, never the operator's own env (see celery-pool.ts).
  const appFor = o.appFor ?? ((url, ctx) => createApp({ broker: url, logger: ctx.log, env: {} }));
  return {
    name: 'taskschedule',
    async reconcile(ts: TaskSchedule, ctx: ReconcileContext): Promise<Action> {
      const now = ctx.now();
      const generation = ts.metadata.generation;
      const ready = (status: Condition['status'], reason: string, message: string) =>
        setCondition(ts.status?.conditions, { type: 'Ready', status, reason, message, observedGeneration: generation }, now);
      const writeStatus = (next: { [K in keyof TaskScheduleStatus]?: TaskScheduleStatus[K] | null }) =>
        patchStatusIfChanged(ctx.kube, resources.taskSchedules, ts, { observedGeneration: generation, ...next });

      let schedule: Schedule;
      try {
        schedule = scheduleOf(ts);
      } catch (err) {
        const message = `spec.schedule: ${(err as Error).message}`;
        await writeStatus({ conditions: ready('False', 'InvalidSchedule', message), nextScheduleTime: null });
        ctx.events.record(ts, 'Warning', 'InvalidSchedule', message);
        throw new TerminalError('InvalidSchedule', message, { cause: err });
      }
      const name = `${ts.metadata.namespace}/${ts.metadata.name}`;
      let last = Date.parse(ts.status?.lastScheduleTime ?? ts.metadata.creationTimestamp ?? rfc3339(now));
      if (ts.spec.suspend) {
        await writeStatus({ conditions: ready('True', 'Suspended', 'spec.suspend is true: no run is sent'), nextScheduleTime: null });
        return Action.requeue(resyncMs);
      }
      const { runs, dropped } = dueRuns({ schedule }, last, now.getTime(), { catchUp: false, graceMs: (ts.spec.catchUpSeconds ?? 60) * 1000 });
      if (runs.length > 0) {
        const queueName = ts.spec.taskQueueRef.name;
        const tq = o.taskQueues.get(ts.metadata.namespace, queueName);
        if (!tq) {
          const message = `TaskQueue "${queueName}" not found in namespace ${ts.metadata.namespace}`;
          await writeStatus({ conditions: ready('False', 'TaskQueueNotFound', message) });
          ctx.events.record(ts, 'Warning', 'TaskQueueNotFound', message);
          return Action.requeue(10_000);
        }
        let url: URL;
        try {
          url = await resolveBrokerUrl(ctx.kube, tq);
        } catch (err) {
          if (!(err instanceof BrokerCheckError)) throw err;
          await writeStatus({ conditions: ready('False', err.reason, err.message) });
          ctx.events.record(ts, 'Warning', err.reason, err.message);
          return Action.requeue(10_000);
        }
        if (dropped > 0)
          ctx.events.record(ts, 'Warning', 'Missed', `${dropped} run(s) missed by more than catchUpSeconds were skipped; sending the latest, as Celery beat`);
        const app = appFor(url.href, ctx);
        let resourceVersion = ts.metadata.resourceVersion;
        try {
          for (const slot of runs) {
            const taskId = beatTaskId(name, slot);
            const opt = ts.spec.options ?? {};
            try {
              await app.sendTask(ts.spec.task, ts.spec.args ?? [], ts.spec.kwargs ?? {}, {
                queue: tq.spec.queue.name,
                taskId,
                priority: opt.priority,
                headers: opt.headers,
                expires: opt.expiresSeconds !== undefined ? new Date(slot + opt.expiresSeconds * 1000) : undefined,
              });
            } catch (err) {
              throw new Error(`TaskSchedule ${name}: sending ${ts.spec.task} to ${redactUrl(url.href)} failed: ${(err as Error).message}`, { cause: err });
            }
            // Precondition on resourceVersion: a replica that lost the lease cannot move the schedule.
            // The next run goes in the same write, so no reader sees a last run newer than the next.
            const following = schedule.nextAfter(slot);
            const updated = await ctx.kube.patch<TaskSchedule>(
              resources.taskSchedules,
              ts.metadata.namespace,
              ts.metadata.name,
              {
                metadata: { resourceVersion },
                status: {
                  lastScheduleTime: rfc3339(new Date(slot)),
                  lastTaskId: taskId,
                  nextScheduleTime: Number.isFinite(following) ? rfc3339(new Date(following)) : null,
                },
              },
              { type: 'merge', subresource: 'status' },
            );
            resourceVersion = updated.metadata.resourceVersion;
            ts = updated;
            last = slot;
            ctx.events.record(ts, 'Normal', 'Fired', `sent ${ts.spec.task} (task id ${taskId}) for ${rfc3339(new Date(slot))} to queue ${tq.spec.queue.name}`);
          }
        } finally {
          await app.close();
        }
      }
      const next = schedule.nextAfter(last);
      const nextText = Number.isFinite(next) ? rfc3339(new Date(next)) : null;
      await writeStatus({
        nextScheduleTime: nextText,
        conditions: ready('True', 'Scheduled', nextText ? `next run at ${nextText}` : 'the schedule has no future run'),
      });
      return Action.requeue(Math.max(50, Math.min(resyncMs, next - ctx.now().getTime())));
    },
  };
}
