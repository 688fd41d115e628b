/**
 * The parts of the Kubernetes HPA v2 replica computation (kubernetes/kubernetes
 * pkg/controller/podautoscaler/horizontal.go) that celeriac's own decision reuses, as pure
 * functions with an injected clock: `behavior` defaulting, the tolerance, and the `behavior`
 * normalization (stabilization windows, Pods/Percent policies, selectPolicy, scale-event
 * bookkeeping). Times are ms since an arbitrary epoch; the caller owns the state between steps.
 * Condition and reason strings are the HPA's own, so operators recognise them.
 * The rest of the HPA (per-metric proposals, the whole sync step, the legacy normalization) is
 * used only by the simulator's baselines: simulator/hpa-baseline.ts.
 */

/** One rate-limiting policy (autoscaling/v2 HPAScalingPolicy). */
export interface HpaScalingPolicy {
  readonly type: 'Pods' | 'Percent';
  readonly value: number;
  readonly periodSeconds: number;
}

export type SelectPolicy = 'Max' | 'Min' | 'Disabled';

/** autoscaling/v2 HPAScalingRules as a user writes it: every field optional. */
export interface HpaScalingRules {
  readonly stabilizationWindowSeconds?: number | undefined;
  readonly selectPolicy?: SelectPolicy | undefined;
  readonly policies?: readonly HpaScalingPolicy[] | undefined;
  /** Per-direction tolerance (HPAConfigurableTolerance); the controller's 0.1 when unset. */
  readonly tolerance?: number | undefined;
}

/** autoscaling/v2 HorizontalPodAutoscalerBehavior as a user writes it. */
export interface HpaBehavior {
  readonly scaleUp?: HpaScalingRules | undefined;
  readonly scaleDown?: HpaScalingRules | undefined;
}

/** Scaling rules after Kubernetes defaulting: nothing optional. */
export interface ResolvedScalingRules {
  readonly stabilizationWindowSeconds: number;
  readonly selectPolicy: SelectPolicy;
  readonly policies: readonly HpaScalingPolicy[];
  readonly tolerance: number;
}

export interface ResolvedBehavior {
  readonly scaleUp: ResolvedScalingRules;
  readonly scaleDown: ResolvedScalingRules;
}

/** kube-controller-manager flags that matter here, with their defaults. */
export interface HpaControllerConfig {
  /** --horizontal-pod-autoscaler-tolerance */
  readonly tolerance: number;
  /** --horizontal-pod-autoscaler-downscale-stabilization, in ms */
  readonly downscaleStabilizationMs: number;
}

export const HPA_CONTROLLER_DEFAULTS: HpaControllerConfig = Object.freeze({
  tolerance: 0.1,
  downscaleStabilizationMs: 300_000,
});

/** Kubernetes' default scale-up rules (pkg/apis/autoscaling/v2/defaults.go): double or +4 per 15 s. */
export const DEFAULT_SCALE_UP_POLICIES: readonly HpaScalingPolicy[] = Object.freeze([
  { type: 'Pods', value: 4, periodSeconds: 15 },
  { type: 'Percent', value: 100, periodSeconds: 15 },
]);

/** Kubernetes' default scale-down rules: anything down to min in one step (100% per 15 s). */
export const DEFAULT_SCALE_DOWN_POLICIES: readonly HpaScalingPolicy[] = Object.freeze([{ type: 'Percent', value: 100, periodSeconds: 15 }]);

/**
 * Kubernetes' behavior defaulting: fields the user left out are filled in one by one; a user's
 * `policies` list replaces the default list whole. A nil scale-down window takes the controller's
 * downscale-stabilization flag (horizontal.go maybeInitScaleDownStabilizationWindow).
 */
export function resolveBehavior(behavior: HpaBehavior, controller: HpaControllerConfig = HPA_CONTROLLER_DEFAULTS): ResolvedBehavior {
  const up = behavior.scaleUp ?? {};
  const down = behavior.scaleDown ?? {};
  return {
    scaleUp: {
      stabilizationWindowSeconds: up.stabilizationWindowSeconds ?? 0,
      selectPolicy: up.selectPolicy ?? 'Max',
      policies: up.policies ?? DEFAULT_SCALE_UP_POLICIES,
      tolerance: up.tolerance ?? controller.tolerance,
    },
    scaleDown: {
      stabilizationWindowSeconds: down.stabilizationWindowSeconds ?? controller.downscaleStabilizationMs / 1000,
      selectPolicy: down.selectPolicy ?? 'Max',
      policies: down.policies ?? DEFAULT_SCALE_DOWN_POLICIES,
      tolerance: down.tolerance ?? controller.tolerance,
    },
  };
}

