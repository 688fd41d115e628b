/**
 * The Kubernetes HPA v2 sync as the simulator's baselines (P1-P3) run it: per-metric proposals
 * for External/Object metrics (Value and AverageValue) with the tolerance, "largest proposal wins"
 * with the partial-failure rules, and the legacy normalization (5 min max-stabilization, scale-up
 * limit max(2N, 4)) next to the `behavior` one from autoscaler/hpa.ts (kubernetes/kubernetes
 * pkg/controller/podautoscaler: horizontal.go, replica_calculator.go). Pure, injected clock.
 * Not covered: Resource/Pods metrics with pod readiness corrections (celeriac has no per-pod CPU
 * metric to scale on).
 */
import {
  EMPTY_HPA_STATE,
  HPA_CONTROLLER_DEFAULTS,
  latestByType,
  limitMessage,
  normalizeWithBehaviors,
  recordRecommendation,
  storeScaleEvent,
  withinTolerance,
  type HpaCondition,
  type HpaControllerConfig,
  type HpaSpec,
  type HpaState,
  type Normalized,
} from '../autoscaler/hpa.js';

/** The metric target of an External or Object metric. */
export type MetricTarget = { readonly type: 'AverageValue'; readonly averageValue: number } | { readonly type: 'Value'; readonly value: number };

/** One metric as read this step; `value: null` means reading it failed. */
export interface MetricReading {
  readonly name: string;
  readonly value: number | null;
  readonly target: MetricTarget;
}

/** Replica counts the HPA reads from the scale subresource and the pods. */
export interface ReplicaCounts {
  /** scale.spec.replicas (N) */
  readonly specReplicas: number;
  /** scale.status.replicas */
  readonly statusReplicas: number;
  /** pods Running and Ready */
  readonly readyReplicas: number;
}

/**
 * The proposal of one External metric (replica_calculator.go GetExternalMetricReplicas and
 * GetExternalPerPodMetricReplicas).
 * - AverageValue: usage = sum / statusReplicas; tolerance on that ratio, then ceil(sum / target).
 * - Value: ratio = sum / target; with N == 0 `ceil(ratio)` without tolerance, otherwise
 *   ceil(ratio * ready) outside the tolerance.
 */
export function metricProposal(
  value: number,
  target: MetricTarget,
  counts: ReplicaCounts,
  tolerance: { up: number; down: number },
): { replicas: number; ratio: number } {
  if (target.type === 'AverageValue') {
    const ratio = value / (target.averageValue * counts.statusReplicas);
    const replicas = withinTolerance(ratio, tolerance) ? counts.statusReplicas : Math.ceil(value / target.averageValue);
    return { replicas, ratio };
  }
  const ratio = value / target.value;
  if (counts.specReplicas === 0) return { replicas: Math.ceil(ratio), ratio };
  if (withinTolerance(ratio, tolerance)) return { replicas: counts.specReplicas, ratio };
  return { replicas: Math.ceil(ratio * counts.readyReplicas), ratio };
}

export interface HpaStepResult {
  /** The replica count to write to /scale (equal to N when nothing changes). */
  readonly replicas: number;
  readonly state: HpaState;
  /** Raw largest proposal over metrics before normalization, or null if it was not computed. */
  readonly proposal: number | null;
  /** Name of the metric whose proposal won. */
  readonly metricName: string | null;
  readonly conditions: readonly HpaCondition[];
  /** The rescale reason, as in the SuccessfulRescale event. */
  readonly reason: string;
}

/**
 * Largest proposal over metrics (horizontal.go computeReplicasForMetrics). Returns null when the
 * HPA would do nothing: every metric failed, or some failed and the valid ones point down.
 */
export function largestProposal(
  metrics: readonly MetricReading[],
  counts: ReplicaCounts,
  tolerance: { up: number; down: number },
): { replicas: number; metricName: string } | { replicas: null; failed: string } {
  let best = -1;
  let bestName = '';
  let invalid = 0;
  let firstInvalid = '';
  for (const m of metrics) {
    if (m.value === null || !Number.isFinite(m.value)) {
      if (invalid === 0) firstInvalid = m.name;
      invalid++;
      continue;
    }
    const { replicas } = metricProposal(m.value, m.target, counts, tolerance);
    if (replicas > best) {
      best = replicas;
      bestName = m.name;
    }
  }
  if (invalid >= metrics.length || (invalid > 0 && best < counts.specReplicas)) {
    return { replicas: null, failed: firstInvalid };
  }
  return { replicas: best, metricName: bestName };
}

/**
 * One HPA sync (horizontal.go reconcileAutoscaler, from reading /scale to the rescale decision).
 * The caller writes `replicas` when it differs from `counts.specReplicas` and passes the
 * returned state to the next call.
 */
