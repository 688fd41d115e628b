import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createWorkerMetrics, setScheduledDue } from '../../../../runtime/src/metrics/worker-metrics.js';
import { startMetricsServer } from '../../../../runtime/src/metrics/server.js';
import { createWorkerMetricsSource, dueWithin, parseWorkerMetrics, scheduledDueOf } from '../../../../operator/src/metric-sources/worker-metrics.js';
import { MetricSourceError } from '../../../../operator/src/metric-sources/source.js';

test('parses in-flight states, draining and the counters from the text format', () => {
  const s = parseWorkerMetrics(
    [
      '# HELP celeriac_worker_tasks x',
      'celeriac_worker_tasks{state="active"} 3',
      'celeriac_worker_tasks{state="reserved"} 1',
      'celeriac_worker_tasks{state="scheduled"} 2',
      'celeriac_worker_draining 1',
      'celeriac_tasks_received_total{queue="a",task="t"} 10',
      'celeriac_tasks_received_total{queue="b",task="t"} 5',
      'celeriac_task_duration_seconds_sum{queue="a",task="t"} 12.5',
      'celeriac_task_duration_seconds_count{queue="a",task="t"} 9',
      'celeriac_task_duration_seconds_bucket{queue="a",task="t",le="+Inf"} 9',
      'celeriac_worker_scheduled_due_tasks{within_seconds="10"} 1',
      'celeriac_worker_scheduled_due_tasks{within_seconds="30"} 2',
    ].join('\n'),
  );
  assert.deepEqual(s, {
    active: 3,
    reserved: 1,
    scheduled: 2,
    draining: true,
    received: 15,
    completed: 9,
    serviceSeconds: 12.5,
    scheduledDue: new Map([
      [10, 1],
      [30, 2],
    ]),
  });
});

test('scrapes real worker metrics servers and sums them; a failing pod fails the read', async () => {
  const workers = await Promise.all(
    [0, 1].map(async (i) => {
      const m = createWorkerMetrics();
      m.inFlight.set({ state: 'active' }, 2 + i);
      m.inFlight.set({ state: 'reserved' }, 1);
      m.received.inc({ queue: 'q', task: 't' }, 10);
      m.duration.observe({ queue: 'q', task: 't' }, 1.5);
      m.draining.set(i);
      // pod 0 holds ETA tasks due in 3 s, 12 s and 200 s; pod 1 one due in 8 s
      const due = i === 0 ? [3_000, 12_000, 200_000] : [8_000];
      setScheduledDue(m.scheduledDue, (ats) => ats.map((at) => due.filter((t) => t <= at).length), 0);
      const server = await startMetricsServer(0, { registry: m.registry, healthy: () => true, drain: async () => {} }, '127.0.0.1');
      return server;
    }),
  );
  try {
    let targets = workers.map((w, i) => ({ pod: `p${i}`, url: w.url }));
    const source = createWorkerMetricsSource({ targets: async () => targets });
    const { byPod, ...r } = await source.read(AbortSignal.timeout(5000));
    const { scheduledDue, ...sums } = r;
    assert.deepEqual(sums, { active: 5, reserved: 2, scheduled: 0, drainingActive: 3, received: 20, completed: 2, serviceSeconds: 3 });
    // summed per bucket over the pods; the lead takes the smallest bucket at or above it
    assert.equal(dueWithin(scheduledDue, 5), 1);
    assert.equal(dueWithin(scheduledDue, 7), 2);
    assert.equal(dueWithin(scheduledDue, 11), 3);
    assert.equal(dueWithin(scheduledDue, 3600), 4);
    assert.deepEqual([...byPod.keys()], ['p0', 'p1']);
    assert.equal(byPod.get('p1')?.draining, true);
    targets = [...targets, { pod: 'gone', url: 'http://127.0.0.1:1/metrics' }];
    await assert.rejects(source.read(AbortSignal.timeout(5000)), (err: unknown) => err instanceof MetricSourceError && /pod gone/.test(err.message));
    targets = [];
    const none = await source.read(AbortSignal.timeout(5000));
    assert.deepEqual([none.active, none.reserved, none.scheduled, none.byPod.size], [0, 0, 0, 0]);
  } finally {
    await Promise.all(workers.map((w) => w.close()));
  }
});

test('ETA tasks due soon: the smallest bucket at or above the lead, the largest beyond it, none without buckets', () => {
  const buckets = scheduledDueOf([Date.UTC(2026, 0, 1, 0, 0, 4), Date.UTC(2026, 0, 1, 0, 0, 40), Date.UTC(2026, 0, 1, 1)], Date.UTC(2026, 0, 1));
  assert.equal(dueWithin(buckets, 4), 1);
  assert.equal(dueWithin(buckets, 11), 1);
  assert.equal(dueWithin(buckets, 45), 2);
  // beyond the largest bucket (300 s), the largest: the task due in an hour is not counted
  assert.equal(dueWithin(buckets, 7200), 2);
  assert.equal(dueWithin(new Map(), 10), 0);
});
