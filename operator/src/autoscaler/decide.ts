/**
 * celeriac's replica decision (spec autoscaling.md §4, policy "P4"): pure, no I/O, injected clock.
 *
 * Per poll:
 * 1. Work in system W = B + R + A + S (broker backlog over every queue and priority sub-queue,
 *    reserved, active and ETA-held tasks from the workers).
 * 2. Arrival rate lambda = d(received + B)/dt and mean service time s from worker counters, both
 *    EWMAs; lambda corrected for the EWMA's lag on a trend (2 * EWMA - EWMA of the EWMA, reset at
 *    jumps). Offered load a = lambda * s busy slots (Little's law).
 * 3. Slots = max(steady(x) + drain, A), where steady(x) = min(x / rho, x + beta * sqrt(min(x, lambda * T + A * min(1, T / s))))
 *    (square-root staffing over the horizon T = decision delay + measured pod start, capped by
 *    the utilization target) around x = a + (A - a) * max(0, 1 - T / s), the busy slots expected
 *    when new capacity could be up, and drain = q * min(1, s / D), D = targetDrainSeconds, for the
 *    q = B + R + due tasks that the free slots of the ready pods do not take now.
 *    Before enough completions are seen: slots = (A + B + R) / rho. Replicas = ceil(slots / C).
 *    Optional `tasksPerReplica` (AverageValue on W) and extra metrics propose too; the largest wins.
 * 4. HPA tolerance, then the HPA `behavior` normalization (stabilization windows and policies).
 *    Known future work (`dueSoon`: ETA tasks and scheduled runs due within the horizon) counts
 *    as backlog, so capacity is there when it comes due. A quiet pool (nothing waiting or
 *    arriving for the horizon, flap record calm) has a scale-down window of the horizon only.
 * 5. In-flight floor: never below ceil(A / C); never to zero while W > 0. Zero only when
 *    min = 0, nothing arrived and W = 0 for the whole cooldown. From zero, work above the
 *    activation threshold scales straight to the formula's size.
 * 6. Failed reads: no scale-down on partial data, scale-up on broker backlog alone; after
 *    `fallback.failureThreshold` consecutive failures, the fallback replica count.
 */
import { EMPTY_HPA_STATE, latestByType, normalizeWithBehaviors, storeScaleEvent, withinTolerance, type HpaCondition, type HpaState } from './hpa.js';
import type { AutoscalerPolicy } from './policy.js';

/** An extra metric (e.g. a Prometheus query) with KEDA-like AverageValue semantics. */
export interface ExtraMetric {
  readonly name: string;
  /** null: the read failed */
  readonly value: number | null;
  readonly targetAverageValue: number;
  readonly activationValue: number;
}

/** What the metric sources saw at this poll; `null` means that read failed. */
export interface WorkObservation {
  /** B: ready messages over all the pool's queues and priority sub-queues. */
  readonly backlog: number | null;
  /** R, A, S summed over the pool's workers. */
  readonly reserved: number | null;
  readonly active: number | null;
  readonly scheduled: number | null;
  /**
   * Of `active`, tasks running on pods that are draining out: they finish there, so they
   * count as work in system (no scale to zero) but need no slot on the pods that stay.
   */
  readonly drainingActive?: number | undefined;
  /** Cumulative counters summed over workers; a drop (a pod went away) skips that rate sample. */
  readonly receivedTotal: number | null;
  readonly completedTotal: number | null;
  readonly serviceSecondsTotal: number | null;
  readonly extra?: readonly ExtraMetric[] | undefined;
  /**
   * Known future work (issue 19): tasks that will need a slot within the lead time (the measured
   * pod start plus the decision delay) but hold none yet: ETA/countdown tasks held by workers and
   * due soon, and the tasks of scheduled (beat) runs about to fire. Sized like backlog, so the
   * capacity is there when they come due; it also keeps (or wakes) the pool from zero.
   */
  readonly dueSoon?: number | undefined;
}

