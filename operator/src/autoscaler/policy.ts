/**
 * WorkerPool `spec.autoscaling`: its TypeScript shape, celeriac's defaults and the resolution of
 * a user's spec into the one frozen `AutoscalerPolicy` that `decide()` reads.
 */
import { CeleriacError } from '../../../runtime/src/errors.js';
import { HPA_CONTROLLER_DEFAULTS, resolveBehavior, type HpaBehavior, type ResolvedBehavior } from './hpa.js';

/** One extra metric source: `queueDepth` and `inFlight` are built in, `prometheus` is any query. */
export interface AutoscalingMetricSpec {
  readonly type: 'queueDepth' | 'inFlight' | 'prometheus';
  readonly prometheus?:
    | {
        readonly serverAddress: string;
        readonly query: string;
        readonly targetAverageValue: number;
        readonly activationValue?: number | undefined;
      }
    | undefined;
}

/** WorkerPool `spec.autoscaling` as stored in the cluster (see the CRD for docs of each field). */
export interface AutoscalingSpec {
  readonly minReplicas?: number | undefined;
  readonly maxReplicas: number;
  readonly pollingIntervalSeconds?: number | undefined;
  readonly cooldownPeriodSeconds?: number | undefined;
  readonly activationThreshold?: number | undefined;
  readonly targetDrainSeconds?: number | undefined;
  readonly targetUtilization?: number | undefined;
  readonly tasksPerReplica?: number | null | undefined;
  readonly metrics?: readonly AutoscalingMetricSpec[] | undefined;
  readonly behavior?: HpaBehavior | undefined;
  readonly fallback?: { readonly failureThreshold: number; readonly replicas: number } | undefined;
  /** Freeze the replica count and stop deciding (KEDA's `autoscaling.keda.sh/paused`). */
  readonly paused?: boolean | undefined;
  /** Decide within about a second of a backlog change (default true); false: at each poll only. */
  readonly eventDriven?: boolean | undefined;
}

/** Everything `decide()` needs, defaults applied. Durations in ms. */
export interface AutoscalerPolicy {
  readonly minReplicas: number;
  readonly maxReplicas: number;
  readonly pollingIntervalMs: number;
  readonly cooldownMs: number;
  readonly activationThreshold: number;
  /** D: the backlog (ready + reserved) should drain within this time. */
  readonly targetDrainMs: number;
  /** Upper bound of the slot utilization aimed at in steady state (rho_target). */
  readonly targetUtilization: number;
  /**
   * Square-root staffing margin: steady-state slots = a + beta * sqrt(a) for offered load
   * a = lambda * s, but at least a / targetUtilization is never exceeded. Large pools thus run
   * hotter than small ones at the same queueing delay (Halfin-Whitt).
   */
  readonly staffingBeta: number;
  /**
   * Time from a change in the work to the decision on it: about a second with the event
   * trigger (the default), else the polling interval. With the pod start it makes the control
   * horizon T of steadySlots.
   */
  readonly decisionDelayMs: number;
  /** React to changes of the backlog within about a second instead of at the next poll. */
  readonly eventDriven: boolean;
  /** Pod start assumed until one is measured (DecideInput.podStartMs). */
  readonly podStartMs: number;
  readonly tasksPerReplica: number | null;
  /** C: task slots per worker pod (the pool's concurrency). */
  readonly slotsPerReplica: number;
  /** Half-life of the arrival-rate and service-time EWMAs. */
  readonly rateHalfLifeMs: number;
  /** Completed tasks to see before the rate model is trusted over the plain work count. */
  readonly minServiceSamples: number;
  readonly behavior: ResolvedBehavior;
  /**
   * Flap backoff: a scale-up within `flapWindowMs` of the last scale-down doubles the
   * scale-down stabilization window (up to this many ms); a scale-up after a longer quiet
   * halves it back towards `behavior.scaleDown.stabilizationWindowSeconds`. 0 turns it off.
   */
  readonly maxScaleDownWindowMs: number;
  readonly flapWindowMs: number;
  /**
   * Quiet pool (issue 19): with nothing waiting or arriving for the control horizon, the
   * scale-down window shrinks to it. Only with celeriac's own scale-down behavior: a window the
   * user set is kept as set.
   */
  readonly quietScaleDown: boolean;
  readonly fallback: { readonly failureThreshold: number; readonly replicas: number } | null;
  readonly paused: boolean;
}

