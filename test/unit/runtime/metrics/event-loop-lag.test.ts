import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createWorkerMetrics } from '../../../../runtime/src/metrics/worker-metrics.js';

const LAG = ['', '_min', '_max', '_mean', '_stddev', '_p50', '_p90', '_p99'].map((s) => `nodejs_eventloop_lag${s}_seconds`);

/** Value of an unlabelled sample in the text format. */
function sample(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

test("the worker's metrics keep prom-client's event-loop lag family, measured and reset at each scrape", async () => {
  const m = createWorkerMetrics();
  await m.registry.metrics(); // the first scrape resets what was recorded before the block
  const end = performance.now() + 150;
  while (performance.now() < end); // a 150 ms block between two 10 ms ticks
  await new Promise((r) => setTimeout(r, 35));
  const text = await m.registry.metrics();
  for (const name of LAG) {
    assert.match(text, new RegExp(`^# TYPE ${name} gauge$`, 'm'), name);
    assert.ok(Number.isFinite(sample(text, name)), `${name} has a value`);
  }
  // The interval between ticks is recorded, as monitorEventLoopDelay does: the block shows in max.
  assert.ok(sample(text, 'nodejs_eventloop_lag_max_seconds')! >= 0.145, text);
  assert.ok(sample(text, 'nodejs_eventloop_lag_min_seconds')! >= 0.009, text);
  await new Promise((r) => setTimeout(r, 35));
  // Reset at the scrape: the block is not in the next one.
  assert.ok(sample(await m.registry.metrics(), 'nodejs_eventloop_lag_max_seconds')! < 0.145);
  // The other default metrics are still there.
  for (const name of ['process_cpu_user_seconds_total', 'nodejs_heap_size_total_bytes', 'nodejs_gc_duration_seconds', 'nodejs_version_info']) {
    assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), name);
  }
});