export interface DecideInput {
  /** N: the pool's current replica target. */
  readonly specReplicas: number;
  /**
   * Pods Ready now. While none of the N pods is ready yet (cold start), the backlog grows for
   * want of started pods, not of pods: the count is held until one is ready.
   */
  readonly readyReplicas?: number | undefined;
  /**
   * Measured time from a scale-up to a consuming pod (ms); the control horizon of the staffing
   * margin is the decision delay plus this. Default: `policy.podStartMs`.
   */
  readonly podStartMs?: number | undefined;
  readonly work: WorkObservation;
}

interface RateState {
  readonly at: number;
  readonly received: number;
  readonly backlog: number;
  readonly completed: number;
  readonly serviceSeconds: number;
  /** tasks/s, EWMA */
  readonly lambda: number;
  /**
   * EWMA of `lambda` (same half-life). On a linear trend an EWMA lags by slope x its time
   * constant and this one by twice that, so lambda - lambdaSlow is the lag (see arrivalRate).
   * Absent in a state kept from before it existed: no trend until the next interval.
   */
  readonly lambdaSlow?: number | undefined;
  /** s, EWMA; 0 until the first completion */
  readonly serviceTime: number;
  readonly serviceSamples: number;
  /** tasks arrived during the last interval */
  readonly lastArrivals: number;
  /** intervals measured so far */
  readonly intervals: number;
}

/** Kept by the caller between polls; start with `null`. */
export interface AutoscalerState {
  readonly hpa: HpaState;
  readonly rates: RateState | null;
  readonly lastActiveAt: number | null;
  readonly failures: number;
  /** Scale-down stabilization window set at the last flap (flap backoff), ms. */
  readonly downWindowMs: number;
  readonly lastFlapAt: number | null;
  readonly lastDownAt: number | null;
  /** Since when nothing arrived and nothing waited (null while work arrives or waits). */
  readonly quietSince: number | null;
}

export interface Condition {
  readonly type: string;
  readonly status: boolean;
  readonly reason: string;
  readonly message: string;
}

export interface Decision {
  /** The replica count to apply (equal to N when nothing changes). */
  readonly replicas: number;
  /** Largest proposal before normalization. */
  readonly desired: number;
  /** Which proposal won ("work", "tasksPerReplica", an extra metric's name, "fallback", ...). */
  readonly winner: string;
  /** CamelCase: why `replicas` is what it is (Activated, ScaleUp, ScaleDown, ScaleDownStabilized, FlapBackoff, ...). */
  readonly reason: string;
  /** The same in a sentence a reader can act on (status.autoscaling.message and the scale Event). */
  readonly message: string;
  /**
   * Scale-down stabilization window in force, ms; above the configured one while the flap
   * backoff stretches it.
   */
  readonly scaleDownWindowMs: number;
  /** The values seen, for status and logs. */
  readonly metrics: readonly { readonly name: string; readonly value: number }[];
  readonly active: boolean;
  readonly conditions: readonly Condition[];
  readonly state: AutoscalerState;
}

/**
 * Steady-state slots for arrival rate `lambda` (tasks/s) and mean service time `s` (s):
 * the busy slots x expected at the control horizon T (poll + pod start) plus a square-root
 * staffing margin, capped at x / rho. The margin covers how far the busy count can move before
 * added capacity arrives: the tasks that arrive within T (lambda * T, Poisson) and the running
 * ones that finish within it (A * T / s of them, about as variable), so long tasks (s >> T) get a
 * small margin and short tasks the classic beta * sqrt(a) (x is the cap).
 *
 * x is what the `running` tasks (default: a, the steady state) and the arrivals make of the busy count at the horizon: of the
 * A running now, the share 1 - T / s still runs (tasks of mean length s at uniform ages), and the
 * rest of the offered load a = lambda * s comes from arrivals, so x = a + (A - a) * (1 - T / s),
 * above a while more run than the offered load and below it while fewer do. Tasks shorter than
 * T turn over before new capacity is up: x = a. For long tasks x follows A, which is steadier
 * than lambda * s: one task of a heavy tail moves s for ~100 completions (S5, lognormal mean
 * 138 s: the pool swung 14 <-> 28 pods with about 60 running; issue 19, third round).
 * Before that round x did not go below a (S5 then 1.04x of tuned KEDA's cost with P5o); below
 * a without the finishing tasks in the margin, S5's wait went to 0.77x.
 */
