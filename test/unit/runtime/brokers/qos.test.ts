// The delivery bookkeeping every driver shares (runtime/src/brokers/qos.ts): prefetch room,
// settle once, a handler that throws gets its message given back, a failed give-back is logged.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import type { Delivery } from '../../../../runtime/src/brokers/broker.js';
import { Qos, type Settlers } from '../../../../runtime/src/brokers/qos.js';
import { rawMessage } from '../../../../runtime/src/protocol/wire-message.js';

/** A logger whose records land in `lines`. */
function capture() {
  const lines: { level: number; msg: string; err?: { message: string } }[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { log, lines };
}

function setUp(opts: { prefetch?: number; handler?: (d: Delivery) => Promise<void>; requeueFails?: boolean } = {}) {
  const calls: string[] = [];
  const settlers: Settlers<string> = {
    async ack(tag) {
      calls.push(`ack ${tag}`);
    },
    async requeue(tag) {
      calls.push(`requeue ${tag}`);
      if (opts.requeueFails) throw new Error('connection lost');
    },
  };
  const handed: Delivery[] = [];
  let settles = 0;
  const { log, lines } = capture();
  const qos = new Qos<string>({
    settlers,
    onDelivery: opts.handler ?? (async (d) => void handed.push(d)),
    prefetch: opts.prefetch ?? 2,
    log,
    onSettled: () => settles++,
  });
  const hand = (tag: string) => qos.hand(rawMessage(tag, 'test'), { queue: 'q', exchange: '', routingKey: 'q', redelivered: false }, tag);
  return { qos, hand, handed, calls, lines, settles: () => settles };
}

const turn = () => new Promise((r) => setImmediate(r));

describe('Qos: delivery bookkeeping shared by the drivers', () => {
  it('counts unsettled deliveries against the prefetch limit', async () => {
    const t = setUp({ prefetch: 2 });
    assert.equal(t.qos.room(), 2);
    t.hand('a');
    t.hand('b');
    assert.equal(t.qos.room(), 0);
    await t.handed[0]!.ack();
    assert.equal(t.qos.room(), 1);
    assert.equal(t.settles(), 1);
  });

  it('reads a prefetch function again each time; 0 means no limit', () => {
    let limit = 1;
    const q = new Qos<string>({
      settlers: { ack: async () => {}, requeue: async () => {} },
      onDelivery: async () => {},
      prefetch: () => limit,
      log: undefined,
    });
    assert.equal(q.room(), 1);
    limit = 0;
    assert.equal(q.room(), Number.POSITIVE_INFINITY);
  });

  it('settles a delivery once: later acks and requeues do nothing', async () => {
    const t = setUp();
    t.hand('a');
    const d = t.handed[0]!;
    await d.ack();
    await d.requeue();
    await d.ack();
    assert.deepEqual(t.calls, ['ack a']);
    assert.equal(t.qos.unsettled, 0);
    assert.equal(t.settles(), 1);
  });

  it('gives the message back when the handler throws, and logs why', async () => {
    const t = setUp({
      handler: async () => {
        throw new Error('handler broke');
      },
    });
    t.hand('a');
    await turn();
    assert.deepEqual(t.calls, ['requeue a']);
    assert.equal(t.qos.unsettled, 0);
    const rec = t.lines.find((l) => l.msg.includes('delivery handler failed'));
    assert.equal(rec?.level, 50);
    assert.equal(rec?.err?.message, 'handler broke');
  });

  it('a handler that settled before throwing is not settled again', async () => {
    const t = setUp({
      handler: async (d) => {
        await d.ack();
        throw new Error('after the ack');
      },
    });
    t.hand('a');
    await turn();
    assert.deepEqual(t.calls, ['ack a']);
    // The log says what happened: the message was acknowledged, not given back.
    const rec = t.lines.find((l) => l.msg.includes('delivery handler failed'));
    assert.equal(rec?.level, 50);
    assert.equal(rec?.err?.message, 'after the ack');
    assert.doesNotMatch(rec!.msg, /given back/);
    assert.match(rec!.msg, /already acknowledged/);
  });

  it('a handler that gave its message back before throwing is logged as given back once', async () => {
    const t = setUp({
      handler: async (d) => {
        await d.requeue();
        throw new Error('after the requeue');
      },
    });
    t.hand('a');
    await turn();
    assert.deepEqual(t.calls, ['requeue a']);
    const rec = t.lines.find((l) => l.msg.includes('delivery handler failed'));
    assert.match(rec!.msg, /already given back/);
  });

  it('logs a give-back that failed instead of rejecting: the broker restores the message', async () => {
    const t = setUp({ requeueFails: true });
    t.hand('a');
    await t.handed[0]!.requeue();
    assert.equal(t.qos.unsettled, 0);
    const rec = t.lines.find((l) => l.msg.includes('could not give a message back'));
    assert.equal(rec?.level, 40);
    assert.equal(rec?.err?.message, 'connection lost');
  });

  it('passes a failed ack to the caller', async () => {
    const q = new Qos<string>({
      settlers: {
        ack: async () => {
          throw new Error('ack lost');
        },
        requeue: async () => {},
      },
      onDelivery: async (d) => void (seen = d),
      prefetch: 1,
      log: undefined,
    });
    let seen: Delivery | undefined;
    q.hand(rawMessage('a', 'test'), { queue: 'q', exchange: '', routingKey: 'q', redelivered: false }, 'a');
    await assert.rejects(seen!.ack(), /ack lost/);
  });
});
