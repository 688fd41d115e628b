/**
 * amqp:// and amqps:// — RabbitMQ (or any AMQP 0-9-1 broker) as Celery uses it (spec §4).
 *
 * Features:
 * - Celery's default layout: for queue `q`, a durable direct exchange `q`, a durable queue `q`
 *   bound with routing key `q`; tasks are published to the default exchange `""` with routing key
 *   `q`, persistent (delivery_mode 2), with publisher confirms (a publish resolves once RabbitMQ
 *   has the message). A queue that already exists with other arguments (e.g. Python's
 *   `x-max-priority`) is used as it is instead of failing with 406.
 * - Consuming: one channel per consume() with `basic.qos(prefetch, global)` as Celery sets it,
 *   manual acks; the socket has TCP_NODELAY (Nagle made round trips 47 ms at p99), and the frames
 *   of all channels sent in one event-loop turn go out in one write (FrameWriter, ./amqp-codec.ts).
 * - Priorities: queues are declared with `x-max-priority` when `maxPriority` is set (Celery's
 *   `task_queue_max_priority`); off by default, as in Celery, because redeclaring a queue with
 *   other arguments fails.
 * - Dead-letter queues `<queue>.dead` (the worker publishes refused messages there) are declared
 *   as plain durable queues: no exchange, binding or `x-max-priority`. A dead-letter exchange
 *   would need `x-dead-letter-*` arguments on Celery's queues, which Python workers declare
 *   without them (406 PRECONDITION_FAILED on one side or the other).
 * - broadcast/subscribe: exchange `celeryev` is topic and durable, any other (`celery.pidbox`) is a
 *   non-durable fanout, as Celery declares them; subscribers get an exclusive auto-delete queue.
 *   The routing key is `message.properties.routing_key` when set.
 * - publishDirect/listenDirect: a transient direct exchange (`reply.celery.pidbox`, durable=false)
 *   and a reply queue with Celery's pidbox arguments (`x-message-ttl` 300 s, `x-expires` 10 s,
 *   auto-delete), for remote-control replies (spec §4.1, §4.5).
 * - Survives broker restarts: reconnects with capped exponential backoff (logged once per outage),
 *   re-subscribes consumers, retries publishes that were not confirmed. Messages not acknowledged
 *   come back from RabbitMQ (the worker drops a redelivery of a message it already acked or still
 *   runs, whose ack was lost with the connection).
 * - py-amqp's 64-bit `L` header values are decoded (./amqp-codec.ts) instead of killing the
 *   connection.
 *
 * URL: `amqp://user:password@host[:port][/vhost][?heartbeat=60&maxPriority=10]`, `amqps://` for TLS
 * (with `tlsInsecure=true` or `tlsServerName=NAME`, ../transport/tls-params.ts).
 */
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { BrokerError, isAuthenticationError, redactUrl } from '../errors.js';
import { isDeadLetterQueue } from '../protocol/dead-letter.js';
import type { WireMessage } from '../protocol/wire-message.js';
import { Backoff, backoffDelay } from '../transport/backoff.js';
import { takeTlsParams } from '../transport/tls-params.js';
import { aborted, CLOSE_TIMEOUT_MS, prefetchLimit, sleep, untilAborted, within } from '../transport/wait.js';
import { amqplib, type FrameWriter, TASK_HEADERS_OPTION } from './amqp-codec.js';
import { isBuiltTaskHeaders } from '../protocol/task-message.js';
import { broadcastTopic, type Broker, type ConsumeOptions, type Delivery } from './broker.js';
import { Qos } from './qos.js';

export interface AmqpBrokerOptions {
  readonly logger?: Logger;
  /** `x-max-priority` for queues this broker declares (default: none, as Celery). */
  readonly maxPriority?: number;
  /** connect() gives up after this (default 10000). */
  readonly connectTimeoutMs?: number;
}

/** Celery's exchange types (spec §4.1): events are topic+durable, control is a transient fanout. */
function exchangeKind(exchange: string): { type: 'topic' | 'fanout'; durable: boolean } {
  return exchange === 'celeryev' ? { type: 'topic', durable: true } : { type: 'fanout', durable: false };
}

