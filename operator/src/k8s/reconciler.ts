/**
 * The Reconciler seam (kube-rs `Action`, controller-runtime `Reconciler`): a reconcile reads the
 * whole state, converges it, and says when to look again. It must be idempotent and trust no event.
 */
import type { Logger } from 'pino';
import type { KubeObject } from '../types.js';
import type { EventRecorder } from './events.js';
import type { KubeClient } from './kube-client.js';

export { TerminalError } from '../errors.js';

/** What the controller does after a reconcile. */
export interface Action {
  readonly requeueAfterMs: number | null;
}

export const Action = {
  requeue: (ms: number): Action => ({ requeueAfterMs: ms }),
  /** Rarely right: a missed watch event is then never retried. */
  awaitChange: (): Action => ({ requeueAfterMs: null }),
};

export interface ReconcileContext {
  readonly kube: KubeClient;
  readonly log: Logger;
  readonly events: EventRecorder;
  readonly reconcileId: string;
  /** Failed attempts for this key so far (0 on the first try). */
  readonly attempt: number;
  now(): Date;
}

export interface Reconciler<T extends KubeObject> {
  /** "workerpool": the metric and log label. */
  readonly name: string;
  reconcile(obj: T, ctx: ReconcileContext): Promise<Action>;
  /**
   * Runs once the object is gone: best-effort clean-up of what it owned and of in-memory state.
   * No finalizer holds the object for it (a stopped or uninstalled operator must never block a
   * delete or strand a namespace), so nothing here may be needed for correctness: Kubernetes'
   * garbage collector deletes owned objects on its own.
   */
  cleanup?(ref: { namespace: string | undefined; name: string }, ctx: ReconcileContext): Promise<void>;
  /** Action after `reconcile` threw (not a TerminalError); default: the queue's per-key backoff. */
  errorPolicy?(obj: T, err: unknown, ctx: ReconcileContext): Action;
}
