// TaskSchedule on a real kube-apiserver: CEL refuses malformed schedules; the operator (leader)
// fires a schedule into a real Redis TaskQueue, where a Python Celery worker runs each task; the
// status says lastScheduleTime / nextScheduleTime / lastTaskId and Events say each run fired; a
// timezone unknown to the runtime is reported in Ready, not retried.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { resources, type KubeClient } from '../../operator/src/k8s/kube-client.js';
import type { Operator } from '../../operator/src/operator.js';
import { envtestSkipReason, startControlPlane, startTestOperator, type ControlPlane } from '../support/envtest.js';
import { eventually } from '../support/eventually.js';
import { conditionOf, taskQueueFixture, type Obj } from '../support/operator-fixtures.js';
import { stopProcess, type Started } from '../support/processes.js';
import { uniqueName, useRedis } from '../support/servers.js';
import { pythons, skipReason, startPyWorker } from '../interop/interop-suite.js';

const skipK8s = envtestSkipReason();
const redisUse = skipK8s ? null : await useRedis();
// Stopped at file level: the describe below may be skipped (no Python) after Redis started.
after(() => redisUse?.server?.stop());
const py = pythons[0]!;
const skip = skipK8s || redisUse?.skip || skipReason(py, false);

function taskSchedule(ns: string, name: string, spec: Record<string, unknown>): Obj {
  return {
    apiVersion: 'celeriac.io/v1alpha1',
    kind: 'TaskSchedule',
    metadata: { name, namespace: ns },
    spec: { taskQueueRef: { name: 'q' }, task: 'pyinterop.add', ...spec },
  };
}

describe('TaskSchedule on a real API server, fired into Redis, run by a Python worker', { skip }, () => {
  let cp: ControlPlane;
  let kube: KubeClient;
  let op: Operator;
  let ns: string;
  let pyWorker: Started | undefined;
  let raw: Redis;
  const url = redisUse?.server?.url ?? '';
  const queue = uniqueName('sched');

  before(async () => {
    cp = await startControlPlane();
    kube = cp.kube;
    op = await startTestOperator(cp);
    ns = await cp.createNamespace('ts');
    raw = new Redis(url);
    await kube.create(resources.taskQueues, taskQueueFixture(ns, 'q', { queue, broker: { type: 'redis', url } }));
    pyWorker = startPyWorker(py, url, url, queue);
  });
  after(async () => {
    await op?.stop();
    await stopProcess(pyWorker);
    raw?.disconnect();
    await cp?.stop();
  });

  it('refuses malformed schedules with CEL', async () => {
    const refused = async (name: string, schedule: Record<string, unknown>, why: RegExp) =>
      assert.rejects(kube.create(resources.taskSchedules, taskSchedule(ns, name, { schedule })), why);
    await refused('both', { cron: '* * * * *', everySeconds: 5 }, /exactly one of cron/);
    await refused('neither', { timeZone: 'UTC' }, /exactly one of cron/);
    await refused('fields', { cron: '* * *' }, /must be five fields/);
    await refused('chars', { cron: '* * * * * ; rm' }, /must be five fields/);
    await refused('tz', { cron: '0 * * * *', timeZone: 'not a zone' }, /IANA timezone/);
  });

  it('fires every run into the queue, a Python worker runs them, status and Events say so', async () => {
    await kube.create(resources.taskSchedules, taskSchedule(ns, 'every2', { schedule: { everySeconds: 2 }, args: [2, 3] }));
    const ids = new Set<string>();
    const ts = await eventually(
      async () => {
        const o = (await kube.get<Obj>(resources.taskSchedules, ns, 'every2'))!;
        if (o.status?.lastTaskId) ids.add(o.status.lastTaskId);
        assert.ok(ids.size >= 3, `runs seen so far: ${ids.size}`);
        return o;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    assert.equal(conditionOf(ts, 'Ready')?.reason, 'Scheduled');
    const last = Date.parse(ts.status.lastScheduleTime);
    const next = Date.parse(ts.status.nextScheduleTime);
    assert.ok(next > last, `nextScheduleTime ${ts.status.nextScheduleTime} follows lastScheduleTime ${ts.status.lastScheduleTime}`);
    assert.equal((next - last) % 2000, 0, 'runs are whole intervals apart');
    for (const id of ids) {
      const meta = await eventually(async () => {
        const text = await raw.get(`celery-task-meta-${id}`);
        assert.ok(text, `the Python worker stored no result for ${id}\n${pyWorker?.output()}`);
        return JSON.parse(text) as { status: string; result: unknown };
      });
      assert.deepEqual([meta.status, meta.result], ['SUCCESS', 5]);
    }
    await op.events.flush();
    const events = (await kube.list<Obj>(resources.events, { namespace: ns })).items.filter((e) => e.involvedObject.name === 'every2');
    assert.ok(
      events.some((e) => e.reason === 'Fired' && e.type === 'Normal'),
      JSON.stringify(events.map((e) => e.reason)),
    );
  });

  it('reports a timezone the runtime does not know in Ready and sends nothing', async () => {
    await kube.create(resources.taskSchedules, taskSchedule(ns, 'mars', { schedule: { cron: '* * * * *', timeZone: 'Mars/Olympus' } }));
    const c = await eventually(async () => {
      const got = conditionOf(await kube.get<Obj>(resources.taskSchedules, ns, 'mars'), 'Ready');
      assert.equal(got?.status, 'False');
      return got!;
    });
    assert.equal(c.reason, 'InvalidSchedule');
    assert.match(c.message, /not an IANA timezone/);
  });
});
