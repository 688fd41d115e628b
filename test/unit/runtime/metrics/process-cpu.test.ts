import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createWorkerMetrics } from '../../../../runtime/src/metrics/worker-metrics.js';

const CPU = ['process_cpu_user_seconds_total', 'process_cpu_system_seconds_total', 'process_cpu_seconds_total'];

/** Value of an unlabelled sample in the text format. */
function sample(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  assert.ok(line !== undefined, `${name} has a sample:\n${text}`);
  return Number(line.slice(name.length + 1));
}

test("the worker's metrics keep prom-client's process CPU family: same names and help, counting up, total = user + system", async () => {
  const m = createWorkerMetrics();
  const first = await m.registry.metrics();
  assert.match(first, /^# HELP process_cpu_user_seconds_total Total user CPU time spent in seconds\.$/m);
  assert.match(first, /^# HELP process_cpu_system_seconds_total Total system CPU time spent in seconds\.$/m);
  assert.match(first, /^# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds\.$/m);
  for (const name of CPU) assert.match(first, new RegExp(`^# TYPE ${name} counter$`, 'm'), name);
  const end = performance.now() + 30;
  while (performance.now() < end); // 30 ms of user CPU between the scrapes
  const second = await m.registry.metrics();
  const [user, system, total] = CPU.map((name) => sample(second, name));
  assert.ok(user! > sample(first, CPU[0]!), 'user CPU grew');
  assert.ok(system! >= sample(first, CPU[1]!), 'system CPU never goes down');
  assert.ok(Math.abs(total! - (user! + system!)) < 1e-9, `total ${total} = user ${user} + system ${system}`);
  // Its exposition comes first, where prom-client's default metrics list it.
  assert.ok(second.startsWith('# HELP process_cpu_user_seconds_total'), second.slice(0, 200));
});
