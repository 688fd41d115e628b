/**
 * The worker's per-task metrics (metrics/worker-metrics.ts) are counted in plain fields and
 * written by the worker's own TaskHistogram: /metrics must read exactly as prom-client's own
 * Counter and Histogram would give the same observations.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import type { Counter as PromCounter, Histogram as PromHistogram, Registry as PromRegistry } from 'prom-client';
import { createWorkerMetrics, type TaskHistogram } from '../../../../runtime/src/metrics/worker-metrics.js';

const require = createRequire(import.meta.url);
const { Registry, Counter, Histogram } = require('prom-client') as {
  Registry: typeof PromRegistry;
  Counter: typeof PromCounter;
  Histogram: typeof PromHistogram;
};

/** The lines of `name`'s family in an exposition text. */
function family(text: string, name: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(`${name}_`) || l.startsWith(`${name}{`) || l.startsWith(`${name} `) || l.includes(` ${name} `));
}

describe('worker metrics', () => {
  // Values at, between and past the bounds, and label values that need escaping.
  const observations: [string, string, number][] = [
    ['celery', 't.add', 0.0002],
    ['celery', 't.add', 0.001],
    ['celery', 't.add', 0.0011],
    ['celery', 't.add', 4000],
    ['celery', 't.add', 0],
    ['other', 't.add', 2.5],
    ['celery', 'we"ird\\name\nx', 30],
  ];

  it('task duration and wait read as prom-client Histograms of the same observations', async () => {
    const m = createWorkerMetrics();
    const reference = new Registry();
    const refs = {
      duration: new Histogram({
        name: 'celeriac_task_duration_seconds',
        help: 'Time a task ran.',
        labelNames: ['queue', 'task'],
        buckets: [...(m.duration as TaskHistogram).bounds],
        registers: [reference],
      }),
      wait: new Histogram({
        name: 'celeriac_task_wait_seconds',
        help: 'Time from due (sent, or ETA) to start.',
        labelNames: ['queue', 'task'],
        buckets: [...(m.wait as TaskHistogram).bounds],
        registers: [reference],
      }),
    };
    for (const [queue, task, v] of observations) {
      m.task(queue, task).ran(v);
      m.task(queue, task).waited(v / 2);
      refs.duration.observe({ queue, task }, v);
      refs.wait.observe({ queue, task }, v / 2);
    }
    m.duration.observe({ queue: 'celery', task: 't.add' }, 0.2); // the API without a kept series
    refs.duration.observe({ queue: 'celery', task: 't.add' }, 0.2);
    const ours = await m.registry.metrics();
    const theirs = await reference.metrics();
    for (const name of ['celeriac_task_duration_seconds', 'celeriac_task_wait_seconds']) {
      assert.ok(family(ours, name).length > 20, ours);
      assert.deepEqual(family(ours, name), family(theirs, name));
      assert.deepEqual(await m.registry.getSingleMetric(name)!.get(), await reference.getSingleMetric(name)!.get());
    }
    assert.throws(() => m.task('celery', 't.add').ran(NaN), TypeError);
    m.registry.resetMetrics();
    reference.resetMetrics();
    assert.match(await m.registry.metrics(), /celeriac_task_duration_seconds_count\{queue="celery",task="t.add"\} 0/);
  });

  it('received and completed counts read as prom-client Counters, across scrapes', async () => {
    const m = createWorkerMetrics();
    const reference = new Registry();
    const received = new Counter({
      name: 'celeriac_tasks_received_total',
      help: 'Task messages received by this worker.',
      labelNames: ['queue', 'task'],
      registers: [reference],
    });
    const completed = new Counter({
      name: 'celeriac_tasks_completed_total',
      help: 'Tasks finished, by outcome.',
      labelNames: ['queue', 'task', 'outcome'],
      registers: [reference],
    });
    const step = async (n: number) => {
      for (const [queue, task] of observations.slice(0, n)) {
        m.task(queue, task).received();
        received.inc({ queue, task });
        m.task(queue, task).completed('succeeded');
        completed.inc({ queue, task, outcome: 'succeeded' });
      }
      m.task('celery', 't.add').completed('retried');
      completed.inc({ queue: 'celery', task: 't.add', outcome: 'retried' });
      const ours = await m.registry.metrics();
      const theirs = await reference.metrics();
      for (const name of ['celeriac_tasks_received_total', 'celeriac_tasks_completed_total']) {
        assert.ok(family(ours, name).length >= 3, ours);
        assert.deepEqual(family(ours, name), family(theirs, name));
      }
    };
    await step(observations.length);
    await step(2); // counted since the previous scrape, added once
    await step(observations.length);
  });
});
