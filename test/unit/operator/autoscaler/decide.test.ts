import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  arrivalRate,
  decide,
  drainSlots,
  steadySlots,
  unservedWaiting,
  type AutoscalerState,
  type DecideInput,
  type WorkObservation,
} from '../../../../operator/src/autoscaler/decide.js';
import { resolvePolicy, InvalidAutoscalingError, type AutoscalerPolicy } from '../../../../operator/src/autoscaler/policy.js';

const work = (w: Partial<WorkObservation>): WorkObservation => ({
  backlog: 0,
  reserved: 0,
  active: 0,
  scheduled: 0,
  receivedTotal: 0,
  completedTotal: 0,
  serviceSecondsTotal: 0,
  ...w,
});

/** Two polls 5 s apart: the second one carries the rates. */
function twoPolls(policy: AutoscalerPolicy, n: number, second: Partial<WorkObservation>) {
  const first = decide(null, { specReplicas: n, work: work({}) }, policy, 0);
  return decide(first.state, { specReplicas: n, work: work(second) }, policy, 5_000);
}

test('worked example: lambda 10/s, s 2 s, B+R 40 -> 25 steady + 10 drain slots -> 9 pods of 4', () => {
  const policy = resolvePolicy({ minReplicas: 1, maxReplicas: 50 }, 4);
  // 20 received + backlog grew by 30 = 50 arrivals in 5 s; 25 completions took 50 s
  const d = twoPolls(policy, 5, { backlog: 30, reserved: 10, active: 12, receivedTotal: 20, completedTotal: 25, serviceSecondsTotal: 50 });
  // steady = min(20 / 0.8, 20 + 1.25 * sqrt(min(20, 10 * 11))) = 25; drain = 40 * 2 / 8 = 10
  assert.equal(steadySlots(10, 2, policy), 25);
  assert.equal(d.desired, 9);
  assert.equal(d.replicas, 9);
  assert.equal(d.winner, 'work');
});

test('worked example: long tasks get a margin for the control horizon only', () => {
  const policy = resolvePolicy({ minReplicas: 1, maxReplicas: 50 }, 4);
  // a = 50 busy slots, but only 0.5/s * (1 s event delay + 10 s pod start) = 5.5 tasks can
  // arrive before new pods are up, and 50 * 11 / 100 = 5.5 of the running ones finish meanwhile
  assert.ok(Math.abs(steadySlots(0.5, 100, policy) - (50 + policy.staffingBeta * Math.sqrt(5.5 + 5.5))) < 1e-9);
  // polled: the decision waits for the poll, so the horizon is 5 s + 10 s
  const polled = resolvePolicy({ minReplicas: 1, maxReplicas: 50, eventDriven: false }, 4);
  assert.ok(Math.abs(steadySlots(0.5, 100, polled) - (50 + polled.staffingBeta * Math.sqrt(7.5 + 7.5))) < 1e-9);
  // short tasks: the classic beta * sqrt(a), capped at a / rho
  assert.equal(steadySlots(10, 2, policy), Math.min(20 / 0.8, 20 + policy.staffingBeta * Math.sqrt(20)));
});

test('drain term: at most one slot per waiting task (a task of s >= D cannot finish sooner on more slots)', () => {
  const policy = resolvePolicy({ minReplicas: 0, maxReplicas: 50 }, 4);
  // 50 tasks of 20 s: 50 * 20 / 8 = 125, but one slot each starts them all now
  assert.equal(drainSlots(50, 20, policy), 50);
  // 3 waiting tasks of 139 s: 3 slots (41.7 before issue 19's S5 work: 14 slots per task)
  assert.equal(drainSlots(3, 139, policy), 3);
  // short tasks: the term itself is small (40 * 2 / 8)
  assert.equal(drainSlots(40, 2, policy), 10);
});

