/**
 * Measured pod start (issue 19): from a pod's creation to its Ready condition turning True, as
 * the API server records both. The mean of the latest few pods to start is the lead time for
 * known work and part of the control horizon of `decide()`; it is shown in
 * `status.autoscaling.podStartSeconds`. Pure: the caller passes the pods it listed.
 */

/** The pod fields the estimate reads. */
export interface PodTimes {
  readonly metadata: { readonly creationTimestamp?: string | undefined };
  readonly status?:
    { readonly conditions?: readonly { readonly type: string; readonly status: string; readonly lastTransitionTime?: string | undefined }[] } | undefined;
}

/** Pods averaged: the latest to start, so a slower image or node shows within a few scale-ups. */
export const POD_START_SAMPLES = 5;

/** Mean start time in ms of the latest `POD_START_SAMPLES` ready pods, or null when none is measurable. */
export function measuredPodStartMs(pods: readonly PodTimes[]): number | null {
  const starts: { created: number; ms: number }[] = [];
  for (const p of pods) {
    const created = Date.parse(p.metadata.creationTimestamp ?? '');
    const ready = p.status?.conditions?.find((c) => c.type === 'Ready' && c.status === 'True');
    const readyAt = Date.parse(ready?.lastTransitionTime ?? '');
    // A pod whose readiness flapped later shows its last transition: still a start, only later.
    if (Number.isFinite(created) && Number.isFinite(readyAt) && readyAt >= created) starts.push({ created, ms: readyAt - created });
  }
  if (starts.length === 0) return null;
  const latest = starts.sort((a, b) => b.created - a.created).slice(0, POD_START_SAMPLES);
  return latest.reduce((s, x) => s + x.ms, 0) / latest.length;
}
