/**
 * Redis queue depth exactly as kombu stores it (the layout: runtime/src/protocol/kombu-redis.ts).
 *
 * - Ready messages: LLEN of every priority list of every queue: `q`, `q\x06\x163`, `q\x06\x166`,
 *   `q\x06\x169` (spec celery-wire.md §3.2; KEDA's redis scaler reads only `q`, kedacore/keda #7066).
 * - Unacknowledged: entries of the `unacked` hash whose routing key is one of the queues (reserved
 *   or running on a worker, or lost with a killed worker until the visibility timeout restores them).
 * URL: redis://[user:password@]host:port/db (rediss:// for TLS). One connection, kept open.
 * `value` = ready messages; `detail` = { ready, unacked }.
 */
import { Redis } from 'ioredis';
import { redactUrl } from '../../../runtime/src/errors.js';
import { queueLists, UNACKED, unackedRoutingKey } from '../../../runtime/src/protocol/kombu-redis.js';
import { abortable, MetricSourceError, type MetricSource, type MetricValue } from './source.js';

export interface RedisListOptions {
  url: string;
  queues: readonly string[];
  /** kombu transport option `unacked_key`. */
  unackedKey?: string;
  timeoutMs?: number;
  tls?: { rejectUnauthorized?: boolean; servername?: string };
}

export function createRedisListSource(o: RedisListOptions): MetricSource {
  const timeoutMs = o.timeoutMs ?? 5000;
  const redis = new Redis(o.url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 1,
    ...(o.tls || o.url.startsWith('rediss:') ? { tls: { ...o.tls } } : {}),
  });
  let lastError: unknown;
  // ioredis reports connection trouble as events too; keep the latest for the error message.
  redis.on('error', (err) => {
    lastError = err;
  });
  const keys = o.queues.flatMap(queueLists);
  const queues = new Set(o.queues);
  const unackedKey = o.unackedKey ?? UNACKED;

  async function readOnce(): Promise<MetricValue> {
    if (redis.status === 'wait' || redis.status === 'end') await redis.connect();
    const pipe = redis.pipeline();
    for (const k of keys) pipe.llen(k);
    pipe.hvals(unackedKey);
    const results = (await pipe.exec()) ?? [];
    let ready = 0;
    for (let i = 0; i < keys.length; i++) {
      const [err, n] = results[i] ?? [new Error('no reply'), 0];
      if (err) throw err;
      ready += Number(n);
    }
    const [herr, values] = results[keys.length] ?? [null, []];
    if (herr) throw herr;
    let unacked = 0;
    for (const v of values as string[]) {
      // A value that is not kombu's [envelope, exchange, routing_key] has no routing key: skipped.
      const rk = unackedRoutingKey(v);
      if (rk !== null && queues.has(rk)) unacked++;
    }
    return { value: ready, detail: { ready, unacked } };
  }

  return {
    kind: 'redis-list',
    async read(signal) {
      try {
        return await abortable(readOnce(), signal, 'redis-list');
      } catch (err) {
        if (err instanceof MetricSourceError) throw err;
        const cause = lastError ?? err;
        throw new MetricSourceError(
          'redis-list',
          `reading ${o.queues.join(', ')} at ${redactUrl(o.url)} failed: ${(cause as Error).message ?? String(cause)}`,
          { cause },
        );
      }
    },
    async close() {
      redis.disconnect();
    },
  };
}