test('waiting tasks that free slots of ready pods take now need no new slot', () => {
  // 3 ready pods of 4 slots, 9 running: 3 free slots take 3 of 5 waiting tasks
  assert.equal(unservedWaiting(5, 3, 3, 4, 9), 2);
  assert.equal(unservedWaiting(2, 3, 3, 4, 9), 0);
  // pods still starting (ready 1 of 3) free nothing yet; unknown readiness frees nothing
  assert.equal(unservedWaiting(5, 3, 1, 4, 4), 5);
  assert.equal(unservedWaiting(5, 3, undefined, 4, 0), 5);
  // ready pods beyond the committed count (draining out) take nothing new
  assert.equal(unservedWaiting(5, 2, 3, 4, 8), 5);

  // decide(): lambda 0.4/s, s 100 s (a = 40), 30 running: x = 40 - 10 * 0.89 = 31.1, margin
  // 1.25 * sqrt(4.4 + 3.3): 34.6 slots; 12 ready pods
  const policy = resolvePolicy({ minReplicas: 1, maxReplicas: 50 }, 4);
  const poll = (backlog: number, active: number) =>
    decide(
      decide(null, { specReplicas: 12, readyReplicas: 12, work: work({}) }, policy, 0).state,
      { specReplicas: 12, readyReplicas: 12, work: work({ backlog, active, receivedTotal: 2 - backlog, completedTotal: 30, serviceSecondsTotal: 3000 }) },
      policy,
      5_000,
    );
  // 18 free slots take the waiting task: it asks for nothing (before: one slot more, 12 pods)
  assert.equal(poll(1, 30).desired, poll(0, 30).desired);
  assert.equal(poll(0, 30).desired, 9);
  // every slot busy: the 2 waiting tasks ask for a slot each
  assert.ok(poll(2, 48).desired > poll(0, 48).desired, `${poll(2, 48).desired} > ${poll(0, 48).desired}`);
});

test('long tasks: the busy count at the horizon follows the running tasks, above or below the offered load', () => {
  const policy = resolvePolicy({ minReplicas: 1, maxReplicas: 100 }, 4);
  const T = 11; // 1 s event delay + 10 s assumed pod start
  // a = 0.5/s * 100 s = 50; 70 running: 20 above a, of which 1 - 11/100 are still running at T;
  // the margin covers 0.5 * 11 arrivals and 70 * 11 / 100 tasks finishing within T
  const x = 50 + 20 * (1 - T / 100);
  assert.ok(Math.abs(steadySlots(0.5, 100, policy, 10_000, 70) - (x + policy.staffingBeta * Math.sqrt(0.5 * T + (70 * T) / 100))) < 1e-9);
  // 40 running, 10 below a: the pool expects 50 - 10 * 0.89 = 41.1 busy at T, not 50 (a long
  // task that ends moves s for ~100 completions; the running count does not)
  const below = 50 - 10 * (1 - T / 100);
  assert.ok(Math.abs(steadySlots(0.5, 100, policy, 10_000, 40) - (below + policy.staffingBeta * Math.sqrt(0.5 * T + (40 * T) / 100))) < 1e-9);
  assert.ok(steadySlots(0.5, 100, policy, 10_000, 40) < steadySlots(0.5, 100, policy));
  // tasks shorter than T turn over before new pods are up: an excess of 20 running tasks of 2 s adds nothing
  assert.equal(steadySlots(10, 2, policy, 10_000, 40), steadySlots(10, 2, policy));
  assert.equal(steadySlots(10, 2, policy, 10_000, 5), steadySlots(10, 2, policy));
  // decide(): 80 tasks of 100 s running (a = 50): x = 50 + 30 * 0.89 = 76.7, + 4.7 margin
  // = 81.4 slots, 21 pods; the margin around a alone gave max(53.5, 80) = 80 slots, 20 pods
  const d = decide(
    decide(null, { specReplicas: 20, readyReplicas: 20, work: work({}) }, policy, 0).state,
    { specReplicas: 20, readyReplicas: 20, work: work({ active: 80, receivedTotal: 2.5, completedTotal: 30, serviceSecondsTotal: 3000 }) },
    policy,
    5_000,
  );
  assert.equal(d.desired, 21);
});

test('measured pod start sets the control horizon: a slow start gets a larger margin', () => {
  const policy = resolvePolicy({ minReplicas: 1, maxReplicas: 50 }, 4);
  // 0.5/s * (1 s + 29 s) = 15 arrivals and 50 * 30 / 100 = 15 finishing; the default 10 s start gives 5.5 + 5.5
  assert.ok(Math.abs(steadySlots(0.5, 100, policy, 29_000) - (50 + policy.staffingBeta * Math.sqrt(30))) < 1e-9);
  const at = (podStartMs: number) =>
    decide(
      decide(null, { specReplicas: 10, podStartMs, work: work({}) }, policy, 0).state,
      { specReplicas: 10, podStartMs, work: work({ active: 40, receivedTotal: 3, completedTotal: 40, serviceSecondsTotal: 4000 }) },
      policy,
      5_000,
    );
  assert.ok(at(60_000).desired > at(2_000).desired, `${at(60_000).desired} > ${at(2_000).desired}`);
});

