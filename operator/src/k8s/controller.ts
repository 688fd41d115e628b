/**
 * A controller: informer events become keys (`namespace/name`) in a de-duplicating, rate-limited
 * work queue; workers reconcile one key at a time, reading the object from the informer cache
 * (never from the event), run `cleanup` once an object is gone, and requeue by the
 * returned Action or by per-key backoff on error. TerminalError is not retried until the object
 * changes (an update event enqueues it again).
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { TerminalError } from '../errors.js';
import type { OperatorMetrics } from '../metrics.js';
import type { KubeObject } from '../types.js';
import { createRateLimiter, type RateLimiterOptions } from './backoff.js';
import type { EventRecorder } from './events.js';
import { hasFinalizer, removeFinalizer } from './finalizer.js';
import { keyOf, type Informer } from './informer.js';
import type { KubeClient } from './kube-client.js';
import type { Action, ReconcileContext, Reconciler } from './reconciler.js';
import { createWorkQueue, type WorkQueue } from './work-queue.js';

/** A secondary watch: events on `informer` enqueue the primary keys `map` returns. */
export interface Watch<S extends KubeObject> {
  informer: Informer<S>;
  map(obj: S): string[];
  /** Filter for update events (e.g. ignore status-only writes); all updates when absent. */
  enqueueUpdate?(obj: S, old?: S): boolean;
}

export interface ControllerOptions<T extends KubeObject> {
  reconciler: Reconciler<T>;
  informer: Informer<T>;
  watches?: Watch<KubeObject>[];
  /** Filter for update events of the primary objects; all updates when absent. */
  enqueueUpdate?(obj: T, old?: T): boolean;
  kube: KubeClient;
  events: EventRecorder;
  log: Logger;
  metrics: OperatorMetrics;
  /** Concurrent reconciles (of different keys). */
  workers?: number;
  /** Every key is reconciled at least this often (missed events, drift). */
  resyncMs?: number;
  rateLimiter?: RateLimiterOptions;
  now?: () => Date;
  /** Finalizers that earlier versions of this controller added: removed wherever seen. */
  legacyFinalizers?: readonly string[];
}

export interface Controller {
  readonly name: string;
  readonly queue: WorkQueue;
  /** Runs workers until `signal` aborts, then waits for in-flight reconciles. */
  run(signal: AbortSignal): Promise<void>;
}

/** Wires informer events to a work queue and `reconciler`; `run(signal)` processes keys. */
export function createController<T extends KubeObject>(o: ControllerOptions<T>): Controller {
  const name = o.reconciler.name;
  const log = o.log.child({ controller: name });
  const now = o.now ?? (() => new Date());
  const rt = o.informer.resource;
  const queue = createWorkQueue({
    rateLimiter: createRateLimiter(o.rateLimiter),
    onAdd: () => o.metrics.workqueueAdds.inc({ name }),
    onRetry: () => o.metrics.workqueueRetries.inc({ name }),
  });
  const enqueue = (obj: KubeObject) => queue.add(keyOf(obj));
  o.informer.on('add', enqueue);
  o.informer.on('update', (obj, old) => {
    if (!o.enqueueUpdate || o.enqueueUpdate(obj, old)) enqueue(obj);
  });
  o.informer.on('delete', enqueue);
  for (const w of o.watches ?? []) {
    const mapped = (obj: KubeObject) => {
      for (const k of w.map(obj)) queue.add(k);
    };
    w.informer.on('add', mapped);
    w.informer.on('update', (obj, old) => {
      if (!w.enqueueUpdate || w.enqueueUpdate(obj, old)) mapped(obj);
    });
    w.informer.on('delete', mapped);
  }

  async function process(key: string): Promise<void> {
    const [namespace, objName] = key.includes('/') ? (key.split('/', 2) as [string, string]) : [undefined, key];
    const obj = o.informer.get(namespace, objName);
    const reconcileId = randomUUID();
    const ctx: ReconcileContext = {
      kube: o.kube,
      events: o.events,
      log: log.child({ namespace, name: objName, reconcileId }),
      reconcileId,
      attempt: queue.retries(key),
      now,
    };
    const end = o.metrics.reconcileDuration.startTimer({ controller: name });
    let result = 'success';
    try {
      // No finalizer is held (an operator that is not running must never block a delete), but
      // earlier versions added one: it goes wherever it is seen.
      const legacy = obj && o.legacyFinalizers?.filter((f) => hasFinalizer(obj!, f));
      if (obj && legacy && legacy.length > 0) {
        for (const f of legacy) await removeFinalizer(o.kube, rt, obj, f);
        ctx.log.info({ finalizers: legacy }, 'removed finalizers that earlier operator versions added');
        // The write's own watch event brings the object back with its new resourceVersion.
        queue.forget(key);
        return;
      }
      if (!obj || obj.metadata.deletionTimestamp) {
        // Gone (or going, held by someone else's finalizer): nothing to converge. Clean-up of
        // what it owned is best effort here; Kubernetes' garbage collector does it without us.
        if (!obj) await o.reconciler.cleanup?.({ namespace, name: objName }, ctx);
        queue.forget(key);
        return;
      }
      const action: Action = await o.reconciler.reconcile(obj, ctx);
      queue.forget(key);
      if (action.requeueAfterMs !== null) {
        result = 'requeue_after';
        queue.addAfter(key, action.requeueAfterMs);
      }
    } catch (err) {
      if (err instanceof TerminalError) {
        result = 'terminal';
        ctx.log.warn({ err }, 'reconcile failed for good; waiting for the object to change');
        queue.forget(key);
        return;
      }
      result = 'error';
      const action = obj ? o.reconciler.errorPolicy?.(obj, err, ctx) : undefined;
      if (action && action.requeueAfterMs !== null) queue.addAfter(key, action.requeueAfterMs);
      else if (!action) queue.addRateLimited(key);
      ctx.log.error({ err, attempt: ctx.attempt + 1 }, 'reconcile failed; will retry');
    } finally {
      end();
      o.metrics.reconcileTotal.inc({ controller: name, result });
    }
  }

  return {
    name,
    queue,
    async run(signal) {
      log.info({ workers: o.workers ?? 2 }, 'controller started');
      o.metrics.workqueueDepth.set({ name }, queue.length);
      for (const obj of o.informer.list()) enqueue(obj);
      const resync = setInterval(
        () => {
          for (const obj of o.informer.list()) enqueue(obj);
        },
        o.resyncMs ?? 10 * 60_000,
      );
      const depth = setInterval(() => o.metrics.workqueueDepth.set({ name }, queue.length), 1000);
      if (signal.aborted) queue.shutDown();
      else signal.addEventListener('abort', () => queue.shutDown(), { once: true });
      const worker = async () => {
        for (;;) {
          const key = await queue.get();
          if (key === undefined) return;
          try {
            await process(key);
          } finally {
            queue.done(key);
          }
        }
      };
      await Promise.all(Array.from({ length: o.workers ?? 2 }, worker));
      clearInterval(resync);
      clearInterval(depth);
      log.info('controller stopped');
    },
  };
}
