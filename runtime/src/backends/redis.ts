/**
 * redis:// and rediss:// result store, as Celery's Redis backend (spec §5.2): each set is a SET
 * (with PX expiry) and a PUBLISH on a channel named like the key, atomic as Celery's MULTI, so
 * Python clients waiting on `celery-task-meta-<id>` wake up too; the sets of one event-loop turn
 * go in one script call. watch() SUBSCRIBEs (one shared subscriber
 * connection, reference-counted per key), so AsyncResult.get() does not poll; expect() SUBSCRIBEs
 * when the task is sent, so get() then costs no SUBSCRIBE round trip after the publish. The
 * SUBSCRIBEs of one turn go in one command; a sweep unsubscribes the keys idle for 2 s together.
 *
 * URL: `redis://[[user]:password@]host[:port][/db]`, `rediss://` for TLS.
 */
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { BackendError, redactUrl } from '../errors.js';
import { OutageLog, parseRedisUrl, pingWithin, quit, redisOptions } from '../transport/redis-connection.js';
import { watchByListen, type KeyValueStore } from './backend.js';

/**
 * Stores the results of one event-loop turn: for each key KEYS[i], SET (PX when its ttl > 0) and
 * PUBLISH on the key's channel, unless checked and the key holds a SUCCESS meta (Celery never
 * overwrites SUCCESS). The stored meta is decoded only when its text holds "SUCCESS" at all: a
 * PROGRESS whose own meta says "status": "SUCCESS" is not a SUCCESS. ARGV holds three per key: value, ttl ms ('0': none; kept as
 * text: a Lua number passed to redis.call is formatted with a printf per key), '1' to check for SUCCESS. One call
 * for the whole batch: a script call costs Redis (and ioredis) more than the SET it runs.
 * Returns one 1 (stored) or 0 (kept the SUCCESS) per key.
 */
const SET_SCRIPT = `
local out = {}
local function set(key, value, ttl, nx)
  if ttl ~= '0' then
    if nx then return redis.call('SET', key, value, 'PX', ttl, 'NX') end
    return redis.call('SET', key, value, 'PX', ttl)
  end
  if nx then return redis.call('SET', key, value, 'NX') end
  return redis.call('SET', key, value)
end
for i = 1, #KEYS do
  local value, ttl, check = ARGV[3 * i - 2], ARGV[3 * i - 1], ARGV[3 * i]
  -- Checked: a key that does not exist yet (the usual case) is set by SET NX, one call instead of GET and SET.
  local stored = check == '1' and set(KEYS[i], value, ttl, true)
  local done = false
  if check == '1' and not stored then
    local cur = redis.call('GET', KEYS[i])
    if cur and string.find(cur, '"SUCCESS"', 1, true) then
      local ok, meta = pcall(cjson.decode, cur)
      done = ok and type(meta) == 'table' and meta.status == 'SUCCESS'
    end
  end
  if done then
    out[i] = 0
  else
    if not stored then set(KEYS[i], value, ttl, false) end
    redis.call('PUBLISH', KEYS[i], value)
    out[i] = 1
  end
end
return out
`;

/**
 * A chord header part joins (Celery 5.7's on_chord_part_return script; 5.2 runs the same steps
 * without the seen set and the claim, and ignores those keys): nothing once the chord is done;
 * the part is added once per task id and score (ZADD at its group_index, '+inf' when none, or
 * RPUSH when unordered); TTLs refreshed; when the count reaches size + counter, the body's
 * dispatch is claimed with SET NX, so one worker sends it even if a part is delivered twice.
 * KEYS join, counter, size, seen, group, claim; ARGV score, member, ttl ms, '1' when ordered,
 * task id, claim token, claim ttl ms. Returns {count (-1: done), counter, size, claimed}.
 */