/** Polls every `dtMs` with `arrivals(i)` tasks arriving in interval i (into the backlog, none consumed). */
function pollSeries(policy: AutoscalerPolicy, intervals: number, dtMs: number, arrivals: (i: number) => number, completed?: (i: number) => [number, number]) {
  let state: AutoscalerState | null = null;
  let received = 0;
  let done = 0;
  let busy = 0;
  const out: { lambda: number; rate: number; serviceTime: number }[] = [];
  for (let i = 0; i <= intervals; i++) {
    if (i > 0) {
      received += arrivals(i);
      const [n, secs] = completed?.(i) ?? [0, 0];
      done += n;
      busy += secs;
    }
    const d = decide(state, { specReplicas: 10, work: work({ receivedTotal: received, completedTotal: done, serviceSecondsTotal: busy }) }, policy, i * dtMs);
    state = d.state;
    out.push({ lambda: state.rates!.lambda, rate: arrivalRate(state.rates!), serviceTime: state.rates!.serviceTime });
  }
  return out;
}

test('arrival rate: corrected for the EWMA lag on a ramp, not on a steady stream', () => {
  const policy = resolvePolicy({ minReplicas: 1, maxReplicas: 100 }, 4);
  // a ramp of 0.025 tasks/s per s (S2: 0 -> 30/s in 1200 s), polled every 5 s for 1000 s
  const slope = 0.025;
  const ramp = pollSeries(policy, 200, 5_000, (i) => slope * 5 * (5 * i - 2.5));
  const trueRate = slope * 1000;
  const last = ramp.at(-1)!;
  // the EWMA (half-life 60 s, time constant 87 s) trails by slope * 87 = 2.2 tasks/s
  const tau = 60 / Math.LN2;
  assert.ok(Math.abs(trueRate - last.lambda - slope * tau) < 0.3, `EWMA ${last.lambda} against ${trueRate}`);
  assert.ok(Math.abs(last.rate - trueRate) < 0.3, `corrected ${last.rate} against ${trueRate}`);
  // a steady stream: nothing to correct
  const flat = pollSeries(policy, 100, 5_000, () => 50).at(-1)!;
  assert.ok(Math.abs(flat.rate - 10) < 1e-6 && Math.abs(flat.lambda - 10) < 1e-6, JSON.stringify(flat));
});

test('arrival rate: a burst is a jump, not a trend (the backlog term sizes it)', () => {
  const policy = resolvePolicy({ minReplicas: 1, maxReplicas: 100 }, 4);
  // 1/s, then 500 tasks within one 5 s interval, then 1/s again
  const series = pollSeries(policy, 40, 5_000, (i) => (i === 20 ? 500 : 5));
  const atBurst = series[20]!;
  // the EWMA takes its share of the burst, and no trend is read from it
  assert.ok(atBurst.lambda > 1.5, `lambda ${atBurst.lambda}`);
  assert.equal(atBurst.rate, atBurst.lambda);
  // afterwards the EWMA falls back, and the correction follows it down rather than up
  for (const p of series.slice(21)) assert.ok(p.rate <= p.lambda + 1e-9, JSON.stringify(p));
});

test('service time: one poll of many completions moves the estimate by at most the rate half-life of time', () => {
  const policy = resolvePolicy({ minReplicas: 1, maxReplicas: 100 }, 4);
  // 30 completions/s of 1 s each, polled every second, for 200 s; then one second of 2 s tasks
  const series = pollSeries(
    policy,
    201,
    1_000,
    () => 30,
    (i) => (i <= 200 ? [30, 30] : [30, 60]),
  );
  const before = series[200]!.serviceTime;
  const after = series[201]!.serviceTime;
  assert.ok(Math.abs(before - 1) < 1e-9, `${before}`);
  // 30 completions alone would move it by 1 - 0.99^30 = 26% of the gap; 1 s of a 60 s half-life is 1.2%
  const alpha = 1 - Math.pow(2, -1 / 60);
  assert.ok(Math.abs(after - (1 + alpha)) < 1e-9, `${after}`);
});

