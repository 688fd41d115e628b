/**
 * redis:// and rediss:// — kombu's Redis transport layout (spec §3), so that Python Celery clients
 * and workers share queues with celeriac.
 *
 * Features:
 * - Queues are lists named after the queue plus one list per priority step (`q\x06\x163`, `…6`,
 *   `…9`); priority 0 is served first, as kombu does. Messages are kombu's JSON envelope with a
 *   base64 body; publishing records the `_kombu.binding.<queue>` set member as Celery does.
 * - Ack emulation with kombu's `unacked` hash and `unacked_index` sorted set. Taking messages and
 *   recording them is one Lua call (several messages per round trip); acks of one event-loop turn
 *   go in one MULTI. Messages unacked for longer than the visibility timeout are restored by any
 *   consumer (a SIGKILLed worker loses nothing); a live consumer renews the score of what it holds,
 *   so its long tasks are not restored under it. close() restores what this process still holds.
 * - reject({ requeue: true }) LPUSHes back (consumed last, as kombu); reject({ requeue: false })
 *   moves the message to the list `<queue>.dead` with headers `x-celeriac-dead-reason` and
 *   `x-celeriac-dead-queue`.
 * - broadcast/subscribe: PUBLISH / PSUBSCRIBE on `/{db}.{exchange}[/{routing_key}]`; the routing key
 *   is `message.properties.routing_key` when set (events: `task.succeeded`).
 * - Reconnects with capped exponential backoff, logging once per outage; commands queue meanwhile.
 *   A delivery tag seen twice by one consumer (a publish resent after a reconnect) is dropped.
 *
 * URL: `redis://[[user]:password@]host[:port][/db][?visibilityTimeoutMs=3600000]`, `rediss://` for TLS
 * (with `tlsInsecure=true` or `tlsServerName=NAME`, ./tls-params.ts).
 *
 * Not supported: kombu's `global_keyprefix`, topic-exchange restore lookups (falls back to the
 * routing key), per-message expiration (ignored by kombu's Redis transport as well).
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { BrokerError, redactUrl } from '../errors.js';
import { fromEnvelope, toEnvelope, type Envelope } from '../protocol/envelope.js';
import type { Broker, ConsumeOptions, Delivery, WireMessage } from './broker.js';
import { OutageLog, intParam, parseRedisUrl, pingWithin, quit, redisOptions } from './redis-connection.js';
import { DEAD_LETTER_SCRIPT, POP_SCRIPT, RESTORE_SCRIPT } from './redis-scripts.js';
import { aborted, CLOSE_TIMEOUT_MS, prefetchLimit, untilAborted, within } from './wait.js';

export interface RedisBrokerOptions {
  readonly logger?: Logger;
  /** Unacked messages older than this are restored to their queue (kombu: 3600 s). */
  readonly visibilityTimeoutMs?: number;
  /** Most messages taken per round trip (default 100). */
  readonly batchSize?: number;
  /** How long an idle consumer blocks in BRPOP before checking for shutdown (default 1000). */
  readonly pollTimeoutMs?: number;
  /** connect() gives up after this (default 10000). */
  readonly connectTimeoutMs?: number;
}

/** kombu's defaults (spec §3.2, §3.5). */
export const SEP = '\x06\x16';
export const PRIORITY_STEPS = [0, 3, 6, 9] as const;
const UNACKED = 'unacked';
const UNACKED_INDEX = 'unacked_index';
const UNACKED_MUTEX = 'unacked_mutex';
/** Tags of messages this process acked lately, to drop duplicates of a resent publish. */
const RECENT_ACKS = 10_000;

/** The list holding `queue`'s messages of `priority` (the largest step <= priority). */
export function listFor(queue: string, priority: unknown): string {
  const p = Math.min(9, Math.max(0, Number(priority) || 0));
  let step = 0;
  for (const s of PRIORITY_STEPS) if (s <= p) step = s;
  return step === 0 ? queue : `${queue}${SEP}${step}`;
}

function queueLists(queue: string): string[] {
  return PRIORITY_STEPS.map((s) => (s === 0 ? queue : `${queue}${SEP}${s}`));
}