export function steadySlots(lambda: number, s: number, policy: AutoscalerPolicy, podStartMs: number = policy.podStartMs, running?: number): number {
  const a = lambda * s;
  if (a <= 0) return 0;
  // Unknown: as many as the offered load (the steady state).
  running ??= a;
  const horizon = reactionMs(policy, podStartMs) / 1000;
  const x = Math.max(0, a + (running - a) * Math.max(0, 1 - horizon / s));
  const exposed = Math.min(x, lambda * horizon + running * Math.min(1, horizon / s));
  return Math.min(x / policy.targetUtilization, x + policy.staffingBeta * Math.sqrt(exposed));
}

/**
 * The arrival rate to size for (tasks/s): the EWMA corrected for its lag on a trend,
 * 2 * lambda - lambdaSlow (Brown's double smoothing), never below 0. An EWMA of time constant
 * tau trails a ramp by slope * tau: on S2's ramp (0 -> 30/s in 1200 s, tau 87 s) that is 2.2
 * tasks/s too few on the way up (the pool a pod short where S2's waits were) and as many too
 * many on the way down (issue 19, third round).
 */
export function arrivalRate(rates: Pick<RateState, 'lambda' | 'lambdaSlow'>): number {
  return Math.max(0, 2 * rates.lambda - (rates.lambdaSlow ?? rates.lambda));
}

/**
 * Extra slots that drain `waiting` tasks of mean service time `s` (s) within targetDrainSeconds D:
 * waiting * s / D, and one slot per task at most. A task of s >= D cannot finish sooner than s
 * whatever the pool does, so one slot starts it now (50 tasks of 20 s do not finish sooner on
 * 100 slots; one waiting task of 138 s among 65 running asked for 14 slots before issue 19's
 * S5 work). Tasks that a free slot of a ready pod takes now are not `waiting` here (see decide).
 */
export function drainSlots(waiting: number, s: number, policy: AutoscalerPolicy): number {
  return waiting * Math.min(1, (s * 1000) / policy.targetDrainMs);
}

/**
 * Of `waiting` tasks (backlog, reserved, due soon), those no free slot of the ready pods takes
 * now: a task that starts at once on a pod already up needs no new slot. `ready` pods are
 * counted up to `replicas` (pods draining out take nothing new); unknown readiness frees nothing.
 */
export function unservedWaiting(waiting: number, replicas: number, ready: number | undefined, slotsPerReplica: number, running: number): number {
  const free = Math.max(0, Math.min(replicas, ready ?? 0) * slotsPerReplica - running);
  return Math.max(0, waiting - free);
}

/** Control horizon T: from a change in the work to new capacity consuming (decision delay + pod start), ms. */
export function reactionMs(policy: AutoscalerPolicy, podStartMs: number = policy.podStartMs): number {
  return policy.decisionDelayMs + podStartMs;
}

const SERVICE_EWMA_TASKS = 100;
/** A poll's mean service time counts at most this many times the current estimate. */
const SERVICE_OUTLIER_FACTOR = 12;

