/**
 * Issue 19's goal, checked per scenario against a baseline policy (tuned KEDA, P2): wait p95 at
 * most `maxWaitRatio` of the baseline's at no more than `maxCostRatio` of its replica-seconds,
 * no task killed, no premature scale to zero. Ratios are paired by seed (every policy replays
 * the same tasks), so their confidence interval is over the per-seed ratios.
 */
import { estimate, type CellResult, type Estimate } from './run.js';

export interface GoalTarget {
  readonly baseline: string;
  readonly maxWaitRatio: number;
  readonly maxCostRatio: number;
}

export const ISSUE_19_GOAL: GoalTarget = Object.freeze({ baseline: 'P2', maxWaitRatio: 0.5, maxCostRatio: 1.0 });

export interface GoalCheck {
  readonly scenario: string;
  readonly policy: string;
  /** wait p95 / baseline's, per seed: mean and 95% CI */
  readonly waitRatio: Estimate;
  /** replica-seconds / baseline's, per seed */
  readonly costRatio: Estimate;
  readonly killed: number;
  readonly prematureZero: number;
  /** Every condition met by the means. */
  readonly holds: boolean;
  /** What misses, and by how much (empty when the goal holds). */
  readonly misses: readonly string[];
}

/** p95 waits under 10 ms are equal for any purpose; a ratio of two such numbers is noise. */
const WAIT_FLOOR_SECONDS = 0.01;

/** The goal per (scenario, policy) for every policy other than the baseline; [] without the baseline. */
export function checkGoal(results: readonly CellResult[], target: GoalTarget = ISSUE_19_GOAL): GoalCheck[] {
  const out: GoalCheck[] = [];
  for (const base of results.filter((r) => r.policy === target.baseline)) {
    for (const r of results.filter((x) => x.scenario === base.scenario && x.policy !== target.baseline)) {
      const seeds = Math.min(r.runs.length, base.runs.length);
      const ratio = (pick: (m: CellResult['runs'][number]) => number, floor: number) =>
        estimate(Array.from({ length: seeds }, (_, i) => Math.max(floor, pick(r.runs[i]!)) / Math.max(floor, pick(base.runs[i]!))));
      const waitRatio = ratio((m) => m.waitP95, WAIT_FLOOR_SECONDS);
      const costRatio = ratio((m) => m.replicaSeconds, 1);
      const killed = r.runs.reduce((n, m) => n + m.killed, 0);
      const prematureZero = r.runs.reduce((n, m) => n + m.prematureZero, 0);
      const misses: string[] = [];
      if (waitRatio.mean > target.maxWaitRatio) misses.push(`wait p95 ${waitRatio.mean.toFixed(2)}x (goal <= ${target.maxWaitRatio}x)`);
      if (costRatio.mean > target.maxCostRatio) misses.push(`replica-seconds ${costRatio.mean.toFixed(2)}x (goal <= ${target.maxCostRatio}x)`);
      if (killed > 0) misses.push(`${killed} tasks killed`);
      if (prematureZero > 0) misses.push(`${prematureZero} premature scale-to-zero`);
      out.push({ scenario: r.scenario, policy: r.policy, waitRatio, costRatio, killed, prematureZero, holds: misses.length === 0, misses });
    }
  }
  return out;
}

/** The goal table: one line per scenario and policy. */
export function formatGoal(checks: readonly GoalCheck[], target: GoalTarget = ISSUE_19_GOAL): string {
  if (checks.length === 0) return '';
  const head = `goal vs ${target.baseline}: wait p95 <= ${target.maxWaitRatio}x at replica-seconds <= ${target.maxCostRatio}x, none killed, no premature zero (ratios per seed, mean ±95% CI)`;
  const rows = checks.map((c) => {
    const f = (e: Estimate) => `${e.mean.toFixed(2)}x ±${e.ci95.toFixed(2)}`;
    return `${c.scenario.padEnd(4)} ${c.policy.padEnd(4)} wait p95 ${f(c.waitRatio).padStart(13)}  replica-s ${f(c.costRatio).padStart(13)}  ${c.holds ? 'holds' : `MISSES: ${c.misses.join('; ')}`}`;
  });
  return [head, ...rows].join('\n');
}
