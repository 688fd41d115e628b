import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { EventQueue } from '../../../../operator/src/simulator/event-queue.js';
import { Rng } from '../../../../operator/src/simulator/rng.js';
import { Simulation, modelFor, type ModelParams } from '../../../../operator/src/simulator/model.js';
import { POLICIES } from '../../../../operator/src/simulator/policies.js';
import { SCENARIOS, ScenarioError, generateTasks, loadScenario, type Scenario } from '../../../../operator/src/simulator/scenarios.js';
import { PYTHON_WORKERS, formatTable, simulate, writeCharts } from '../../../../operator/src/simulator/command.js';

test('event queue pops in time order, ties in insertion order', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 50 }), { maxLength: 3000 }), (times) => {
      const q = new EventQueue();
      times.forEach((t, i) => q.push(t, 0, i, 0));
      const out: [number, number][] = [];
      while (q.pop()) out.push([q.popped.time, q.popped.a]);
      const expected = times.map((t, i) => [t, i] as [number, number]).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
      assert.deepEqual(out, expected);
    }),
  );
});

test('rng: same seed and stream, same numbers; uniform draws in [0, 1)', () => {
  const a = new Rng(7, 1);
  const b = new Rng(7, 1);
  const c = new Rng(7, 2);
  const xs = Array.from({ length: 1000 }, () => a.next());
  assert.deepEqual(
    xs,
    Array.from({ length: 1000 }, () => b.next()),
  );
  assert.notDeepEqual(
    xs.slice(0, 10),
    Array.from({ length: 10 }, () => c.next()),
  );
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  assert.ok(Math.abs(mean - 0.5) < 0.05);
});

test('generated tasks follow the scenario: sorted arrivals inside the run, ETA share, positive service times', () => {
  const sc = SCENARIOS.get('S5')!;
  const t = generateTasks(sc, 3);
  for (let i = 1; i < t.count; i++) assert.ok(t.arrival[i]! >= t.arrival[i - 1]!);
  assert.ok(t.arrival[t.count - 1]! < sc.durationSeconds);
  assert.ok(t.service.every((s) => s > 0));
  const eta = t.eta.filter((e) => e > 0).length / t.count;
  assert.ok(eta > 0.01 && eta < 0.03, `ETA share ${eta}`);
});

/** S5 cut short: long tasks, so HPA-style scale-down kills some. */
const shortS5: Scenario = { ...SCENARIOS.get('S5')!, id: 'S5short', durationSeconds: 2400 };

for (const broker of ['amqp', 'redis'] as const) {
  test(`conservation on ${broker}: every task completes exactly once or is still in the system`, () => {
    for (const policy of ['P0', 'P1', 'P2', 'P3', 'P4']) {
      const tasks = generateTasks(shortS5, 11);
      const sim = new Simulation(shortS5, tasks, modelFor(shortS5, { broker }), POLICIES.get(policy)!.make(shortS5, 4), 11);
      const { metrics } = sim.run(); // throws if a task completed twice
      assert.equal(sim.completedTotal + sim.inSystem, tasks.count, `${policy}: completed ${sim.completedTotal} + in system ${sim.inSystem}`);
      assert.equal(metrics.unfinished, sim.inSystem, policy);
      if (policy === 'P4') assert.equal(metrics.killed, 0, 'drain-first never kills');
    }
  });
}

for (const broker of ['amqp', 'redis'] as const) {
  test(`Python Celery workers on ${broker} (prefetch 4, drains keep reservations): conservation, and drain-first still never kills`, () => {
    const tasks = generateTasks(shortS5, 11);
    const run = (overrides: Partial<ModelParams>) => {
      const sim = new Simulation(shortS5, tasks, modelFor(shortS5, { broker, ...overrides }), POLICIES.get('P4')!.make(shortS5, 4), 11);
      const { metrics } = sim.run(); // throws if a task completed twice
      assert.equal(sim.completedTotal + sim.inSystem, tasks.count);
      return metrics;
    };
    const python = run(PYTHON_WORKERS);
    assert.equal(python.killed, 0, 'a drained pod leaves only once its prefetched tasks have run too');
    assert.notDeepEqual(python, run({}), 'the Python variant is a different run');
  });
}

test('a killed task on Redis comes back only after the visibility timeout', () => {
  const tasks = generateTasks(shortS5, 11);
  const sim = new Simulation(shortS5, tasks, modelFor(shortS5, { broker: 'redis', visibilityTimeoutSeconds: 600 }), POLICIES.get('P1')!.make(shortS5, 4), 11);
  const { metrics } = sim.run();
  assert.ok(metrics.killed > 0, 'the scenario kills tasks under P1');
  assert.ok(metrics.delayedByVisibility > 0);
});

test('deterministic by seed; another seed gives another run', () => {
  const sc = SCENARIOS.get('S4')!;
  const run = (seed: number) => new Simulation(sc, generateTasks(sc, seed), modelFor(sc), POLICIES.get('P4')!.make(sc, 4), seed).run().metrics;
  assert.deepEqual(run(5), run(5));
  assert.notDeepEqual(run(5), run(6));
});

test('scenario files: a good one loads, a bad one lists its problems', () => {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-sim-'));
  const good = join(dir, 'good.json');
  writeFileSync(
    good,
    JSON.stringify({
      id: 'tiny',
      durationSeconds: 120,
      arrivals: [{ type: 'rate', points: [[0, 1]] }],
      service: { type: 'exponential', mean: 1 },
      minReplicas: 0,
      maxReplicas: 5,
      fixedReplicas: 1,
    }),
  );
  assert.equal(loadScenario(good).id, 'tiny');
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify({ durationSeconds: -1, arrivals: [{ type: 'wave' }], service: { type: 'uniform' } }));
  assert.throws(
    () => loadScenario(bad),
    (err: unknown) => {
      assert.ok(err instanceof ScenarioError);
      for (const k of ['durationSeconds', 'minReplicas', 'arrivals[0].type', 'service.type'])
        assert.match(err.message, new RegExp(k.replace(/[[\]]/g, '\\$&')));
      return true;
    },
  );
  assert.throws(() => loadScenario(join(dir, 'missing.json')), ScenarioError);
});

test('report: a table with every policy, JSON-ready results and an SVG per scenario', () => {
  const sc: Scenario = {
    id: 'tiny',
    description: 'tiny',
    durationSeconds: 600,
    arrivals: [{ type: 'rate', points: [[0, 2]] }],
    service: { type: 'exponential', mean: 1 },
    minReplicas: 0,
    maxReplicas: 5,
    fixedReplicas: 1,
  };
  const report = simulate({ scenarios: [sc], policies: ['P1', 'P4'], seeds: 2 });
  assert.equal(report.results.length, 2);
  const table = formatTable(report, [sc]);
  assert.match(table, /wait p95 \(s\)/);
  assert.match(table, /P1 .*P4|P1\s+P4/);
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-sim-'));
  const [file] = writeCharts(report, [sc], dir);
  const svg = readFileSync(file!, 'utf8');
  assert.match(svg, /^<svg /);
  assert.equal((svg.match(/<polyline/g) ?? []).length, 1 + 2 + 2);
});