test('known future work (dueSoon) is sized like backlog and wakes a pool at zero before it comes due', () => {
  const policy = resolvePolicy({ minReplicas: 0, maxReplicas: 50 }, 4);
  const idle = decide(null, { specReplicas: 0, work: work({}) }, policy, 0);
  assert.equal(idle.replicas, 0);
  const led = decide(null, { specReplicas: 0, work: work({ dueSoon: 40 }) }, policy, 0);
  assert.equal(led.reason, 'Activated');
  assert.equal(led.replicas, Math.ceil(40 / 0.8 / 4));
  assert.match(led.message, /work 0 \(\+40 due soon\)/);
  // with the rate model trusted: 40 due tasks of 2 s drain within 8 s = 10 more slots (25 -> 35: 7 -> 9 pods)
  const rates = (due: number) =>
    decide(
      decide(null, { specReplicas: 5, work: work({}) }, policy, 0).state,
      { specReplicas: 5, work: work({ active: 12, receivedTotal: 50, completedTotal: 25, serviceSecondsTotal: 50, dueSoon: due }) },
      policy,
      5_000,
    );
  assert.equal(rates(40).desired - rates(0).desired, 2);
});

test('due-soon work keeps a pool from scaling to zero at the end of its cooldown', () => {
  const policy = resolvePolicy({ minReplicas: 0, maxReplicas: 10, cooldownPeriodSeconds: 60 }, 4);
  let s = decide(null, { specReplicas: 1, work: work({ active: 1 }) }, policy, 0).state;
  s = decide(s, { specReplicas: 1, work: work({ completedTotal: 1, serviceSecondsTotal: 1 }) }, policy, 30_000).state;
  const idle = { completedTotal: 1, serviceSecondsTotal: 1 };
  const withDue = decide(s, { specReplicas: 1, work: work({ ...idle, dueSoon: 1 }) }, policy, 120_000);
  assert.equal(withDue.replicas, 1);
  assert.notEqual(withDue.reason, 'Deactivated');
  assert.equal(decide(s, { specReplicas: 1, work: work(idle) }, policy, 120_000).reason, 'Deactivated');
});

test('before enough completions: the plain work count, (A + B + R) / rho per slot', () => {
  const policy = resolvePolicy({ minReplicas: 1, maxReplicas: 50 }, 4);
  const d = decide(null, { specReplicas: 1, work: work({ backlog: 20, active: 4 }) }, policy, 0);
  assert.equal(d.desired, Math.ceil(24 / 0.8 / 4));
});

test('cold start: no scale-up while none of the pods is ready yet', () => {
  const policy = resolvePolicy({ minReplicas: 1, maxReplicas: 50 }, 4);
  const input = { specReplicas: 2, work: work({ backlog: 100 }) };
  assert.equal(decide(null, { ...input, readyReplicas: 0 }, policy, 0).replicas, 2);
  assert.ok(decide(null, { ...input, readyReplicas: 1 }, policy, 0).replicas > 2);
});

test('from zero: work above the activation threshold scales straight to the formula; at or below it stays at zero', () => {
  const policy = resolvePolicy({ minReplicas: 0, maxReplicas: 50, activationThreshold: 5 }, 4);
  assert.equal(decide(null, { specReplicas: 0, work: work({ backlog: 5 }) }, policy, 0).replicas, 0);
  const d = decide(null, { specReplicas: 0, work: work({ backlog: 40 }) }, policy, 0);
  assert.equal(d.reason, 'Activated');
  assert.equal(d.replicas, Math.ceil(40 / 0.8 / 4));
});