/** AMQP basic properties for a message (Celery names -> amqplib names). */
function publishOptions(m: WireMessage): Options.Publish {
  const p = m.properties;
  const o: Options.Publish = {
    contentType: m.contentType,
    contentEncoding: m.contentEncoding,
    headers: m.headers,
    deliveryMode: typeof p.delivery_mode === 'number' ? p.delivery_mode : 2,
  };
  if (typeof p.priority === 'number') o.priority = p.priority;
  if (typeof p.correlation_id === 'string') o.correlationId = p.correlation_id;
  if (typeof p.reply_to === 'string' && p.reply_to !== '') o.replyTo = p.reply_to;
  if (p.expiration !== undefined && p.expiration !== null) o.expiration = String(p.expiration);
  if (typeof p.message_id === 'string') o.messageId = p.message_id;
  if (isBuiltTaskHeaders(m)) (o as Record<string, unknown>)[TASK_HEADERS_OPTION] = true;
  return o;
}

/** What sendPublish uses of an amqplib channel (its own methods, not in amqplib's types). */
interface PublishingChannel {
  sendMessage(fields: Record<string, unknown>, props: Options.Publish, content: Buffer): boolean;
  pushConfirmCallback(cb: (err: unknown) => void): void;
}

/**
 * basic.publish as amqplib's Channel#publish sends it (the same frames), without its Args.publish:
 * that copies every option into a new object and wraps the headers in Object.create(headers), and
 * the table encoder then walked that prototype chain with a Set of the keys seen, for every
 * message. Through the channel's own sendMessage, so a closed channel throws as before. `confirm`:
 * the confirm callback, on a confirm channel (pushed first, as ConfirmChannel#publish does).
 */
export function sendPublish(
  ch: Channel,
  exchange: string,
  routingKey: string,
  body: Buffer,
  options: Options.Publish,
  confirm?: (err: unknown) => void,
): boolean {
  const c = ch as unknown as PublishingChannel;
  if (confirm) c.pushConfirmCallback(confirm);
  return c.sendMessage({ exchange, routingKey, mandatory: false, immediate: false, ticket: 0 }, options, body);
}

function toWire(msg: ConsumeMessage): WireMessage {
  const p = msg.properties;
  const properties: Record<string, unknown> = {};
  if (p.correlationId !== undefined) properties.correlation_id = p.correlationId;
  if (p.replyTo !== undefined) properties.reply_to = p.replyTo;
  if (p.deliveryMode !== undefined) properties.delivery_mode = p.deliveryMode;
  if (p.priority !== undefined) properties.priority = p.priority;
  if (p.expiration !== undefined) properties.expiration = p.expiration;
  if (p.messageId !== undefined) properties.message_id = p.messageId;
  return {
    body: msg.content,
    contentType: p.contentType ?? 'application/octet-stream',
    contentEncoding: p.contentEncoding ?? 'binary',
    headers: (p.headers as Record<string, unknown> | undefined) ?? {},
    properties,
  };
}

/** The TCP (or TLS) socket under an amqplib connection. */
function socketOf(model: ChannelModel): Socket | undefined {
  return (model as unknown as { connection?: { stream?: Socket } }).connection?.stream;
}

/** basic.qos prefetch count now (0 = unlimited); the worker raises it while it holds ETA tasks. */
function prefetchOf(o: ConsumeOptions): number {
  const n = prefetchLimit(o.prefetch);
  return Number.isFinite(n) ? Math.min(65_535, Math.floor(n)) : 0;
}

/**
 * Acks of one consumer channel, sent once per event-loop turn, in the connection's write of that
 * turn: one `multiple` ack for the settled run at the front of the delivery order (tasks mostly
 * finish in order), single acks for the rest.
 */
class ChannelAcks {
  private readonly order: number[] = [];
  private head = 0;
  /** Delivered tags settled by the worker: true = ack pending, false = nacked already. */
  private readonly settled = new Map<number, boolean>();
  private scheduled = false;

  constructor(
    private readonly ch: Channel,
    private readonly onError: (err: unknown) => void,
  ) {}

