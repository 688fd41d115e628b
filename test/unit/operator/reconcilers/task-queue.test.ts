// The TaskQueue reconciler's branches, one table row each, on the in-memory KubeClient: the broker
// check's outcome becomes conditions BrokerReachable and Ready (type/status/reason), status fields
// and Events. Rows with `check` replace the broker check (its own behaviour against real brokers is
// in test/operator/task-queue.test.ts); rows without it run the real check, which fails before any
// network I/O when the Secret or the URL is wrong.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BrokerCheckError, KubeApiError } from '../../../../operator/src/errors.js';
import { resources } from '../../../../operator/src/k8s/kube-client.js';
import type { checkBroker } from '../../../../operator/src/reconcilers/broker-check.js';
import { createTaskQueueReconciler } from '../../../../operator/src/reconcilers/task-queue.js';
import type { Condition, Secret, TaskQueue } from '../../../../operator/src/types.js';
import { createMemoryKube, type MemoryKube } from '../../../support/memory-kube.js';
import { conditionSummary, taskQueueFixture } from '../../../support/operator-fixtures.js';
import { testContext } from '../../../support/reconcile-context.js';

const NS = 'shop';
const NAME = 'default';

async function addTaskQueue(kube: MemoryKube, o: { broker?: Record<string, unknown>; conditions?: Partial<Condition>[] } = {}): Promise<TaskQueue> {
  const tq = await kube.create<TaskQueue>(resources.taskQueues, taskQueueFixture(NS, NAME, { broker: o.broker, checkIntervalSeconds: 45 }) as TaskQueue);
  if (!o.conditions) return tq;
  const conditions = o.conditions.map((c) => ({ lastTransitionTime: '2025-12-31T00:00:00Z', reason: 'Earlier', message: '', ...c }));
  return kube.patch<TaskQueue>(resources.taskQueues, NS, NAME, { status: { conditions } }, { subresource: 'status' });
}

async function addSecret(kube: MemoryKube, data: Record<string, string>): Promise<void> {
  const encoded = Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')]));
  await kube.create<Secret>(resources.secrets, { metadata: { name: 'broker', namespace: NS }, data: encoded });
}

const reachable: typeof checkBroker = async () => ({ url: 'redis://:***@redis:6379/0', depth: 3, inFlight: 1 });
const unreachable: typeof checkBroker = async () => {
  throw new BrokerCheckError('Unreachable', 'cannot connect to redis://redis:6379/0: ECONNREFUSED');
};

interface Row {
  name: string;
  given(kube: MemoryKube): Promise<TaskQueue>;
  /** Replaces the broker check; absent: the real one. */
  check?: typeof checkBroker;
  expect: {
    conditions: Record<string, string>;
    events: string[];
    /** Status fields besides the conditions (a subset; null: the field must be absent). */
    status: Record<string, unknown>;
  };
}

const rows: Row[] = [
  {
    name: 'broker reachable: Ready with depth and in-flight counts, no Event',
    given: (kube) => addTaskQueue(kube),
    check: reachable,
    expect: {
      conditions: { BrokerReachable: 'True/Connected', Ready: 'True/BrokerReachable' },
      events: [],
      status: { depth: 3, inFlight: 1, consumers: null, brokerUrl: 'redis://:***@redis:6379/0', lastChecked: '2026-01-01T00:00:00Z', observedGeneration: 1 },
    },
  },
  {
    name: 'broker reachable again after a failure: a Normal Event says so',
    given: (kube) => addTaskQueue(kube, { conditions: [{ type: 'BrokerReachable', status: 'False' }] }),
    check: reachable,
    expect: {
      conditions: { BrokerReachable: 'True/Connected', Ready: 'True/BrokerReachable' },
      events: ['Normal BrokerReachable'],
      status: { depth: 3 },
    },
  },
  {
    name: 'broker check fails: BrokerReachable and Ready False with its reason, a Warning Event',
    given: (kube) => addTaskQueue(kube),
    check: unreachable,
    expect: {
      conditions: { BrokerReachable: 'False/Unreachable', Ready: 'False/Unreachable' },
      events: ['Warning Unreachable'],
      status: { depth: null, lastChecked: '2026-01-01T00:00:00Z' },
    },
  },
  {
    name: 'the real check: the URL Secret does not exist (SecretNotFound)',
    given: (kube) => addTaskQueue(kube),
    expect: {
      conditions: { BrokerReachable: 'False/SecretNotFound', Ready: 'False/SecretNotFound' },
      events: ['Warning SecretNotFound'],
      status: { credentialsHash: null },
    },
  },
  {
    name: 'the real check: the Secret lacks the key (SecretKeyMissing)',
    given: async (kube) => {
      await addSecret(kube, { uri: 'redis://redis:6379/0' });
      return addTaskQueue(kube);
    },
    expect: {
      conditions: { BrokerReachable: 'False/SecretKeyMissing', Ready: 'False/SecretKeyMissing' },
      events: ['Warning SecretKeyMissing'],
      status: { credentialsHash: null },
    },
  },
  {
    name: 'the real check: a URL whose scheme does not match the broker type (InvalidURL)',
    given: (kube) => addTaskQueue(kube, { broker: { type: 'redis', url: 'amqp://rabbit:5672/' } }),
    expect: {
      conditions: { BrokerReachable: 'False/InvalidURL', Ready: 'False/InvalidURL' },
      events: ['Warning InvalidURL'],
      status: {},
    },
  },
  {
    name: 'credentials from a Secret: status.credentialsHash is published',
    given: async (kube) => {
      await addSecret(kube, { url: 'redis://:s3cret@redis:6379/0' });
      return addTaskQueue(kube);
    },
    check: reachable,
    expect: {
      conditions: { BrokerReachable: 'True/Connected', Ready: 'True/BrokerReachable' },
      events: [],
      status: { credentialsHash: /^[0-9a-f]{16}$/ },
    },
  },
  {
    name: 'credentials from a Secret: the hash is published even while the broker is down',
    given: async (kube) => {
      await addSecret(kube, { url: 'redis://:s3cret@redis:6379/0' });
      return addTaskQueue(kube);
    },
    check: unreachable,
    expect: {
      conditions: { BrokerReachable: 'False/Unreachable', Ready: 'False/Unreachable' },
      events: ['Warning Unreachable'],
      status: { credentialsHash: /^[0-9a-f]{16}$/ },
    },
  },
  {
    name: 'a URL in the spec (no Secret): no credentialsHash',
    given: (kube) => addTaskQueue(kube, { broker: { type: 'redis', url: 'redis://redis:6379/0' } }),
    check: reachable,
    expect: {
      conditions: { BrokerReachable: 'True/Connected', Ready: 'True/BrokerReachable' },
      events: [],
      status: { credentialsHash: null },
    },
  },
];