test('scale to zero only after W = 0 and no arrivals for the whole cooldown', () => {
  const policy = resolvePolicy({ minReplicas: 0, maxReplicas: 10, cooldownPeriodSeconds: 60 }, 4);
  let s: AutoscalerState | null = null;
  let n = 2;
  const poll = (t: number, w: Partial<WorkObservation>) => {
    const d = decide(s, { specReplicas: n, work: work(w) }, policy, t);
    s = d.state;
    n = d.replicas;
    return d;
  };
  poll(0, { active: 1, receivedTotal: 10, completedTotal: 9, serviceSecondsTotal: 9 });
  assert.ok(poll(30_000, { receivedTotal: 10, completedTotal: 10, serviceSecondsTotal: 10 }).replicas > 0);
  assert.ok(poll(55_000, { receivedTotal: 10, completedTotal: 10, serviceSecondsTotal: 10 }).replicas > 0, 'cooldown counts from the last work seen (t=0)');
  assert.equal(poll(65_000, { receivedTotal: 10, completedTotal: 10, serviceSecondsTotal: 10 }).replicas, 0);
});

test('a running task keeps the pool above zero however long it runs', () => {
  const policy = resolvePolicy({ minReplicas: 0, maxReplicas: 10, cooldownPeriodSeconds: 0 }, 4);
  let s: AutoscalerState | null = null;
  for (let t = 0; t < 3_600_000; t += 5_000) {
    const d = decide(s, { specReplicas: 1, work: work({ active: 1, receivedTotal: 1 }) }, policy, t);
    assert.equal(d.replicas, 1);
    s = d.state;
  }
});

test('paused: replicas stay as they are', () => {
  const policy = resolvePolicy({ minReplicas: 1, maxReplicas: 10, paused: true }, 4);
  const d = decide(null, { specReplicas: 3, work: work({ backlog: 1000 }) }, policy, 0);
  assert.equal(d.replicas, 3);
  assert.equal(d.reason, 'Paused');
});

test('failed reads: scale-down frozen, backlog alone may scale up, fallback after the threshold', () => {
  const policy = resolvePolicy({ minReplicas: 1, maxReplicas: 20, fallback: { failureThreshold: 3, replicas: 6 } }, 4);
  const brokerDown: DecideInput = { specReplicas: 4, work: work({ backlog: null }) };
  let d = decide(null, brokerDown, policy, 0);
  assert.equal(d.replicas, 4);
  assert.ok(d.conditions.some((c) => c.type === 'ScalingActive' && !c.status));
  d = decide(d.state, { specReplicas: 4, work: work({ backlog: 100, active: null, reserved: null, scheduled: null }) }, policy, 5_000);
  assert.ok(d.replicas > 4, 'the broker backlog alone scales up');
  d = decide(d.state, brokerDown, policy, 10_000);
  assert.equal(d.replicas, 6);
  assert.equal(d.reason, 'Fallback');
  assert.ok(d.conditions.some((c) => c.type === 'Fallback' && c.status));
  d = decide(d.state, { specReplicas: 6, work: work({}) }, policy, 15_000);
  assert.equal(d.state.failures, 0);
});

test('tasksPerReplica and extra metrics propose too; the largest wins and is named', () => {
  const policy = resolvePolicy({ minReplicas: 1, maxReplicas: 50, tasksPerReplica: 2 }, 4);
  const d = decide(
    null,
    { specReplicas: 1, work: work({ backlog: 10, extra: [{ name: 'prom', value: 300, targetAverageValue: 10, activationValue: 0 }] }) },
    policy,
    0,
  );
  assert.equal(d.desired, 30);
  assert.equal(d.winner, 'prom');
});

test('invalid spec: every problem listed', () => {
  assert.throws(
    () =>
      resolvePolicy(
        { minReplicas: 5, maxReplicas: 2, targetUtilization: 1.5, behavior: { scaleDown: { policies: [{ type: 'Percent', value: 0, periodSeconds: 4000 }] } } },
        4,
      ),
    (err: unknown) => {
      assert.ok(err instanceof InvalidAutoscalingError);
      assert.equal(err.problems.length, 4);
      return true;
    },
  );
});

// ---- properties over random poll sequences -------------------------------------------------

const arbPolicy = fc
  .record({
    minReplicas: fc.integer({ min: 0, max: 4 }),
    extra: fc.integer({ min: 0, max: 40 }),
    concurrency: fc.integer({ min: 1, max: 8 }),
    cooldownPeriodSeconds: fc.integer({ min: 0, max: 120 }),
  })
  .map((p) =>
    resolvePolicy({ minReplicas: p.minReplicas, maxReplicas: p.minReplicas + p.extra + 1, cooldownPeriodSeconds: p.cooldownPeriodSeconds }, p.concurrency),
  );

