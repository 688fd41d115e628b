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
import { OutageLog, parseRedisUrl, pingWithin, redisOptions } from '../brokers/redis-connection.js';
import type { KeyValueStore } from './backend.js';

export interface RedisStoreOptions {
  readonly logger?: Logger;
  /** The first command fails after this when Redis cannot be reached (default 10000). */
  readonly connectTimeoutMs?: number;
}

export function createRedisStore(url: string, opts: RedisStoreOptions = {}): KeyValueStore {
  const parsed = parseRedisUrl(url, []);
  const log = opts.logger?.child({ component: 'redis-backend' });
  const outages = new OutageLog(log, `redis result backend ${redactUrl(url)}`);
  const client = outages.watch(new Redis(parsed.ioredisUrl, redisOptions({ enableAutoPipelining: true, lazyConnect: true })));
  let ready: Promise<void> | null = null;
  let subscriber: Redis | null = null;
  /** key -> callbacks waiting for its next set, and the SUBSCRIBE acknowledgement. */
  const watchers = new Map<string, { wake: Set<() => void>; subscribed: Promise<unknown> }>();

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
  let pendingSets: { key: string; value: string; ttlMs: number | undefined }[] = [];
  let flushing: Promise<void> | null = null;
  function flushSets(): Promise<void> {
    return new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
      const batch = pendingSets;
      pendingSets = [];
      flushing = null;
      // SET then PUBLISH of each key, in order, as Celery's MULTI does; one write for the batch.
      const p = client.multi();
      for (const { key, value, ttlMs } of batch) {
        if (ttlMs) p.set(key, value, 'PX', ttlMs);
        else p.set(key, value);
        p.publish(key, value);
      }
      const res = await p.exec();
      const failed = res?.find(([err]) => err);
      if (failed) throw failed[0];
    });
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
      subscriber.on('message', (channel: string) => {
        const w = watchers.get(channel);
        if (w) for (const wake of [...w.wake]) wake();
      });
    }
    return subscriber;
  }

  return {
    kind: 'redis',
    async get(key) {
      // A watch() started just before must be live before we read, or a set in between is missed.
      const w = watchers.get(key);
      if (w) await w.subscribed.catch(() => undefined);
      return run(`GET ${key}`, () => client.get(key));
    },
    mget: (keys) => (keys.length === 0 ? Promise.resolve([]) : run('MGET', () => client.mget(...keys))),
    async set(key, value, o) {
      await connected();
      pendingSets.push({ key, value, ttlMs: o?.ttlMs });
      try {
        await (flushing ??= flushSets());
      } catch (err) {
        throw wrap(`SET ${key}`, err);
      }
    },
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
    async watch(key, signal) {
      if (signal.aborted) return;
      const sub = subscriberConn();
      let w = watchers.get(key);
      if (!w) {
        w = { wake: new Set(), subscribed: sub.subscribe(key) };
        watchers.set(key, w);
      }
      const entry = w;
      await new Promise<void>((resolve) => {
        const done = () => {
          entry.wake.delete(done);
          signal.removeEventListener('abort', done);
          resolve();
        };
        entry.wake.add(done);
        signal.addEventListener('abort', done, { once: true });
      });
      if (entry.wake.size === 0 && watchers.get(key) === entry) {
        watchers.delete(key);
        await entry.subscribed.catch(() => undefined);
        await sub.unsubscribe(key).catch((err: unknown) => log?.debug({ err }, 'unsubscribe failed'));
      }
    },
    async close() {
      subscriber?.disconnect();
      await client.quit().catch(() => client.disconnect());
    },
  };
}