export function hpaStep(
  prior: HpaState | null,
  spec: HpaSpec,
  counts: ReplicaCounts,
  metrics: readonly MetricReading[],
  now: number,
  controller: HpaControllerConfig = HPA_CONTROLLER_DEFAULTS,
): HpaStepResult {
  const n = counts.specReplicas;
  // First sync of a key seeds the history with the current count.
  let state: HpaState = prior ?? { ...EMPTY_HPA_STATE, recommendations: [{ recommendation: n, at: now }] };
  const conditions: HpaCondition[] = [
    { type: 'AbleToScale', status: true, reason: 'SucceededGetScale', message: "the HPA controller was able to get the target's current scale" },
  ];
  const keep = (reason: string): HpaStepResult => ({ replicas: n, state, proposal: null, metricName: null, conditions: latestByType(conditions), reason });

  if (n === 0 && spec.minReplicas !== 0) {
    conditions.push({
      type: 'ScalingActive',
      status: false,
      reason: 'ScalingDisabled',
      message: 'scaling is disabled since the replica count of the target is zero',
    });
    return keep('ScalingDisabled');
  }
  if (n > spec.maxReplicas) {
    return finish(spec.maxReplicas, 'Current number of replicas above Spec.MaxReplicas', null, null);
  }
  if (n < spec.minReplicas) {
    return finish(spec.minReplicas, 'Current number of replicas below Spec.MinReplicas', null, null);
  }

  const tol = spec.behavior
    ? { up: spec.behavior.scaleUp.tolerance, down: spec.behavior.scaleDown.tolerance }
    : { up: controller.tolerance, down: controller.tolerance };
  const best = largestProposal(metrics, counts, tol);
  if (best.replicas === null) {
    conditions.push({
      type: 'ScalingActive',
      status: false,
      reason: 'FailedGetExternalMetric',
      message: `the HPA was unable to compute the replica count: metric ${best.failed} could not be read`,
    });
    return keep('FailedGetExternalMetric');
  }
  conditions.push({
    type: 'ScalingActive',
    status: true,
    reason: 'ValidMetricFound',
    message: `the HPA was able to successfully calculate a replica count from external metric ${best.metricName}`,
  });
  const proposal = Math.max(0, best.replicas);
  const norm = spec.behavior ? normalizeWithBehaviors(state, spec, n, proposal, now) : normalizeLegacy(state, spec, n, proposal, now, controller);
  state = norm.state;
  conditions.push(...norm.conditions);
  const normalized = norm.replicas;
  const reason = normalized > n ? `external metric ${best.metricName} above target` : normalized < n ? 'All metrics below target' : '';
  return finish(normalized, reason, proposal, best.metricName);

  function finish(replicas: number, reason: string, proposalValue: number | null, metricName: string | null): HpaStepResult {
    if (replicas !== n && spec.behavior) state = storeScaleEvent(state, spec.behavior, n, replicas, now);
    return { replicas, state, proposal: proposalValue, metricName, conditions: latestByType(conditions), reason };
  }
}

/**
 * Legacy normalization, used when `behavior` is nil (horizontal.go normalizeDesiredReplicas):
 * the highest recommendation of the last 5 minutes, then min and min(max, max(2N, 4)).
 */
export function normalizeLegacy(
  state: HpaState,
  spec: HpaSpec,
  n: number,
  desired: number,
  now: number,
  controller: HpaControllerConfig = HPA_CONTROLLER_DEFAULTS,
): Normalized {
  const cutoff = now - controller.downscaleStabilizationMs;
  let maxRec = desired;
  let oldIndex = -1;
  state.recommendations.forEach((rec, i) => {
    if (rec.at < cutoff) oldIndex = i;
    else if (rec.recommendation > maxRec) maxRec = rec.recommendation;
  });
  const conditions: HpaCondition[] = [
    maxRec !== desired
      ? {
          type: 'AbleToScale',
          status: true,
          reason: 'ScaleDownStabilized',
          message: 'recent recommendations were higher than current one, applying the highest recent recommendation',
        }
      : { type: 'AbleToScale', status: true, reason: 'ReadyForNewScale', message: 'recommended size matches current size' },
  ];
  // convertDesiredReplicasWithRules
  const upLimit = Math.max(2 * n, 4);
  let maxAllowed: number;
  let reason: string;
  if (spec.maxReplicas > upLimit) {
    maxAllowed = upLimit;
    reason = 'ScaleUpLimit';
  } else {
    maxAllowed = spec.maxReplicas;
    reason = 'TooManyReplicas';
  }
  let replicas = maxRec;
  if (maxRec < spec.minReplicas) {
    replicas = spec.minReplicas;
    reason = 'TooFewReplicas';
  } else if (maxRec > maxAllowed) {
    replicas = maxAllowed;
  } else {
    reason = 'DesiredWithinRange';
  }
  conditions.push({ type: 'ScalingLimited', status: replicas !== desired, reason, message: limitMessage(reason) });
  return { replicas, state: { ...state, recommendations: recordRecommendation(state.recommendations, oldIndex, desired, now) }, conditions };
}
