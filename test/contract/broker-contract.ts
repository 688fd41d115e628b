/**
 * The Broker contract: every driver (memory, file, redis, amqp) runs this suite against itself.
 * Each test uses its own queue names, so drivers may share one server.
 *
 * ```ts
 * brokerContract('redis', () => createRedisBroker(url), { priorityOrder: 'lower-first' });
 * ```
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { Broker, Delivery } from '../../runtime/src/brokers/broker.js';
import { DEAD_QUEUE_HEADER, DEAD_REASON_HEADER, deadLettered, deadLetterQueue } from '../../runtime/src/protocol/dead-letter.js';
import type { WireMessage } from '../../runtime/src/protocol/wire-message.js';
import { eventually } from '../support/eventually.js';
import { uniqueName } from '../support/servers.js';

export interface BrokerContractOptions {
  /**
   * How `properties.priority` orders delivery: RabbitMQ and memory serve 9 first
   * ('higher-first'); kombu's Redis layout serves 0 first ('lower-first').
   */
  readonly priorityOrder: 'higher-first' | 'lower-first';
  /**
   * Set for drivers with a visibility timeout (Redis): `make` builds brokers with this timeout.
   * Messages of a crashed consumer come back after it (driver tests kill a consumer for real);
   * a live consumer keeps what it holds.
   */
  readonly visibilityTimeoutMs?: number;
  /**
   * True when close() gives unsettled deliveries back (a connection closing, as on Redis and AMQP).
   * In-process drivers leave that to the worker, which rejects with requeue on shutdown.
   */
  readonly restoresOnClose: boolean;
  /** A reason to skip the whole suite (server unavailable). */
  readonly skip?: string | false;
}

const WAIT_MS = 15_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** How long a test watches for something that must NOT happen (not a performance assertion). */
const QUIET_MS = 400;

export function message(text: string, opts: { priority?: number; headers?: Record<string, unknown> } = {}): WireMessage {
  return {
    body: Buffer.from(JSON.stringify([[text], {}, { callbacks: null, errbacks: null, chain: null, chord: null }])),
    contentType: 'application/json',
    contentEncoding: 'utf-8',
    headers: { task: 'contract.echo', id: uniqueName('id'), ...opts.headers },
    properties: { delivery_mode: 2, priority: opts.priority ?? 0, correlation_id: text, reply_to: '' },
  };
}

export function textOf(m: WireMessage): string {
  return (JSON.parse(m.body.toString('utf8')) as [[string]])[0][0];
}

/** A running consumer that records deliveries; settle them from the test. */
export class Recorder {
  readonly deliveries: Delivery[] = [];
  readonly done: Promise<void>;
  private readonly ctl = new AbortController();
  private waiters: (() => void)[] = [];

  constructor(broker: Broker, queues: readonly string[], prefetch: number, onEach?: (d: Delivery) => Promise<void> | void) {
    this.done = broker.consume(
      queues,
      async (d) => {
        this.deliveries.push(d);
        for (const w of this.waiters.splice(0)) w();
        await onEach?.(d);
      },
      { prefetch, signal: this.ctl.signal },
    );
  }

