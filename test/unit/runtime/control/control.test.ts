// Remote control end to end in one process (memory:// broker): app.control against a worker's
// pidbox, every built-in command with the reply shape Celery gives, and app.controlCommand.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, startTestWorker } from '../../../../runtime/src/testing/index.js';
import { queueInfo } from '../../../../runtime/src/protocol/control.js';
import type { TaskContext } from '../../../../runtime/src/app/task.js';
import type { Worker } from '../../../../runtime/src/worker/worker.js';
import { eventually } from '../../../support/eventually.js';

const node = 'ctl@test';
const app = createTestApp({ concurrency: 2, hostname: node, queues: ['q1'] });
app.task('c.add', (a: number, b: number) => a + b);
app.task('c.limited', (i: number) => i, { rateLimit: '10/m' });
let release: (() => void) | null = null;
app.task('c.block', function (this: TaskContext) {
  return new Promise((resolve) => {
    release = () => resolve('released');
    this.signal.addEventListener('abort', () => resolve('aborted'));
  });
});
app.controlCommand('shout', {
  type: 'control',
  args: [['word', 'str']],
  handler: (ctx, a) => ({ ok: `${String(a.word).toUpperCase()} from ${ctx.hostname}` }),
});

describe('remote control (memory broker)', () => {
  let worker: Worker;
  before(async () => {
    worker = await startTestWorker(app);
  });
  after(async () => {
    await worker.stop();
  });
  const only = { destination: [node], timeoutMs: 2000 };

  it('ping replies {ok: pong} per node; a destination elsewhere gets no reply', async () => {
    assert.deepEqual(await app.control.ping(only), [{ [node]: { ok: 'pong' } }]);
    assert.deepEqual(await app.control.ping({ destination: ['other@host'], timeoutMs: 200 }), []);
  });

  it('stats, registered, active_queues, conf, report, clock', async () => {
    const stats = (await app.control.stats(only))[node]!;
    assert.equal(stats.pid, process.pid);
    assert.equal(stats.pool['max-concurrency'], 2);
    assert.equal(stats.broker.transport, 'memory');
    assert.equal(typeof stats.uptime, 'number');
    assert.deepEqual(await app.control.registered(only), { [node]: ['c.add', 'c.block', 'c.limited [rate_limit=10/m]'] });
    assert.deepEqual(await app.control.activeQueues(only), { [node]: [queueInfo('q1')] });
    assert.equal((await app.control.conf(only))[node]!.worker_concurrency, 2);
    assert.match((await app.control.report(only))[node]!.ok, /celeriac/);
    assert.equal(typeof (await app.control.inspect<{ clock: number }>('clock', {}, only))[node]!.clock, 'number');
  });

  it('active, reserved, query_task, revoke with terminate', async () => {
    const r = await app.sendTask('c.block', [], {}, { queue: 'q1' });
    const active = await eventually(async () => {
      const a = (await app.control.active(only))[node]!;
      assert.equal(a.length, 1);
      return a[0]!;
    });
    assert.equal(active.id, r.id);
    assert.equal(active.name, 'c.block');
    assert.equal(active.hostname, node);
    assert.equal(typeof active.time_start, 'number');
    assert.deepEqual(active.delivery_info.routing_key, 'q1');
    assert.deepEqual((await app.control.reserved(only))[node], []);
    const q = (await app.control.queryTask([r.id, 'unknown-id'], only))[node]!;
    assert.deepEqual(Object.keys(q), [r.id]);
    assert.equal(q[r.id]![0], 'active');
    assert.deepEqual(await app.control.revoke(r.id, { ...only, reply: true, terminate: true }), [{ [node]: { ok: `terminate: ${r.id}` } }]);
    assert.equal(await r.get({ timeout: 5000 }).catch((e: Error) => e.name), 'TaskRevokedError');
    assert.ok((await app.control.revoked(only))[node]!.includes(r.id));
    // Python truth values: Flower sends terminate=1.
    const r2 = await app.sendTask('c.block', [], {}, { queue: 'q1' });
    await eventually(async () => assert.equal((await app.control.active(only))[node]!.length, 1));
    assert.deepEqual(await app.control.broadcast('revoke', { task_id: r2.id, terminate: 1 }, { ...only, reply: true }), [
      { [node]: { ok: `terminate: ${r2.id}` } },
    ]);
    assert.equal(await r2.get({ timeout: 5000 }).catch((e: Error) => e.name), 'TaskRevokedError');
    const later = await app.control.revoke(['a1', 'b2'], { ...only, reply: true });
    assert.deepEqual(later, [{ [node]: { ok: "tasks {'a1', 'b2'} flagged as revoked" } }]);
  });

  it('scheduled lists ETA tasks with Celery eta and priority', async () => {
    const r = await app.sendTask('c.add', [1, 2], {}, { queue: 'q1', countdown: 60_000 });
    const s = await eventually(async () => {
      const list = (await app.control.scheduled(only))[node]!;
      assert.equal(list.length, 1);
      return list[0]!;
    });
    assert.equal(s.request.id, r.id);
    assert.equal(s.priority, 6);
    assert.match(String(s.eta), /^\d{4}-\d\d-\d\dT.*\+00:00$/);
    await app.control.revoke(r.id);
  });

  it('rate_limit changes the rate; bad strings and unknown tasks are errors', async () => {
    assert.deepEqual(await app.control.rateLimit('c.add', '5/s', { ...only, reply: true }), [{ [node]: { ok: 'new rate limit set successfully' } }]);
    assert.deepEqual((await app.control.registered(only))[node]![0], 'c.add [rate_limit=5/s]');
    assert.deepEqual(await app.control.rateLimit('c.add', '', { ...only, reply: true }), [{ [node]: { ok: 'rate limit disabled successfully' } }]);
    assert.deepEqual(await app.control.rateLimit('nope', '1/s', { ...only, reply: true }), [{ [node]: { error: 'unknown task' } }]);
    assert.deepEqual(await app.control.rateLimit('c.add', 'x/s', { ...only, reply: true }), [
      { [node]: { error: `Invalid rate limit string: ValueError("could not convert string to float: 'x'")` } },
    ]);
  });

  it('time_limit, pool_grow, pool_shrink, autoscale', async () => {
    assert.deepEqual(await app.control.timeLimit('c.add', { soft: 10, hard: 20 }, { ...only, reply: true }), [
      { [node]: { ok: 'time limits set successfully' } },
    ]);
    assert.deepEqual(await app.control.poolGrow(3, { ...only, reply: true }), [{ [node]: { ok: 'pool will grow' } }]);
    assert.equal((await app.control.stats(only))[node]!.pool['max-concurrency'], 5);
    assert.deepEqual(await app.control.poolShrink(2, { ...only, reply: true }), [{ [node]: { ok: 'pool will shrink' } }]);
    assert.equal((await app.control.stats(only))[node]!.pool['max-concurrency'], 3);
    assert.deepEqual(await app.control.autoscale(4, 1, { ...only, reply: true }), [{ [node]: { error: "ValueError('Autoscale not enabled')" } }]);
  });

  it('add_consumer and cancel_consumer change the queues consumed', async () => {
    assert.deepEqual(await app.control.addConsumer('q2', { ...only, reply: true }), [{ [node]: { ok: 'add consumer q2' } }]);
    const r = await app.sendTask<number>('c.add', [2, 2], {}, { queue: 'q2' });
    assert.equal(await r.get({ timeout: 5000 }), 4);
    assert.deepEqual(
      (await app.control.activeQueues(only))[node]!.map((q) => q.name),
      ['q1', 'q2'],
    );
    assert.deepEqual(await app.control.cancelConsumer('q1', { ...only, reply: true }), [{ [node]: { ok: 'no longer consuming from q1' } }]);
    await eventually(async () =>
      assert.deepEqual(
        (await app.control.activeQueues(only))[node]!.map((q) => q.name),
        ['q2'],
      ),
    );
  });

  it("hello (Celery's mingle) shares the revoked set with float timestamps, and learns the sender's", async () => {
    const replies = await app.control.broadcast('hello', { from_node: 'py@host', revoked: { 'from-py': [1735732800.5, 'from-py'] } }, { ...only, reply: true });
    const r = replies[0]![node] as { revoked: Record<string, [number, string]>; clock: number };
    assert.equal(typeof r.clock, 'number');
    assert.ok(r.revoked['from-py'], 'the sender revocation is kept');
    for (const [id, [stamp, same]] of Object.entries(r.revoked)) {
      assert.equal(same, id);
      assert.ok(!Number.isInteger(stamp), `a float timestamp for ${id}, got ${stamp}`);
    }
    assert.deepEqual(await app.control.broadcast('hello', { from_node: node }, { ...only, reply: true }), [{ [node]: null }]);
  });

  it('an unknown command replies KeyError; an app command runs', async () => {
    assert.deepEqual(await app.control.broadcast('nope', {}, { ...only, reply: true }), [{ [node]: { error: "KeyError('nope')" } }]);
    assert.deepEqual(await app.control.broadcast('shout', { word: 'hi' }, { ...only, reply: true }), [{ [node]: { ok: `HI from ${node}` } }]);
  });
});

