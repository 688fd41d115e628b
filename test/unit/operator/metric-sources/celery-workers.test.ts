// The Celery in-flight source's own logic, with remote control and the event stream faked at
// their seams (real Celery workers: test/operator/celery-pool.test.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { createCeleryWorkersSource, type CeleryWorkersOptions } from '../../../../operator/src/metric-sources/celery-workers.js';
import { MetricSourceError } from '../../../../operator/src/metric-sources/source.js';
import { dueWithin } from '../../../../operator/src/metric-sources/worker-metrics.js';
import type { ReceivedEvent } from '../../../../runtime/src/events/receiver.js';

type Replies = Record<string, Record<string, unknown[]>>;

function fake(o: { replies: Replies; enableAnswer?: (node: string) => string | null; events?: CeleryWorkersOptions['events']; draining?: string[] }) {
  const sentEnable: string[][] = [];
  let emit: (e: ReceivedEvent) => void = () => {};
  const source = createCeleryWorkersSource({
    control: {
      inspect: (async (method: string, _args: unknown, opts: { destination?: readonly string[] }) => {
        const out: Record<string, unknown> = {};
        for (const n of opts.destination ?? []) if (o.replies[method]?.[n]) out[n] = o.replies[method]![n];
        return out;
      }) as never,
      broadcast: (async (method: string, _args: unknown, opts: { destination?: readonly string[] }) => {
        assert.equal(method, 'enable_events');
        sentEnable.push([...(opts.destination ?? [])]);
        return (opts.destination ?? []).flatMap((n) => {
          const ok = o.enableAnswer?.(n);
          return ok ? [{ [n]: { ok } }] : [];
        });
      }) as never,
    },
    receiveEvents: (onEvent, signal) => {
      emit = onEvent;
      return new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    },
    targets: async () => [{ pod: 'a' }, { pod: 'b' }],
    nodeName: (p) => `celery@${p}`,
    isDraining: (p) => (o.draining ?? []).includes(p),
    events: o.events ?? 'Enable',
    log: pino({ level: 'silent' }),
  });
  const event = (type: string, hostname: string, extra: Record<string, unknown> = {}) =>
    emit({ type, hostname, timestamp: 0, utcoffset: 0, pid: 1, clock: 1, local_received: 0, ...extra });
  return { source, sentEnable, event };
}

const both = (a: unknown[], b: unknown[]) => ({ 'celery@a': a, 'celery@b': b });
const replies: Replies = {
  active: both([{ id: 1 }], []),
  reserved: both([{ id: 2 }, { id: 3 }], []),
  scheduled: both(
    [],
    [
      { id: 4, eta: '2000-01-01T00:00:00+00:00' },
      { id: 5, eta: null },
    ],
  ),
};

describe('celery-workers source', () => {
  it('sums inspect active/reserved/scheduled per pod and counts running tasks on draining pods', async () => {
    const { source } = fake({ replies, enableAnswer: () => 'task events already enabled', draining: ['a'] });
    const r = await source.read(AbortSignal.timeout(5000));
    assert.deepEqual([r.active, r.reserved, r.scheduled, r.drainingActive], [1, 2, 2, 1]);
    const { scheduledDue: dueOnA, ...a } = r.byPod.get('a')!;
    assert.deepEqual(a, { active: 1, reserved: 2, scheduled: 0, draining: true, received: 0, completed: 0, serviceSeconds: 0 });
    assert.equal(dueWithin(dueOnA, 10), 0);
    assert.equal(r.byPod.get('b')?.scheduled, 2);
    // an overdue ETA counts in every bucket; one without an eta is not counted ahead
    assert.equal(dueWithin(r.scheduledDue, 10), 1);
    await source.close();
  });

  it('fails the read when a pod does not answer, naming its node: in-flight work is never assumed zero', async () => {
    const { source } = fake({ replies: { ...replies, reserved: { 'celery@a': [] } }, enableAnswer: () => 'task events already enabled' });
    await assert.rejects(
      source.read(AbortSignal.timeout(5000)),
      (err: unknown) => err instanceof MetricSourceError && /inspect reserved .*celery@b/.test(err.message),
    );
    await source.close();
  });

  it('sends enable_events once per pod and says whether it turned task events on', async () => {
    const { source, sentEnable } = fake({ replies, enableAnswer: (n) => (n === 'celery@a' ? 'task events enabled' : 'task events already enabled') });
    await source.read(AbortSignal.timeout(5000));
    await source.read(AbortSignal.timeout(5000));
    assert.deepEqual(sentEnable, [['celery@a', 'celery@b']]);
    assert.equal(source.eventsState(), 'EnabledByOperator');
    await source.close();

    const already = fake({ replies, enableAnswer: () => 'task events already enabled' });
    await already.source.read(AbortSignal.timeout(5000));
    assert.equal(already.source.eventsState(), 'Enabled');
    await already.source.close();
  });

  it('asks a pod again when it did not answer enable_events, and reports InspectOnly without counters meanwhile', async () => {
    let answer = false;
    const { source, sentEnable } = fake({ replies, enableAnswer: (n) => (n === 'celery@b' && !answer ? null : 'task events already enabled') });
    const first = await source.read(AbortSignal.timeout(5000));
    assert.equal(source.eventsState(), 'InspectOnly');
    assert.deepEqual([first.received, first.completed, first.serviceSeconds], [null, null, null]);
    answer = true;
    await source.read(AbortSignal.timeout(5000));
    assert.deepEqual(sentEnable, [['celery@a', 'celery@b'], ['celery@b']]);
    assert.equal(source.eventsState(), 'Enabled');
    await source.close();
  });

  it('Inspect mode leaves event settings alone; task events that arrive anyway feed the counters', async () => {
    const { source, sentEnable, event } = fake({ replies, events: 'Inspect' });
    assert.equal((await source.read(AbortSignal.timeout(5000))).completed, null);
    assert.equal(source.eventsState(), 'InspectOnly');
    for (const n of ['celery@a', 'celery@b']) {
      event('task-received', n);
      event('task-succeeded', n, { runtime: 1.5 });
    }
    event('task-failed', 'celery@a', { runtime: 0.5 });
    event('worker-heartbeat', 'celery@b', { active: 3 });
    const r = await source.read(AbortSignal.timeout(5000));
    assert.deepEqual([r.received, r.completed, r.serviceSeconds], [2, 3, 3.5]);
    assert.equal(source.eventsState(), 'Enabled');
    assert.deepEqual(sentEnable, []);
    await source.close();
  });
});