  /** Waits until at least `n` deliveries arrived. */
  async waitFor(n: number, timeoutMs = WAIT_MS): Promise<Delivery[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.deliveries.length < n) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`expected ${n} deliveries, got ${this.deliveries.length} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.deliveries;
  }

  async stop(): Promise<void> {
    this.ctl.abort();
    await this.done;
  }
}

export function brokerContract(name: string, make: () => Broker | Promise<Broker>, opts: BrokerContractOptions): void {
  describe(`Broker contract: ${name}`, { skip: opts.skip }, () => {
    const brokers: Broker[] = [];
    const open = async () => {
      const b = await make();
      await b.connect();
      brokers.push(b);
      return b;
    };
    after(async () => {
      for (const b of brokers.splice(0)) await b.close();
    });

    it('round-trips body bytes, content type, headers and properties', async () => {
      const b = await open();
      const q = uniqueName('rt');
      const body = Buffer.from([0, 1, 2, 250, 255, 10, 13]);
      const headers = {
        task: 'contract.echo',
        id: 'id-1',
        eta: null,
        retries: 3,
        ignore_result: false,
        timelimit: [null, 5],
        nested: { a: [1, 'two', true], b: 1.5 },
        argsrepr: '(1, 2)',
        big: 2 ** 40,
      };
      await b.publish(q, {
        body,
        contentType: 'application/x-msgpack',
        contentEncoding: 'binary',
        headers,
        properties: { correlation_id: 'id-1', reply_to: 'reply-q', delivery_mode: 2, priority: 0 },
      });
      const r = new Recorder(b, [q], 1);
      const [d] = await r.waitFor(1);
      assert.ok(d);
      assert.deepEqual(Buffer.from(d.message.body), body);
      assert.equal(d.message.contentType, 'application/x-msgpack');
      assert.equal(d.message.contentEncoding, 'binary');
      assert.deepEqual({ ...d.message.headers, redelivered: undefined }, { ...headers, redelivered: undefined });
      assert.equal(d.message.properties.correlation_id, 'id-1');
      assert.equal(d.message.properties.reply_to, 'reply-q');
      assert.equal(d.info.queue, q);
      assert.equal(d.info.redelivered, false);
      await d.ack();
      await r.stop();
    });

    it('delivers one queue in publish order', async () => {
      const b = await open();
      const q = uniqueName('order');
      const texts = Array.from({ length: 20 }, (_, i) => `m${i}`);
      for (const t of texts) await b.publish(q, message(t));
      const r = new Recorder(b, [q], 5, (d) => d.ack());
      const got = await r.waitFor(texts.length);
      await r.stop();
      assert.deepEqual(
        got.map((d) => textOf(d.message)),
        texts,
      );
    });

    it('delivers a backlog, then what is sent once it is used up, each once and in publish order', async () => {
      // On file:// a listing this long turns the folder's watch off until the listing is used up.
      const b = await open();
      const q = uniqueName('backlog');
      const texts = Array.from({ length: 400 }, (_, i) => `b${i}`);
      for (const t of texts) await b.publish(q, message(t));
      const r = new Recorder(b, [q], 20, (d) => d.ack());
      await r.waitFor(texts.length);
      const late = ['late0', 'late1', 'late2'];
      for (const t of late) await b.publish(q, message(t));
      const got = await r.waitFor(texts.length + late.length);
      await sleep(QUIET_MS);
      await r.stop();
      assert.deepEqual(
        got.map((d) => textOf(d.message)),
        [...texts, ...late],
      );
    });

    it('consumes several queues', async () => {
      const b = await open();
      const [q1, q2] = [uniqueName('a'), uniqueName('b')];
      await b.publish(q1, message('one'));
      await b.publish(q2, message('two'));
      const r = new Recorder(b, [q1, q2], 4, (d) => d.ack());
      const got = await r.waitFor(2);
      await r.stop();
      assert.deepEqual(
        new Map(got.map((d) => [textOf(d.message), d.info.queue])),
        new Map([
          ['one', q1],
          ['two', q2],
        ]),
      );
    });

    it(`serves priorities ${opts.priorityOrder}`, async () => {
      const b = await open();
      const q = uniqueName('prio');
      const [urgent, normal, least] = opts.priorityOrder === 'higher-first' ? [9, 5, 0] : [0, 5, 9];
      await b.publish(q, message('least', { priority: least }));
      await b.publish(q, message('urgent', { priority: urgent }));
      await b.publish(q, message('normal', { priority: normal }));
      assert.equal(await b.depth(q), 3);
      const r = new Recorder(b, [q], 1, (d) => d.ack());
      const got = await r.waitFor(3);
      await r.stop();
      assert.deepEqual(
        got.map((d) => textOf(d.message)),
        ['urgent', 'normal', 'least'],
      );
    });

    it('honours the prefetch limit', async () => {
      const b = await open();
      const q = uniqueName('prefetch');
      for (let i = 0; i < 6; i++) await b.publish(q, message(`p${i}`));
      let autoAck = false;
      const r = new Recorder(b, [q], 2, (d) => (autoAck ? d.ack() : undefined));
      await r.waitFor(2);
      await sleep(QUIET_MS);
      assert.equal(r.deliveries.length, 2, 'no more than prefetch unsettled deliveries');
      await r.deliveries[0]!.ack();
      await r.waitFor(3);
      await sleep(QUIET_MS);
      assert.equal(r.deliveries.length, 3);
      autoAck = true;
      for (const d of r.deliveries.slice(1)) await d.ack();
      await r.waitFor(6);
      await r.stop();
      assert.equal(await b.depth(q), 0);
    });

    it('ack removes the message for good', async () => {
      const b = await open();
      const q = uniqueName('ack');
      await b.publish(q, message('once'));
      const r = new Recorder(b, [q], 1, (d) => d.ack());
      await r.waitFor(1);
      await r.stop();
      assert.equal(await b.depth(q), 0);
      const b2 = await open();
      const r2 = new Recorder(b2, [q], 1, (d) => d.ack());
      await sleep(QUIET_MS);
      await r2.stop();
      assert.equal(r2.deliveries.length, 0);
    });

    it('requeue gives the message back, marked redelivered', async () => {
      const b = await open();
      const q = uniqueName('requeue');
      await b.publish(q, message('again'));
      let first = true;
      const r = new Recorder(b, [q], 1, async (d) => {
        if (first) {
          first = false;
          await d.requeue();
        } else await d.ack();
      });
      const got = await r.waitFor(2);
      await r.stop();
      assert.equal(textOf(got[1]!.message), 'again');
      assert.equal(got[1]!.info.redelivered, true);
      assert.equal(await b.depth(q), 0);
    });

    it('settles a delivery once: a requeue after the ack changes nothing', async () => {
      const b = await open();
      const q = uniqueName('once');
      await b.publish(q, message('one'));
      await b.publish(q, message('two'));
      const r = new Recorder(b, [q], 1, async (d) => {
        await d.ack();
        await d.requeue();
        await d.ack();
      });
      await r.waitFor(2);
      await sleep(QUIET_MS);
      await r.stop();
      assert.deepEqual(
        r.deliveries.map((d) => textOf(d.message)),
        ['one', 'two'],
        'each delivered once, none given back',
      );
      assert.equal(await b.depth(q), 0);
    });

    it('a dead-letter queue is an ordinary queue: the worker publishes there, a requeue stays there', async () => {
      const b = await open();
      const q = uniqueName('dead');
      await b.publish(deadLetterQueue(q), deadLettered(message('poison'), q, 'undecodable body'));
      assert.equal(await b.depth(deadLetterQueue(q)), 1);
      let first = true;
      const dead = new Recorder(b, [deadLetterQueue(q)], 1, async (d) => {
        if (first) {
          first = false;
          await d.requeue();
        } else await d.ack();
      });
      const got = await dead.waitFor(2);
      await dead.stop();
      for (const d of got) {
        assert.equal(textOf(d.message), 'poison');
        assert.equal(d.message.headers[DEAD_REASON_HEADER], 'undecodable body');
        assert.equal(d.message.headers[DEAD_QUEUE_HEADER], q);
        assert.equal(d.message.headers.task, 'contract.echo');
        assert.equal(d.info.queue, deadLetterQueue(q));
      }
      assert.equal(await b.depth(q), 0, 'never moved into the live queue');
      assert.equal(await b.depth(deadLetterQueue(q)), 0);
    });

    it('gives unsettled messages back when the consumer closes', { skip: !opts.restoresOnClose && 'driver leaves this to the worker' }, async () => {
      const b = await make();
      await b.connect();
      const q = uniqueName('close');
      await b.publish(q, message('held'));
      const r = new Recorder(b, [q], 1);
      await r.waitFor(1);
      await r.stop();
      await b.close();
      const b2 = await open();
      const r2 = new Recorder(b2, [q], 1, (d) => d.ack());
      const [d] = await r2.waitFor(1);
      await r2.stop();
      assert.equal(textOf(d!.message), 'held');
      assert.equal(d!.info.redelivered, true);
    });

    it('hands a message over when a consumer fails', async () => {
      // The handler throwing must not lose the message: the driver gives it back.
      const b = await open();
      const q = uniqueName('throw');
      await b.publish(q, message('boom'));
      let calls = 0;
      const r = new Recorder(b, [q], 1, async (d) => {
        if (++calls === 1) throw new Error('handler failed');
        await d.ack();
      });
      const got = await r.waitFor(2);
      await r.stop();
      assert.equal(textOf(got[1]!.message), 'boom');
    });

    if (opts.visibilityTimeoutMs !== undefined) {
      it('keeps a message with a live consumer past the visibility timeout (no duplicate)', async () => {
        const holder = await open();
        const q = uniqueName('visibility');
        await holder.publish(q, message('long task'));
        const r = new Recorder(holder, [q], 1);
        await r.waitFor(1);
        const other = await open();
        const r2 = new Recorder(other, [q], 1, (d) => d.ack());
        // A live consumer renews what it holds: three timeouts later nobody else has it.
        await sleep(opts.visibilityTimeoutMs! * 3);
        assert.equal(r2.deliveries.length, 0);
        await r.deliveries[0]!.ack();
        await r.stop();
        await sleep(opts.visibilityTimeoutMs! * 2);
        await r2.stop();
        assert.equal(r2.deliveries.length, 0, 'acked: it never comes back');
      });
    }

    it('broadcast reaches every subscriber', async () => {
      const b1 = await open();
      const b2 = await open();
      const ex = uniqueName('fanout');
      const ctl = new AbortController();
      const seen: [string[], string[]] = [[], []];
      const subs = [b1.subscribe(ex, (m) => seen[0].push(textOf(m)), ctl.signal), b2.subscribe(ex, (m) => seen[1].push(textOf(m)), ctl.signal)];
      // Pub/sub keeps nothing for late subscribers: publish until both have one.
      await eventually(
        async () => {
          await b1.broadcast(ex, message('hello all'));
          await sleep(50);
          assert.ok(seen[0].length > 0 && seen[1].length > 0, 'both subscribers received a broadcast');
        },
        { timeoutMs: WAIT_MS, intervalMs: 1 },
      );
      ctl.abort();
      await Promise.all(subs);
      assert.equal(seen[0][0], 'hello all');
      assert.equal(seen[1][0], 'hello all');
    });

    it('broadcast carries its routing key to subscribers (event topics such as task.succeeded)', async () => {
      const b = await open();
      const ex = uniqueName('topics');
      const ctl = new AbortController();
      const seen: [string, string][] = [];
      const sub = b.subscribe(ex, (m, routingKey) => seen.push([textOf(m), routingKey]), ctl.signal);
      await eventually(
        async () => {
          await b.broadcast(ex, message('keyed'), 'task.succeeded');
          await sleep(50);
          assert.ok(seen.length > 0, 'the subscriber received a broadcast');
        },
        { timeoutMs: WAIT_MS, intervalMs: 1 },
      );
      await b.broadcast(ex, message('plain'));
      await eventually(() => assert.ok(seen.some(([t]) => t === 'plain')), { timeoutMs: WAIT_MS });
      ctl.abort();
      await sub;
      assert.deepEqual(seen[0], ['keyed', 'task.succeeded']);
      assert.deepEqual(
        seen.find(([t]) => t === 'plain'),
        ['plain', ''],
      );
    });

    it('publishDirect reaches the queue bound with its routing key only, and nothing once the listener is gone', async () => {
      const b1 = await open();
      const b2 = await open();
      const ex = uniqueName('direct');
      const [k1, k2] = [uniqueName('key'), uniqueName('key')];
      const ctl = new AbortController();
      const seen: [string[], string[]] = [[], []];
      const ready: Promise<void>[] = [];
      const listens = [k1, k2].map((key, i) => {
        let onReady!: () => void;
        ready.push(new Promise<void>((r) => (onReady = r)));
        return b2.listenDirect({ exchange: ex, routingKey: key, queue: `${key}.${ex}` }, (m) => seen[i]!.push(textOf(m)), ctl.signal, onReady);
      });
      await Promise.all(ready);
      await b1.publishDirect(ex, k1, message('for one'));
      await b1.publishDirect(ex, k2, message('for two'));
      await b1.publishDirect(ex, uniqueName('nobody'), message('dropped'));
      await eventually(() => assert.deepEqual(seen, [['for one'], ['for two']]), { timeoutMs: WAIT_MS });
      ctl.abort();
      await Promise.all(listens);
      // Unbound: published and dropped, as kombu does (no error, nothing kept).
      await b1.publishDirect(ex, k1, message('late'));
      assert.equal(await b1.depth(`${k1}.${ex}`), 0);
    });

    it('counts depth over all priorities and purges', async () => {
      const b = await open();
      const q = uniqueName('purge');
      for (const p of [0, 3, 6, 9, 9]) await b.publish(q, message(`p${p}`, { priority: p }));
      assert.equal(await b.depth(q), 5);
      assert.equal(await b.purge(q), 5);
      assert.equal(await b.depth(q), 0);
      assert.equal(await b.purge(uniqueName('never-used')), 0);
      assert.equal(await b.depth(uniqueName('never-used')), 0);
    });
  });
}