const arbPoll = fc.record({
  dt: fc.integer({ min: 1_000, max: 40_000 }),
  backlog: fc.integer({ min: 0, max: 400 }),
  reserved: fc.integer({ min: 0, max: 20 }),
  active: fc.integer({ min: 0, max: 200 }),
  scheduled: fc.integer({ min: 0, max: 5 }),
  received: fc.integer({ min: 0, max: 300 }),
  completed: fc.integer({ min: 0, max: 300 }),
  mean: fc.double({ min: 0.01, max: 500, noNaN: true }),
  drainingActive: fc.integer({ min: 0, max: 20 }),
});

interface Step {
  t: number;
  n: number;
  next: number;
  poll: typeof arbPoll extends fc.Arbitrary<infer T> ? T : never;
  desired: number;
}

function run(policy: AutoscalerPolicy, polls: (typeof arbPoll extends fc.Arbitrary<infer T> ? T : never)[], start: number): Step[] {
  let s: AutoscalerState | null = null;
  let n = start;
  let t = 0;
  let received = 0;
  let completed = 0;
  let service = 0;
  const steps: Step[] = [];
  for (const p of polls) {
    t += p.dt + 0.5;
    received += p.received;
    completed += p.completed;
    service += p.completed * p.mean;
    const d = decide(
      s,
      {
        specReplicas: n,
        work: {
          backlog: p.backlog,
          reserved: p.reserved,
          active: p.active,
          scheduled: p.scheduled,
          drainingActive: p.drainingActive,
          receivedTotal: received,
          completedTotal: completed,
          serviceSecondsTotal: service,
        },
      },
      policy,
      t,
    );
    steps.push({ t, n, next: d.replicas, poll: p, desired: d.desired });
    s = d.state;
    n = d.replicas;
  }
  return steps;
}

test('property: replicas stay within [min, max] (zero only when min is 0)', () => {
  fc.assert(
    fc.property(arbPolicy, fc.array(arbPoll, { minLength: 1, maxLength: 40 }), fc.integer({ min: 0, max: 60 }), (policy, polls, start) => {
      for (const s of run(policy, polls, Math.min(start, policy.maxReplicas)).slice(1)) {
        assert.ok(s.next <= policy.maxReplicas, `${s.next} > max ${policy.maxReplicas}`);
        assert.ok(s.next >= policy.minReplicas, `${s.next} < min ${policy.minReplicas}`);
      }
    }),
  );
});

test('property: no scale to zero with work in the system, never below what running tasks need', () => {
  fc.assert(
    fc.property(arbPolicy, fc.array(arbPoll, { minLength: 1, maxLength: 40 }), (policy, polls) => {
      for (const s of run(policy, polls, policy.minReplicas)) {
        const p = s.poll;
        const w = p.backlog + p.reserved + p.active + p.scheduled;
        if (w > 0 && s.n > 0) assert.ok(s.next > 0, 'scaled to zero with work in the system');
        const busy = Math.max(0, p.active - Math.min(p.active, p.drainingActive));
        if (s.n > 0) assert.ok(s.next >= Math.min(policy.maxReplicas, Math.ceil(busy / policy.slotsPerReplica)), `${s.next} pods for ${busy} running tasks`);
      }
    }),
  );
});

test('property: no change inside the tolerance', () => {
  fc.assert(
    fc.property(arbPolicy, fc.array(arbPoll, { minLength: 1, maxLength: 40 }), (policy, polls) => {
      for (const s of run(policy, polls, Math.max(1, policy.minReplicas))) {
        const p = s.poll;
        const busy = Math.ceil(Math.max(0, p.active - Math.min(p.active, p.drainingActive)) / policy.slotsPerReplica);
        const w = p.backlog + p.reserved + p.active + p.scheduled;
        if (s.n >= Math.max(1, policy.minReplicas) && w > 0 && busy <= s.n && Math.abs(s.desired / s.n - 1) <= 0.1) {
          assert.equal(s.next, s.n, `desired ${s.desired} within 10% of ${s.n}`);
        }
      }
    }),
  );
});