  delivered(tag: number): void {
    this.order.push(tag);
  }

  ack(tag: number): void {
    this.settled.set(tag, true);
    if (!this.scheduled) {
      this.scheduled = true;
      // In the connection's next write, after the results published before (rpc://): one write, not two.
      const frames = (this.ch as unknown as { connection?: { frames?: FrameWriter } }).connection?.frames;
      if (frames) frames.beforeWrite(this.flushNow);
      else setImmediate(this.flushNow);
    }
  }

  private readonly flushNow = (): void => {
    if (this.scheduled) this.flush();
  };

  nack(msg: ConsumeMessage, requeue: boolean): void {
    this.ch.nack(msg, false, requeue);
    this.settled.set(msg.fields.deliveryTag, false);
  }

  /** Sends the pending acks now (also before the channel closes). */
  flush(): void {
    this.scheduled = false;
    let upTo = -1;
    while (this.head < this.order.length) {
      const tag = this.order[this.head]!;
      const how = this.settled.get(tag);
      if (how === undefined) break;
      if (how) upTo = tag;
      this.settled.delete(tag);
      this.head++;
    }
    if (this.head > 1024 && this.head * 2 > this.order.length) {
      this.order.splice(0, this.head);
      this.head = 0;
    }
    try {
      if (upTo >= 0) this.ch.ack({ fields: { deliveryTag: upTo } } as ConsumeMessage, true);
      for (const [tag, how] of this.settled) {
        if (!how) continue;
        this.ch.ack({ fields: { deliveryTag: tag } } as ConsumeMessage);
        this.settled.set(tag, false); // sent; stays until the front of the order passes it
      }
    } catch (err) {
      this.onError(err);
    }
  }
}

const DONE: Promise<void> = Promise.resolve();

/** A channel kept for reuse (see keptChannel in createAmqpBroker). */
interface KeptChannel<T extends Channel> {
  /** The channel once open; null while none is or while it opens. */
  open: T | null;
  /** The channel, opened on first use. */
  get(): Promise<T>;
  /** Drops it (closed, or its connection lost): the next get() opens another. */
  forget(): void;
}

/** A queue to listen on (rpc:// replies, broadcasts): declared with `options`, optionally bound. */
export interface ListenSpec {
  /** '' lets the server name it. */
  readonly queue: string;
  readonly options: Options.AssertQueue;
  /** `direct`: a transient direct exchange (control replies); default: as exchangeKind says. */
  readonly bind?: { readonly exchange: string; readonly pattern: string; readonly direct?: boolean };
}

/** A control client's reply queue arguments, as kombu's pidbox declares them (spec §4.1). */
const REPLY_QUEUE_ARGUMENTS = { 'x-message-ttl': 300_000, 'x-expires': 10_000 };

/** The AMQP broker with the two extra primitives rpc:// needs. */
export interface AmqpBroker extends Broker {
  readonly kind: 'amqp';
  /**
   * Publishes to an exchange ('' = default) without declaring anything; resolves on the broker's
   * confirm, or once written when `confirm` is false.
   */
  publishTo(exchange: string, routingKey: string, message: WireMessage, opts?: { confirm?: boolean }): Promise<void>;
  /** Consumes `spec.queue` without acks until `signal` aborts, re-subscribing after reconnects. */
  listen(spec: ListenSpec, onMessage: (m: WireMessage) => void, signal: AbortSignal, onReady?: () => void): Promise<void>;
}

