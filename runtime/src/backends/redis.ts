/**
 * redis:// and rediss:// result store, as Celery's Redis backend (spec §5.2): each set is one
 * MULTI of SET (with PX expiry) and PUBLISH on a channel named like the key, so Python clients
 * waiting on `celery-task-meta-<id>` wake up too. watch() SUBSCRIBEs (one shared subscriber
 * connection, reference-counted per key), so AsyncResult.get() does not poll.
 *
 * URL: `redis://[[user]:password@]host[:port][/db]`, `rediss://` for TLS.
 */
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { BackendError, redactUrl } from '../errors.js';
import { OutageLog, parseRedisUrl, pingWithin, quit, redisOptions } from '../transport/redis-connection.js';
import type { KeyValueStore } from './backend.js';

/**
 * SET (PX ARGV[2] when > 0) and PUBLISH on the key's channel, unless the key holds a SUCCESS meta
 * (Celery never overwrites SUCCESS). KEYS[1] key; ARGV value, ttl ms, '1' to check for SUCCESS.
 */
const SET_SCRIPT = `
if ARGV[3] == '1' then
  local cur = redis.call('GET', KEYS[1])
  if cur and string.find(cur, '"status"%s*:%s*"SUCCESS"') then return 0 end
end
if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else redis.call('SET', KEYS[1], ARGV[1]) end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
`;

/**
 * Celery's chord join pipeline (backends/redis.py on_chord_part_return) in one script: ZADD the
 * part at its group_index ('+inf' when none), or RPUSH it when the join is unordered
 * (result_chord_ordered=False), count, GET the counter and size keys, expire all three.
 * KEYS join, counter, size; ARGV score, member, ttl ms, '1' when ordered.
 */
const CHORD_ADD_SCRIPT = `
local n
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
  n = redis.call('ZCOUNT', KEYS[1], '-inf', '+inf')
else
  redis.call('RPUSH', KEYS[1], ARGV[2])
  n = redis.call('LLEN', KEYS[1])
end
local t = redis.call('GET', KEYS[2])
local s = redis.call('GET', KEYS[3])
if tonumber(ARGV[3]) > 0 then
  for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
end
return {n, t, s}
`;

/** A watched key stays subscribed this long after its last waiter left. */
const UNSUBSCRIBE_AFTER_MS = 2_000;

export interface RedisStoreOptions {
  readonly logger?: Logger;
  /** The first command fails after this when Redis cannot be reached (default 10000). */
  readonly connectTimeoutMs?: number;
}