/** celeriac's defaults for the fields a user leaves out. */
export const AUTOSCALING_DEFAULTS = Object.freeze({
  minReplicas: 1,
  pollingIntervalSeconds: 5,
  cooldownPeriodSeconds: 300,
  activationThreshold: 0,
  /**
   * 8 s (issue 19): 20 -> 10 s with the event trigger halved S4's burst waits; 10 -> 8 s, once a long
   * task's drain term was capped at one slot (S5 no longer pays for it), makes S4 hold the goal
   * (wait 0.52x -> 0.47x of tuned KEDA's at 0.88x its cost).
   */
  targetDrainSeconds: 8,
  targetUtilization: 0.8,
  /**
   * 1.25 (issue 19, third round; was 1.5): once the arrival rate follows a ramp without the EWMA's
   * lag, S2's wait no longer needs the larger margin (P5o 0.20x of tuned KEDA's at either), and
   * the smaller one saves S3 1.3% and S5 0.8% of replica-seconds. 1.0 took S5's wait to 0.59x.
   */
  staffingBeta: 1.25,
  /** Typical time from a scale-up decision to a consuming pod (image cached), until one is measured. */
  podStartSeconds: 10,
  /** With the event trigger: a change is decided on within this long (watch period + reconcile). */
  eventDelaySeconds: 1,
  rateHalfLifeSeconds: 60,
  minServiceSamples: 20,
  /** The flap backoff's stretch cap; 600 s held S4's burst pods between bursts (1.2x P2's cost). */
  maxScaleDownWindowSeconds: 120,
  flapWindowSeconds: 300,
  /**
   * Scale-up: no window, up to +16 pods or x3 per 15 s (Kubernetes' own default, +4 or x2,
   * needs 45 s to go from 1 to 20 pods on a step). Scale-down follows the smoothed arrival rate:
   * the EWMA with its change-point reset already damps it, so the window is short (stretched by
   * the flap backoff) and drain-first removal makes each step safe.
   */
  behavior: {
    scaleUp: {
      stabilizationWindowSeconds: 0,
      selectPolicy: 'Max',
      policies: [
        { type: 'Pods', value: 16, periodSeconds: 15 },
        { type: 'Percent', value: 200, periodSeconds: 15 },
      ],
    },
    scaleDown: { stabilizationWindowSeconds: 60, selectPolicy: 'Max', policies: [{ type: 'Percent', value: 50, periodSeconds: 30 }] },
  } as HpaBehavior,
});

/** A `spec.autoscaling` that cannot be used; lists every problem at once. */
export class InvalidAutoscalingError extends CeleriacError {
  constructor(readonly problems: readonly string[]) {
    super('E_INVALID_AUTOSCALING', `Invalid spec.autoscaling:\n  - ${problems.join('\n  - ')}`);
  }
}

/**
 * Resolve a user's spec into a policy. `slotsPerReplica` is the pool's concurrency C.
 * Throws InvalidAutoscalingError naming every bad field (the CRD schema rejects most of these
 * already; this guards programmatic callers and the simulator's scenario files).
 */