const CHORD_ADD_SCRIPT = `
if redis.call('GET', KEYS[6]) == 'done' then return {-1, false, false, 0} end
local seen = ARGV[5] .. ':' .. ARGV[1]
if redis.call('SISMEMBER', KEYS[4], seen) == 0 then
  if ARGV[4] == '1' then redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2]) else redis.call('RPUSH', KEYS[1], ARGV[2]) end
  redis.call('SADD', KEYS[4], seen)
end
local n
if ARGV[4] == '1' then n = redis.call('ZCOUNT', KEYS[1], '-inf', '+inf') else n = redis.call('LLEN', KEYS[1]) end
if tonumber(ARGV[3]) > 0 then
  for i = 1, 5 do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
end
local t = redis.call('GET', KEYS[2])
local s = redis.call('GET', KEYS[3])
local claimed = 0
if s and n == tonumber(s) + tonumber(t or 0) then
  if redis.call('SET', KEYS[6], ARGV[6], 'NX', 'PX', ARGV[7]) then claimed = 1 end
end
return {n, t, s, claimed}
`;

/** Keeps or retakes the dispatch claim (KEYS claim, size; ARGV token, ttl ms): 1 when this token holds it. */
const CHORD_CLAIM_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not redis.call('GET', KEYS[1]) and redis.call('EXISTS', KEYS[2]) == 1 then
  if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
end
return 0
`;

/** After the body is sent (KEYS claim, join, counter, size, seen; ARGV token, done ttl ms): drops the join, marks it done. */
const CHORD_FINISH_SCRIPT = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call('SET', KEYS[1], 'done', 'PX', ARGV[2])
return 1
`;

/** A watched key stays subscribed this long after its last waiter left. */
const UNSUBSCRIBE_AFTER_MS = 2_000;

/** A watched key: waiters to wake, the SUBSCRIBE acknowledgement, since when nobody waits (ms, null while one does), the value last published. */
interface Watcher {
  readonly wake: Set<() => void>;
  /** The SUBSCRIBE of the key (its batch): `live` once Redis acknowledged it. */
  readonly subscribed: SubscribeBatch;
  idleSince: number | null;
  /** The last value pushed on the key's channel and not read yet (get() hands it out once), or null. */
  published: string | null;
  /**
   * This process wrote or deleted the key (its own set, forget()): a push is then never handed out
   * as the value. A push of an older set travels on the subscriber connection and can arrive after
   * the reply to this process's own SET or DEL, so clearing `published` alone could hand out a
   * stale or forgotten result; get() reads the key instead.
   */
  written: boolean;
}

