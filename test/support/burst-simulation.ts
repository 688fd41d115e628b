/**
 * The simulator's prediction for a burst the cluster tier ran (issue 19's proof on the real
 * cluster): the same tasks (count, 100-300 ms each, sent over the time the client took), each
 * pool's WorkerPool autoscaling spec through the real `decide()` (`CeleriacController`,
 * event-driven like the operator when `spec.eventDriven` is not false), Redis semantics, and the
 * pod start measured on the cluster (image on the node: no pull). Both pools get the same burst
 * shape (the caller passes the runs' means): send time and pod start are the cluster's, not the
 * policy's, and one run's measurement of them is noisy (pod start from 1 s timestamps of a few
 * pods). Seeds are paired: both specs replay the same task list per seed, so the ratio's
 * confidence interval is over per-seed ratios, as `simulate`'s goal table does.
 *
 * Replica-seconds are compared above the pool's minimum ("surplus"): the simulator accounts its
 * whole run, the cluster from the burst until the pool is back at min; the surplus is the part
 * the burst caused in both, whatever the window.
 *
 * A polled pool from zero can show the same surplus on every seed (CI 0, e.g. 276 with a 6 s pod
 * start) although seeds vary: its pods are created at a poll and removed at a poll (the cooldown
 * counts from the last poll that saw work), so their lifetime is a whole number of polls, and a
 * burst that always ends within the same poll interval gives the same count (see
 * operator/src/simulator/README.md, "Model checks").
 */
import type { AutoscalingSpec } from '../../operator/src/autoscaler/policy.js';
import { resolvePolicy } from '../../operator/src/autoscaler/policy.js';
import { modelFor, Simulation, type RunMetrics } from '../../operator/src/simulator/model.js';
import { CeleriacController, P5_OPTIONS } from '../../operator/src/simulator/policies.js';
import { estimate, type Estimate } from '../../operator/src/simulator/run.js';
import { generateTasks, type Scenario } from '../../operator/src/simulator/scenarios.js';

/** The burst as run on the cluster. */
export interface BurstShape {
  readonly tasks: number;
  /** How long the client took to send them (they arrive spread over this). */
  readonly sendSeconds: number;
  readonly minReplicas: number;
  readonly maxReplicas: number;
  readonly concurrency: number;
  readonly terminationGracePeriodSeconds: number;
  /** Measured pod start on the cluster (creation to Ready), seconds. */
  readonly podStartSeconds: number;
}

/** When the burst starts in virtual time, and how long a run lasts (the slowest pool is back at min well before). */
const BURST_AT_SECONDS = 60;
const DURATION_SECONDS = 600;
/** p95 waits under 10 ms are equal for any purpose (as in the simulator's goal check). */
const WAIT_FLOOR_SECONDS = 0.01;

function burstScenario(b: BurstShape): Scenario {
  return {
    id: 'cluster-burst',
    description: 'the cluster tier burst',
    durationSeconds: DURATION_SECONDS,
    arrivals: [{ type: 'bursts', atSeconds: [BURST_AT_SECONDS], count: b.tasks, withinSeconds: Math.max(0.1, b.sendSeconds) }],
    // 100-300 ms spread evenly: mean 0.2 s, CV 0.29.
    service: { type: 'lognormal', mean: 0.2, cv: 0.29 },
    minReplicas: b.minReplicas,
    maxReplicas: b.maxReplicas,
    fixedReplicas: b.minReplicas,
    concurrency: b.concurrency,
    prefetchMultiplier: 1,
    broker: 'redis',
    terminationGracePeriodSeconds: b.terminationGracePeriodSeconds,
  };
}

/** One seed of the burst under one pool's `spec.autoscaling`. */
function runBurst(sc: Scenario, b: BurstShape, spec: AutoscalingSpec, seed: number): RunMetrics {
  // The measured start is the whole start: the node has the image (imported, pull policy Never).
  const params = modelFor(sc, { scheduleSeconds: 0, coldPullSeconds: 0, bootSeconds: b.podStartSeconds });
  const controller = new CeleriacController(resolvePolicy(spec, b.concurrency), spec.eventDriven === false ? undefined : P5_OPTIONS);
  return new Simulation(sc, generateTasks(sc, seed), params, controller, seed).run().metrics;
}

/** One pool's predicted figures: wait p95 and replica-seconds above min (mean ±95% CI over seeds). */
export interface BurstEstimate {
  readonly waitP95Seconds: Estimate;
  readonly surplusReplicaSeconds: Estimate;
  readonly killed: number;
}

/** The prediction for pool `a` against pool `b`: each one's figures and a/b ratios paired by seed. */
export interface BurstComparison {
  readonly seeds: number;
  readonly a: BurstEstimate;
  readonly b: BurstEstimate;
  readonly waitP95Ratio: Estimate;
  readonly surplusReplicaSecondsRatio: Estimate;
}

/** Simulates the burst under pool specs `a` and `b` over `seeds` paired seeds. */
export function predictBurst(b: BurstShape, a: AutoscalingSpec, other: AutoscalingSpec, seeds = 10): BurstComparison {
  const sc = burstScenario(b);
  const surplus = (m: RunMetrics) => Math.max(0, m.replicaSeconds - b.minReplicas * DURATION_SECONDS);
  const runsA: RunMetrics[] = [];
  const runsB: RunMetrics[] = [];
  for (let seed = 1; seed <= seeds; seed++) {
    runsA.push(runBurst(sc, b, a, seed));
    runsB.push(runBurst(sc, b, other, seed));
  }
  const figures = (runs: RunMetrics[]): BurstEstimate => ({
    waitP95Seconds: estimate(runs.map((m) => m.waitP95)),
    surplusReplicaSeconds: estimate(runs.map(surplus)),
    killed: runs.reduce((n, m) => n + m.killed, 0),
  });
  const ratio = (pick: (m: RunMetrics) => number, floor: number) => estimate(runsA.map((m, i) => Math.max(floor, pick(m)) / Math.max(floor, pick(runsB[i]!))));
  return {
    seeds,
    a: figures(runsA),
    b: figures(runsB),
    waitP95Ratio: ratio((m) => m.waitP95, WAIT_FLOOR_SECONDS),
    surplusReplicaSecondsRatio: ratio(surplus, 1),
  };
}

/**
 * Where one measured ratio falls against the predicted one over `seeds` seeds: the same side of 1
 * (the ordering), within the 95% CI of the predicted mean, and within the 95% prediction interval
 * of one run (a single cluster run scatters like one seed, not like a mean of `seeds`:
 * t·sd·sqrt(1 + 1/n) = ci95·sqrt(n + 1)).
 */
export function ratioVerdict(
  measured: number,
  predicted: Estimate,
  seeds: number,
): { sameOrdering: boolean; withinCi: boolean; predictionInterval: number; withinPi: boolean } {
  const side = (x: number) => Math.sign(Math.round((x - 1) * 100));
  const predictionInterval = predicted.ci95 * Math.sqrt(seeds + 1);
  return {
    sameOrdering: side(measured) === side(predicted.mean),
    withinCi: Math.abs(measured - predicted.mean) <= predicted.ci95,
    predictionInterval,
    withinPi: Math.abs(measured - predicted.mean) <= predictionInterval,
  };
}
