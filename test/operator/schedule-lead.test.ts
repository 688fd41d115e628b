// The autoscaler's lead time before a scheduled run, on a real kube-apiserver and Redis: a pool at
// zero with nothing queued stays at zero while the next run of a TaskSchedule on its queue is
// further away than spec.autoscaling.scheduleLeadSeconds, and gets one replica once it is nearer.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { createAutoscaler, type Autoscaler } from '../../operator/src/autoscaler/autoscaler.js';
import { createKubeClient, resources, type KubeClient } from '../../operator/src/k8s/kube-client.js';
import type { Operator } from '../../operator/src/operator.js';
import { envtestSkipReason, startControlPlane, startTestOperator, type ControlPlane } from '../support/envtest.js';
import { eventually } from '../support/eventually.js';
import { taskQueueFixture, type Obj } from '../support/operator-fixtures.js';
import { uniqueName, useRedis } from '../support/servers.js';

const envSkip = envtestSkipReason();
const redis = envSkip ? null : await useRedis();
const skip = envSkip || redis?.skip || false;

describe('autoscaler lead time before a scheduled run', { skip }, () => {
  let cp: ControlPlane;
  let kube: KubeClient;
  let op: Operator;
  let autoscaler: Autoscaler;

  before(async () => {
    cp = await startControlPlane();
    kube = cp.kube;
    autoscaler = createAutoscaler({ kube: createKubeClient(cp.kubeConfig), log: pino({ level: 'silent' }), timeoutMs: 2000 });
    op = await startTestOperator(cp, { decideReplicas: autoscaler.decideReplicas });
  });
  after(async () => {
    await op?.stop();
    await autoscaler?.close();
    await cp?.stop();
    await redis?.server?.stop();
  });

  it('wakes a pool at zero scheduleLeadSeconds before the next run', async () => {
    const ns = await cp.createNamespace('lead');
    await kube.create(resources.taskQueues, taskQueueFixture(ns, 'work', { queue: uniqueName('lead'), broker: { type: 'redis', url: redis!.server!.url } }));
    // Every hour: the first run is an hour after creation.
    await kube.create(resources.taskSchedules, {
      apiVersion: 'celeriac.io/v1alpha1',
      kind: 'TaskSchedule',
      metadata: { name: 'hourly', namespace: ns },
      spec: { taskQueueRef: { name: 'work' }, task: 'shop.report', schedule: { everySeconds: 3600 } },
    } as Obj);
    await eventually(async () => assert.ok((await kube.get<Obj>(resources.taskSchedules, ns, 'hourly'))?.status?.nextScheduleTime));
    await kube.create(resources.workerPools, {
      apiVersion: 'celeriac.io/v1alpha1',
      kind: 'WorkerPool',
      metadata: { name: 'shop', namespace: ns },
      spec: {
        queues: ['work'],
        template: { image: 'example.com/shop:1', tasksModule: '/app/tasks.js' },
        autoscaling: { minReplicas: 0, maxReplicas: 5, pollingIntervalSeconds: 1, scheduleLeadSeconds: 600 },
      },
    } as Obj);
    const scheduleMetric = async () => {
      const wp = await kube.get<Obj>(resources.workerPools, ns, 'shop');
      return {
        metric: wp?.status?.autoscaling?.metrics?.find((m: { name: string }) => m.name === 'schedule'),
        replicas: (await kube.get<Obj>(resources.deployments, ns, 'shop'))?.spec.replicas,
      };
    };
    // The run is an hour away, the lead 10 minutes: the schedule is read and asks for nothing.
    await eventually(async () => assert.deepEqual(await scheduleMetric(), { metric: { name: 'schedule', value: 0 }, replicas: 0 }));
    await kube.patch(resources.workerPools, ns, 'shop', { spec: { autoscaling: { scheduleLeadSeconds: 7200 } } });
    await eventually(async () => assert.deepEqual(await scheduleMetric(), { metric: { name: 'schedule', value: 1 }, replicas: 1 }), { timeoutMs: 30_000 });
  });
});