function updateRates(prev: RateState | null, w: WorkObservation, now: number, halfLifeMs: number): RateState | null {
  const { backlog, receivedTotal, completedTotal, serviceSecondsTotal } = w;
  if (backlog === null || receivedTotal === null || completedTotal === null || serviceSecondsTotal === null) return prev;
  const fresh: RateState = {
    at: now,
    received: receivedTotal,
    backlog,
    completed: completedTotal,
    serviceSeconds: serviceSecondsTotal,
    lambda: prev?.lambda ?? 0,
    lambdaSlow: prev?.lambdaSlow,
    serviceTime: prev?.serviceTime ?? 0,
    serviceSamples: prev?.serviceSamples ?? 0,
    lastArrivals: 0,
    intervals: prev?.intervals ?? 0,
  };
  if (!prev) return fresh;
  const dt = (now - prev.at) / 1000;
  const dReceived = receivedTotal - prev.received;
  const dCompleted = completedTotal - prev.completed;
  const dService = serviceSecondsTotal - prev.serviceSeconds;
  if (dt <= 0 || dReceived < 0 || dCompleted < 0 || dService < 0) return fresh; // counter reset: re-base
  const arrivals = Math.max(0, dReceived + backlog - prev.backlog);
  const alpha = 1 - Math.pow(2, -(dt * 1000) / halfLifeMs);
  // Change point: a count far below Poisson noise around the EWMA means arrivals fell off;
  // follow at once instead of through the half-life. Upward jumps are left to the EWMA and
  // the backlog term: a burst looks like a step for one interval and must not size the pool.
  const expected = prev.lambda * dt;
  const shifted = expected - arrivals > 3 * Math.sqrt(expected) + 3;
  const lambda = shifted || prev.intervals === 0 ? arrivals / dt : prev.lambda + alpha * (arrivals / dt - prev.lambda);
  // A jump (far more arrivals than the trend explains: a burst, a step) is no trend: the backlog
  // term sizes it, and a trend read from it would double the burst in lambda (S6 0.87x -> 0.97x
  // of tuned KEDA's cost, S4 0.86x -> 0.90x). Measured from the trend-corrected rate, so a steady
  // ramp is not taken for jumps (it was from the plain EWMA, which lags it).
  const trended = arrivalRate(prev) * dt;
  const jump = arrivals - trended > 4 * Math.sqrt(trended) + 5;
  const slow = prev.lambdaSlow ?? prev.lambda;
  const lambdaSlow = shifted || jump || prev.intervals === 0 ? lambda : slow + alpha * (lambda - slow);
  let serviceTime = prev.serviceTime;
  if (dCompleted > 0) {
    // Count-weighted EWMA (about 70 completions of half-life), and at least the rate's half-life
    // of time: at 30 completions/s, 70 completions are 2 s, and the scale-down window kept the
    // highest of that noise (S2 1.00x -> 0.94x of tuned KEDA's cost, S3 1.05x -> 1.03x; issue 19).
    // Winsorized: one task of a heavy tail (hours among seconds) must not resize the pool;
    // the in-flight floor still covers whatever really runs.
    const raw = dService / dCompleted;
    const inst = prev.serviceSamples >= SERVICE_EWMA_TASKS ? Math.min(raw, SERVICE_OUTLIER_FACTOR * prev.serviceTime) : raw;
    const weight = prev.serviceSamples === 0 ? 1 : Math.min(1 - Math.pow(1 - 1 / SERVICE_EWMA_TASKS, dCompleted), alpha);
    serviceTime = prev.serviceTime + weight * (inst - prev.serviceTime);
  }
  return { ...fresh, lambda, lambdaSlow, serviceTime, serviceSamples: prev.serviceSamples + dCompleted, lastArrivals: arrivals, intervals: prev.intervals + 1 };
}

/**
 * One poll of celeriac's autoscaler. Pure: the same inputs give the same decision. The caller
 * applies `replicas` (through the drain-first scale-down) and keeps `state` for the next poll.
 */
