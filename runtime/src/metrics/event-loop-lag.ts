/**
 * prom-client's default `nodejs_eventloop_lag_*` family, same names, help and meaning, measured on a
 * smaller histogram. prom-client reads mean, stddev and three percentiles of a
 * `monitorEventLoopDelay` histogram at each scrape: each read walks its ~64k buckets (1 ns to
 * 2^63 ns, 3 significant figures), about 0.3 ms of CPU per scrape, half of a worker's /metrics.
 * Here a timer of the same resolution records the interval between its ticks (what
 * `monitorEventLoopDelay` records) into a histogram of 1 µs to 1 h at 2 significant figures
 * (~4k buckets), read and reset at each scrape as prom-client does; an interval that spans a
 * scrape is counted in the next one.
 */
import { createHistogram } from 'node:perf_hooks';
import type { Gauge, Registry } from 'prom-client';

type GaugeClass = typeof import('prom-client').Gauge;

/** Registers the family on `registry`; the sampling timer does not keep the process alive. */
export function registerEventLoopLag(registry: Registry, GaugeCtor: GaugeClass, resolutionMs = 10): void {
  const registers = [registry];
  const h = createHistogram({ lowest: 1_000, highest: 3_600_000_000_000, figures: 2 });
  // Own previous tick, not recordDelta(): a reset at a scrape would drop the interval spanning it.
  let prev = process.hrtime.bigint();
  setInterval(() => {
    const now = process.hrtime.bigint();
    h.record(Math.max(1, Number(now - prev)));
    prev = now;
  }, resolutionMs).unref();

  const gauge = (name: string, help: string, aggregator: 'average' | 'min' | 'max', collect?: () => void): Gauge =>
    new GaugeCtor({ name, help, registers, aggregator, ...(collect ? { collect } : {}) });
  // As prom-client: the lag of a setImmediate queued at the scrape, set when it runs (the next scrape reads it).
  let last = 0;
  const lag = gauge('nodejs_eventloop_lag_seconds', 'Lag of event loop in seconds.', 'average', () => {
    const start = process.hrtime.bigint();
    setImmediate(() => {
      last = Number(process.hrtime.bigint() - start) / 1e9;
    });
    lag.set(last);
    lagMin.set(h.min / 1e9);
    lagMax.set(h.max / 1e9);
    lagMean.set(h.mean / 1e9);
    lagStddev.set(h.stddev / 1e9);
    lagP50.set(h.percentile(50) / 1e9);
    lagP90.set(h.percentile(90) / 1e9);
    lagP99.set(h.percentile(99) / 1e9);
    h.reset();
  });
  const lagMin = gauge('nodejs_eventloop_lag_min_seconds', 'The minimum recorded event loop delay.', 'min');
  const lagMax = gauge('nodejs_eventloop_lag_max_seconds', 'The maximum recorded event loop delay.', 'max');
  const lagMean = gauge('nodejs_eventloop_lag_mean_seconds', 'The mean of the recorded event loop delays.', 'average');
  const lagStddev = gauge('nodejs_eventloop_lag_stddev_seconds', 'The standard deviation of the recorded event loop delays.', 'average');
  const lagP50 = gauge('nodejs_eventloop_lag_p50_seconds', 'The 50th percentile of the recorded event loop delays.', 'average');
  const lagP90 = gauge('nodejs_eventloop_lag_p90_seconds', 'The 90th percentile of the recorded event loop delays.', 'average');
  const lagP99 = gauge('nodejs_eventloop_lag_p99_seconds', 'The 99th percentile of the recorded event loop delays.', 'average');
}
