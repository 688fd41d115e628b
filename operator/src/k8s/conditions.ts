/**
 * metav1.Condition helpers mirroring apimachinery's meta.SetStatusCondition: lastTransitionTime
 * changes only when the status flips; reason, message and observedGeneration are always updated.
 */
import type { Condition } from '../types.js';
import { redactText } from '../../../runtime/src/errors.js';

export type ConditionInput = Omit<Condition, 'lastTransitionTime'> & { lastTransitionTime?: string };

const REASON = /^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/;

/**
 * A valid metav1.Condition reason (CamelCase, as the CRD's pattern demands): "queue depth above
 * target" becomes "QueueDepthAboveTarget", so a free-form reason can never make the status write fail.
 */
export function conditionReason(reason: string): string {
  if (REASON.test(reason) && reason.length <= 1024) return reason;
  const camel = reason
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((w) => w[0]!.toUpperCase() + w.slice(1))
    .join('')
    .replace(/^[^A-Za-z]+/, '')
    .slice(0, 1024);
  return camel || 'Unknown';
}

/** Returns a new list with `c` set (conditions are kept in their original order; new ones appended). */
export function setCondition(conditions: readonly Condition[] | undefined, c: ConditionInput, now: Date): Condition[] {
  const list = [...(conditions ?? [])];
  const i = list.findIndex((x) => x.type === c.type);
  const existing = i >= 0 ? list[i] : undefined;
  const next: Condition = {
    type: c.type,
    status: c.status,
    reason: conditionReason(c.reason),
    // Messages often quote a broker's error or URL; status is readable by anyone who can get the object.
    message: redactText(c.message),
    lastTransitionTime: existing && existing.status === c.status ? existing.lastTransitionTime : (c.lastTransitionTime ?? rfc3339(now)),
    ...(c.observedGeneration !== undefined ? { observedGeneration: c.observedGeneration } : {}),
  };
  if (i >= 0) list[i] = next;
  else list.push(next);
  return list;
}

export function findCondition(conditions: readonly Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

export function isConditionTrue(conditions: readonly Condition[] | undefined, type: string): boolean {
  return findCondition(conditions, type)?.status === 'True';
}

/** RFC 3339 with second precision, as metav1.Time serializes. */
export function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
