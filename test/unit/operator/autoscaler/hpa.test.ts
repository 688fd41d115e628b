import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  EMPTY_HPA_STATE,
  normalizeWithBehaviors,
  resolveBehavior,
  storeScaleEvent,
  type HpaSpec,
  type HpaState,
} from '../../../../operator/src/autoscaler/hpa.js';

// The HPA's sync step, proposals and legacy normalization are the simulator's: test/unit/simulator/hpa-baseline.test.ts.

test('Kubernetes behavior defaults', () => {
  const b = resolveBehavior({});
  assert.equal(b.scaleUp.stabilizationWindowSeconds, 0);
  assert.deepEqual(
    b.scaleUp.policies.map((p) => [p.type, p.value, p.periodSeconds]),
    [
      ['Pods', 4, 15],
      ['Percent', 100, 15],
    ],
  );
  assert.equal(b.scaleDown.stabilizationWindowSeconds, 300);
  assert.deepEqual(
    b.scaleDown.policies.map((p) => [p.type, p.value, p.periodSeconds]),
    [['Percent', 100, 15]],
  );
  // a user's list replaces the default list as a whole; other fields keep their defaults
  const c = resolveBehavior({ scaleDown: { policies: [{ type: 'Pods', value: 1, periodSeconds: 60 }] } });
  assert.equal(c.scaleDown.policies.length, 1);
  assert.equal(c.scaleDown.stabilizationWindowSeconds, 300);
  assert.equal(c.scaleDown.selectPolicy, 'Max');
});

test('property: scale-down never faster than the policies allow', () => {
  const behavior = resolveBehavior({
    scaleDown: {
      stabilizationWindowSeconds: 0,
      policies: [
        { type: 'Percent', value: 50, periodSeconds: 60 },
        { type: 'Pods', value: 3, periodSeconds: 30 },
      ],
    },
  });
  const spec: HpaSpec = { minReplicas: 1, maxReplicas: 100, behavior };
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.integer({ min: 1, max: 20_000 }), fc.integer({ min: 0, max: 100 })), { minLength: 1, maxLength: 60 }),
      fc.integer({ min: 1, max: 100 }),
      (steps, start) => {
        let state: HpaState = EMPTY_HPA_STATE;
        let n = start;
        let t = 0;
        const history: { t: number; n: number }[] = [{ t: -1e9, n }];
        const at = (time: number) => history.filter((h) => h.t <= time).at(-1)!.n;
        for (const [dt, desired] of steps) {
          t += dt + 0.5;
          const r = normalizeWithBehaviors(state, spec, n, desired, t);
          if (r.replicas < n) {
            // Max selectPolicy: the most permissive of the two policies over its own period
            const bound = Math.min(Math.trunc(at(t - 60_000) * 0.5), at(t - 30_000) - 3);
            assert.ok(r.replicas >= Math.max(1, Math.min(n, bound)), `${n} -> ${r.replicas} at ${t}, bound ${bound}`);
          }
          state = r.replicas !== n ? storeScaleEvent(r.state, behavior, n, r.replicas, t) : r.state;
          if (r.replicas !== n) history.push({ t, n: r.replicas });
          n = r.replicas;
          assert.ok(n >= 1 && n <= 100);
        }
      },
    ),
  );
});