export function createAmqpBroker(url: string, opts: AmqpBrokerOptions = {}): AmqpBroker {
  let u: URL;
  try {
    u = new URL(url);
  } catch (err) {
    throw new BrokerError(`Invalid AMQP URL "${redactUrl(url)}": expected amqp://user:password@host[:port][/vhost]`, { cause: err });
  }
  const mp = u.searchParams.get('maxPriority');
  u.searchParams.delete('maxPriority');
  const tls = takeTlsParams(u, 'amqps:', url);
  const maxPriority = opts.maxPriority ?? (mp === null ? undefined : Number(mp));
  if (maxPriority !== undefined && (!Number.isInteger(maxPriority) || maxPriority < 1 || maxPriority > 255)) {
    throw new BrokerError(`Invalid AMQP URL "${redactUrl(url)}": maxPriority must be an integer 1..255, got "${mp}"`);
  }
  const amqpUrl = u.toString();
  const where = redactUrl(url);
  const log = opts.logger?.child({ component: 'amqp-broker' });

  let conn: ChannelModel | null = null;
  let connecting: Promise<ChannelModel> | null = null;
  const declared = new Map<string, Promise<void>>();
  /** Task queues declared on this connection (their entry in `declared` has resolved). */
  const declaredQueues = new Set<string>();
  /** Open channels; consumer channels with their pending acks, sent before the channel closes. */
  const openChannels = new Map<Channel, ChannelAcks | null>();
  const loops = new Set<Promise<void>>();
  const closing = new AbortController();
  let everConnected = false;
  let down = false;

  const wrap = (what: string, err: unknown) => new BrokerError(`AMQP broker ${where}: ${what} failed: ${(err as Error)?.message ?? err}`, { cause: err });

  function lost(c: ChannelModel, err?: unknown): void {
    if (conn !== c) return;
    conn = null;
    pub.forget();
    decl.forget();
    fast.forget();
    declared.clear();
    declaredQueues.clear();
    if (closing.signal.aborted) return;
    if (!down) log?.warn({ err }, `AMQP broker ${where}: connection lost, reconnecting with backoff`);
    down = true;
    void connection().catch((e: unknown) => log?.debug({ err: e }, 'reconnect loop ended'));
  }

  /** The live connection; while the broker is down, retries with backoff until it is back. */
  function connection(): Promise<ChannelModel> {
    if (conn) return Promise.resolve(conn);
    connecting ??= (async () => {
      const backoff = new Backoff(100, 5_000);
      for (;;) {
        if (closing.signal.aborted) throw new BrokerError(`AMQP broker ${where} is closed`);
        try {
          const c = await amqplib.connect(amqpUrl, { noDelay: true, timeout: 5_000, ...tls });
          if (closing.signal.aborted) {
            // close() ran while this connect was under way: nobody will close this one later.
            void c.close().catch(() => undefined);
            throw new BrokerError(`AMQP broker ${where} is closed`);
          }
          c.on('error', (err: unknown) => log?.debug({ err }, 'AMQP connection error'));
          c.on('close', (err?: unknown) => lost(c, err));
          conn = c;
          everConnected = true;
          if (down) log?.info(`AMQP broker ${where}: connection restored`);
          down = false;
          return c;
        } catch (err) {
          if (!everConnected) throw err;
          if (!down) log?.warn({ err }, `AMQP broker ${where}: cannot reconnect, retrying with backoff`);
          down = true;
          await sleep(backoff.next(), closing.signal);
        }
      }
    })().finally(() => {
      connecting = null;
    });
    return connecting;
  }

  function channel<T extends Channel>(make: (c: ChannelModel) => Promise<T>, forget: () => void): Promise<T> {
    return connection().then(async (c) => {
      const ch = await make(c);
      ch.on('error', (err: unknown) => log?.debug({ err }, 'AMQP channel error'));
      ch.on('close', forget);
      return ch;
    });
  }

  /** Publishes with confirms (tasks, broadcasts, control). */
  const pub = keptChannel((c) => c.createConfirmChannel());
  /** Declarations (a refused one closes it; the next use opens another). */
  const decl = keptChannel((c) => c.createChannel());
  /** Publishes that need no confirm (rpc:// results, as Celery sends them). */
  const fast = keptChannel((c) => c.createChannel());

  /** A channel opened on first use and kept while it lives; `open` is it once open, for a publish without an await. */
  function keptChannel<T extends Channel>(make: (c: ChannelModel) => Promise<T>): KeptChannel<T> {
    let opening: Promise<T> | null = null;
    const kept: KeptChannel<T> = {
      open: null,
      get() {
        if (opening) return opening;
        const mine = channel(make, () => {
          if (opening === mine) kept.forget();
        });
        opening = mine;
        mine.then(
          (ch) => {
            if (opening === mine) kept.open = ch;
          },
          () => {
            if (opening === mine) opening = null;
          },
        );
        return mine;
      },
      forget() {
        opening = null;
        kept.open = null;
      },
    };
    return kept;
  }

  /** Declares `queue` as Celery does (or, for `<q>.dead`, just the durable queue), once per connection. */
  function declareQueue(queue: string): Promise<void> {
    let p = declared.get(queue);
    if (!p) {
      const plain = isDeadLetterQueue(queue);
      p = (async () => {
        const args = maxPriority && !plain ? { 'x-max-priority': maxPriority } : undefined;
        try {
          const ch = await decl.get();
          if (!plain) await ch.assertExchange(queue, 'direct', { durable: true, autoDelete: false });
          await ch.assertQueue(queue, { durable: true, autoDelete: false, exclusive: false, arguments: args });
          if (!plain) await ch.bindQueue(queue, queue, queue);
          if (declared.get(queue) === p) declaredQueues.add(queue);
        } catch (err) {
          // 406: it exists with other flags or arguments (declared by someone else): use it as is.
          // The error closed the declaring channel; check on a fresh one.
          decl.forget();
          const ch = await decl.get();
          try {
            await ch.checkQueue(queue);
          } catch (err2) {
            throw wrap(`declaring queue "${queue}"`, err2);
          }
          log?.info({ queue, err: { message: (err as Error).message } }, 'queue exists with other arguments; using it as declared');
          if (declared.get(queue) === p) declaredQueues.add(queue);
        }
      })();
      declared.set(queue, p);
      p.catch(() => declared.delete(queue));
    }
    return p;
  }

  async function declareExchange(exchange: string, direct = false): Promise<void> {
    const key = `exchange:${exchange}`;
    let p = declared.get(key);
    if (!p) {
      const { type, durable } = direct ? { type: 'direct', durable: false } : exchangeKind(exchange);
      p = decl
        .get()
        .then((ch) => ch.assertExchange(exchange, type, { durable, autoDelete: false }))
        .then(
          () => undefined,
          // It exists with another type (declared by someone else): publishing to it still works.
          (err: unknown) => log?.info({ exchange, err: { message: (err as Error).message } }, 'exchange exists with other flags; using it'),
        );
      declared.set(key, p);
    }
    return p;
  }

  /**
   * Publishes with a confirm; retries (after reconnecting) while the broker is away. On an open
   * channel one promise and no await per publish (a producer sends thousands a second).
   */
  function confirmedPublish(exchange: string, routingKey: string, m: WireMessage, what: string): Promise<void> {
    const options = publishOptions(m);
    const ch = pub.open;
    if (ch === null) return publishRetrying(exchange, routingKey, m.body, options, what, 0, undefined);
    return new Promise<void>((resolve, reject) => {
      const settle = (err: unknown) => {
        if (err === null || err === undefined) resolve();
        else publishRetrying(exchange, routingKey, m.body, options, what, 1, err).then(resolve, reject);
      };
      try {
        sendPublish(ch, exchange, routingKey, m.body, options, settle);
      } catch (err) {
        settle(err);
      }
    });
  }

  /** confirmedPublish after `failures` failed attempts (the last failed with `failure`): at most 20 in all. */
  async function publishRetrying(
    exchange: string,
    routingKey: string,
    body: Buffer,
    options: Options.Publish,
    what: string,
    failures: number,
    failure: unknown,
  ): Promise<void> {
    for (;;) {
      if (failures > 0) {
        if (failure instanceof TypeError) throw wrap(`${what} (a header cannot be encoded)`, failure);
        if (closing.signal.aborted || failures >= 20) throw wrap(what, failure);
        log?.debug({ err: failure, attempt: failures }, 'publish not confirmed; retrying');
        await sleep(backoffDelay(failures - 1, 100, 2_000), closing.signal);
      }
      let ch: ConfirmChannel;
      try {
        ch = await pub.get();
      } catch (err) {
        throw wrap(what, err);
      }
      try {
        await new Promise<void>((resolve, reject) => {
          sendPublish(ch, exchange, routingKey, body, options, (err) => (err ? reject(err) : resolve()));
        });
        return;
      } catch (err) {
        failures++;
        failure = err;
      }
    }
  }

  function closeWhenSettled(ch: Channel, qos: Qos<ConsumeMessage>): void {
    if (qos.unsettled === 0) {
      openChannels.get(ch)?.flush();
      openChannels.delete(ch);
      ch.close().catch(() => undefined);
    }
  }

  async function consumeLoop(queues: readonly string[], onDelivery: (d: Delivery) => Promise<void>, copts: ConsumeOptions): Promise<void> {
    const signal = AbortSignal.any([copts.signal, closing.signal]);
    const backoff = new Backoff(100, 5_000);
    while (!signal.aborted) {
      let ch: Channel;
      try {
        // While the broker is down this waits for the reconnect, unless consuming stops first.
        const opened = await untilAborted(
          connection().then((c) => c.createChannel()),
          signal,
        );
        if (!opened) break;
        ch = opened;
      } catch (err) {
        if (signal.aborted) break;
        log?.warn({ err }, 'could not open a consumer channel; retrying');
        await sleep(backoff.next(), signal);
        continue;
      }
      let stopped = false;
      let prefetch = prefetchOf(copts);
      // One queue: per-consumer QoS (cheaper for RabbitMQ); several: per channel, as Celery sets it.
      const globalQos = queues.length > 1;
      const acks = new ChannelAcks(ch, (err) =>
        log?.warn({ err }, 'ack failed (channel closed); RabbitMQ redelivers the message and the worker drops the duplicate'),
      );
      openChannels.set(ch, acks);
      const channelLost = new Promise<void>((resolve) => ch.once('close', () => resolve()));
      ch.on('error', (err: unknown) => log?.warn({ err }, 'AMQP consumer channel error'));
      // RabbitMQ enforces the prefetch limit; the count here closes a stopped channel after its last settle.
      const qos: Qos<ConsumeMessage> = new Qos<ConsumeMessage>({
        settlers: {
          async ack(msg) {
            acks.ack(msg.fields.deliveryTag);
          },
          async requeue(msg) {
            acks.nack(msg, true);
          },
        },
        onDelivery,
        prefetch: copts.prefetch,
        log,
        onSettled: () => {
          if (stopped) closeWhenSettled(ch, qos);
        },
      });

      const onMessage = (queue: string, msg: ConsumeMessage | null) => {
        if (!msg) return; // cancelled by the server (queue deleted): the channel loop re-subscribes
        acks.delivered(msg.fields.deliveryTag);
        if (stopped) {
          acks.nack(msg, true);
          return;
        }
        const limit = prefetchOf(copts);
        if (limit !== prefetch) {
          prefetch = limit;
          ch.prefetch(limit, globalQos).catch((err: unknown) => log?.warn({ err }, 'could not change prefetch'));
        }
        qos.hand(toWire(msg), { queue, exchange: msg.fields.exchange, routingKey: msg.fields.routingKey, redelivered: msg.fields.redelivered }, msg);
      };

      try {
        const tags: string[] = [];
        const subscribe = async () => {
          await ch.prefetch(prefetch, globalQos);
          for (const q of queues) {
            await declareQueue(q);
            tags.push((await ch.consume(q, (msg) => onMessage(q, msg), { noAck: false })).consumerTag);
          }
          return true;
        };
        // The link can die mid-subscription, and declaring then waits for the reconnect: a stop
        // must not wait for it.
        const live = await untilAborted(subscribe(), signal);
        if (live) backoff.reset();
        const why = live ? await Promise.race([channelLost.then(() => 'lost' as const), aborted(signal).then(() => 'stop' as const)]) : 'stop';
        if (why === 'stop') {
          stopped = true;
          await within(Promise.all(tags.map((t) => ch.cancel(t))), CLOSE_TIMEOUT_MS);
          // Held deliveries are settled later by the worker; the channel closes after the last one.
          closeWhenSettled(ch, qos);
          break;
        }
        openChannels.delete(ch);
        if (!signal.aborted) log?.warn({ queues }, 'consumer channel closed; subscribing again');
      } catch (err) {
        openChannels.delete(ch);
        if (signal.aborted) break;
        log?.warn({ err, queues }, 'subscribing failed; retrying');
        await sleep(backoff.next(), signal);
      }
    }
  }

  /**
   * Declares a queue (and its binding), consumes it without acks, and does it again after every
   * reconnect, until `signal` aborts. `onReady` runs each time the consumer is live.
   */
  async function listenLoop(spec: ListenSpec, onMessage: (m: WireMessage, routingKey: string) => void, own: AbortSignal, onReady?: () => void): Promise<void> {
    const signal = AbortSignal.any([own, closing.signal]);
    const backoff = new Backoff(100, 5_000);
    while (!signal.aborted) {
      const mine: Channel[] = [];
      // Returns the channel's loss in a box: an async function returning a promise would wait for it.
      const setUp = async (): Promise<{ lost: Promise<void> }> => {
        const c = await connection();
        if (spec.bind) await declareExchange(spec.bind.exchange, spec.bind.direct);
        const ch = await c.createChannel();
        mine.push(ch);
        openChannels.set(ch, null);
        const channelLost = new Promise<void>((resolve) => ch.once('close', () => resolve()));
        ch.on('error', (err: unknown) => log?.debug({ err }, 'AMQP listener channel error'));
        const { queue } = await ch.assertQueue(spec.queue, spec.options);
        if (spec.bind) await ch.bindQueue(queue, spec.bind.exchange, spec.bind.pattern);
        await ch.consume(
          queue,
          (msg) => {
            if (!msg) return;
            try {
              onMessage(toWire(msg), msg.fields.routingKey);
            } catch (err) {
              log?.warn({ err, queue }, 'message handler failed; message skipped');
            }
          },
          { noAck: true },
        );
        return { lost: channelLost };
      };
      try {
        // As in consumeLoop: a set-up that waits for a reconnect ends when listening stops.
        const live = await untilAborted(setUp(), signal);
        if (!live) break;
        backoff.reset();
        onReady?.();
        await Promise.race([live.lost, aborted(signal)]);
      } catch (err) {
        if (signal.aborted) break;
        log?.warn({ err, queue: spec.queue }, 'listening failed; retrying');
        await sleep(backoff.next(), signal);
      } finally {
        for (const ch of mine) {
          openChannels.delete(ch);
          await within(ch.close(), CLOSE_TIMEOUT_MS);
        }
      }
    }
  }

  /** Runs a passive query on a throwaway channel (404 closes it); null when the queue is missing. */
  async function passive<T>(what: string, op: (ch: Channel) => Promise<T>): Promise<T | null> {
    const ch = await (await connection()).createChannel();
    ch.on('error', () => undefined); // a 404 closes this channel only; reported through the rejection
    try {
      return await op(ch);
    } catch (err) {
      if ((err as { code?: number }).code === 404) return null;
      throw wrap(what, err);
    } finally {
      await ch.close().catch(() => undefined);
    }
  }

  async function declareAndPublish(queue: string, message: WireMessage): Promise<void> {
    try {
      await declareQueue(queue);
    } catch (err) {
      throw err instanceof BrokerError ? err : wrap(`declaring queue "${queue}"`, err);
    }
    await confirmedPublish('', queue, message, `publish to queue "${queue}"`);
  }

  async function unconfirmedPublish(exchange: string, routingKey: string, message: WireMessage): Promise<void> {
    try {
      const ch = await fast.get();
      if (!sendPublish(ch, exchange, routingKey, message.body, publishOptions(message))) await new Promise((r) => ch.once('drain', r));
    } catch (err) {
      throw wrap(`publish to "${exchange || routingKey}"`, err);
    }
  }

  const track = (p: Promise<void>): Promise<void> => {
    loops.add(p);
    return p.finally(() => loops.delete(p));
  };

  return {
    kind: 'amqp',

    async connect() {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          connection(),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no connection within ${opts.connectTimeoutMs ?? 10_000} ms`)), opts.connectTimeoutMs ?? 10_000);
          }),
        ]);
      } catch (err) {
        const hint = isAuthenticationError(err)
          ? 'RabbitMQ refused the credentials: check the user and password in the URL'
          : 'Is RabbitMQ running and the URL right?';
        throw new BrokerError(`AMQP broker: cannot connect to ${where}: ${(err as Error).message}. ${hint}`, { cause: err });
      } finally {
        clearTimeout(timer);
      }
    },

    publish(queue, message) {
      // Declared already (the common case): publish without an await.
      if (declaredQueues.has(queue)) return confirmedPublish('', queue, message, `publish to queue "${queue}"`);
      return declareAndPublish(queue, message);
    },

    consume(queues, onDelivery, copts) {
      return track(consumeLoop(queues, onDelivery, copts));
    },

    async broadcast(exchange, message, routingKey) {
      const { routingKey: rk, message: m } = broadcastTopic(message, routingKey);
      await declareExchange(exchange);
      await confirmedPublish(exchange, rk, m, `broadcast to "${exchange}"`);
    },

    subscribe(exchange, onMessage, signal) {
      const { type } = exchangeKind(exchange);
      const spec: ListenSpec = {
        queue: '',
        options: { exclusive: true, autoDelete: true, durable: false },
        bind: { exchange, pattern: type === 'topic' ? '#' : '' },
      };
      return track(listenLoop(spec, onMessage, signal));
    },

    async publishDirect(exchange, routingKey, message) {
      await declareExchange(exchange, true);
      await confirmedPublish(exchange, routingKey, message, `publish to exchange "${exchange}" with key "${routingKey}"`);
    },

    listenDirect(d, onMessage, signal, onReady) {
      const spec: ListenSpec = {
        queue: d.queue,
        options: { durable: false, autoDelete: true, exclusive: false, arguments: REPLY_QUEUE_ARGUMENTS },
        bind: { exchange: d.exchange, pattern: d.routingKey, direct: true },
      };
      // Auto-delete and x-expires remove the queue once this consumer is gone, as for Celery's clients.
      return track(listenLoop(spec, onMessage, signal, onReady));
    },

    publishTo(exchange, routingKey, message, o = {}) {
      if (o.confirm !== false) return confirmedPublish(exchange, routingKey, message, `publish to "${exchange || routingKey}"`);
      const ch = fast.open;
      if (ch !== null) {
        // Open (the common case): no await. A full write buffer waits for 'drain' below.
        try {
          if (sendPublish(ch, exchange, routingKey, message.body, publishOptions(message))) return DONE;
        } catch (err) {
          return Promise.reject(wrap(`publish to "${exchange || routingKey}"`, err));
        }
        return new Promise((resolve) => ch.once('drain', () => resolve()));
      }
      return unconfirmedPublish(exchange, routingKey, message);
    },

    listen(spec, onMessage, signal, onReady) {
      return track(listenLoop(spec, onMessage, signal, onReady));
    },

    async depth(queue) {
      return (await passive(`depth of "${queue}"`, (ch) => ch.checkQueue(queue)))?.messageCount ?? 0;
    },

    async purge(queue) {
      return (await passive(`purge of "${queue}"`, (ch) => ch.purgeQueue(queue)))?.messageCount ?? 0;
    },

    async close() {
      if (closing.signal.aborted) return;
      closing.abort();
      await Promise.all(loops);
      // Closing the channels gives every unsettled delivery back to RabbitMQ. On a dead link the
      // close handshakes never finish: dropping the socket gives them back all the same.
      const closes = [...openChannels].map(([ch, acks]) => {
        acks?.flush();
        return ch.close();
      });
      openChannels.clear();
      await within(Promise.allSettled(closes), CLOSE_TIMEOUT_MS);
      const c = conn;
      conn = null;
      // amqplib tidies up (heartbeat timers too) on the socket's 'error', not on a bare 'close'.
      if (c && !(await within(c.close(), CLOSE_TIMEOUT_MS))) socketOf(c)?.destroy(new Error('no answer to connection.close'));
    },
  };
}
