import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { resolveBehavior, type HpaSpec, type HpaState } from '../../../../operator/src/autoscaler/hpa.js';
import { hpaStep, metricProposal, type MetricReading } from '../../../../operator/src/simulator/hpa-baseline.js';

const avg = (value: number | null, averageValue: number): MetricReading => ({ name: 'queue', value, target: { type: 'AverageValue', averageValue } });
const counts = (n: number) => ({ specReplicas: n, statusReplicas: n, readyReplicas: n });
const tol = { up: 0.1, down: 0.1 };

test('AverageValue sizes absolutely: ceil(sum / target), whatever N', () => {
  assert.equal(metricProposal(95, { type: 'AverageValue', averageValue: 10 }, counts(3), tol).replicas, 10);
  assert.equal(metricProposal(0, { type: 'AverageValue', averageValue: 10 }, counts(3), tol).replicas, 0);
});

test('tolerance: within 10% of target the current count stays', () => {
  // usage per pod 10.5 against 10: ratio 1.05
  assert.equal(metricProposal(42, { type: 'AverageValue', averageValue: 10 }, counts(4), tol).replicas, 4);
  // ratio 1.25: ceil(50 / 10)
  assert.equal(metricProposal(50, { type: 'AverageValue', averageValue: 10 }, counts(4), tol).replicas, 5);
});

test('Value is multiplicative on ready pods; from N = 0 it is ceil(ratio) without tolerance', () => {
  const t = { type: 'Value', value: 10 } as const;
  assert.equal(metricProposal(30, t, { specReplicas: 4, statusReplicas: 4, readyReplicas: 2 }, tol).replicas, 6);
  assert.equal(metricProposal(10.5, t, { specReplicas: 0, statusReplicas: 0, readyReplicas: 0 }, tol).replicas, 2);
});

test('property: inside the tolerance no metric proposes a change', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 200 }),
      fc.double({ min: 0.9001, max: 1.0999, noNaN: true }),
      fc.double({ min: 0.1, max: 100, noNaN: true }),
      (n, ratio, target) => {
        const value = ratio * target * n;
        assert.equal(metricProposal(value, { type: 'AverageValue', averageValue: target }, counts(n), tol).replicas, n);
        assert.equal(metricProposal(ratio * target, { type: 'Value', value: target }, counts(n), tol).replicas, n);
      },
    ),
  );
});

const behaviorSpec = (min: number, max: number): HpaSpec => ({ minReplicas: min, maxReplicas: max, behavior: resolveBehavior({}) });

test('worked example, scale up: N=10, D=40 -> 20 (Max of Pods 14, Percent 20), 15 s later -> 40', () => {
  const spec = behaviorSpec(1, 100);
  let state: HpaState | null = null;
  const r1 = hpaStep(state, spec, counts(10), [avg(400, 10)], 0);
  assert.equal(r1.proposal, 40);
  assert.equal(r1.replicas, 20);
  assert.ok(r1.conditions.some((c) => c.type === 'ScalingLimited' && c.status && c.reason === 'ScaleUpLimit'));
  state = r1.state;
  // 15 s later the +10 event has left the 15 s period: periodStart = 20, limit = 40
  const r2 = hpaStep(state, spec, counts(20), [avg(400, 10)], 15_001);
  assert.equal(r2.replicas, 40);
  // within the same period the limit still counts the earlier +10
  const r3 = hpaStep(r1.state, spec, counts(20), [avg(800, 10)], 10_000);
  assert.equal(r3.replicas, 20);
});

test('worked example, scale down: N=40, D=5 held by the 300 s window, then to the highest in the window', () => {
  const spec = behaviorSpec(1, 100);
  let r = hpaStep(null, spec, counts(40), [avg(400, 10)], 0);
  assert.equal(r.replicas, 40);
  const n = 40;
  for (let t = 15_000; t < 300_000; t += 15_000) {
    r = hpaStep(r.state, spec, counts(n), [avg(50, 10)], t);
    assert.equal(r.replicas, 40, `held at t=${t}`);
    assert.ok(r.conditions.some((c) => c.reason === 'ScaleDownStabilized'));
  }
  // at 300 s the recommendation of 40 (t=0) is no longer newer than the cutoff;
  // Percent 100 / 15 s allows the whole drop in one step
  r = hpaStep(r.state, spec, counts(n), [avg(50, 10)], 300_000);
  assert.equal(r.replicas, 5);
});

test('legacy normalization (behavior nil): 5 min max-stabilization and scale-up limit max(2N, 4)', () => {
  const spec: HpaSpec = { minReplicas: 1, maxReplicas: 100, behavior: null };
  const up = hpaStep(null, spec, counts(1), [avg(1000, 10)], 0);
  assert.equal(up.replicas, 4);
  const up2 = hpaStep(up.state, spec, counts(4), [avg(1000, 10)], 15_000);
  assert.equal(up2.replicas, 8);
  // the recommendations of 100 within 5 min still win over 1; the scale-up limit is 2N = 16
  const down = hpaStep(up2.state, spec, counts(8), [avg(10, 10)], 30_000);
  assert.equal(down.replicas, 16);
  const later = hpaStep(down.state, spec, counts(16), [avg(10, 10)], 30_000 + 300_001);
  assert.equal(later.replicas, 1);
});

test('zero replicas with min >= 1: ScalingDisabled; outside [min, max]: clamped without metrics', () => {
  const spec = behaviorSpec(1, 10);
  const r = hpaStep(null, spec, counts(0), [avg(100, 1)], 0);
  assert.equal(r.replicas, 0);
  assert.ok(r.conditions.some((c) => c.type === 'ScalingActive' && !c.status && c.reason === 'ScalingDisabled'));
  assert.equal(hpaStep(null, spec, counts(12), [avg(null, 1)], 0).replicas, 10);
  assert.equal(hpaStep(null, behaviorSpec(3, 10), counts(2), [avg(null, 1)], 0).replicas, 3);
});

test('failed metrics: none valid -> no change; partial and pointing down -> no change; partial and up -> scale', () => {
  const spec = behaviorSpec(1, 100);
  const allFailed = hpaStep(null, spec, counts(5), [avg(null, 10)], 0);
  assert.equal(allFailed.replicas, 5);
  assert.ok(allFailed.conditions.some((c) => c.type === 'ScalingActive' && !c.status));
  assert.equal(hpaStep(null, spec, counts(5), [avg(null, 10), avg(10, 10)], 0).replicas, 5);
  assert.equal(hpaStep(null, spec, counts(5), [avg(null, 10), avg(80, 10)], 0).replicas, 8);
});

test('selectPolicy Min takes the smaller change; Disabled blocks the direction', () => {
  const min: HpaSpec = { minReplicas: 1, maxReplicas: 100, behavior: resolveBehavior({ scaleUp: { selectPolicy: 'Min' } }) };
  assert.equal(hpaStep(null, min, counts(10), [avg(400, 10)], 0).replicas, 14);
  const off: HpaSpec = {
    minReplicas: 1,
    maxReplicas: 100,
    behavior: resolveBehavior({ scaleDown: { selectPolicy: 'Disabled', stabilizationWindowSeconds: 0 } }),
  };
  assert.equal(hpaStep(null, off, counts(10), [avg(10, 10)], 0).replicas, 10);
});
