// The TaskSchedule reconciler's decisions, on the in-memory API server with a recording sender:
// which runs are sent (with which ids), what status and Events say, and a stale writer refused.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { App } from '../../../../runtime/src/app/app.js';
import type { SendOptions } from '../../../../runtime/src/app/send.js';
import { beatTaskId } from '../../../../runtime/src/beat/scheduler.js';
import { KubeApiError, TerminalError } from '../../../../operator/src/errors.js';
import { resources } from '../../../../operator/src/k8s/kube-client.js';
import { createTaskScheduleReconciler } from '../../../../operator/src/reconcilers/task-schedule.js';
import type { TaskQueue, TaskSchedule } from '../../../../operator/src/types.js';
import { createMemoryKube } from '../../../support/memory-kube.js';
import { conditionOf, taskQueueFixture } from '../../../support/operator-fixtures.js';
import { testContext } from '../../../support/reconcile-context.js';

interface Sent {
  task: string;
  args: readonly unknown[];
  options: SendOptions;
}

async function setup(spec: Partial<TaskSchedule['spec']>, status?: TaskSchedule['status']) {
  const kube = createMemoryKube({ now: () => new Date('2026-01-01T00:00:00Z') });
  await kube.create(resources.taskQueues, taskQueueFixture('ns', 'q', { queue: 'celery-q', broker: { type: 'redis', url: 'redis://127.0.0.1:6379/0' } }));
  const created = await kube.create<TaskSchedule>(resources.taskSchedules, {
    apiVersion: 'celeriac.io/v1alpha1',
    kind: 'TaskSchedule',
    metadata: { name: 's', namespace: 'ns' },
    spec: { taskQueueRef: { name: 'q' }, task: 'proj.cleanup', args: [1], schedule: { everySeconds: 10 }, ...spec },
  });
  if (status) await kube.patch(resources.taskSchedules, 'ns', 's', { status }, { type: 'merge', subresource: 'status' });
  const sent: Sent[] = [];
  const app = {
    sendTask: async (task: string, args: readonly unknown[], _k: unknown, options: SendOptions) => void sent.push({ task, args, options }),
    close: async () => undefined,
  } as unknown as App;
  const reconciler = createTaskScheduleReconciler({ taskQueues: kube.informer<TaskQueue>(resources.taskQueues), appFor: () => app });
  const get = async () => (await kube.get<TaskSchedule>(resources.taskSchedules, 'ns', 's'))!;
  return { kube, sent, reconciler, get, created };
}

describe('TaskSchedule reconciler', () => {
  it('sends each run due since creation once, with beat ids, and records the last', async () => {
    const s = await setup({});
    const t = testContext(s.kube, { now: new Date('2026-01-01T00:00:35Z') });
    const action = await s.reconciler.reconcile(await s.get(), t.ctx);
    assert.deepEqual(
      s.sent.map((x) => [x.task, x.options.queue, x.options.taskId]),
      [10, 20, 30].map((sec) => ['proj.cleanup', 'celery-q', beatTaskId('ns/s', Date.parse('2026-01-01T00:00:00Z') + sec * 1000)]),
    );
    const ts = await s.get();
    assert.equal(ts.status?.lastScheduleTime, '2026-01-01T00:00:30Z');
    assert.equal(ts.status?.nextScheduleTime, '2026-01-01T00:00:40Z');
    assert.equal(ts.status?.lastTaskId, s.sent[2]!.options.taskId);
    assert.equal(conditionOf(ts, 'Ready')?.reason, 'Scheduled');
    assert.deepEqual(t.eventLines(), ['Normal Fired', 'Normal Fired', 'Normal Fired']);
    assert.equal(action.requeueAfterMs, 5_000);
    // Again at the same time: nothing more.
    await s.reconciler.reconcile(await s.get(), t.ctx);
    assert.equal(s.sent.length, 3);
  });

  it('after a long outage sends the runs within catchUpSeconds and reports the rest Missed', async () => {
    const s = await setup({ catchUpSeconds: 20 }, { lastScheduleTime: '2026-01-01T00:00:00Z' });
    const t = testContext(s.kube, { now: new Date('2026-01-01T01:00:05Z') });
    await s.reconciler.reconcile(await s.get(), t.ctx);
    assert.equal(s.sent.length, 2); // 00:59:50 and 01:00:00
    assert.deepEqual(t.eventLines()[0], 'Warning Missed');
    assert.match(t.events[0]!.message, /^358 run\(s\) missed/);
    assert.equal((await s.get()).status?.lastScheduleTime, '2026-01-01T01:00:00Z');
  });

  it('refuses a stale writer: the status write is conditional on the resourceVersion read', async () => {
    const s = await setup({});
    const stale = await s.get();
    await s.kube.patch(resources.taskSchedules, 'ns', 's', { status: { lastScheduleTime: '2026-01-01T00:00:30Z' } }, { type: 'merge', subresource: 'status' });
    const t = testContext(s.kube, { now: new Date('2026-01-01T00:00:35Z') });
    await assert.rejects(s.reconciler.reconcile(stale, t.ctx), (err: unknown) => err instanceof KubeApiError && err.statusCode === 409);
    assert.equal((await s.get()).status?.lastScheduleTime, '2026-01-01T00:00:30Z');
  });

  it('reports an unknown timezone as InvalidSchedule and does not retry', async () => {
    const s = await setup({ schedule: { cron: '0 * * * *', timeZone: 'Mars/Olympus' } });
    const t = testContext(s.kube);
    await assert.rejects(s.reconciler.reconcile(await s.get(), t.ctx), TerminalError);
    assert.equal(conditionOf(await s.get(), 'Ready')?.reason, 'InvalidSchedule');
    assert.deepEqual(t.eventLines(), ['Warning InvalidSchedule']);
    assert.equal(s.sent.length, 0);
  });

  it('waits for a missing TaskQueue and sends nothing while suspended', async () => {
    const missing = await setup({ taskQueueRef: { name: 'nope' } });
    const t = testContext(missing.kube, { now: new Date('2026-01-01T00:00:15Z') });
    await missing.reconciler.reconcile(await missing.get(), t.ctx);
    assert.equal(conditionOf(await missing.get(), 'Ready')?.reason, 'TaskQueueNotFound');
    const suspended = await setup({ suspend: true });
    await suspended.reconciler.reconcile(await suspended.get(), testContext(suspended.kube, { now: new Date('2026-01-01T00:00:15Z') }).ctx);
    assert.equal(conditionOf(await suspended.get(), 'Ready')?.reason, 'Suspended');
    assert.equal(missing.sent.length + suspended.sent.length, 0);
  });
});