/** The SUBSCRIBE of the keys of one event-loop turn. */
interface SubscribeBatch {
  readonly keys: string[];
  done: Promise<unknown>;
  /** Redis acknowledged it: pushes on these keys arrive from now on. */
  live: boolean;
}

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
  client.defineCommand('celeriacSet', { lua: SET_SCRIPT });
  client.defineCommand('celeriacChordAdd', { numberOfKeys: 6, lua: CHORD_ADD_SCRIPT });
  client.defineCommand('celeriacChordClaim', { numberOfKeys: 2, lua: CHORD_CLAIM_SCRIPT });
  client.defineCommand('celeriacChordFinish', { numberOfKeys: 5, lua: CHORD_FINISH_SCRIPT });
  const scripted = client as unknown as {
    celeriacSet(numberOfKeys: number, ...keysAndArgs: (string | number)[]): Promise<number[]>;
    celeriacChordAdd(...keysAndArgs: (string | number)[]): Promise<[number, string | null, string | null, number]>;
    celeriacChordClaim(claim: string, size: string, token: string, ttlMs: number): Promise<number>;
    celeriacChordFinish(claim: string, join: string, counter: string, size: string, seen: string, token: string, ttlMs: number): Promise<number>;
  };
  let ready: Promise<void> | null = null;
  /** Once the first ping answered: sets stop waiting on `ready` (a step per set). */
  let up = false;
  let subscriber: Redis | null = null;
  /**
   * Watched keys: waiters to wake, the SUBSCRIBE acknowledgement, since when nobody waits, and
   * the value last published on the key (every set publishes it), which the next get() returns
   * once without a round trip.
   */
  const watchers = new Map<string, Watcher>();

  const wrap = (what: string, err: unknown) =>
    new BackendError(`Redis result backend ${redactUrl(url)}: ${what} failed: ${(err as Error)?.message ?? err}`, { cause: err });

  /** Connects on first use; fails with BackendError when Redis stays unreachable. */
  function connected(): Promise<void> {
    ready ??= (async () => {
      client.connect().catch((err: unknown) => log?.debug({ err }, 'first connection attempt failed, retrying'));
      try {
        await pingWithin(client, opts.connectTimeoutMs ?? 10_000, url, 'Redis result backend');
        up = true;
      } catch (err) {
        ready = null;
        throw new BackendError((err as Error).message, { cause: err });
      }
    })();
    return ready;
  }

  /** Sets of one event-loop turn, written in one script call (a worker stores many results at once). */
  let pendingSets: { key: string; value: string; ttlMs: number | undefined; check: boolean }[] = [];
  let flushing: Promise<void> | null = null;
  function flushSets(): Promise<void> {
    return new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
      const batch = pendingSets;
      pendingSets = [];
      flushing = null;
      const keys: string[] = [];
      const args: (string | number)[] = [];
      for (const { key, value, ttlMs, check } of batch) {
        keys.push(key);
        args.push(value, ttlMs !== undefined && ttlMs > 0 ? ttlMs : 0, check ? '1' : '0');
      }
      // In an explicit pipeline: written now, not a turn later by autopipelining (a result's latency).
      const p = client.pipeline();
      (p as unknown as typeof scripted).celeriacSet(keys.length, ...keys, ...args);
      const [[err] = [null]] = (await p.exec()) ?? [];
      if (err) throw err;
    });
  }

  /** This process writes `key`: a push no longer stands for its value (see Watcher.written). */
  function writing(key: string): void {
    const w = watchers.get(key);
    if (w) {
      w.published = null;
      w.written = true;
    }
  }

  async function queueSet(key: string, value: string, ttlMs: number | undefined, check: boolean): Promise<void> {
    writing(key);
    if (!up) await connected();
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

  /** Channels to SUBSCRIBE at the end of this turn, in one command. */
  let toSubscribe: SubscribeBatch | null = null;

  /** SUBSCRIBEs `key` with the others of this turn, in one command at the end of the turn. */
  function subscribe(sub: Redis, key: string): SubscribeBatch {
    if (!toSubscribe) {
      const batch: SubscribeBatch = { keys: [], done: Promise.resolve(), live: false };
      batch.done = new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
        if (toSubscribe === batch) toSubscribe = null;
        await sub.subscribe(...batch.keys);
        batch.live = true;
      });
      // Rejected when the subscriber is closed with the SUBSCRIBE in flight: get() reads the key
      // instead (it ignores this promise's error), and nobody else waits on it.
      batch.done.catch(() => undefined);
      toSubscribe = batch;
    }
    toSubscribe.keys.push(key);
    return toSubscribe;
  }

  /** Sweeps now and then while keys are watched: one UNSUBSCRIBE for every key idle long enough. */
  let sweeper: NodeJS.Timeout | null = null;
  function sweepLater(): void {
    if (sweeper) return;
    sweeper = setTimeout(() => {
      sweeper = null;
      const now = performance.now();
      const idle: string[] = [];
      for (const [key, w] of watchers) {
        if (w.idleSince !== null && now - w.idleSince >= UNSUBSCRIBE_AFTER_MS) {
          watchers.delete(key);
          idle.push(key);
        }
      }
      const sub = subscriber;
      // Idle for seconds: their SUBSCRIBE went out long ago, so the UNSUBSCRIBE cannot overtake it.
      if (sub && idle.length > 0) sub.unsubscribe(...idle).catch((err: unknown) => log?.debug({ err }, 'unsubscribe failed'));
      if (watchers.size > 0) sweepLater();
    }, UNSUBSCRIBE_AFTER_MS / 2);
    sweeper.unref();
  }

  /** A watched key stays subscribed a while after its last waiter left (usually it is watched again at once). */
  function idleLater(entry: Watcher): void {
    if (entry.wake.size > 0 || entry.idleSince !== null) return;
    entry.idleSince = performance.now();
    sweepLater();
  }

  /** The watcher of `key`, subscribing when there is none. */
  function watcherOf(key: string): Watcher {
    let w = watchers.get(key);
    if (!w) {
      w = { wake: new Set(), subscribed: subscribe(subscriberConn(), key), idleSince: null, published: null, written: false };
      watchers.set(key, w);
    }
    return w;
  }

  function subscriberConn(): Redis {
    if (!subscriber) {
      subscriber = outages.watch(client.duplicate({ lazyConnect: false }));
      subscriber.on('message', (channel: string, value: string) => {
        const w = watchers.get(channel);
        if (!w) return;
        if (!w.written) w.published = value;
        for (const wake of [...w.wake]) wake();
      });
      // Pushes made while the link is down are lost: one left unread from before may be older than
      // what is stored when it comes back, so it no longer stands for the value.
      subscriber.on('close', () => {
        for (const w of watchers.values()) w.published = null;
      });
    }
    return subscriber;
  }

  function listen(key: string, onSet: () => void): () => void {
    const entry = watcherOf(key);
    entry.idleSince = null;
    entry.wake.add(onSet);
    return () => {
      entry.wake.delete(onSet);
      // Stay subscribed a little: a waiter usually watches the same key again right away
      // (AsyncResult reads, then waits again), and a live subscription saves two round trips.
      idleLater(entry);
    };
  }

  return {
    kind: 'redis',
    async get(key) {
      // A watch() started just before must be live before we read, or a set in between is missed.
      const w = watchers.get(key);
      if (w) {
        // (Live already, the usual case once a client waits: no await, no step per read.)
        if (w.published === null && !w.subscribed.live) await w.subscribed.done.catch(() => undefined);
        // Published before or with the SUBSCRIBE's reply (which comes first on its connection): no GET needed.
        if (w.published !== null) {
          const value = w.published;
          w.published = null;
          return value;
        }
      }
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
      writing(key);
      await run(`DEL ${key}`, () => client.del(key));
    },
    chordAdd: (k, score, member, o) =>
      run(`chord join ${k.join}`, async () => {
        const [count, counter, size, claimed] = await scripted.celeriacChordAdd(
          ...[k.join, k.counter, k.size, k.seen, k.group, k.claim],
          score === null ? '+inf' : String(score),
          member,
          o.ttlMs ?? 0,
          o.ordered ? '1' : '0',
          o.taskId,
          o.claimToken,
          o.claimTtlMs,
        );
        return { count: Number(count), counter, size, claimed: claimed === 1 };
      }),
    chordExtendClaim: (k, token, ttlMs) => run(`chord claim ${k.claim}`, async () => (await scripted.celeriacChordClaim(k.claim, k.size, token, ttlMs)) === 1),
    chordFinish: (k, token, ttlMs) =>
      run(`chord cleanup ${k.join}`, async () => (await scripted.celeriacChordFinish(k.claim, k.join, k.counter, k.size, k.seen, token, ttlMs)) === 1),
    // Celery's LRANGE 0 total (one more than the parts, as Celery's inclusive end).
    chordMembers: (key, o) => (o.ordered ? run(`ZRANGE ${key}`, () => client.zrange(key, 0, -1)) : run(`LRANGE ${key}`, () => client.lrange(key, 0, o.total))),
    watch: watchByListen(listen),
    listen,
    expect(key) {
      idleLater(watcherOf(key));
    },
    async close() {
      if (sweeper) clearTimeout(sweeper);
      subscriber?.disconnect();
      await quit(client);
    },
  };
}
