// Issue 19 in the simulator: the event-driven policy P5 decides within its event delay of a
// change, leads known scheduled runs by the measured pod start, and the goal table compares
// with P2 seed by seed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Simulation, modelFor, type Controller } from '../../../../operator/src/simulator/model.js';
import { POLICIES, P5_OPTIONS } from '../../../../operator/src/simulator/policies.js';
import { SCENARIOS, generateTasks, type Scenario } from '../../../../operator/src/simulator/scenarios.js';
import { formatTable, simulate } from '../../../../operator/src/simulator/command.js';
import { checkGoal, formatGoal } from '../../../../operator/src/simulator/goal.js';

/** One pod at rest, then 400 tasks at once at t = 201 s (between two of P4's polls for seed 1). */
const burst: Scenario = {
  id: 'burst',
  description: 'one burst',
  durationSeconds: 600,
  arrivals: [
    { type: 'rate', points: [[0, 0.5]] },
    { type: 'bursts', atSeconds: [201], count: 400, withinSeconds: 0 },
  ],
  service: { type: 'exponential', mean: 1 },
  minReplicas: 1,
  maxReplicas: 50,
  fixedReplicas: 1,
};

/** Time of the first scale-up at or after `from`, as the controller leaves it. */
function firstScaleUpAfter(policy: string, sc: Scenario, from: number): number {
  const inner = POLICIES.get(policy)!.make(sc, 4);
  let at = Infinity;
  let before = 0;
  const watch = (sim: Simulation, run: () => void) => {
    if (sim.now < from) before = sim.specReplicas;
    run();
    if (sim.now >= from && at === Infinity && sim.specReplicas > before) at = sim.now;
  };
  const spy: Controller = {
    start: (sim) => inner.start(sim),
    onTimer: (sim, t) => watch(sim, () => inner.onTimer(sim, t)),
    onWorkChange: (sim) => watch(sim, () => inner.onWorkChange?.(sim)),
  };
  new Simulation(sc, generateTasks(sc, 1), modelFor(sc), spy, 1).run();
  return at;
}

test('P5 scales for a burst within its event delay; P4 waits for its poll', () => {
  const p5 = firstScaleUpAfter('P5', burst, 201);
  assert.ok(p5 <= 201 + P5_OPTIONS.eventDelaySeconds! + 1e-9, `P5 scaled at ${p5}`);
  const p4 = firstScaleUpAfter('P4', burst, 201);
  assert.ok(p4 > p5, `P4 scaled at ${p4}, after P5 at ${p5}`);
});

test("P5o wakes as the operator's watch does: a burst within the event delay, a flat backlog only at the polls", () => {
  const p5o = firstScaleUpAfter('P5o', burst, 201);
  assert.ok(p5o <= 201 + P5_OPTIONS.eventDelaySeconds! + 1e-9, `P5o scaled at ${p5o}`);
  // A steady stream the pool absorbs (0.5/s of 1 s tasks): P5 decides after arrivals and
  // completions, P5o at its 5 s polls (120 in 600 s) and the few moments a task waits.
  const steady: Scenario = { ...burst, arrivals: [{ type: 'rate', points: [[0, 0.5]] }] };
  const timers = (policy: string) => {
    const inner = POLICIES.get(policy)!.make(steady, 4);
    let n = 0;
    const spy: Controller = {
      start: (sim) => inner.start(sim),
      onTimer: (sim, t) => {
        n++;
        inner.onTimer(sim, t);
      },
      onWorkChange: (sim) => inner.onWorkChange?.(sim),
    };
    new Simulation(steady, generateTasks(steady, 1), modelFor(steady), spy, 1).run();
    return n;
  };
  const [p5, o] = [timers('P5'), timers('P5o')];
  assert.ok(o < 150, `P5o decided ${o} times`);
  assert.ok(p5 > 2 * o, `P5 decided ${p5} times, P5o ${o}`);
});

test('known scheduled runs are led by the measured pod start: their first tasks find pods ready', () => {
  const s7 = SCENARIOS.get('S7')!;
  const run = (policy: string) => new Simulation(s7, generateTasks(s7, 1), modelFor(s7), POLICIES.get(policy)!.make(s7, 4), 1).run().metrics;
  const led = run('P5');
  const cold = run('P4');
  // Not 0: the lead is the mean start, a pod's own start varies by +-20%.
  assert.ok(led.coldStartWait < 5, `first task of a run waits ${led.coldStartWait} s with the lead`);
  assert.ok(cold.coldStartWait > 10, `and ${cold.coldStartWait} s without (a cold start)`);
  assert.equal(led.killed, 0);
  assert.equal(led.prematureZero, 0);
});

test('standby keeps drained pods as paused consumers: never cheaper, never kills', () => {
  const sc = { ...SCENARIOS.get('S4')!, durationSeconds: 1800 };
  const run = (policy: string) => new Simulation(sc, generateTasks(sc, 2), modelFor(sc), POLICIES.get(policy)!.make(sc, 4), 2).run().metrics;
  const p5 = run('P5');
  const standby = run('P5s');
  assert.ok(standby.replicaSeconds >= p5.replicaSeconds, `${standby.replicaSeconds} >= ${p5.replicaSeconds}`);
  assert.equal(standby.killed, 0);
});

test('goal table: ratios against P2 seed by seed, and what misses by how much', () => {
  const report = simulate({ scenarios: [burst], policies: ['P2', 'P5'], seeds: 2 });
  const [check] = checkGoal(report.results);
  assert.equal(check!.policy, 'P5');
  const p2 = report.results.find((r) => r.policy === 'P2')!;
  const p5 = report.results.find((r) => r.policy === 'P5')!;
  const expected = (p5.runs[0]!.replicaSeconds / p2.runs[0]!.replicaSeconds + p5.runs[1]!.replicaSeconds / p2.runs[1]!.replicaSeconds) / 2;
  assert.ok(Math.abs(check!.costRatio.mean - expected) < 1e-9);
  assert.equal(check!.holds, check!.misses.length === 0);
  const text = formatGoal([check!]);
  assert.match(text, /goal vs P2: wait p95 <= 0.5x at replica-seconds <= 1x/);
  assert.match(text, check!.holds ? /burst P5 .* holds/ : /burst P5 .* MISSES: /);
  assert.match(formatTable(report, [burst]), /goal vs P2/);
  // a miss names the figure and the goal
  const missed = checkGoal([
    { ...p2, runs: [{ ...p2.runs[0]!, waitP95: 10, replicaSeconds: 100 }] },
    { ...p5, runs: [{ ...p5.runs[0]!, waitP95: 6, replicaSeconds: 120, killed: 1 }] },
  ])[0]!;
  assert.deepEqual(missed.misses, ['wait p95 0.60x (goal <= 0.5x)', 'replica-seconds 1.20x (goal <= 1x)', '1 tasks killed']);
});
