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
 *   ride on the next such call, or go in one MULTI when no pop follows in that turn. An idle consumer blocks in BRPOP with a pop written behind it on the same
 *   connection, so one wake takes the message that woke it and what came with it, in list order.
 *   The message BRPOP took is recorded in that MULTI of the same turn (kombu has the same window
 *   between BRPOP and its ZADD: a kill inside it loses that message); acked early within that turn,
 *   it is not recorded at all (BRPOP removed it, and a record deleted in the same MULTI changes
 *   nothing), so its task does not wait on a write. Messages unacked for longer than the
 *   visibility timeout (plus up to a second: scores are whole seconds, see unackedScore) are
 *   restored by any consumer (a SIGKILLed worker loses nothing); a live
 *   consumer renews the score of what it holds, so its long tasks are not restored under it.
 *   close() restores what this process still holds.
 * - requeue() LPUSHes back (consumed last, as kombu's reject with requeue).
 * - broadcast/subscribe: PUBLISH / PSUBSCRIBE on `/{db}.{exchange}[/{routing_key}]`; the routing key is
 *   broadcast()'s argument or `message.properties.routing_key` (events: `task.succeeded`).
 * - publishDirect/listenDirect: kombu's direct-exchange emulation (spec §3.3): SMEMBERS of
 *   `_kombu.binding.<exchange>`, LPUSH to each queue bound with the routing key; a listener SADDs
 *   its binding, BRPOPs its queue, and removes both when done (remote-control replies, §7.3).
 * - Reconnects with capped exponential backoff, logging once per outage; commands queue meanwhile
 *   (a publish resent after a reconnect can store a message twice: the worker drops the duplicate).
 *
 * URL: `redis://[[user]:password@]host[:port][/db][?visibilityTimeoutMs=3600000]` (or kombu's
 * `?visibility_timeout=3600` in seconds; any other option but the TLS ones is refused by name), `rediss://` for TLS
 * (with `tlsInsecure=true` or `tlsServerName=NAME`, ../transport/tls-params.ts). The key layout
 * (list names, `unacked`, bindings) is ../protocol/kombu-redis.ts.
 *
 * Not supported: kombu's `global_keyprefix`, topic-exchange restore lookups (falls back to the
 * routing key), per-message expiration (ignored by kombu's Redis transport as well).
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { BrokerError, redactUrl } from '../errors.js';
import { envelopeText, fromEnvelope, parseEnvelope, readEnvelope, type Envelope } from '../protocol/envelope.js';
import {
  bindingKey,
  bindingMember,
  fanoutPrefix,
  listFor,
  PRIORITY_STEPS,
  queueLists,
  queueOfList,
  SEP,
  stepList,
  UNACKED,
  UNACKED_INDEX,
  UNACKED_MUTEX,
  unackedEntry,
} from '../protocol/kombu-redis.js';
import { Backoff } from '../transport/backoff.js';
import { OutageLog, parseRedisUrl, visibilityTimeoutParam, pingWithin, quit, redisOptions } from '../transport/redis-connection.js';
import { aborted, CLOSE_TIMEOUT_MS, Signal, sleep, untilAborted, within } from '../transport/wait.js';
import { broadcastTopic, type Broker, type ConsumeOptions, type Delivery } from './broker.js';
import { Qos, type Settlers } from './qos.js';
import { POP_SCRIPT, RESTORE_SCRIPT } from './redis-scripts.js';

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

/** The publishes of one event-loop turn: envelopes per list, queues to declare first, their write. */
interface PushBatch {
  readonly lists: Map<string, string[]>;
  readonly declare: string[];
  written: Promise<void>;
}

/** Acks and `unacked` records of one event-loop turn, and the promise their write settles. */
interface SettleBatch {
  readonly tags: string[];
  readonly records: { tag: string; entry: string }[];
  readonly done: Promise<void>;
  resolve(): void;
  reject(err: unknown): void;
}

interface Scripted {
  /** Buffer replies: a message's bytes reach readEnvelope as stored, so a non-UTF-8 one is dead-lettered byte-exact. */
  celeriacPopBuffer(keys: number, ...args: (string | number)[]): Promise<(number | Buffer)[]>;
  celeriacRestore(keys: number, ...args: (string | number)[]): Promise<number>;
}

/**
 * kombu's `unacked_index` score for a message taken now: epoch seconds, rounded up to a whole
 * second so that Redis keeps it as an integer (in a sorted set of up to 128 members, the usual
 * size, a fractional score costs a printf when added and a strtod for every member an insert
 * passes: a sixth of the pop script's instructions per message). Up, not down: a message is then
 * restored at most a second after its visibility timeout, never before it.
 */
const unackedScore = () => Math.ceil(Date.now() / 1000);

export function createRedisBroker(url: string, opts: RedisBrokerOptions = {}): Broker {
  const parsed = parseRedisUrl(url);
  const log = opts.logger?.child({ component: 'redis-broker' });
  const visibilityMs = opts.visibilityTimeoutMs ?? visibilityTimeoutParam(parsed, 3_600_000, url);
  const batchSize = opts.batchSize ?? 100;
  const pollSeconds = (opts.pollTimeoutMs ?? 1_000) / 1000;
  const fanout = fanoutPrefix(parsed.db);
  const outages = new OutageLog(log, `redis broker ${redactUrl(url)}`);
  const consumerId = randomUUID();

  const client = outages.watch(new Redis(parsed.ioredisUrl, redisOptions(parsed, { enableAutoPipelining: true, lazyConnect: true })));
  client.defineCommand('celeriacPop', { lua: POP_SCRIPT });
  client.defineCommand('celeriacRestore', { lua: RESTORE_SCRIPT });
  const scripts = client as unknown as Scripted;
  let subscriber: Redis | null = null;

  /** Queues whose kombu binding this process has written. */
  const declared = new Set<string>();
  /** Tag -> queue of every delivery this process holds unsettled (renewed; restored on close). */
  const held = new Map<string, string>();
  /** This turn's acks and `unacked` records not yet written (see settleBatch), or null. */
  let settling: SettleBatch | null = null;
  /** Acks riding on pops not answered yet: close() waits for them before it quits. */
  const carrying = new Set<Promise<void>>();
  let popSeq = 0;
  let closed = false;
  /** Aborted by close(); consume loops stop on it as on their own signal. */
  const closing = new AbortController();
  const loops = new Set<Promise<void>>();
  let connected: Promise<void> | null = null;

  const wrap = (what: string, err: unknown) =>
    new BrokerError(`Redis broker ${redactUrl(url)}: ${what} failed: ${(err as Error)?.message ?? err}`, { cause: err });

  /** Envelopes published in this event-loop turn, per list, and the queues to declare first. */
  let pending: PushBatch | null = null;
  /**
   * LPUSHes `env` onto `list` with the other publishes of this turn: one LPUSH of many values per
   * list, all in one write (as sequential LPUSHes, so consumers see the same order). A producer
   * sending many tasks spends its time per Redis command, not per byte. A queue published to for
   * the first time is declared (its kombu binding) in the same write, before its messages.
   */
  function push(queue: string, list: string, env: string): Promise<void> {
    if (!pending) {
      const batch: PushBatch = { lists: new Map(), declare: [], written: Promise.resolve() };
      batch.written = new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
        pending = null;
        const p = client.pipeline();
        for (const q of batch.declare) p.sadd(bindingKey(q), bindingMember(q, q));
        for (const [l, values] of batch.lists) p.lpush(l, ...values);
        const res = await p.exec().catch((err: unknown) => {
          for (const q of batch.declare) declared.delete(q);
          throw err;
        });
        for (const [err] of res ?? []) if (err) throw err;
      });
      pending = batch;
    }
    if (!declared.has(queue)) {
      declared.add(queue);
      pending.declare.push(queue);
    }
    const values = pending.lists.get(list);
    if (values) values.push(env);
    else pending.lists.set(list, [env]);
    return pending.written;
  }

  /**
   * This turn's batch of acks and `unacked` records (messages BRPOP took). At the end of the turn
   * it is written in one MULTI, records first, unless a pop took it before (takeAcks): a lone
   * message's record and its early ack cost one write and one reply, not two, and the ack is not
   * queued behind the next pop script.
   */
  function settleBatch(): SettleBatch {
    if (settling) return settling;
    let resolve!: () => void;
    let reject!: (err: unknown) => void;
    const done = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const batch: SettleBatch = { tags: [], records: [], done, resolve, reject };
    settling = batch;
    setImmediate(() => {
      if (settling !== batch) return; // a pop carried it
      settling = null;
      writeSettle(batch);
    });
    return batch;
  }

  /**
   * Writes a batch of acks and records in one MULTI, records first. Nothing left to write (the
   * only record was dropped by its early ack, see settlers.ack): no MULTI at all.
   */
  function writeSettle({ tags, records, resolve, reject }: SettleBatch): void {
    if (tags.length === 0 && records.length === 0) return resolve();
    const m = client.multi();
    if (records.length > 0) {
      const now = unackedScore();
      m.zadd(UNACKED_INDEX, ...records.flatMap((r) => [now, r.tag]));
      m.hset(UNACKED, ...records.flatMap((r) => [r.tag, r.entry]));
    }
    if (tags.length > 0) m.zrem(UNACKED_INDEX, ...tags).hdel(UNACKED, ...tags);
    m.exec().then(
      () => resolve(),
      (err: unknown) => {
        if (records.length > 0) log?.warn({ err }, 'recording a message as unacked failed');
        reject(wrap(tags.length > 0 ? 'ack' : 'recording a message as unacked', err));
      },
    );
  }

  /**
   * The acks of this turn for the next pop to carry (one command instead of a MULTI of five), or
   * null. A batch with records is left to its MULTI: a record must reach Redis before the ack of
   * its message, and a pop can wait behind another auto-pipelined command, the MULTI cannot.
   */
  function takeAcks(): SettleBatch | null {
    const b = settling;
    if (!b || b.records.length > 0) return null;
    settling = null;
    return b;
  }

  /** Records a message BRPOP took in `unacked` with this turn's acks (see settleBatch). */
  function recordSoon(tag: string, entry: string): void {
    const b = settleBatch();
    b.records.push({ tag, entry });
    b.done.catch(() => undefined); // logged in writeSettle; an ack waiting on the same batch gets the error
  }

  /** The driver's two primitives (./qos.ts); a tag is kombu's delivery tag. */
  const settlers: Settlers<string> = {
    ack(tag: string): Promise<void> {
      held.delete(tag);
      // Acked in the turn BRPOP took it (an early ack): BRPOP already removed it from its list and
      // its record is not written yet, so the ack is done. Writing the record and deleting it in
      // one MULTI would change nothing in Redis and cost the task a round trip before it runs.
      const i = settling ? settling.records.findIndex((r) => r.tag === tag) : -1;
      if (i >= 0) {
        settling!.records.splice(i, 1);
        return Promise.resolve();
      }
      const b = settleBatch();
      b.tags.push(tag);
      return b.done;
    },
    async requeue(tag: string): Promise<void> {
      held.delete(tag);
      try {
        // Given back in the turn BRPOP took it: its record is written first, so there is one to restore.
        const b = settling;
        if (b?.records.some((r) => r.tag === tag)) await b.done;
        await restoreTags([tag], true);
      } catch (err) {
        throw wrap('requeue', err);
      }
    },
  };

  async function restoreTags(tags: string[], leftmost: boolean): Promise<number> {
    if (tags.length === 0) return 0;
    return scripts.celeriacRestore(3, UNACKED, UNACKED_INDEX, UNACKED_MUTEX, 'tags', leftmost ? '1' : '0', 0, 0, ...tags);
  }

  /** Restores stale entries (visibility timeout) and renews the ones this process holds. */
  async function maintain(): Promise<void> {
    if (held.size > 0) {
      const now = unackedScore();
      const args: (string | number)[] = [];
      for (const tag of held.keys()) args.push(now, tag);
      await client.zadd(UNACKED_INDEX, 'XX', ...args);
    }
    const n = await scripts.celeriacRestore(3, UNACKED, UNACKED_INDEX, UNACKED_MUTEX, 'stale', '0', Date.now() / 1000 - visibilityMs / 1000, 1000);
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

  async function consumeLoop(queues: readonly string[], onDelivery: (d: Delivery) => Promise<void>, copts: ConsumeOptions): Promise<void> {
    const signal = AbortSignal.any([copts.signal, closing.signal]);
    const settled = new Signal();
    const wake = () => settled.notify();
    const qos = new Qos<string>({ settlers, onDelivery, prefetch: copts.prefetch, log, onSettled: wake });
    let rotate = 0;
    // Not auto-pipelined: an idle take writes BRPOP and a pop that must reply apart (see below).
    const blocking = outages.watch(client.duplicate({ enableAutoPipelining: false }));
    blocking.defineCommand('celeriacPop', { lua: POP_SCRIPT });
    const blockingScripts = blocking as unknown as Scripted;
    signal.addEventListener('abort', wake, { once: true });
    const backoff = new Backoff(50, 5_000);

    /** The envelope in a message's text and its message (raw, logged, when it is not one). */
    const envelopeOf = (stored: Buffer, queue: string): ReturnType<typeof readEnvelope> => {
      const read = readEnvelope(stored);
      if (!read.env) log?.warn({ err: read.err, queue }, 'message in Redis is not a kombu envelope; handed on raw so that the worker dead-letters it');
      return read;
    };

    /** Hands on one message taken from `queue` (recorded in `unacked` under `tag`). */
    const deliver = (queue: string, tag: string, read: ReturnType<typeof readEnvelope>) => {
      held.set(tag, queue);
      const env = read.env;
      const di = env?.properties.delivery_info;
      const redelivered = di?.redelivered === true || env?.headers.redelivered === true;
      qos.hand(read.message, { queue, exchange: di?.exchange ?? '', routingKey: di?.routing_key ?? queue, redelivered }, tag);
    };

    /**
     * The reply to a command on the blocking connection. After an abort it is still waited for
     * while the link is up, so that a message it took is not left unrecorded: live, BRPOP returns
     * within the poll timeout; down, the queued command is dropped with the connection below and
     * never runs, so nothing is lost. A link that does not answer within the poll timeout is dead
     * (a partition): it is dropped too. Null then.
     */
    const replyOf = async <T>(p: Promise<T>): Promise<T | null> => {
      const r = await untilAborted(p, signal);
      if (r !== null || !signal.aborted || blocking.status !== 'ready') return r;
      return untilAborted(p, AbortSignal.timeout(pollSeconds * 1000 + CLOSE_TIMEOUT_MS));
    };

    /**
     * POP_SCRIPT on `conn`: takes up to `want` messages from `keys` (queue `names`) and records
     * them as unacked, after acking `acks`.
     */
    const pop = (conn: Scripted, keys: string[], names: string[], want: number, acks: string[]) =>
      conn.celeriacPopBuffer(
        3 + keys.length,
        UNACKED,
        UNACKED_INDEX,
        `celeriac.pop.${consumerId}`,
        ...keys,
        want,
        unackedScore(),
        `${consumerId}:${++popSeq}`,
        acks.length,
        ...acks,
        ...names,
      );

    /** Hands on what a pop took (recorded in `unacked` by the script); how many it took. */
    const deliverPopped = (got: (number | Buffer)[], names: string[]): number => {
      for (let i = 0; i < got.length; i += 3) {
        const queue = names[(got[i] as number) - 1]!;
        deliver(queue, String(got[i + 1]), envelopeOf(got[i + 2] as Buffer, queue));
      }
      return got.length / 3;
    };

    /** Records a message BRPOP took as unacked at the end of this turn and hands it on. */
    const deliverBlocked = (r: [Buffer, Buffer], keys: string[], names: string[]): void => {
      const key = r[0].toString();
      const queue = names[keys.indexOf(key)] ?? queueOfList(key);
      // Recorded as POP_SCRIPT records it; a text that is not an envelope as a JSON string.
      const read = envelopeOf(r[1], queue);
      const text = r[1].toString('utf8');
      const env = read.env;
      const di = env?.properties.delivery_info;
      const tag = env?.properties.delivery_tag ?? `${consumerId}:${++popSeq}.b`;
      const entry = env ? unackedEntry(text, di?.exchange ?? '', di?.routing_key ?? queue) : unackedEntry(JSON.stringify(text), '', queue);
      // Recorded at the end of this turn, in one write with the acks of the turn, unless its
      // early ack comes first (at once, see settlers.ack).
      recordSoon(tag, entry);
      deliver(queue, tag, read);
    };

    /** The lists were empty at the last take: the next one blocks (BRPOP) instead of popping first. */
    let idle = false;
    try {
      while (!signal.aborted) {
        if (idle) {
          // The next BRPOP and pop go out after what this turn's tasks write at setImmediate (their
          // results, acks): written first, they cost the result a wake-up of Redis on a busy host.
          await new Promise<void>((resolve) => setImmediate(() => setImmediate(resolve)));
          if (signal.aborted) break;
        }
        const room = qos.room();
        if (room <= 0) {
          await settled.wait();
          continue;
        }
        // Step-major key order as kombu's BRPOP; queues rotate within each step.
        const rot = queues.length > 1 ? rotate++ % queues.length : 0;
        const ordered = rot === 0 ? queues : [...queues.slice(rot), ...queues.slice(0, rot)];
        const keys: string[] = [];
        const names: string[] = [];
        for (const step of PRIORITY_STEPS) {
          for (const q of ordered) {
            keys.push(stepList(q, step));
            names.push(q);
          }
        }
        try {
          if (!idle) {
            // The acks of the deliveries just handed on (early acks) ride on this pop.
            const carried = takeAcks();
            const pending = pop(scripts, keys, names, Math.min(room, batchSize), carried?.tags ?? []);
            // A failed pop leaves the acks to their own MULTI (settling twice changes nothing).
            if (carried) {
              pending.then(
                () => carried.resolve(),
                () => writeSettle(carried),
              );
              const done = carried.done.catch(() => undefined);
              carrying.add(done);
              void done.then(() => carrying.delete(done));
            }
            // While Redis is down commands wait for the reconnect; stopping must not. What the
            // abandoned pop takes after the reconnect is put straight back.
            const got = await untilAborted(pending, signal);
            if (got === null) {
              void pending
                .then((late) => restoreTags(late.filter((_, i) => i % 3 === 1).map(String), false))
                .catch((err: unknown) => log?.warn({ err }, 'an abandoned pop failed; the visibility timeout restores what it took'));
              break;
            }
            backoff.reset();
            if (deliverPopped(got, names) > 0) continue;
            idle = true;
            continue; // room read again: settles may have come meanwhile
          }
          // Idle: block until something arrives (kombu's BRPOP), and pop what came with it in the
          // same round trip: the pop, written behind BRPOP on its connection, runs right after it
          // (taking one less, so the two stay within room). One round trip per wake, in list
          // order; the lists stay empty while BRPOP blocks, so there is nothing else to take.
          const want = Math.min(room - 1, batchSize);
          const waiting = blocking.brpopBuffer(...keys, pollSeconds);
          // No acks ride on this pop: it runs only when BRPOP returns.
          const popping = want > 0 ? pop(blockingScripts, keys, names, want, []) : null;
          popping?.catch(() => undefined); // rejected with BRPOP's failure, reported below
          const r = await replyOf(waiting);
          if (r) deliverBlocked(r, keys, names);
          const got = popping && (await replyOf(popping));
          backoff.reset();
          // A full pop: more may be waiting, pop again; else the lists are drained: block again.
          if (got && deliverPopped(got, names) === want) idle = false;
        } catch (err) {
          idle = false;
          if (signal.aborted || closed) break;
          log?.warn({ err }, 'consuming from Redis failed; retrying with backoff');
          await sleep(backoff.next(), signal);
        }
      }
    } finally {
      signal.removeEventListener('abort', wake);
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
      const env = envelopeText(message, '', queue);
      try {
        // Celery declares the queue (and so its binding) before its first publish: push() does.
        await push(queue, listFor(queue, message.properties.priority), env);
      } catch (err) {
        throw wrap(`publish to queue "${queue}"`, err);
      }
    },

    consume(queues, onDelivery, copts) {
      const loop = consumeLoop(queues, onDelivery, copts);
      loops.add(loop);
      return loop.finally(() => loops.delete(loop));
    },

    async broadcast(exchange, message, routingKey) {
      const { routingKey: rk, message: m } = broadcastTopic(message, routingKey);
      const env = envelopeText(m, exchange, rk);
      try {
        await client.publish(`${fanout}${exchange}${rk ? `/${rk}` : ''}`, env);
      } catch (err) {
        throw wrap(`broadcast to "${exchange}"`, err);
      }
    },

    async subscribe(exchange, onMessage, signal) {
      if (signal.aborted) return;
      subscriber ??= outages.watch(client.duplicate());
      const sub = subscriber;
      const patterns = [`${fanout}${exchange}`, `${fanout}${exchange}/*`];
      const handler = (pattern: string, channel: string, text: string) => {
        if (!patterns.includes(pattern)) return;
        try {
          const slash = channel.indexOf('/', fanout.length);
          onMessage(fromEnvelope(parseEnvelope(text)), slash < 0 ? '' : channel.slice(slash + 1));
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

    async publishDirect(exchange, routingKey, message) {
      const env = envelopeText(message, exchange, routingKey);
      try {
        const members = await client.smembers(bindingKey(exchange));
        for (const m of members) {
          const [rk, , queue] = m.split(SEP);
          if (rk === routingKey && queue) await client.lpush(listFor(queue, message.properties.priority), env);
        }
      } catch (err) {
        throw wrap(`publish to exchange "${exchange}" with key "${routingKey}"`, err);
      }
    },

    async listenDirect(spec, onMessage, outer, onReady) {
      const signal = AbortSignal.any([outer, closing.signal]);
      const member = bindingMember(spec.routingKey, spec.queue);
      const keys = queueLists(spec.queue);
      const blocking = outages.watch(client.duplicate());
      const backoff = new Backoff(50, 5_000);
      try {
        await client.sadd(bindingKey(spec.exchange), member);
        onReady?.();
        while (!signal.aborted) {
          try {
            const r = await untilAborted(blocking.brpop(...keys, pollSeconds), signal);
            if (!r) continue;
            const read = readEnvelope(r[1]);
            if (read.env) onMessage(read.message);
            else log?.warn({ err: read.err, queue: spec.queue }, 'reply is not a kombu envelope; skipped');
            backoff.reset();
          } catch (err) {
            if (signal.aborted || closed) break;
            log?.warn({ err, queue: spec.queue }, 'reading replies failed; retrying with backoff');
            await sleep(backoff.next(), signal);
          }
        }
      } finally {
        // A pending BRPOP is dropped with its connection; the replies left are deleted with the lists.
        blocking.disconnect();
        if (!closed) {
          await client
            .multi()
            .srem(bindingKey(spec.exchange), member)
            .del(...keys)
            .exec()
            .catch((err: unknown) => log?.warn({ err, queue: spec.queue }, 'removing a reply queue failed; it is left in Redis'));
        }
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
        if (settling) await settling.done;
        await Promise.all(carrying);
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