describe('TaskQueue reconciler branches', () => {
  for (const row of rows) {
    it(row.name, async () => {
      const kube = createMemoryKube();
      const tq = await row.given(kube);
      const { ctx, eventLines } = testContext(kube);
      const action = await createTaskQueueReconciler({ check: row.check, checkTimeoutMs: 100 }).reconcile(tq, ctx);
      assert.equal(action.requeueAfterMs, 45_000, 'looks again after spec.checkIntervalSeconds');

      const stored = await kube.get<TaskQueue>(resources.taskQueues, NS, NAME);
      const wanted = row.expect.conditions;
      assert.deepEqual(conditionSummary(stored, Object.keys(wanted)), wanted);
      for (const c of stored?.status?.conditions ?? []) {
        if (wanted[c.type]) assert.equal(c.observedGeneration, tq.metadata.generation, `${c.type} observedGeneration`);
      }
      assert.deepEqual(eventLines(), row.expect.events);
      const status = (stored?.status ?? {}) as Record<string, unknown>;
      for (const [field, want] of Object.entries(row.expect.status)) {
        if (want instanceof RegExp) assert.match(String(status[field]), want, `status.${field}`);
        else if (want === null) assert.equal(field in status, false, `status.${field} is absent`);
        else assert.deepEqual(status[field], want, `status.${field}`);
      }
    });
  }
});

describe('TaskQueue reconciler errors and transitions', () => {
  it('an API error (not a broker problem) fails the reconcile for a retry and writes no status', async () => {
    const kube = createMemoryKube();
    const tq = await addTaskQueue(kube);
    kube.intercept((req) => {
      if (req.verb === 'get' && req.resource === resources.secrets)
        throw new KubeApiError(403, 'Forbidden', 'secrets is forbidden', 'GET', '/api/v1/namespaces/shop/secrets/broker');
    });
    const { ctx, eventLines } = testContext(kube);
    await assert.rejects(createTaskQueueReconciler().reconcile(tq, ctx), (err: unknown) => err instanceof KubeApiError && err.statusCode === 403);
    assert.equal((await kube.get<TaskQueue>(resources.taskQueues, NS, NAME))?.status, undefined);
    assert.deepEqual(eventLines(), []);
  });

  it('lastTransitionTime moves only when a condition flips', async () => {
    const kube = createMemoryKube();
    await addTaskQueue(kube);
    const r = (check: typeof checkBroker) => createTaskQueueReconciler({ check });
    const at = (iso: string) => testContext(kube, { now: new Date(iso) }).ctx;
    const reachableSince = async () =>
      (await kube.get<TaskQueue>(resources.taskQueues, NS, NAME))?.status?.conditions?.find((c) => c.type === 'BrokerReachable')?.lastTransitionTime;

    await r(reachable).reconcile((await kube.get<TaskQueue>(resources.taskQueues, NS, NAME))!, at('2026-01-01T00:00:00Z'));
    await r(reachable).reconcile((await kube.get<TaskQueue>(resources.taskQueues, NS, NAME))!, at('2026-01-01T00:05:00Z'));
    assert.equal(await reachableSince(), '2026-01-01T00:00:00Z', 'unchanged while still reachable');
    await r(unreachable).reconcile((await kube.get<TaskQueue>(resources.taskQueues, NS, NAME))!, at('2026-01-01T00:10:00Z'));
    assert.equal(await reachableSince(), '2026-01-01T00:10:00Z', 'moved when it flipped');
  });
});
