/**
 * Runs scenarios x policies x seeds and aggregates each metric to mean and 95% confidence
 * interval (Student t over seeds).
 */
import { Simulation, modelFor, type ModelParams, type RunMetrics, type Trace } from './model.js';
import { POLICIES } from './policies.js';
import { generateTasks, type Scenario } from './scenarios.js';

export interface Estimate {
  readonly mean: number;
  /** half-width of the 95% confidence interval */
  readonly ci95: number;
}

export type Aggregate = { readonly [K in keyof RunMetrics]: Estimate };

export interface CellResult {
  readonly scenario: string;
  readonly policy: string;
  readonly seeds: number;
  readonly metrics: Aggregate;
  /** Each seed's figures, seed 1 first (for paired comparisons: every policy replays the same tasks). */
  readonly runs: readonly RunMetrics[];
  /** Trace of the first seed, for charts. */
  readonly trace: Trace;
}

// Two-sided 95% Student t quantiles for 1..30 degrees of freedom.
const T95 = [
  12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131, 2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069,
  2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042,
];

/** Mean and 95% CI half-width of samples (NaN samples are left out). */
export function estimate(xs: readonly number[]): Estimate {
  const v = xs.filter((x) => !Number.isNaN(x));
  const n = v.length;
  if (n === 0) return { mean: NaN, ci95: NaN };
  const mean = v.reduce((a, b) => a + b, 0) / n;
  if (n === 1) return { mean, ci95: 0 };
  const sd = Math.sqrt(v.reduce((a, b) => a + (b - mean) * (b - mean), 0) / (n - 1));
  const t = T95[Math.min(n - 2, T95.length - 1)]!;
  return { mean, ci95: (t * sd) / Math.sqrt(n) };
}

/** One scenario under one policy and one seed. */
export function runOnce(sc: Scenario, policy: string, seed: number, overrides: Partial<ModelParams> = {}): { metrics: RunMetrics; trace: Trace } {
  const info = POLICIES.get(policy);
  if (!info) throw new RangeError(`unknown policy ${policy}`);
  const params = modelFor(sc, overrides);
  const tasks = generateTasks(sc, seed);
  return new Simulation(sc, tasks, params, info.make(sc, params.concurrency), seed).run();
}

/** Every policy of one scenario over `seeds` seeds; tasks are generated once per seed and shared. */
export function runScenario(sc: Scenario, policies: readonly string[], seeds: number, overrides: Partial<ModelParams> = {}): CellResult[] {
  const params = modelFor(sc, overrides);
  const perPolicy = policies.map(() => [] as RunMetrics[]);
  const traces: Trace[] = [];
  for (let seed = 1; seed <= seeds; seed++) {
    const tasks = generateTasks(sc, seed);
    policies.forEach((id, i) => {
      const info = POLICIES.get(id);
      if (!info) throw new RangeError(`unknown policy ${id}`);
      const r = new Simulation(sc, tasks, params, info.make(sc, params.concurrency), seed).run();
      perPolicy[i]!.push(r.metrics);
      if (seed === 1) traces[i] = r.trace;
    });
  }
  return policies.map((id, i) => {
    const runs = perPolicy[i]!;
    const keys = Object.keys(runs[0]!) as (keyof RunMetrics)[];
    const metrics = Object.fromEntries(keys.map((k) => [k, estimate(runs.map((r) => r[k]))])) as unknown as Aggregate;
    return { scenario: sc.id, policy: id, seeds, metrics, runs, trace: traces[i]! };
  });
}