interface Scripted {
  celeriacPop(keys: number, ...args: (string | number)[]): Promise<(number | string)[]>;
  celeriacRestore(keys: number, ...args: (string | number)[]): Promise<number>;
  celeriacDeadLetter(keys: number, ...args: string[]): Promise<number>;
}

/** A wake-up for waiters; `wait()` resolves at the next `notify()`. */
class Notifier {
  private waiters: (() => void)[] = [];
  wait(): Promise<void> {
    return new Promise((r) => this.waiters.push(r));
  }
  notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }
}

export function createRedisBroker(url: string, opts: RedisBrokerOptions = {}): Broker {
  const parsed = parseRedisUrl(url, ['visibilityTimeoutMs']);
  const log = opts.logger?.child({ component: 'redis-broker' });
  const visibilityMs = opts.visibilityTimeoutMs ?? intParam(parsed, 'visibilityTimeoutMs', 3_600_000, url);
  const batchSize = opts.batchSize ?? 100;
  const pollSeconds = (opts.pollTimeoutMs ?? 1_000) / 1000;
  const fanoutPrefix = `/${parsed.db}.`;
  const outages = new OutageLog(log, `redis broker ${redactUrl(url)}`);
  const consumerId = randomUUID();

  const client = outages.watch(new Redis(parsed.ioredisUrl, redisOptions(parsed, { enableAutoPipelining: true, lazyConnect: true })));
  client.defineCommand('celeriacPop', { lua: POP_SCRIPT });
  client.defineCommand('celeriacRestore', { lua: RESTORE_SCRIPT });
  client.defineCommand('celeriacDeadLetter', { lua: DEAD_LETTER_SCRIPT });
  const scripts = client as unknown as Scripted;
  let subscriber: Redis | null = null;

  /** Queues whose kombu binding this process has written. */
  const declared = new Set<string>();
  /** Tag -> queue of every delivery this process holds unsettled (renewed; restored on close). */
  const held = new Map<string, string>();
  const recentAcks = new Set<string>();
  let pendingAcks: string[] = [];
  let ackFlush: Promise<void> | null = null;
  let popSeq = 0;
  let closed = false;
  /** Aborted by close(); consume loops stop on it as on their own signal. */
  const closing = new AbortController();
  const loops = new Set<Promise<void>>();
  let connected: Promise<void> | null = null;

  const wrap = (what: string, err: unknown) =>
    new BrokerError(`Redis broker ${redactUrl(url)}: ${what} failed: ${(err as Error)?.message ?? err}`, { cause: err });

  function flushAcks(): Promise<void> {
    if (!ackFlush) {
      ackFlush = new Promise<void>((resolve, reject) => {
        setImmediate(() => {
          const tags = pendingAcks;
          pendingAcks = [];
          ackFlush = null;
          client
            .multi()
            .zrem(UNACKED_INDEX, ...tags)
            .hdel(UNACKED, ...tags)
            .exec()
            .then(() => resolve(), (err: unknown) => reject(wrap('ack', err)));
        });
      });
    }
    return ackFlush;
  }

  function rememberAck(tag: string): void {
    recentAcks.add(tag);
    if (recentAcks.size > RECENT_ACKS) recentAcks.delete(recentAcks.values().next().value as string);
  }

  function ack(tag: string): Promise<void> {
    held.delete(tag);
    rememberAck(tag);
    pendingAcks.push(tag);
    return flushAcks();
  }

  async function restoreTags(tags: string[], leftmost: boolean): Promise<number> {
    if (tags.length === 0) return 0;
    return scripts.celeriacRestore(3, UNACKED, UNACKED_INDEX, UNACKED_MUTEX, 'tags', leftmost ? '1' : '0', 0, 0, ...tags);
  }

  /** Restores stale entries (visibility timeout) and renews the ones this process holds. */
  async function maintain(): Promise<void> {
    const now = Date.now() / 1000;
    if (held.size > 0) {
      const args: (string | number)[] = [];
      for (const tag of held.keys()) args.push(now, tag);
      await client.zadd(UNACKED_INDEX, 'XX', ...args);
    }
    const n = await scripts.celeriacRestore(3, UNACKED, UNACKED_INDEX, UNACKED_MUTEX, 'stale', '0', now - visibilityMs / 1000, 1000);
    if (n > 0) log?.warn({ restored: n, visibilityTimeoutMs: visibilityMs }, 'restored unacknowledged messages past the visibility timeout');
  }

  let maintainTimer: NodeJS.Timeout | null = null;
  function startMaintenance(): void {
    if (maintainTimer) return;
    const every = Math.min(30_000, Math.max(100, Math.floor(visibilityMs / 4)));
    maintainTimer = setInterval(() => {
      maintain().catch((err: unknown) => log?.warn({ err }, 'visibility-timeout maintenance failed; retrying next round'));
    }, every);
    maintainTimer.unref();
  }

  function toMessage(env: Envelope): { message: WireMessage; env: Envelope } {
    env.headers ??= {};
    env.properties ??= {};
    return { message: fromEnvelope(env), env };
  }


  async function consumeLoop(
    queues: readonly string[],
    onDelivery: (d: Delivery) => Promise<void>,
    copts: ConsumeOptions,
  ): Promise<void> {
    const signal = AbortSignal.any([copts.signal, closing.signal]);
    const settled = new Notifier();
    let unsettled = 0;
    let rotate = 0;
    const blocking = outages.watch(client.duplicate());
    const onAbort = () => settled.notify();
    signal.addEventListener('abort', onAbort, { once: true });
    let backoffMs = 50;

    const deliver = (queue: string, tag: string, entryText: string) => {
      let parsed: ReturnType<typeof toMessage> | null = null;
      let raw = entryText;
      try {
        const entry = JSON.parse(entryText) as [unknown, string, string];
        if (typeof entry[0] === 'string') raw = entry[0];
        else parsed = toMessage(entry[0] as Envelope);
      } catch (err) {
        log?.warn({ err, queue }, 'message in Redis is not a kombu envelope');
      }
      if (held.has(tag) || recentAcks.has(tag)) {
        log?.warn({ queue, deliveryTag: tag }, 'duplicate delivery of a message this worker already holds or acked; dropped');
        if (!held.has(tag)) void ack(tag).catch((err: unknown) => log?.warn({ err }, 'ack of a duplicate failed'));
        return;
      }
      // Not an envelope: handed on as raw bytes so that the worker rejects it to <queue>.dead.
      const message: WireMessage = parsed?.message ?? {
        body: Buffer.from(raw), contentType: 'application/octet-stream', contentEncoding: 'binary', headers: {}, properties: {},
      };
      const di = parsed?.env.properties.delivery_info;
      const redelivered = di?.redelivered === true || parsed?.env.headers.redelivered === true;
      held.set(tag, queue);
      unsettled++;
      let done = false;
      const settle = () => {
        if (done) return false;
        done = true;
        unsettled--;
        settled.notify();
        return true;
      };
      const d: Delivery = {
        message,
        info: { queue, exchange: di?.exchange ?? '', routingKey: di?.routing_key ?? queue, redelivered },
        async ack() {
          if (!settle()) return;
          await ack(tag);
        },
        async reject({ requeue, reason }) {
          if (!settle()) return;
          held.delete(tag);
          try {
            if (requeue) {
              await restoreTags([tag], true);
              return;
            }
            const dead = parsed?.env ?? toEnvelope(message, '', queue);
            const deadEnv = JSON.stringify({
              ...dead,
              headers: { ...dead.headers, 'x-celeriac-dead-reason': reason ?? 'rejected', 'x-celeriac-dead-queue': queue },
            });
            const moved = await scripts.celeriacDeadLetter(3, UNACKED, UNACKED_INDEX, `${queue}.dead`, tag, deadEnv);
            if (moved === 0) log?.warn({ queue, deliveryTag: tag }, 'message to dead-letter was already restored to its queue');
          } catch (err) {
            throw wrap(requeue ? 'requeue' : 'dead-letter', err);
          }
        },
      };
      onDelivery(d).catch((err: unknown) => {
        log?.error({ err, queue }, 'delivery handler failed; message given back to its queue');
        return d.reject({ requeue: true });
      }).catch((err: unknown) => log?.error({ err, queue }, 'could not give a message back; the visibility timeout will'));
    };

    try {
      while (!signal.aborted) {
        const room = prefetchLimit(copts.prefetch) - unsettled;
        if (room <= 0) {
          await settled.wait();
          continue;
        }
        // Step-major key order as kombu's BRPOP; queues rotate within each step.
        const rot = queues.length > 1 ? rotate++ % queues.length : 0;
        const ordered = rot === 0 ? queues : [...queues.slice(rot), ...queues.slice(0, rot)];
        const keys: string[] = [];
        const names: string[] = [];
        for (let s = 0; s < PRIORITY_STEPS.length; s++) {
          for (const q of ordered) {
            keys.push(queueLists(q)[s]!);
            names.push(q);
          }
        }
        try {
          const popId = `${consumerId}:${++popSeq}`;
          const pending = scripts.celeriacPop(
            3 + keys.length, UNACKED, UNACKED_INDEX, `celeriac.pop.${consumerId}`, ...keys,
            Math.min(room, batchSize), Date.now() / 1000, popId, ...names,
          );
          // While Redis is down commands wait for the reconnect; stopping must not. What the
          // abandoned pop takes after the reconnect is put straight back.
          const got = await untilAborted(pending, signal);
          if (got === null) {
            void pending.then((late) => restoreTags(late.filter((_, i) => i % 3 === 1) as string[], false))
              .catch((err: unknown) => log?.warn({ err }, 'an abandoned pop failed; the visibility timeout restores what it took'));
            break;
          }
          backoffMs = 50;
          if (got.length > 0) {
            for (let i = 0; i < got.length; i += 3) deliver(names[(got[i] as number) - 1]!, got[i + 1] as string, got[i + 2] as string);
            continue;
          }
          // Idle: block until something arrives (kombu's BRPOP), then record it as unacked.
          const waiting = blocking.brpop(...keys, pollSeconds);
          let r = await untilAborted(waiting, signal);
          if (r === null && signal.aborted) {
            // Live, BRPOP returns within the poll timeout; down, the queued command is dropped
            // with the connection below and never runs, so nothing is lost. A link that does not
            // answer within the poll timeout is dead (a partition): it is dropped too.
            if (blocking.status !== 'ready') break;
            r = await untilAborted(waiting, AbortSignal.timeout(pollSeconds * 1000 + CLOSE_TIMEOUT_MS));
          }
          if (!r) continue;
          const [key, envText] = r;
          const queue = names[keys.indexOf(key)] ?? key.split(SEP)[0]!;
          let tag = `${consumerId}:${popSeq}.b`;
          let entry = `[${JSON.stringify(envText)}, "", ${JSON.stringify(queue)}]`;
          try {
            const env = JSON.parse(envText) as Envelope;
            const di = env.properties?.delivery_info;
            tag = env.properties?.delivery_tag ?? tag;
            entry = `[${envText}, ${JSON.stringify(di?.exchange ?? '')}, ${JSON.stringify(di?.routing_key ?? queue)}]`;
          } catch {
            // Not JSON: recorded as a string and delivered raw; the worker dead-letters it.
          }
          void client.multi().zadd(UNACKED_INDEX, Date.now() / 1000, tag).hset(UNACKED, tag, entry).exec()
            .catch((err: unknown) => log?.warn({ err }, 'recording a message as unacked failed'));
          deliver(queue, tag, entry);
        } catch (err) {
          if (signal.aborted || closed) break;
          log?.warn({ err }, 'consuming from Redis failed; retrying with backoff');
          await new Promise((r) => setTimeout(r, backoffMs));
          backoffMs = Math.min(backoffMs * 2, 5_000);
        }
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      blocking.disconnect();
    }
    }

  const broker: Broker = {
    kind: 'redis',

    connect() {
      connected ??= (async () => {
        try {
          await client.connect();
        } catch (err) {
          // ioredis keeps retrying in the background; pingWithin decides when to give up.
          log?.debug({ err }, 'first connection attempt failed, retrying');
        }
        try {
          await pingWithin(client, opts.connectTimeoutMs ?? 10_000, url, 'Redis broker');
        } catch (err) {
          client.disconnect();
          throw err;
        }
        startMaintenance();
        // As kombu at poll start: restore what crashed consumers left behind.
        await maintain().catch((err: unknown) => log?.warn({ err }, 'restoring stale unacked messages failed'));
      })();
      return connected;
    },

    async publish(queue, message) {
      const env = JSON.stringify(toEnvelope(message, '', queue));
      try {
        if (!declared.has(queue)) {
          declared.add(queue);
          // Celery declares the queue (and so its binding) before its first publish.
          void client.sadd(`_kombu.binding.${queue}`, `${queue}${SEP}${SEP}${queue}`);
        }
        await client.lpush(listFor(queue, message.properties.priority), env);
      } catch (err) {
        throw wrap(`publish to queue "${queue}"`, err);
      }
    },

    consume(queues, onDelivery, copts) {
      const loop = consumeLoop(queues, onDelivery, copts);
      loops.add(loop);
      return loop.finally(() => loops.delete(loop));
    },

    async broadcast(exchange, message) {
      const rk = typeof message.properties.routing_key === 'string' ? message.properties.routing_key : '';
      const { routing_key: _rk, ...properties } = message.properties;
      const env = JSON.stringify(toEnvelope({ ...message, properties }, exchange, rk));
      try {
        await client.publish(`${fanoutPrefix}${exchange}${rk ? `/${rk}` : ''}`, env);
      } catch (err) {
        throw wrap(`broadcast to "${exchange}"`, err);
      }
    },

    async subscribe(exchange, onMessage, signal) {
      if (signal.aborted) return;
      subscriber ??= outages.watch(client.duplicate());
      const sub = subscriber;
      const patterns = [`${fanoutPrefix}${exchange}`, `${fanoutPrefix}${exchange}/*`];
      const handler = (pattern: string, _channel: string, text: string) => {
        if (!patterns.includes(pattern)) return;
        try {
          onMessage(fromEnvelope(JSON.parse(text) as Envelope));
        } catch (err) {
          log?.warn({ err, exchange }, 'undecodable broadcast message ignored');
        }
      };
      sub.on('pmessage', handler);
      try {
        await sub.psubscribe(...patterns);
        await aborted(signal);
      } finally {
        sub.off('pmessage', handler);
        if (!closed) await sub.punsubscribe(...patterns).catch((err: unknown) => log?.debug({ err }, 'punsubscribe failed'));
      }
    },

    async depth(queue) {
      const p = client.pipeline();
      for (const l of queueLists(queue)) p.llen(l);
      const res = await p.exec();
      return (res ?? []).reduce((sum, [err, n]) => {
        if (err) throw wrap(`depth of "${queue}"`, err);
        return sum + Number(n);
      }, 0);
    },

    async purge(queue) {
      const m = client.multi();
      for (const l of queueLists(queue)) m.llen(l);
      for (const l of queueLists(queue)) m.del(l);
      const res = await m.exec();
      return (res ?? []).slice(0, PRIORITY_STEPS.length).reduce((sum, [err, n]) => {
        if (err) throw wrap(`purge of "${queue}"`, err);
        return sum + Number(n);
      }, 0);
    },

    async close() {
      if (closed) return;
      closed = true;
      if (maintainTimer) clearInterval(maintainTimer);
      // Let consumers finish their current round trip, so no popped message is left unrecorded.
      closing.abort();
      await Promise.all(loops);
      const giveBack = (async () => {
        if (pendingAcks.length > 0) await flushAcks();
        const n = await restoreTags([...held.keys()], false);
        held.clear();
        if (n > 0) log?.info({ restored: n }, 'gave unsettled messages back to their queues');
      })().catch((err: unknown) => log?.warn({ err }, 'could not give unsettled messages back on close; the visibility timeout will'));
      // On a dead link (no reply, no close) these commands never finish: the visibility timeout
      // restores what could not be given back.
      if (!(await within(giveBack, 2 * CLOSE_TIMEOUT_MS))) {
        log?.warn({ held: held.size }, 'Redis did not answer while giving messages back on close; the visibility timeout will');
      }
      subscriber?.disconnect();
      await quit(client);
    },
  };
  return broker;
}