/** Tolerances.isWithin: no change while (1 - down) <= ratio <= (1 + up). NaN is never within. */
export function withinTolerance(ratio: number, tolerance: { up: number; down: number }): boolean {
  return 1 - tolerance.down <= ratio && ratio <= 1 + tolerance.up;
}

export interface TimestampedRecommendation {
  readonly recommendation: number;
  readonly at: number;
}

interface TimestampedScaleEvent {
  readonly change: number;
  readonly at: number;
  readonly outdated: boolean;
}

/** What the HPA controller keeps per HPA key between syncs. Treat as opaque. */
export interface HpaState {
  readonly recommendations: readonly TimestampedRecommendation[];
  readonly scaleUpEvents: readonly TimestampedScaleEvent[];
  readonly scaleDownEvents: readonly TimestampedScaleEvent[];
}

export type ConditionType = 'AbleToScale' | 'ScalingActive' | 'ScalingLimited';

export interface HpaCondition {
  readonly type: ConditionType;
  readonly status: boolean;
  readonly reason: string;
  readonly message: string;
}

/** The HPA spec fields the step needs. `behavior: null` selects the legacy normalization. */
export interface HpaSpec {
  readonly minReplicas: number;
  readonly maxReplicas: number;
  readonly behavior: ResolvedBehavior | null;
}

export const EMPTY_HPA_STATE: HpaState = Object.freeze({
  recommendations: [],
  scaleUpEvents: [],
  scaleDownEvents: [],
});

/** setCondition semantics: a later condition of the same type replaces the earlier one. */
export function latestByType(conditions: readonly HpaCondition[]): HpaCondition[] {
  const byType = new Map<ConditionType, HpaCondition>();
  for (const c of conditions) byType.set(c.type, c);
  return [...byType.values()];
}

/** Result of a normalization: the replica count, the new history and the conditions it set. */
export interface Normalized {
  readonly replicas: number;
  readonly state: HpaState;
  readonly conditions: readonly HpaCondition[];
}

/**
 * Normalization with `behavior` (horizontal.go normalizeDesiredReplicasWithBehaviors): stabilize
 * (scale up only to the lowest recommendation of the up window, down only to the highest of the
 * down window), then rate-limit by the policies. The caller records the rescale with
 * storeScaleEvent once it has written the new count.
 */
export function normalizeWithBehaviors(state: HpaState, spec: HpaSpec, n: number, desired: number, now: number): Normalized {
  const behavior = spec.behavior;
  if (!behavior) throw new TypeError('normalizeWithBehaviors needs spec.behavior');
  const upCutoff = now - behavior.scaleUp.stabilizationWindowSeconds * 1000;
  const downCutoff = now - behavior.scaleDown.stabilizationWindowSeconds * 1000;
  let upRec = desired;
  let downRec = desired;
  let oldIndex = -1;
  state.recommendations.forEach((rec, i) => {
    if (rec.at > upCutoff) upRec = Math.min(rec.recommendation, upRec);
    if (rec.at > downCutoff) downRec = Math.max(rec.recommendation, downRec);
    if (rec.at < upCutoff && rec.at < downCutoff) oldIndex = i;
  });
  let stabilized = n;
  if (stabilized < upRec) stabilized = upRec;
  if (stabilized > downRec) stabilized = downRec;
  const next = { ...state, recommendations: recordRecommendation(state.recommendations, oldIndex, desired, now) };
  const conditions: HpaCondition[] = [
    stabilized !== desired
      ? desired >= n
        ? {
            type: 'AbleToScale',
            status: true,
            reason: 'ScaleUpStabilized',
            message: 'recent recommendations were lower than current one, applying the lowest recent recommendation',
          }
        : {
            type: 'AbleToScale',
            status: true,
            reason: 'ScaleDownStabilized',
            message: 'recent recommendations were higher than current one, applying the highest recent recommendation',
          }
      : { type: 'AbleToScale', status: true, reason: 'ReadyForNewScale', message: 'recommended size matches current size' },
  ];
  const { replicas, reason } = convertWithBehaviorRate(stabilized, n, spec, behavior, next, now);
  conditions.push({ type: 'ScalingLimited', status: replicas !== desired, reason, message: limitMessage(reason) });
  return { replicas, state: next, conditions };
}