export function decide(prior: AutoscalerState | null, input: DecideInput, policy: AutoscalerPolicy, now: number): Decision {
  const n = input.specReplicas;
  const w = input.work;
  const C = policy.slotsPerReplica;
  const base: AutoscalerState = prior ?? {
    hpa: { ...EMPTY_HPA_STATE, recommendations: [{ recommendation: n, at: now }] },
    rates: null,
    lastActiveAt: null,
    failures: 0,
    downWindowMs: policy.behavior.scaleDown.stabilizationWindowSeconds * 1000,
    lastFlapAt: null,
    lastDownAt: null,
    quietSince: null,
  };
  const lo = Math.max(1, policy.minReplicas);
  const clamp = (x: number): number => Math.min(policy.maxReplicas, Math.max(lo, x));
  const conditions: Condition[] = [];

  if (policy.paused) {
    conditions.push({ type: 'ScalingActive', status: false, reason: 'Paused', message: 'autoscaling is paused; replicas are left as they are' });
    return {
      replicas: n,
      desired: n,
      winner: 'paused',
      reason: 'Paused',
      message: 'spec.autoscaling.paused: replicas are left as they are',
      scaleDownWindowMs: downWindowNow(base, policy, now),
      metrics: [],
      active: false,
      conditions,
      state: base,
    };
  }

  const workersOk = w.reserved !== null && w.active !== null && w.scheduled !== null;
  const brokerOk = w.backlog !== null;
  const extra = w.extra ?? [];
  const metrics: { name: string; value: number }[] = [];
  if (w.backlog !== null) metrics.push({ name: 'backlog', value: w.backlog });
  if (workersOk) metrics.push({ name: 'inFlight', value: w.reserved! + w.active! + w.scheduled! });
  for (const m of extra) if (m.value !== null) metrics.push({ name: m.name, value: m.value });

  if (!brokerOk || !workersOk || extra.some((m) => m.value === null)) {
    const failures = base.failures + 1;
    const state = { ...base, failures };
    const failed = [!brokerOk && 'broker backlog', !workersOk && 'worker metrics', ...extra.filter((m) => m.value === null).map((m) => m.name)]
      .filter(Boolean)
      .join(', ');
    if (policy.fallback && failures >= policy.fallback.failureThreshold) {
      const replicas = Math.min(policy.maxReplicas, Math.max(policy.minReplicas, policy.fallback.replicas));
      conditions.push({
        type: 'Fallback',
        status: true,
        reason: 'FallbackActive',
        message: `${failures} failed reads in a row (${failed}); using fallback replicas ${replicas}`,
      });
      conditions.push({ type: 'ScalingActive', status: false, reason: 'FailedGetMetrics', message: `could not read ${failed}` });
      return {
        replicas,
        desired: replicas,
        winner: 'fallback',
        reason: 'Fallback',
        message: `${failures} failed reads in a row (${failed}): fallback replicas ${replicas}`,
        scaleDownWindowMs: downWindowNow(base, policy, now),
        metrics,
        active: false,
        conditions,
        state,
      };
    }
    // No scale-down on partial data; the broker backlog alone may still scale up.
    let replicas = n;
    if (brokerOk && w.backlog! > policy.activationThreshold) {
      const s = base.rates && base.rates.serviceSamples >= policy.minServiceSamples ? base.rates.serviceTime : null;
      const slots = s !== null ? drainSlots(w.backlog!, s, policy) : w.backlog! / policy.targetUtilization;
      replicas = Math.max(n, Math.min(policy.maxReplicas, Math.ceil(slots / C)));
    }
    conditions.push({ type: 'ScalingActive', status: false, reason: 'FailedGetMetrics', message: `could not read ${failed}; scale-down is frozen` });
    const hpa = replicas !== n ? storeScaleEvent(base.hpa, policy.behavior, n, replicas, now) : base.hpa;
    const message =
      replicas > n
        ? `could not read ${failed}: scaled up on the broker backlog alone (${w.backlog})`
        : `could not read ${failed}: scale-down is frozen at ${n}`;
    return {
      replicas,
      desired: replicas,
      winner: 'backlog',
      reason: replicas > n ? 'BacklogOnly' : 'MetricsUnavailable',
      message,
      scaleDownWindowMs: downWindowNow(base, policy, now),
      metrics,
      active: replicas > 0,
      conditions,
      state: { ...state, hpa },
    };
  }

  const B = w.backlog!;
  const R = w.reserved!;
  const A = w.active!;
  const S = w.scheduled!;
  const W = B + R + A + S;
  // Known future work waits like backlog; ETA-held tasks among it are already in S (and W).
  const due = Math.max(0, w.dueSoon ?? 0);
  const workText = due > 0 ? `${W} (+${due} due soon)` : `${W}`;
  const Ad = Math.min(A, w.drainingActive ?? 0);
  const rates = updateRates(base.rates, w, now, policy.rateHalfLifeMs);
  const arrived = (rates?.lastArrivals ?? 0) > 0;
  const extraActive = extra.some((m) => m.value! > m.activationValue);
  const active = W + due > policy.activationThreshold || extraActive;
  // Unknown (no poll has seen work since this state began: a pool switched to minReplicas 0 while
  // idle, or a new leader): the cooldown counts from this poll, else an idle pool never reaches zero.
  const lastActiveAt = W + due > 0 || arrived || extraActive ? now : (base.lastActiveAt ?? now);
  const quietSince = arrived || B + R + due > 0 ? null : (base.quietSince ?? now);

  // Proposals; the largest wins.
  const trusted = rates !== null && rates.serviceSamples >= policy.minServiceSamples && rates.serviceTime > 0;
  let slots: number;
  if (trusted) {
    // Running tasks keep their slots whatever the model says.
    const waiting = unservedWaiting(B + R + due, n, input.readyReplicas, C, A - Ad);
    const s = rates.serviceTime;
    slots = Math.max(steadySlots(arrivalRate(rates), s, policy, input.podStartMs, A) + drainSlots(waiting, s, policy), A) - Ad;
  } else {
    slots = (A - Ad + B + R + due) / policy.targetUtilization;
  }
  let desired = Math.ceil(slots / C - 1e-9);
  let winner = 'work';
  if (policy.tasksPerReplica !== null) {
    const p = Math.ceil(W / policy.tasksPerReplica);
    if (p > desired) {
      desired = p;
      winner = 'tasksPerReplica';
    }
  }
  for (const m of extra) {
    const p = Math.ceil(m.value! / m.targetAverageValue);
    if (p > desired) {
      desired = p;
      winner = m.name;
    }
  }
  const floor = Math.ceil((A - Ad) / C);
  const state0: AutoscalerState = { ...base, rates, lastActiveAt, quietSince, failures: 0 };

  // From zero: activation, straight to the formula's size.
  if (n === 0) {
    const windowMs = downWindowNow(state0, policy, now);
    if (!active && policy.minReplicas === 0) {
      conditions.push({ type: 'ScalingActive', status: true, reason: 'Idle', message: 'no work above the activation threshold' });
      return {
        replicas: 0,
        desired: 0,
        winner,
        reason: 'Idle',
        message: `at zero: work ${workText} is not above the activation threshold ${policy.activationThreshold}`,
        scaleDownWindowMs: windowMs,
        metrics,
        active,
        conditions,
        state: state0,
      };
    }
    const replicas = Math.min(policy.maxReplicas, Math.max(lo, desired));
    const message = `woke from zero: work ${workText} above the activation threshold ${policy.activationThreshold}; ${winner} proposes ${desired} replica${desired === 1 ? '' : 's'}`;
    conditions.push({ type: 'ScalingActive', status: true, reason: 'Activated', message });
    const hpa = storeScaleEvent(base.hpa, policy.behavior, 0, replicas, now);
    // Waking from zero is what min 0 is for, not a flap: the scale to zero that came before was
    // the cooldown's decision, so it does not stretch the scale-down window (lastDownAt cleared).
    return {
      replicas,
      desired,
      winner,
      reason: 'Activated',
      message,
      scaleDownWindowMs: windowMs,
      metrics,
      active,
      conditions,
      state: { ...state0, lastDownAt: null, hpa },
    };
  }

  // Scale to zero: only with nothing in the system and nothing arriving for the whole cooldown.
  if (policy.minReplicas === 0 && W + due === 0 && !arrived && !extraActive && lastActiveAt !== null && now - lastActiveAt >= policy.cooldownMs) {
    const message = `no work for ${policy.cooldownMs / 1000} s (cooldownPeriodSeconds): scaled to zero`;
    conditions.push({ type: 'ScalingActive', status: true, reason: 'Deactivated', message });
    const hpa = storeScaleEvent(base.hpa, policy.behavior, n, 0, now);
    return {
      replicas: 0,
      desired: 0,
      winner,
      reason: 'Deactivated',
      message,
      scaleDownWindowMs: downWindowNow(state0, policy, now),
      metrics,
      active,
      conditions,
      state: { ...noteDirection(state0, n, 0, now, policy), hpa },
    };
  }

  const tolerance = { up: policy.behavior.scaleUp.tolerance, down: policy.behavior.scaleDown.tolerance };
  const coldStart = input.readyReplicas === 0 && desired > n;
  const within = withinTolerance(desired / n, tolerance);
  const target = coldStart || within ? n : clamp(desired);
  const baseWindowMs = policy.behavior.scaleDown.stabilizationWindowSeconds * 1000;
  const windowMs = quietWindowMs(downWindowNow(base, policy, now));
  const spec = (downWindowMs: number) => ({
    minReplicas: lo,
    maxReplicas: policy.maxReplicas,
    behavior:
      downWindowMs === baseWindowMs
        ? policy.behavior
        : { ...policy.behavior, scaleDown: { ...policy.behavior.scaleDown, stabilizationWindowSeconds: downWindowMs / 1000 } },
  });
  const norm = normalizeWithBehaviors(base.hpa, spec(windowMs), n, target, now);
  const replicas = Math.min(policy.maxReplicas, Math.max(norm.replicas, floor));
  // What the configured window alone would allow: above it, the flap backoff holds the pods.
  const unstretched =
    windowMs > baseWindowMs && norm.replicas <= n
      ? Math.min(policy.maxReplicas, Math.max(normalizeWithBehaviors(base.hpa, spec(baseWindowMs), n, target, now).replicas, floor))
      : replicas;
  const proposal = `${winner} proposes ${desired} replica${desired === 1 ? '' : 's'} (W=${W}, B=${B}, A=${A}${due > 0 ? `, due soon ${due}` : ''})`;
  conditions.push({ type: 'ScalingActive', status: true, reason: 'ValidMetricFound', message: proposal });
  for (const c of latestByType(norm.conditions) as HpaCondition[]) conditions.push(c);
  const hpa = replicas !== n ? storeScaleEvent(norm.state, policy.behavior, n, replicas, now) : norm.state;
  const moved = replicas === n ? state0 : noteDirection(state0, n, replicas, now, policy);
  const { reason, message } = explain();
  return {
    replicas,
    desired,
    winner,
    reason,
    message,
    scaleDownWindowMs: downWindowNow(moved, policy, now),
    metrics,
    active,
    conditions,
    state: { ...moved, hpa },
  };

  /**
   * Quiet pool (issue 19): nothing waits and nothing arrived for the control horizon T (and for
   * 5 mean inter-arrival times, so a gap of a steady stream is not taken for the end of it), and
   * the flap record is calm: the scale-down window shrinks to T. Keeping an idle pod longer than
   * it takes to start another costs more than the restart would (S6 1.13x -> 0.87x of P2's cost,
   * S7 1.05x -> 0.79x; flaps unchanged). A scale-down behavior the user set is kept as set.
   */
  function quietWindowMs(windowMs: number): number {
    if (!policy.quietScaleDown || quietSince === null || windowMs !== baseWindowMs) return windowMs;
    const horizonMs = reactionMs(policy, input.podStartMs);
    const gapMs = rates !== null && rates.lambda > 0 ? (QUIET_INTERARRIVALS * 1000) / rates.lambda : 0;
    return now - quietSince >= Math.max(horizonMs, gapMs) ? Math.min(windowMs, horizonMs) : windowMs;
  }

  /** Reason and sentence for the count chosen: what proposed it and what held or limited it. */
  function explain(): { reason: string; message: string } {
    if (unstretched < replicas) {
      const s = moved.lastFlapAt !== null ? Math.round((now - moved.lastFlapAt) / 1000) : 0;
      const back = Math.ceil(flapBackoffLeftMs(moved, policy, now) / 60_000);
      return {
        reason: 'FlapBackoff',
        message:
          `${proposal}; held at ${replicas} (${unstretched} without the flap backoff): the scale-down window is stretched to ${Math.round(windowMs / 1000)} s ` +
          `(configured ${baseWindowMs / 1000} s) after a flap ${s} s ago, and shrinks back to ${baseWindowMs / 1000} s within about ${back} min`,
      };
    }
    if (replicas > n) {
      const limited =
        replicas < desired && !coldStart ? `; limited to ${replicas} by ${replicas === policy.maxReplicas ? 'maxReplicas' : 'the scale-up policy'}` : '';
      return { reason: 'ScaleUp', message: `${proposal}${limited}` + flapNote() };
    }
    if (replicas < n) {
      const held =
        replicas > Math.max(desired, lo, floor) ? `; limited to ${replicas} by the scale-down policy or the ${Math.round(windowMs / 1000)} s window` : '';
      return { reason: 'ScaleDown', message: `${proposal}${held}` };
    }
    if (coldStart) return { reason: 'ColdStart', message: `${proposal}; none of the ${n} pods is ready yet, so the count is held until one is` };
    if (desired === n) return { reason: 'Steady', message: proposal };
    if (within) return { reason: 'WithinTolerance', message: `${proposal}; within the tolerance of ${n}, no change` };
    if (desired < n && floor >= n) return { reason: 'InFlightFloor', message: `${proposal}; ${A - Ad} running tasks need ${floor} pods` };
    if (desired < n)
      return { reason: 'ScaleDownStabilized', message: `${proposal}; held at ${n} by the ${Math.round(windowMs / 1000)} s scale-down stabilization window` };
    return { reason: 'ScaleUpStabilized', message: `${proposal}; held at ${n} by the scale-up stabilization window` };
  }

  /** On a scale-up that counts as a flap, says that the scale-down window was stretched and for how long. */
  function flapNote(): string {
    if (moved.lastFlapAt !== now) return '';
    return (
      `; a flap (scaled down ${Math.round((now - (base.lastDownAt ?? now)) / 1000)} s ago): scale-down window stretched to ` +
      `${Math.round(moved.downWindowMs / 1000)} s, shrinking back to ${baseWindowMs / 1000} s within about ${Math.ceil(flapBackoffLeftMs(moved, policy, now) / 60_000)} min`
    );
  }
}

