import { describe, it, mock, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createRateLimiter } from '../../../../operator/src/k8s/backoff.js';
import { createWorkQueue, type WorkQueue } from '../../../../operator/src/k8s/work-queue.js';

function queue(): WorkQueue {
  return createWorkQueue({ rateLimiter: createRateLimiter({ baseDelayMs: 100, maxDelayMs: 10_000, qps: 1000, burst: 1000 }) });
}

/** The keys `get` would hand out right now (without waiting). */
async function drain(q: WorkQueue): Promise<string[]> {
  const out: string[] = [];
  while (q.length > 0) {
    const k = await q.get();
    if (k === undefined) break;
    out.push(k);
  }
  return out;
}

describe('createWorkQueue', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout'] }));
  afterEach(() => mock.timers.reset());

  it('queues a key once however often it is added, in first-add order', async () => {
    const q = queue();
    q.add('a');
    q.add('b');
    q.add('a');
    q.add('a');
    assert.equal(q.length, 2);
    assert.deepEqual(await drain(q), ['a', 'b']);
  });

  it('never hands a key being processed to a second worker; an add meanwhile runs it again after done', async () => {
    const q = queue();
    q.add('a');
    const k = await q.get();
    assert.equal(k, 'a');
    q.add('a');
    q.add('b');
    assert.deepEqual(await drain(q), ['b'], 'a is in process: only b is handed out');
    q.done('b');
    q.done('a');
    assert.deepEqual(await drain(q), ['a'], 'a comes back once, after done');
  });

  it('hands a key to a waiting worker as soon as it is added', async () => {
    const q = queue();
    const waiting = q.get();
    q.add('x');
    assert.equal(await waiting, 'x');
  });

  it('addAfter keeps the earliest due time', async () => {
    const q = queue();
    q.addAfter('a', 10_000);
    q.addAfter('a', 50);
    q.addAfter('a', 5_000);
    mock.timers.tick(50);
    assert.deepEqual(await drain(q), ['a']);
    q.done('a');
    mock.timers.tick(10_000);
    assert.equal(q.length, 0, 'the later timers were replaced, not added');
  });

  it('addRateLimited backs off per key and forget resets it', async () => {
    const q = queue();
    q.addRateLimited('a'); // 100 ms
    mock.timers.tick(99);
    assert.equal(q.length, 0);
    mock.timers.tick(1);
    assert.deepEqual(await drain(q), ['a']);
    q.done('a');
    q.addRateLimited('a'); // 200 ms
    mock.timers.tick(199);
    assert.equal(q.length, 0);
    mock.timers.tick(1);
    assert.equal(q.length, 1);
    assert.equal(q.retries('a'), 2);
    q.forget('a');
    assert.equal(q.retries('a'), 0);
  });

  it('shutDown releases waiting workers and drops pending timers', async () => {
    const q = queue();
    const waiting = q.get();
    q.addAfter('later', 1000);
    q.shutDown();
    assert.equal(await waiting, undefined);
    mock.timers.tick(1000);
    assert.equal(await q.get(), undefined);
  });
});