describe('remote control of an autoscaling worker', () => {
  it('autoscale changes the range; pool_grow and pool_shrink refuse, as Celery; stats shows the autoscaler', async () => {
    const a = createTestApp({ hostname: 'auto@test', autoscale: '4,2' });
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    a.task('a.block', () => gate);
    const w = await startTestWorker(a);
    try {
      const only = { destination: ['auto@test'], timeoutMs: 2000 };
      assert.deepEqual((await a.control.stats(only))['auto@test']!.autoscaler, { max: 4, min: 2, current: 2, qty: 0 });
      // Five tasks held: the pool grows from 2 to its maximum of 4 slots.
      const runs = await Promise.all([1, 2, 3, 4, 5].map(() => a.sendTask('a.block')));
      await eventually(async () => assert.equal((await a.control.active(only))['auto@test']!.length, 4));
      open();
      for (const r of runs) await r.get({ timeout: 5000 });
      assert.deepEqual(await a.control.autoscale(6, 3, { ...only, reply: true }), [{ 'auto@test': { ok: 'autoscale now max=6 min=3' } }]);
      // The pool (4 slots after the load) is inside the new range: it stays until idle for the keepalive.
      assert.deepEqual((await a.control.stats(only))['auto@test']!.autoscaler, { max: 6, min: 3, current: 4, qty: 0 });
      assert.deepEqual(await a.control.autoscale(3, 2, { ...only, reply: true }), [{ 'auto@test': { ok: 'autoscale now max=3 min=2' } }]);
      assert.equal((await a.control.stats(only))['auto@test']!.pool['max-concurrency'], 3);
      assert.deepEqual(await a.control.poolGrow(1, { ...only, reply: true }), [
        { 'auto@test': { error: 'pool_grow is not supported with autoscale. Adjust autoscale range instead.' } },
      ]);
      assert.deepEqual(await a.control.poolShrink(1, { ...only, reply: true }), [
        { 'auto@test': { error: 'pool_shrink is not supported with autoscale. Adjust autoscale range instead.' } },
      ]);
    } finally {
      await w.stop();
    }
  });
});

describe('remote control shutdown', () => {
  it('stops the worker warm, after its running task, without a reply', async () => {
    const a = createTestApp({ hostname: 'bye@test' });
    a.task('s.block', () => new Promise((resolve) => setTimeout(() => resolve('finished'), 300)));
    const w = await startTestWorker(a);
    const r = await a.sendTask('s.block');
    await eventually(() => assert.equal(w.counts().active, 1));
    assert.deepEqual(await a.control.broadcast('shutdown', {}, { destination: ['bye@test'], reply: true, timeoutMs: 300 }), []);
    assert.equal(await r.get({ timeout: 5000 }), 'finished');
    await eventually(async () => assert.deepEqual(await a.control.ping({ destination: ['bye@test'], timeoutMs: 100 }).catch(() => []), []));
    await w.stop();
  });
});