/** Time until the flap backoff's stretched scale-down window has decayed to the configured one, ms. */
export function flapBackoffLeftMs(s: AutoscalerState, policy: AutoscalerPolicy, now: number): number {
  // A configured window of 0 is reached only asymptotically: count until the stretch is under 1 s.
  const baseMs = Math.max(1000, policy.behavior.scaleDown.stabilizationWindowSeconds * 1000);
  if (s.lastFlapAt === null || s.downWindowMs <= baseMs) return 0;
  return Math.max(0, s.lastFlapAt + FLAP_DECAY_MS * Math.log2(s.downWindowMs / baseMs) - now);
}

const FLAP_UP_RATIO = 1.5;
/** Mean inter-arrival times without an arrival before a pool counts as quiet. */
const QUIET_INTERARRIVALS = 5;
/** The stretched scale-down window halves every this many ms without a new flap. */
const FLAP_DECAY_MS = 1_800_000;

/** Scale-down stabilization window in force now (flap backoff decays towards the base). */
export function downWindowNow(s: AutoscalerState, policy: AutoscalerPolicy, now: number): number {
  const baseMs = policy.behavior.scaleDown.stabilizationWindowSeconds * 1000;
  if (s.lastFlapAt === null) return baseMs;
  return Math.max(baseMs, s.downWindowMs * Math.pow(2, -(now - s.lastFlapAt) / FLAP_DECAY_MS));
}

/**
 * Flap backoff bookkeeping (see AutoscalerPolicy.maxScaleDownWindowMs): a big step back up
 * within the flap window after a scale-down doubles the scale-down window.
 */
function noteDirection(s: AutoscalerState, from: number, to: number, now: number, policy: AutoscalerPolicy): AutoscalerState {
  if (to < from) return { ...s, lastDownAt: now };
  // Only a big step back up says the last scale-down was a mistake; +1 on noise does not.
  if (to < from * FLAP_UP_RATIO || s.lastDownAt === null || now - s.lastDownAt > policy.flapWindowMs) return s;
  const cap = Math.max(policy.behavior.scaleDown.stabilizationWindowSeconds * 1000, policy.maxScaleDownWindowMs);
  // The down step is answered; later up steps of the same climb are not flaps again.
  return { ...s, lastDownAt: null, lastFlapAt: now, downWindowMs: Math.min(cap, Math.max(policy.flapWindowMs * 1.2, 2 * downWindowNow(s, policy, now))) };
}
