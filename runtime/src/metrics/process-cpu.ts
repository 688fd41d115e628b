/**
 * prom-client's default `process_cpu_*` family (its processCpuTotal.js, version 15), same names,
 * help and meaning: user, system and total CPU seconds, advanced by the usage since the previous
 * scrape. prom-client's module requires `@opentelemetry/api` at load for exemplars, which the
 * worker never turns on: 44 modules and about 0.5 MB of RSS an idle worker need not hold.
 */
import type { Registry } from 'prom-client';

type CounterClass = typeof import('prom-client').Counter;

/** Registers the three counters on `registry`; they are set from `process.cpuUsage()` at each scrape. */
export function registerProcessCpu(registry: Registry, CounterCtor: CounterClass): void {
  const registers = [registry];
  let last = process.cpuUsage();
  const user = new CounterCtor({
    name: 'process_cpu_user_seconds_total',
    help: 'Total user CPU time spent in seconds.',
    registers,
    // One metric's collect sets all three, as prom-client does.
    collect() {
      const now = process.cpuUsage();
      const userUs = now.user - last.user;
      const systemUs = now.system - last.system;
      last = now;
      user.inc(userUs / 1e6);
      system.inc(systemUs / 1e6);
      total.inc((userUs + systemUs) / 1e6);
    },
  });
  const system = new CounterCtor({ name: 'process_cpu_system_seconds_total', help: 'Total system CPU time spent in seconds.', registers });
  const total = new CounterCtor({ name: 'process_cpu_seconds_total', help: 'Total user and system CPU time spent in seconds.', registers });
}
