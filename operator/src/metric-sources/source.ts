/**
 * The seam between the autoscaler and what it measures (KEDA's `Scaler`): one small interface,
 * one file per driver. A driver only reads numbers; activation, cooldown and sizing live in
 * autoscaler/decide.ts.
 */
import { OperatorError } from '../errors.js';

export type MetricSourceKind = 'redis-list' | 'amqp-queue' | 'worker-metrics' | 'celery-workers' | 'prometheus';

/**
 * One reading. `value` is the source's headline number; `detail` names its parts. Whether it
 * activates the pool (0 <-> 1) is not the source's call: decide() owns activation
 * (`activationThreshold`, a metric's `activationValue`).
 */
export interface MetricValue {
  readonly value: number;
  readonly detail?: Readonly<Record<string, number>>;
}

export interface MetricSource {
  readonly kind: MetricSourceKind;
  /** Reads once; rejects with MetricSourceError (aborts when `signal` fires). */
  read(signal: AbortSignal): Promise<MetricValue>;
  /** Releases connections; the source is not used afterwards. */
  close(): Promise<void>;
}

/** A metric could not be read; the message names the source and what to check. */
export class MetricSourceError extends OperatorError {
  constructor(
    readonly source: MetricSourceKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('E_METRIC_SOURCE', `${source}: ${message}`, options);
  }
}

/** Rejects as soon as `signal` aborts, else settles like `p`. */
export function abortable<T>(p: Promise<T>, signal: AbortSignal, source: MetricSourceKind): Promise<T> {
  if (signal.aborted) return Promise.reject(new MetricSourceError(source, 'read aborted', { cause: signal.reason }));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new MetricSourceError(source, 'read aborted', { cause: signal.reason }));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