export function createRedisStore(url: string, opts: RedisStoreOptions = {}): KeyValueStore {
  const parsed = parseRedisUrl(url);
  const log = opts.logger?.child({ component: 'redis-backend' });
  const outages = new OutageLog(log, `redis result backend ${redactUrl(url)}`);
  const client = outages.watch(new Redis(parsed.ioredisUrl, redisOptions(parsed, { enableAutoPipelining: true, lazyConnect: true })));
  client.defineCommand('celeriacSet', { numberOfKeys: 1, lua: SET_SCRIPT });
  client.defineCommand('celeriacChordAdd', { numberOfKeys: 3, lua: CHORD_ADD_SCRIPT });
  const scripted = client as unknown as {
    celeriacSet(key: string, value: string, ttlMs: number, check: string): Promise<number>;
    celeriacChordAdd(
      join: string,
      counter: string,
      size: string,
      score: string,
      member: string,
      ttlMs: number,
      ordered: string,
    ): Promise<[number, string | null, string | null]>;
  };
  let ready: Promise<void> | null = null;
  let subscriber: Redis | null = null;
  /** key -> callbacks waiting for its next set, and the SUBSCRIBE acknowledgement. */
  /**
   * Watched keys: waiters to wake, the SUBSCRIBE acknowledgement, the idle unsubscribe timer, and
   * the value last published on the key (every set publishes it), which the next get() returns
   * once without a round trip.
   */
  const watchers = new Map<string, { wake: Set<() => void>; subscribed: Promise<unknown>; idle: NodeJS.Timeout | null; published: string | null }>();

  const wrap = (what: string, err: unknown) =>
    new BackendError(`Redis result backend ${redactUrl(url)}: ${what} failed: ${(err as Error)?.message ?? err}`, { cause: err });

  /** Connects on first use; fails with BackendError when Redis stays unreachable. */
  function connected(): Promise<void> {
    ready ??= (async () => {
      client.connect().catch((err: unknown) => log?.debug({ err }, 'first connection attempt failed, retrying'));
      try {
        await pingWithin(client, opts.connectTimeoutMs ?? 10_000, url, 'Redis result backend');
      } catch (err) {
        ready = null;
        throw new BackendError((err as Error).message, { cause: err });
      }
    })();
    return ready;
  }

  /** Sets of one event-loop turn, written in one round trip (a worker stores many results at once). */
  let pendingSets: { key: string; value: string; ttlMs: number | undefined; check: boolean }[] = [];
  let flushing: Promise<void> | null = null;
  function flushSets(): Promise<void> {
    return new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
      const batch = pendingSets;
      pendingSets = [];
      flushing = null;
      // SET then PUBLISH of each key (one script call each, atomic as Celery's MULTI); one write.
      const p = client.pipeline();
      for (const { key, value, ttlMs, check } of batch) (p as unknown as typeof scripted).celeriacSet(key, value, ttlMs ?? 0, check ? '1' : '0');
      const res = await p.exec();
      const failed = res?.find(([err]) => err);
      if (failed) throw failed[0];
    });
  }

  async function queueSet(key: string, value: string, ttlMs: number | undefined, check: boolean): Promise<void> {
    await connected();
    pendingSets.push({ key, value, ttlMs, check });
    try {
      await (flushing ??= flushSets());
    } catch (err) {
      throw wrap(`SET ${key}`, err);
    }
  }

  async function run<T>(what: string, op: () => Promise<T>): Promise<T> {
    await connected();
    try {
      return await op();
    } catch (err) {
      throw wrap(what, err);
    }
  }

  function subscriberConn(): Redis {
    if (!subscriber) {
      subscriber = outages.watch(client.duplicate({ lazyConnect: false }));
      subscriber.on('message', (channel: string, value: string) => {
        const w = watchers.get(channel);
        if (!w) return;
        w.published = value;
        for (const wake of [...w.wake]) wake();
      });
    }
    return subscriber;
  }

  return {
    kind: 'redis',
    async get(key) {
      // A watch() started just before must be live before we read, or a set in between is missed.
      const w = watchers.get(key);
      if (w?.published != null) {
        const value = w.published;
        w.published = null;
        return value;
      }
      if (w) await w.subscribed.catch(() => undefined);
      return run(`GET ${key}`, () => client.get(key));
    },
    mget: (keys) => (keys.length === 0 ? Promise.resolve([]) : run('MGET', () => client.mget(...keys))),
    set: (key, value, o) => queueSet(key, value, o?.ttlMs, false),
    setUnlessSuccess: (key, value, o) => queueSet(key, value, o?.ttlMs, true),
    incr: (key, o) =>
      run(`INCR ${key}`, async () => {
        const m = client.multi().incr(key);
        if (o?.ttlMs) m.pexpire(key, o.ttlMs);
        const res = await m.exec();
        const [err, n] = res?.[0] ?? [new Error('empty MULTI reply'), null];
        if (err) throw err;
        return Number(n);
      }),
    async delete(key) {
      await run(`DEL ${key}`, () => client.del(key));
    },
    chordAdd: (keys, score, member, o) =>
      run(`chord join ${keys.join}`, async () => {
        const [count, counter, size] = await scripted.celeriacChordAdd(
          keys.join,
          keys.counter,
          keys.size,
          score === null ? '+inf' : String(score),
          member,
          o.ttlMs ?? 0,
          o.ordered ? '1' : '0',
        );
        return { count: Number(count), counter, size };
      }),
    // Celery's LRANGE 0 total (one more than the parts, as Celery's inclusive end).
    chordMembers: (key, o) => (o.ordered ? run(`ZRANGE ${key}`, () => client.zrange(key, 0, -1)) : run(`LRANGE ${key}`, () => client.lrange(key, 0, o.total))),
    async watch(key, signal) {
      if (signal.aborted) return;
      const sub = subscriberConn();
      let w = watchers.get(key);
      if (!w) {
        w = { wake: new Set(), subscribed: sub.subscribe(key), idle: null, published: null };
        watchers.set(key, w);
      }
      const entry = w;
      if (entry.idle) clearTimeout(entry.idle);
      entry.idle = null;
      await new Promise<void>((resolve) => {
        const done = () => {
          entry.wake.delete(done);
          signal.removeEventListener('abort', done);
          resolve();
        };
        entry.wake.add(done);
        signal.addEventListener('abort', done, { once: true });
      });
      // Stay subscribed a little: a waiter usually watches the same key again right away
      // (AsyncResult reads, then waits again), and a live subscription saves two round trips.
      if (entry.wake.size === 0 && !entry.idle) {
        entry.idle = setTimeout(() => {
          if (entry.wake.size > 0 || watchers.get(key) !== entry) return;
          watchers.delete(key);
          void entry.subscribed.then(() => sub.unsubscribe(key)).catch((err: unknown) => log?.debug({ err }, 'unsubscribe failed'));
        }, UNSUBSCRIBE_AFTER_MS);
        entry.idle.unref();
      }
    },
    async close() {
      for (const w of watchers.values()) if (w.idle) clearTimeout(w.idle);
      subscriber?.disconnect();
      await quit(client);
    },
  };
}
