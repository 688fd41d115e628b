/**
 * Drain-first scaling as pure plans: which drains to cancel, which drained pods to remove, which
 * pods to drain and which replica count to write. The autoscaler carries a plan out (worker-client
 * for /drain and /resume, a pod-deletion-cost patch) and reports what failed; no I/O here.
 *
 * The rules (README "Scale-down"):
 * 1. Scaling back up cancels drains first: a draining pod is warm, a new one has to start.
 * 2. Drained pods (draining, reporting no task) leave first: deletion cost, then replicas minus
 *    that many; not while a pod that is not draining is still starting (the ReplicaSet would
 *    delete that one instead).
 * 3. Pods being drained stay in replicas until they are idle.
 * 4. Pods not ready yet (or not even created) hold no work: the ReplicaSet removes them first.
 * 5. Then ready pods drain, idle first, then fewest tasks.
 */

/** What a plan needs to know about one of the pool's pods. */
export interface PodView {
  readonly name: string;
  /** Running and Ready. */
  readonly ready: boolean;
  /** Told to drain and not resumed. */
  readonly draining: boolean;
  /** Tasks running, prefetched or ETA-held at the last good scrape; null when never scraped. */
  readonly load: number | null;
}

/**
 * Rule 1: how many drains to cancel (`target` above the `committed` count) and the pods to try,
 * in the order they were told to drain; one whose /resume fails is skipped for the next.
 */
export function drainsToCancel(
  draining: readonly { readonly name: string; readonly ip: string | null }[],
  target: number,
  committed: number,
): { wanted: number; candidates: { name: string; ip: string }[] } {
  const wanted = Math.max(0, target - committed);
  if (wanted === 0) return { wanted, candidates: [] };
  return { wanted, candidates: draining.flatMap((p) => (p.ip ? [{ name: p.name, ip: p.ip }] : [])) };
}

export interface ScalePlan {
  /** Drained pods to mark with the lowest deletion cost; `replicas` already leaves them out. */
  readonly remove: readonly string[];
  /** Ready pods to tell to drain (a failed drain just leaves the pod a full member). */
  readonly drain: readonly string[];
  /** The replica count to write. */
  readonly replicas: number;
}

/**
 * The plan once cancelled drains are accounted for.
 * @param target the decided count of pods that serve (draining pods excluded)
 * @param committed pods that serve now: current replicas minus pods draining
 * @param current the Deployment's spec.replicas
 */
export function planScale(pods: readonly PodView[], target: number, committed: number, current: number): ScalePlan {
  const starting = pods.filter((p) => !p.ready && !p.draining);
  const drained = pods.filter((p) => p.draining && p.load === 0);
  const remove = drained.length > 0 && starting.length === 0 ? drained.map((p) => p.name) : [];
  let replicas = current - remove.length;
  const stillDraining = pods.filter((p) => p.draining).length - remove.length;
  if (target >= committed) return { remove, drain: [], replicas: target + stillDraining };
  let excess = committed - target;
  const drop = Math.min(excess, starting.length + Math.max(0, replicas - pods.length));
  replicas -= drop;
  excess -= drop;
  if (excess === 0) return { remove, drain: [], replicas };
  const drain = pods
    .filter((p) => p.ready && !p.draining && p.load !== null)
    .sort((a, b) => (a.load ?? 0) - (b.load ?? 0))
    .slice(0, excess)
    .map((p) => p.name);
  return { remove, drain, replicas };
}
