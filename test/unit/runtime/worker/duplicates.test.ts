// Duplicate suppression by task id + retries (runtime/src/worker/duplicates.ts): the logic on
// recorded deliveries, then through a worker on the memory:// broker.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import type { Delivery } from '../../../../runtime/src/brokers/broker.js';
import { Reject } from '../../../../runtime/src/errors.js';
import { DEAD_QUEUE_HEADER, DEAD_REASON_HEADER } from '../../../../runtime/src/protocol/dead-letter.js';
import { encodeTask } from '../../../../runtime/src/protocol/task-message.js';
import { DuplicateFilter } from '../../../../runtime/src/worker/duplicates.js';
import { createTestApp, startTestWorker } from '../../../../runtime/src/testing/index.js';
import type { Worker } from '../../../../runtime/src/worker/worker.js';
import { eventually } from '../../../support/eventually.js';

/** A delivery that records how it was settled. */
function recorded(id: string | null, retries: unknown = 0): Delivery & { settled: string[] } {
  const settled: string[] = [];
  return {
    settled,
    message: { body: Buffer.from('[]'), contentType: 'application/json', contentEncoding: 'utf-8', headers: id ? { id, retries } : {}, properties: {} },
    info: { queue: 'q', exchange: '', routingKey: 'q', redelivered: false },
    async ack() {
      settled.push('ack');
    },
    async requeue() {
      settled.push('requeue');
    },
  };
}

const silent = pino({ level: 'silent' });

describe('DuplicateFilter', () => {
  it('acks and drops a copy of a message acknowledged before', async () => {
    const f = new DuplicateFilter(silent);
    const first = f.admit(recorded('t1'))!;
    await first.ack();
    const copy = recorded('t1');
    assert.equal(f.admit(copy), null);
    assert.deepEqual(copy.settled, ['ack']);
  });

  it('settles a copy of a held message as the first one: with its ack', async () => {
    const f = new DuplicateFilter(silent);
    const first = f.admit(recorded('t2'))!;
    const copy = recorded('t2');
    assert.equal(f.admit(copy), null);
    assert.deepEqual(copy.settled, [], 'held until the first is settled');
    await first.ack();
    assert.deepEqual(copy.settled, ['ack']);
  });

  it('gives a copy back with the first one, and admits the message again after that', async () => {
    const f = new DuplicateFilter(silent);
    const first = f.admit(recorded('t3'))!;
    const copy = recorded('t3');
    f.admit(copy);
    await first.requeue();
    assert.deepEqual(copy.settled, ['requeue']);
    assert.notEqual(f.admit(recorded('t3')), null, 'a message given back runs when it comes again');
  });

  it('tells retries apart, and lets messages without a task id through', async () => {
    const f = new DuplicateFilter(silent);
    await f.admit(recorded('t4', 0))!.ack();
    assert.notEqual(f.admit(recorded('t4', 1)), null);
    const raw = recorded(null);
    assert.equal(f.admit(raw), raw);
    assert.equal(f.admit(recorded(null)) !== null, true);
  });

  it('never takes a task id that reads like id:retries:nesting for a retry of another task', async () => {
    const f = new DuplicateFilter(silent);
    await f.admit(recorded('t6:1:0', 0))!.ack();
    assert.notEqual(f.admit(recorded('t6', 1)), null, 'retry 1 of t6 is not the first run of "t6:1:0"');
    await f.admit(recorded('t7', 1))!.ack();
    assert.notEqual(f.admit(recorded('t7:1:0', 0)), null, 'the first run of "t7:1:0" is not retry 1 of t7');
    // Both kinds are still remembered as before.
    assert.equal(f.admit(recorded('t6:1:0', 0)), null);
    assert.equal(f.admit(recorded('t7', 1)), null);
  });

  it('reads retries as the wire may carry them: absent, null, 0 and "0" are the first run', async () => {
    const f = new DuplicateFilter(silent);
    await f.admit(recorded('t8', undefined))!.ack();
    for (const retries of [0, '0', null]) assert.equal(f.admit(recorded('t8', retries)), null, `retries ${String(retries)}`);
    await f.admit(recorded('t9', '2'))!.ack();
    assert.equal(f.admit(recorded('t9', 2)), null, 'retries "2" and 2 are the same message');
  });

  it('remembers the last 10,000 acknowledged messages: the oldest is forgotten first', async () => {
    const f = new DuplicateFilter(silent);
    for (let i = 0; i < 10_002; i++) await f.admit(recorded(`r${i}`))!.ack();
    assert.notEqual(f.admit(recorded('r0')), null, 'the oldest is forgotten');
    assert.notEqual(f.admit(recorded('r1')), null, 'and the next oldest');
    for (const i of [2, 5_000, 10_001]) assert.equal(f.admit(recorded(`r${i}`)), null, `r${i} still remembered`);
  });

  it('releases copies once even when the first is settled twice', async () => {
    const f = new DuplicateFilter(silent);
    const first = f.admit(recorded('t5'))!;
    await first.requeue();
    const again = f.admit(recorded('t5'))!;
    const copy = recorded('t5');
    f.admit(copy);
    await first.ack(); // a stray second settle of the old delivery must not release the new one
    assert.deepEqual(copy.settled, []);
    await again.ack();
    assert.deepEqual(copy.settled, ['ack']);
  });
});

describe('the worker on duplicates and rejects', () => {
  const app = createTestApp({ concurrency: 2 });
  const runs = new Map<string, number>();
  app.task('dup.count', (key: string) => runs.set(key, (runs.get(key) ?? 0) + 1).get(key));
  app.task(
    'dup.refuse',
    () => {
      throw new Reject('no thanks');
    },
    { acksLate: true },
  );
  let worker: Worker;
  before(async () => {
    worker = await startTestWorker(app);
  });
  after(() => worker.stop());

  it('runs a task message stored twice (a publish resent after a reconnect) once', async () => {
    const broker = await app.broker();
    const m = encodeTask({ id: crypto.randomUUID(), name: 'dup.count', args: ['twice'], kwargs: {}, origin: 'test', serializer: 'json' });
    await broker.publish('celery', m);
    await broker.publish('celery', m);
    const after = await app.sendTask('dup.count', ['marker']);
    await after.get({ timeout: 5000 });
    await eventually(async () => assert.equal(await broker.depth('celery'), 0));
    assert.equal(runs.get('twice'), 1);
  });

  it("dead-letters the message of a task that rejects itself, with the task's reason", async () => {
    const broker = await app.broker();
    const r = await app.sendTask('dup.refuse');
    const dead: Delivery[] = [];
    const ctl = new AbortController();
    const consuming = broker.consume(
      ['celery.dead'],
      async (d) => {
        if (d.message.headers.id === r.id) dead.push(d);
        await d.ack();
      },
      { prefetch: 10, signal: ctl.signal },
    );
    await eventually(() => assert.equal(dead.length, 1));
    ctl.abort();
    await consuming;
    assert.equal(dead[0]!.message.headers[DEAD_REASON_HEADER], 'no thanks');
    assert.equal(dead[0]!.message.headers[DEAD_QUEUE_HEADER], 'celery');
    assert.match(await worker.metrics.registry.metrics(), /celeriac_messages_dead_lettered_total\{queue="celery",reason="E_REJECT"\} 1/);
  });
});