/** Replace the slot at `oldIndex` (an entry past every window) or append. */
export function recordRecommendation(
  recs: readonly TimestampedRecommendation[],
  oldIndex: number,
  recommendation: number,
  at: number,
): TimestampedRecommendation[] {
  const out = recs.slice();
  const entry = { recommendation, at };
  if (oldIndex >= 0) out[oldIndex] = entry;
  else out.push(entry);
  return out;
}

export function limitMessage(reason: string): string {
  switch (reason) {
    case 'ScaleUpLimit':
      return 'the desired replica count is increasing faster than the maximum scale rate';
    case 'ScaleDownLimit':
      return 'the desired replica count is decreasing faster than the maximum scale rate';
    case 'TooManyReplicas':
      return 'the desired replica count is more than the maximum replica count';
    case 'TooFewReplicas':
      return 'the desired replica count is less than the minimum replica count';
    default:
      return 'the desired count is within the acceptable range';
  }
}

/** Sum of the scale events newer than `periodSeconds` (getReplicasChangePerPeriod). */
function changeInPeriod(periodSeconds: number, events: readonly TimestampedScaleEvent[], now: number): number {
  const cutoff = now - periodSeconds * 1000;
  let sum = 0;
  for (const e of events) if (e.at > cutoff) sum += e.change;
  return sum;
}

/**
 * The rate limit of one direction (calculateScaleUpLimitWithScalingRules and
 * calculateScaleDownLimitWithBehaviors): per policy, the count at the start of its period plus
 * (up) or minus (down) what it allows; `Max` picks the biggest change, `Min` the smallest.
 */
export function policyLimit(direction: 'up' | 'down', n: number, state: HpaState, rules: ResolvedScalingRules, now: number): number {
  if (rules.selectPolicy === 'Disabled') return n;
  const up = direction === 'up';
  const biggestChange = rules.selectPolicy !== 'Min';
  const pick = up === biggestChange ? Math.max : Math.min;
  let result = up === biggestChange ? Number.MIN_SAFE_INTEGER : Number.MAX_SAFE_INTEGER;
  for (const p of rules.policies) {
    const start = n - changeInPeriod(p.periodSeconds, state.scaleUpEvents, now) + changeInPeriod(p.periodSeconds, state.scaleDownEvents, now);
    const proposed = up
      ? p.type === 'Pods'
        ? start + p.value
        : Math.ceil(start * (1 + p.value / 100))
      : p.type === 'Pods'
        ? start - p.value
        : Math.trunc(start * (1 - p.value / 100));
    result = pick(result, proposed);
  }
  return result;
}

/** convertDesiredReplicasWithBehaviorRate */
function convertWithBehaviorRate(
  desired: number,
  n: number,
  spec: HpaSpec,
  behavior: ResolvedBehavior,
  state: HpaState,
  now: number,
): { replicas: number; reason: string } {
  if (desired > n) {
    const limit = Math.max(policyLimit('up', n, state, behavior.scaleUp, now), n);
    const [maxAllowed, reason] = spec.maxReplicas > limit ? [limit, 'ScaleUpLimit'] : [spec.maxReplicas, 'TooManyReplicas'];
    if (desired > maxAllowed) return { replicas: maxAllowed, reason };
  } else if (desired < n) {
    const limit = Math.min(policyLimit('down', n, state, behavior.scaleDown, now), n);
    const [minAllowed, reason] = spec.minReplicas < limit ? [limit, 'ScaleDownLimit'] : [spec.minReplicas, 'TooFewReplicas'];
    if (desired < minAllowed) return { replicas: minAllowed, reason };
  }
  return { replicas: desired, reason: 'DesiredWithinRange' };
}

function longestPeriodSeconds(rules: ResolvedScalingRules): number {
  let longest = 0;
  for (const p of rules.policies) longest = Math.max(longest, p.periodSeconds);
  return longest;
}

/** storeScaleEvent: append the change, reusing a slot older than the longest policy period. */
export function storeScaleEvent(state: HpaState, behavior: ResolvedBehavior, prev: number, next: number, now: number): HpaState {
  const up = next > prev;
  const rules = up ? behavior.scaleUp : behavior.scaleDown;
  const cutoff = now - longestPeriodSeconds(rules) * 1000;
  const events = (up ? state.scaleUpEvents : state.scaleDownEvents).map((e) => (e.at < cutoff && !e.outdated ? { ...e, outdated: true } : e));
  const entry = { change: Math.abs(next - prev), at: now, outdated: false };
  const slot = events.findIndex((e) => e.outdated);
  if (slot >= 0) events[slot] = entry;
  else events.push(entry);
  return up ? { ...state, scaleUpEvents: events } : { ...state, scaleDownEvents: events };
}
