/**
 * A small Kubernetes Event recorder (client-node has none): core/v1 Events with CamelCase
 * reasons, aggregated (a repeat of the same object+type+reason+message within 10 minutes bumps
 * `count` instead of creating a new Event, as client-go's correlator does) and rate-limited by a
 * token bucket so a hot loop cannot flood the API. Best effort: failures are logged, never thrown.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { KubeObject } from '../types.js';
import { createTokenBucket } from './backoff.js';
import { resources, type KubeClient } from './kube-client.js';
import { rfc3339 } from './conditions.js';
import { redactText } from '../../../runtime/src/errors.js';

export type EventType = 'Normal' | 'Warning';

export interface EventRecorder {
  record(obj: KubeObject, type: EventType, reason: string, message: string): void;
  /** Resolves when the events recorded so far have been written (for tests and shutdown). */
  flush(): Promise<void>;
}

interface Seen {
  /** Resolves to the Event's name once it is created; a failed create rejects (the next record starts over). */
  created: Promise<{ name: string; namespace: string }>;
  count: number;
  at: number;
  /** The last write for this key: writes of one key go out in order, so counts only grow. */
  last: Promise<void>;
}

const AGGREGATE_MS = 10 * 60_000;

/** Creates a recorder; `qps` is the average rate of new Events allowed (burst 25). */
export function createEventRecorder(o: {
  kube: KubeClient;
  log: Logger;
  component?: string;
  /** Events per second allowed on average (burst 25). */
  qps?: number;
  now?: () => Date;
}): EventRecorder {
  const now = o.now ?? (() => new Date());
  const component = o.component ?? 'celeriac-operator';
  const bucket = createTokenBucket({ qps: o.qps ?? 1, burst: 25, now: () => now().getTime() });
  const seen = new Map<string, Seen>();
  const pending = new Set<Promise<void>>();

  /**
   * Aggregation is decided here, synchronously, so two quick calls for the same Event find each
   * other: the first creates the object, the second waits for that and bumps its count.
   */
  function write(obj: KubeObject, type: EventType, reason: string, message: string): Promise<void> {
    const ns = obj.metadata.namespace ?? 'default';
    const key = `${obj.metadata.uid ?? obj.metadata.name}\u0000${type}\u0000${reason}\u0000${message}`;
    const t = now();
    const prev = seen.get(key);
    if (prev && t.getTime() - prev.at < AGGREGATE_MS) {
      prev.count += 1;
      prev.at = t.getTime();
      const count = prev.count;
      const lastTimestamp = rfc3339(t);
      prev.last = prev.last
        .catch(() => undefined) // that write's failure was logged by its own record()
        .then(() => prev.created)
        .then(({ name, namespace }) => o.kube.patch(resources.events, namespace, name, { count, lastTimestamp }))
        .then(() => undefined);
      return prev.last;
    }
    const name = `${obj.metadata.name}.${t.getTime().toString(16)}${randomBytes(2).toString('hex')}`;
    const created = o.kube
      .create(resources.events, {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name, namespace: ns },
        involvedObject: {
          apiVersion: obj.apiVersion,
          kind: obj.kind,
          name: obj.metadata.name,
          namespace: obj.metadata.namespace,
          uid: obj.metadata.uid,
          resourceVersion: obj.metadata.resourceVersion,
        },
        type,
        reason,
        message: message.slice(0, 1024),
        source: { component },
        reportingComponent: component,
        reportingInstance: component,
        firstTimestamp: rfc3339(t),
        lastTimestamp: rfc3339(t),
        count: 1,
      } as KubeObject)
      .then(() => ({ name, namespace: ns }));
    const entry: Seen = { created, count: 1, at: t.getTime(), last: created.then(() => undefined) };
    seen.set(key, entry);
    // Not created: forget it, so the next record creates the Event instead of patching nothing.
    created.catch(() => {
      if (seen.get(key) === entry) seen.delete(key);
    });
    if (seen.size > 4096) {
      for (const [k, v] of seen) if (t.getTime() - v.at >= AGGREGATE_MS) seen.delete(k);
    }
    return entry.last;
  }

  return {
    record(obj, type, reason, message) {
      if (!bucket.tryTake()) {
        o.log.debug({ reason, name: obj.metadata.name }, 'event dropped by rate limit');
        return;
      }
      // An Event message often quotes a broker's error or URL: never its password.
      const p = write(obj, type, reason, redactText(message))
        .catch((err: unknown) => {
          // Events are best effort: the condition in status carries the same information.
          o.log.warn({ err, reason, name: obj.metadata.name }, 'could not record event');
        })
        .finally(() => pending.delete(p));
      pending.add(p);
    },
    async flush() {
      await Promise.all([...pending]);
    },
  };
}