test('property: scale-down never faster than the policy (50% per 30 s by default)', () => {
  fc.assert(
    fc.property(arbPolicy, fc.array(arbPoll, { minLength: 1, maxLength: 60 }), fc.integer({ min: 1, max: 60 }), (policy, polls, start) => {
      const steps = run(policy, polls, Math.min(start, policy.maxReplicas));
      const at = (time: number, fallback: number) => {
        let v = fallback;
        for (const s of steps) if (s.t <= time) v = s.next;
        return v;
      };
      const rule = policy.behavior.scaleDown.policies[0]!;
      for (const s of steps) {
        if (s.next >= s.n || s.next === 0) continue; // scale to zero follows the cooldown, not the rate
        const periodStart = at(s.t - rule.periodSeconds * 1000, steps[0]!.n);
        const bound = Math.max(Math.max(1, policy.minReplicas), Math.min(s.n, Math.trunc(periodStart * (1 - rule.value / 100))));
        assert.ok(s.next >= bound, `${s.n} -> ${s.next} at ${s.t}; period start ${periodStart}`);
      }
    }),
  );
});

/** Polls every 5 s from `from` to `to` (ms) with the work `w(t)`, carrying state and replicas. */
function driver(policy: AutoscalerPolicy, n: number) {
  let s: AutoscalerState | null = null;
  let last: ReturnType<typeof decide> | null = null;
  const run = (from: number, to: number, w: (t: number) => Partial<WorkObservation>) => {
    for (let t = from; t <= to; t += 5_000) {
      last = decide(s, { specReplicas: n, readyReplicas: n, work: work(w(t)) }, policy, t);
      s = last.state;
      n = last.replicas;
    }
    return last!;
  };
  return {
    run,
    get replicas() {
      return n;
    },
  };
}

test('waking from zero is not a flap: the scale-down window stays as configured', () => {
  // Issue 21: a burst 32 s after a scale to zero stretched a 60 s window to 360 s.
  const policy = resolvePolicy({ minReplicas: 0, maxReplicas: 20, cooldownPeriodSeconds: 60 }, 4);
  const d = driver(policy, 1);
  d.run(0, 65_000, (t) => (t === 0 ? { active: 1 } : {}));
  assert.equal(d.replicas, 0, 'scaled to zero after the cooldown');
  const woke = d.run(95_000, 95_000, () => ({ backlog: 20 }));
  assert.equal(woke.reason, 'Activated');
  assert.ok(woke.replicas >= 5);
  assert.equal(woke.state.lastFlapAt, null);
  assert.equal(woke.scaleDownWindowMs, 60_000);
  // One task keeps running: one pod is enough, and it gets there after the configured window, not 360 s.
  const later = d.run(100_000, 190_000, () => ({ active: 1 }));
  assert.equal(later.scaleDownWindowMs, 60_000);
  assert.ok(d.replicas < woke.replicas, `scaled down within the configured window (still ${d.replicas})`);
});

test('when the flap backoff holds pods, reason and message say so and for how long', () => {
  const policy = resolvePolicy({ minReplicas: 1, maxReplicas: 20 }, 4);
  const d = driver(policy, 8);
  d.run(0, 95_000, () => ({ active: 1 }));
  const down = d.replicas;
  assert.ok(down < 8, 'scaled down after the 60 s window');
  const up = d.run(100_000, 100_000, () => ({ backlog: 100, active: 1 }));
  assert.ok(up.replicas >= 1.5 * down, 'a big step back up: a flap');
  assert.equal(up.reason, 'ScaleUp');
  assert.match(up.message, /flap .*stretched to 120 s, shrinking back to 60 s within about \d+ min/);
  const held = d.run(105_000, 200_000, () => ({ active: 1 }));
  assert.equal(held.replicas, up.replicas, 'held by the stretched window');
  assert.equal(held.desired, 1);
  assert.equal(held.reason, 'FlapBackoff');
  assert.ok(held.scaleDownWindowMs > 100_000, `stretched window ${held.scaleDownWindowMs} ms (120 s, decaying)`);
  assert.match(
    held.message,
    /work proposes 1 replica .*held at \d+ \(\d+ without the flap backoff\): the scale-down window is stretched to 1\d\d s \(configured 60 s\) after a flap 100 s ago, and shrinks back to 60 s within about \d+ min/,
  );
});

