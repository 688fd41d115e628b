/** TaskQueue and WorkerPool objects for operator tests, and reading their conditions. */
import type { Condition, KubeObject } from '../../operator/src/types.js';

/** A raw object as the API returns it (tests poke at any field). */
export type Obj = KubeObject & { spec?: any; status?: any; [field: string]: any };

/** A TaskQueue; by default Redis with the URL in Secret "broker", queue name = object name, checked every 10 min. */
export function taskQueueFixture(
  namespace: string,
  name: string,
  o: { queue?: string; broker?: Record<string, unknown>; checkIntervalSeconds?: number } = {},
): Obj {
  return {
    apiVersion: 'celeriac.io/v1alpha1',
    kind: 'TaskQueue',
    metadata: { name, namespace },
    spec: {
      broker: o.broker ?? { type: 'redis', urlSecretRef: { name: 'broker' } },
      queue: { name: o.queue ?? name },
      checkIntervalSeconds: o.checkIntervalSeconds ?? 600,
    },
  };
}

/** A WorkerPool consuming TaskQueue "default"; `spec` fields are merged over that. */
export function workerPoolFixture(namespace: string, name: string, spec: Record<string, unknown> = {}): Obj {
  return {
    apiVersion: 'celeriac.io/v1alpha1',
    kind: 'WorkerPool',
    metadata: { name, namespace },
    spec: { queues: ['default'], template: { image: 'example.com/shop:1', tasksModule: '/app/tasks.js' }, ...spec },
  };
}

export function conditionOf(obj: Obj | null | undefined, type: string): Condition | undefined {
  return (obj?.status?.conditions as Condition[] | undefined)?.find((c) => c.type === type);
}

/** The conditions of `types` as `{ Type: "Status/Reason" }` (undefined for a missing one), to compare a set at once. */
export function conditionSummary(obj: Obj | null | undefined, types: readonly string[]): Record<string, string | undefined> {
  return Object.fromEntries(
    types.map((t) => {
      const c = conditionOf(obj, t);
      return [t, c && `${c.status}/${c.reason}`];
    }),
  );
}