export function resolvePolicy(spec: AutoscalingSpec, slotsPerReplica: number): AutoscalerPolicy {
  const d = AUTOSCALING_DEFAULTS;
  const problems: string[] = [];
  const int = (name: string, v: number | undefined, def: number, min: number): number => {
    const x = v ?? def;
    if (!Number.isInteger(x) || x < min) problems.push(`${name}: expected an integer >= ${min}, got ${String(v)}`);
    return x;
  };
  const minReplicas = int('minReplicas', spec.minReplicas, d.minReplicas, 0);
  const maxReplicas = int('maxReplicas', spec.maxReplicas, 1, 1);
  if (minReplicas > maxReplicas) problems.push(`minReplicas (${minReplicas}) must not exceed maxReplicas (${maxReplicas})`);
  const polling = int('pollingIntervalSeconds', spec.pollingIntervalSeconds, d.pollingIntervalSeconds, 1);
  const cooldown = int('cooldownPeriodSeconds', spec.cooldownPeriodSeconds, d.cooldownPeriodSeconds, 0);
  const drain = int('targetDrainSeconds', spec.targetDrainSeconds, d.targetDrainSeconds, 1);
  const activation = spec.activationThreshold ?? d.activationThreshold;
  if (!(activation >= 0)) problems.push(`activationThreshold: expected a number >= 0, got ${String(activation)}`);
  const util = spec.targetUtilization ?? d.targetUtilization;
  if (!(util > 0 && util <= 1)) problems.push(`targetUtilization: expected a number in (0, 1], got ${String(util)}`);
  const tpr = spec.tasksPerReplica ?? null;
  if (tpr !== null && !(tpr > 0)) problems.push(`tasksPerReplica: expected a number > 0, got ${String(tpr)}`);
  if (!(Number.isInteger(slotsPerReplica) && slotsPerReplica >= 1)) problems.push(`concurrency: expected an integer >= 1, got ${String(slotsPerReplica)}`);
  for (const [dir, rules] of [
    ['scaleUp', spec.behavior?.scaleUp],
    ['scaleDown', spec.behavior?.scaleDown],
  ] as const) {
    if (!rules) continue;
    const w = rules.stabilizationWindowSeconds;
    if (w !== undefined && !(Number.isInteger(w) && w >= 0 && w <= 3600))
      problems.push(`behavior.${dir}.stabilizationWindowSeconds: expected an integer in [0, 3600], got ${String(w)}`);
    rules.policies?.forEach((p, i) => {
      if (p.type !== 'Pods' && p.type !== 'Percent') problems.push(`behavior.${dir}.policies[${i}].type: expected Pods or Percent, got ${String(p.type)}`);
      if (!(Number.isInteger(p.value) && p.value > 0)) problems.push(`behavior.${dir}.policies[${i}].value: expected an integer > 0, got ${String(p.value)}`);
      if (!(Number.isInteger(p.periodSeconds) && p.periodSeconds >= 1 && p.periodSeconds <= 1800))
        problems.push(`behavior.${dir}.policies[${i}].periodSeconds: expected an integer in [1, 1800], got ${String(p.periodSeconds)}`);
    });
  }
  const fb = spec.fallback;
  if (fb && !(Number.isInteger(fb.failureThreshold) && fb.failureThreshold >= 1 && Number.isInteger(fb.replicas) && fb.replicas >= 0)) {
    problems.push(`fallback: expected failureThreshold >= 1 and replicas >= 0 (integers), got ${JSON.stringify(fb)}`);
  }
  if (problems.length > 0) throw new InvalidAutoscalingError(problems);
  // A user's behavior replaces ours direction by direction; fields inside follow Kubernetes' defaulting.
  const behavior = resolveBehavior(
    {
      scaleUp: spec.behavior?.scaleUp ?? d.behavior.scaleUp,
      scaleDown: spec.behavior?.scaleDown ?? d.behavior.scaleDown,
    },
    HPA_CONTROLLER_DEFAULTS,
  );
  return Object.freeze({
    minReplicas,
    maxReplicas,
    pollingIntervalMs: polling * 1000,
    cooldownMs: cooldown * 1000,
    activationThreshold: activation,
    targetDrainMs: drain * 1000,
    targetUtilization: util,
    staffingBeta: d.staffingBeta,
    decisionDelayMs: (spec.eventDriven ?? true) ? d.eventDelaySeconds * 1000 : polling * 1000,
    eventDriven: spec.eventDriven ?? true,
    podStartMs: d.podStartSeconds * 1000,
    tasksPerReplica: tpr,
    slotsPerReplica,
    rateHalfLifeMs: d.rateHalfLifeSeconds * 1000,
    minServiceSamples: d.minServiceSamples,
    behavior,
    maxScaleDownWindowMs: d.maxScaleDownWindowSeconds * 1000,
    flapWindowMs: d.flapWindowSeconds * 1000,
    quietScaleDown: spec.behavior?.scaleDown === undefined,
    fallback: fb ? { failureThreshold: fb.failureThreshold, replicas: fb.replicas } : null,
    paused: spec.paused ?? false,
  });
}