test('a count held by the configured scale-down window says so instead of "Steady"', () => {
  const policy = resolvePolicy({ minReplicas: 1, maxReplicas: 20 }, 4);
  const d = driver(policy, 8);
  // one task waits, so the pool is not quiet (a quiet pool's window shrinks to the control horizon)
  const held = d.run(0, 30_000, () => ({ active: 1, backlog: 1 }));
  assert.equal(held.replicas, 8);
  assert.equal(held.reason, 'ScaleDownStabilized');
  assert.match(held.message, /proposes 1 replica .*held at 8 by the 60 s scale-down stabilization window/);
});

test('an idle pool the autoscaler never saw busy (just switched to minReplicas 0, or a new leader) scales to zero one cooldown after its first poll', () => {
  // lastActiveAt was unknown and stayed so while the pool was idle: the pod stayed up forever.
  const policy = resolvePolicy({ minReplicas: 0, maxReplicas: 6, cooldownPeriodSeconds: 30 }, 4);
  const d = driver(policy, 1);
  assert.equal(d.run(0, 25_000, () => ({})).replicas, 1, 'held for the cooldown');
  const last = d.run(30_000, 30_000, () => ({}));
  assert.equal(last.reason, 'Deactivated', last.message);
  assert.equal(d.replicas, 0);
});

test('quiet pool: nothing waits or arrives for the control horizon, so the scale-down window shrinks to it', () => {
  // T = 1 s event delay + 10 s pod start = 11 s; the configured scale-down window is 60 s
  const policy = resolvePolicy({ minReplicas: 1, maxReplicas: 50 }, 4);
  let s = decide(null, { specReplicas: 13, work: work({}) }, policy, 0).state;
  // 105 tasks in 5 s of 2 s each: a = 42, 42 + 1.25 * sqrt(42) = 50.1 slots, 13 pods wanted
  const busy = decide(s, { specReplicas: 13, work: work({ active: 40, receivedTotal: 105, completedTotal: 50, serviceSecondsTotal: 100 }) }, policy, 5_000);
  assert.equal(busy.desired, 13);
  s = busy.state;
  const done = { receivedTotal: 105, completedTotal: 140, serviceSecondsTotal: 280 };
  // no arrival since 5 s, seen at 6 s: quiet from then (the rate follows at once: far below Poisson noise)
  s = decide(s, { specReplicas: 13, work: work({ active: 10, ...done }) }, policy, 6_000).state;
  const idle = { ...done, completedTotal: 150, serviceSecondsTotal: 300 };
  s = decide(s, { specReplicas: 13, work: work(idle) }, policy, 7_000).state;
  // quiet for 10 s: still the 60 s window
  const early = decide(s, { specReplicas: 13, work: work(idle) }, policy, 16_000);
  assert.equal(early.replicas, 13);
  assert.equal(early.reason, 'ScaleDownStabilized');
  // quiet for 11 s = T: the 13 pods proposed 12 s ago may go (50% per 30 s)
  const quiet = decide(s, { specReplicas: 13, work: work(idle) }, policy, 17_000);
  assert.equal(quiet.reason, 'ScaleDown');
  assert.ok(quiet.replicas < 13, `${quiet.replicas}`);
  // a task due soon is work that waits: the pool is not quiet, the 60 s window holds
  const due = decide(s, { specReplicas: 13, work: work({ ...idle, dueSoon: 1 }) }, policy, 17_000);
  assert.equal(due.replicas, 13);
  // a scale-down window the user set is kept as set, quiet or not
  const own = resolvePolicy({ minReplicas: 1, maxReplicas: 50, behavior: { scaleDown: { stabilizationWindowSeconds: 60 } } }, 4);
  assert.equal(decide(s, { specReplicas: 13, work: work(idle) }, own, 17_000).replicas, 13);
});

test('quiet pool: after a flap the stretched scale-down window is kept', () => {
  const policy = resolvePolicy({ minReplicas: 1, maxReplicas: 50 }, 4);
  const idle = work({ receivedTotal: 100, completedTotal: 150, serviceSecondsTotal: 300 });
  let s = decide(null, { specReplicas: 13, work: idle }, policy, 0).state;
  s = { ...s, lastFlapAt: 0, downWindowMs: 120_000, quietSince: 0 };
  const d = decide(s, { specReplicas: 13, work: idle }, policy, 70_000);
  assert.equal(d.replicas, 13);
});
