// Events a worker sends (runtime/src/events, worker/heartbeat.ts, worker/consumer.ts) received
// through the memory:// broker's fan-out, as `celeriac events` and Flower receive them.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { type } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { Reject } from '../../../../runtime/src/errors.js';
import { receiveEvents, type ReceivedEvent } from '../../../../runtime/src/events/receiver.js';
import { createTestApp, startTestWorker } from '../../../../runtime/src/testing/index.js';
import type { App } from '../../../../runtime/src/app/app.js';
import type { Worker } from '../../../../runtime/src/worker/worker.js';
import { eventually } from '../../../support/eventually.js';
import { repoRoot } from '../../../support/processes.js';

const silent = pino({ level: 'silent' });

async function listen(app: App): Promise<{ events: ReceivedEvent[]; stop: AbortController }> {
  const events: ReceivedEvent[] = [];
  const stop = new AbortController();
  void receiveEvents(await app.broker(), (e) => events.push(e), stop.signal, { log: silent });
  return { events, stop };
}

const ofTask = (events: ReceivedEvent[], id: string) => events.filter((e) => e.uuid === id).map((e) => e.type);

describe('worker events', () => {
  let app: App;
  let worker: Worker;
  let rx: { events: ReceivedEvent[]; stop: AbortController };
  before(async () => {
    app = createTestApp({ workerSendTaskEvents: true, workerHeartbeatIntervalMs: 100, hostname: 'w1@test' });
    app.task('t.add', (a: number, b: number) => a + b);
    app.task('t.fail', () => {
      throw Object.assign(new Error('bad value 7'), { name: 'ValueError' });
    });
    app.task(
      't.reject',
      () => {
        throw new Reject('no', false);
      },
      { acksLate: true },
    );
    app.task('t.flaky', function (this: { retries: number; retry(o: object): never }) {
      if (this.retries < 1) this.retry({ countdown: 0, exc: new Error('not yet') });
      return 'ok';
    });
    rx = await listen(app);
    worker = await startTestWorker(app);
  });
  after(async () => {
    rx.stop.abort();
    await worker.stop();
  });

  it('announces itself and sends heartbeats with counts', async () => {
    const online = await eventually(() => rx.events.find((e) => e.type === 'worker-online')!);
    assert.equal(online.hostname, 'w1@test');
    assert.equal(online.sw_ident, 'celeriac');
    assert.equal(online.sw_ver, JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')).version);
    assert.equal(online.sw_sys, type());
    assert.equal(online.freq, 0.1);
    assert.equal(online.pid, process.pid);
    assert.equal(typeof online.utcoffset, 'number');
    await eventually(() => assert.ok(rx.events.some((e) => e.type === 'worker-heartbeat')));
  });

  it("sends task-received, -started and -succeeded with Celery's fields", async () => {
    const r = await app.sendTask('t.add', [2, 3], {}, {});
    await r.get({ timeout: 5000 });
    await eventually(() => assert.deepEqual(ofTask(rx.events, r.id), ['task-received', 'task-started', 'task-succeeded']));
    const [received, , ok] = rx.events.filter((e) => e.uuid === r.id);
    assert.deepEqual(
      {
        name: received!.name,
        args: received!.args,
        kwargs: received!.kwargs,
        retries: received!.retries,
        eta: received!.eta,
        expires: received!.expires,
        root_id: received!.root_id,
        parent_id: received!.parent_id,
      },
      { name: 't.add', args: '(2, 3)', kwargs: '{}', retries: 0, eta: null, expires: null, root_id: r.id, parent_id: null },
    );
    assert.equal(ok!.result, '5');
    assert.equal(typeof ok!.runtime, 'number');
  });

  it('sends task-failed with the exception repr and a traceback', async () => {
    const r = await app.sendTask('t.fail');
    await eventually(() => assert.ok(ofTask(rx.events, r.id).includes('task-failed')));
    const failed = rx.events.find((e) => e.uuid === r.id && e.type === 'task-failed')!;
    assert.equal(failed.exception, "ValueError('bad value 7')");
    assert.match(String(failed.traceback), /^Traceback \(most recent call last\):\n/);
  });

  it('sends task-retried, then the retry runs', async () => {
    const r = await app.sendTask('t.flaky');
    // The retry is published before task-retried goes out (as Celery's Task.retry), so the second
    // run's events may come first.
    await eventually(() =>
      assert.deepEqual([...ofTask(rx.events, r.id)].sort(), [
        'task-received',
        'task-received',
        'task-retried',
        'task-started',
        'task-started',
        'task-succeeded',
      ]),
    );
    // The second run's own events in order (the first run's task-retried may come after them).
    const events = ofTask(rx.events, r.id);
    assert.ok(events.lastIndexOf('task-started') < events.indexOf('task-succeeded'), events.join(', '));
    assert.equal(rx.events.find((e) => e.uuid === r.id && e.type === 'task-retried')!.exception, "Retry(Retry(...), Error('not yet'), 0)");
  });

  it('sends task-rejected, task-revoked for an expired task, and task-failed for an unknown one', async () => {
    const rej = await app.sendTask('t.reject');
    const expired = await app.sendTask('t.add', [1, 1], {}, { expires: new Date(Date.now() - 1000) });
    const unknown = await app.sendTask('t.nope');
    await eventually(() => {
      assert.deepEqual(ofTask(rx.events, rej.id), ['task-received', 'task-started', 'task-rejected']);
      assert.deepEqual(ofTask(rx.events, expired.id), ['task-revoked']);
      assert.deepEqual(ofTask(rx.events, unknown.id), ['task-failed']);
    });
    assert.equal(rx.events.find((e) => e.uuid === rej.id && e.type === 'task-rejected')!.requeue, false);
    const revoked = rx.events.find((e) => e.uuid === expired.id)!;
    assert.deepEqual([revoked.terminated, revoked.signum, revoked.expired], [false, null, true]);
    assert.equal(rx.events.find((e) => e.uuid === unknown.id)!.exception, "NotRegistered('t.nope')");
  });

  it('numbers events with a Lamport clock: each its own, rising in the order they were sent', () => {
    // Arrival order is not send order (task events wait up to 10 ms for a batch, heartbeats do not),
    // so the clocks are checked as sent: no two alike, and a task's events rise through its life.
    const clocks = rx.events.map((e) => e.clock as number);
    assert.ok(
      clocks.every((c) => Number.isInteger(c) && c > 0),
      clocks.join(','),
    );
    assert.equal(new Set(clocks).size, clocks.length, `no clock twice: ${clocks.join(',')}`);
    const byTask = new Map<string, { type: string; clock: number }[]>();
    for (const e of rx.events) if (typeof e.uuid === 'string') byTask.set(e.uuid, [...(byTask.get(e.uuid) ?? []), { type: e.type, clock: e.clock as number }]);
    const lifecycle = ['task-received', 'task-started', 'task-succeeded'];
    let checked = 0;
    for (const events of byTask.values()) {
      const inLife = lifecycle.map((t) => events.find((e) => e.type === t)).filter((e) => e !== undefined);
      if (inLife.length < 3) continue;
      checked++;
      assert.ok(inLife[0]!.clock < inLife[1]!.clock && inLife[1]!.clock < inLife[2]!.clock, JSON.stringify(inLife));
    }
    assert.ok(checked > 0, 'at least one task went through received, started and succeeded');
  });

  it('stops task events on disable() and resumes them on enable(), with Celery replies', async () => {
    assert.equal(worker.events!.disable(), 'task events disabled');
    assert.equal(worker.events!.disable(), 'task events already disabled');
    const quiet = await app.sendTask('t.add', [1, 2]);
    await quiet.get({ timeout: 5000 });
    assert.equal(worker.events!.enable(), 'task events enabled');
    assert.equal(worker.events!.enable(), 'task events already enabled');
    const loud = await app.sendTask('t.add', [1, 2]);
    await eventually(() => assert.ok(ofTask(rx.events, loud.id).includes('task-succeeded')));
    assert.deepEqual(ofTask(rx.events, quiet.id), []);
  });
});

describe('worker events without -E', () => {
  it('sends worker events only, and worker-offline on stop', async () => {
    const app = createTestApp({ workerHeartbeatIntervalMs: 100, hostname: 'w2@test' });
    app.task('t.add', (a: number, b: number) => a + b);
    const rx = await listen(app);
    const worker = await startTestWorker(app);
    try {
      const r = await app.sendTask('t.add', [2, 3]);
      await r.get({ timeout: 5000 });
      await eventually(() => assert.ok(rx.events.some((e) => e.type === 'worker-heartbeat' && e.processed === 1)));
    } finally {
      await worker.stop();
      rx.stop.abort();
    }
    assert.deepEqual(
      rx.events.filter((e) => e.type.startsWith('task-')),
      [],
    );
    assert.equal(rx.events.at(-1)!.type, 'worker-offline');
  });
});

describe('events steered by remote control (as Flower does)', () => {
  it('enable_events turns task events on, disable_events off, heartbeat sends one now; replies as Celery', async () => {
    const node = 'w3@test';
    // A heartbeat period far beyond the test, so a heartbeat seen comes from the command.
    const app = createTestApp({ workerHeartbeatIntervalMs: 3_600_000, hostname: node });
    app.task('t.add', (a: number, b: number) => a + b);
    const rx = await listen(app);
    const worker = await startTestWorker(app);
    const only = { destination: [node], timeoutMs: 2000, reply: true };
    try {
      const before = await app.sendTask('t.add', [1, 1]);
      await before.get({ timeout: 5000 });
      assert.deepEqual(await app.control.broadcast('enable_events', {}, only), [{ [node]: { ok: 'task events enabled' } }]);
      assert.deepEqual(await app.control.broadcast('enable_events', {}, only), [{ [node]: { ok: 'task events already enabled' } }]);
      const on = await app.sendTask('t.add', [2, 2]);
      await on.get({ timeout: 5000 });
      await eventually(() => assert.deepEqual(ofTask(rx.events, on.id), ['task-received', 'task-started', 'task-succeeded']));
      assert.deepEqual(await app.control.broadcast('disable_events', {}, only), [{ [node]: { ok: 'task events disabled' } }]);
      const off = await app.sendTask('t.add', [3, 3]);
      await off.get({ timeout: 5000 });
      assert.equal(rx.events.filter((e) => e.type === 'worker-heartbeat').length, 0);
      await app.control.broadcast('heartbeat', {}, { destination: [node], timeoutMs: 500 });
      await eventually(() => assert.equal(rx.events.filter((e) => e.type === 'worker-heartbeat').length, 1));
      assert.deepEqual(ofTask(rx.events, before.id), []);
      assert.deepEqual(ofTask(rx.events, off.id), []);
    } finally {
      await worker.stop();
      rx.stop.abort();
    }
  });
});

describe('worker heartbeat counts', () => {
  it('processed counts the tasks that ran, not one revoked while it waited for a slot (as Celery)', async () => {
    const app = createTestApp({ concurrency: 1, hostname: 'w2@test' });
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    app.task('t.hold', () => held);
    app.task('t.never', () => 'ran');
    const worker = await startTestWorker(app);
    try {
      const first = await app.sendTask('t.hold', []);
      await eventually(() => assert.equal(worker.counts().active, 1));
      const second = await app.sendTask('t.never', []);
      // Received and waiting for the one slot: revoked there, it is discarded when its turn comes.
      await eventually(() => assert.equal(worker.counts().reserved, 1));
      const replies = await app.control.revoke(second.id, { reply: true, destination: ['w2@test'] });
      assert.equal(replies.length, 1);
      release();
      await first.get({ timeout: 5000 });
      await assert.rejects(second.get({ timeout: 5000 }), (err: Error) => err.name === 'TaskRevokedError');
      await eventually(() => assert.equal(worker.counts().active + worker.counts().reserved, 0));
      const stats = await app.control.stats({ destination: ['w2@test'] });
      assert.deepEqual(stats['w2@test']!.total, { 't.hold': 1 });
      assert.equal(worker.counts().processed, 1);
    } finally {
      release();
      await worker.stop();
      await app.close();
    }
  });
});
