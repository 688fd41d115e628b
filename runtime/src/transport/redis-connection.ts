/**
 * Redis connections shared by the Redis broker and the Redis result store: URL parsing (redis://,
 * rediss:// with TLS, password, db index), reconnect with capped exponential backoff, and one log
 * line per outage (not one per retry).
 */
import type { ConnectionOptions } from 'node:tls';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { BrokerError, isAuthenticationError, redactUrl } from '../errors.js';
import { TLS_PARAMS, takeTlsParams } from './tls-params.js';
import { backoffDelay } from './backoff.js';
import { CLOSE_TIMEOUT_MS, within } from './wait.js';

export interface ParsedRedisUrl {
  /** The URL without celeriac's own query parameters, for ioredis. */
  readonly ioredisUrl: string;
  readonly db: number;
  /** celeriac's query parameters (e.g. visibilityTimeoutMs), removed from ioredisUrl. */
  readonly params: URLSearchParams;
  /** ioredis `tls` options from tlsInsecure / tlsServerName (rediss:// only). */
  readonly tls: ConnectionOptions | undefined;
}

/**
 * Query options of a redis:// URL, shared by broker and result backend because one URL often
 * serves both: celeriac's `visibilityTimeoutMs` and kombu's `visibility_timeout` (seconds). The
 * TLS options are in ./tls-params.ts; any other option is refused by name.
 */
export const REDIS_URL_OPTIONS = ['visibilityTimeoutMs', 'visibility_timeout'] as const;

/**
 * Splits a redis:// or rediss:// URL; its query options (REDIS_URL_OPTIONS, TLS_PARAMS) go to
 * `params`, and an unknown option is refused by name rather than silently ignored.
 */
export function parseRedisUrl(url: string): ParsedRedisUrl {
  let u: URL;
  try {
    u = new URL(url);
  } catch (err) {
    throw new BrokerError(`Invalid Redis URL "${redactUrl(url)}": expected redis://[:password@]host[:port][/db]`, { cause: err });
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new BrokerError(`Invalid Redis URL "${redactUrl(url)}": the scheme must be redis:// or rediss://`);
  }
  const dbText = u.pathname.replace(/^\//, '') || '0';
  const db = Number(dbText);
  if (!Number.isInteger(db) || db < 0) {
    throw new BrokerError(`Invalid Redis URL "${redactUrl(url)}": the database index must be an integer >= 0, got "${dbText}"`);
  }
  const params = new URLSearchParams();
  for (const name of REDIS_URL_OPTIONS) {
    const v = u.searchParams.get(name);
    if (v !== null) params.set(name, v);
    u.searchParams.delete(name);
  }
  const tls = takeTlsParams(u, 'rediss:', url);
  const unknown = [...new Set(u.searchParams.keys())];
  if (unknown.length > 0) {
    throw new BrokerError(
      `Invalid Redis URL "${redactUrl(url)}": unknown option${unknown.length > 1 ? 's' : ''} ${unknown.map((n) => `"${n}"`).join(', ')} ` +
        `(known: ${[...REDIS_URL_OPTIONS, ...TLS_PARAMS].join(', ')})`,
    );
  }
  return { ioredisUrl: u.toString(), db, params, tls };
}

/**
 * The visibility timeout in ms from `visibilityTimeoutMs` (celeriac, ms) or `visibility_timeout`
 * (kombu, seconds, may be fractional), or the default; both at once are refused.
 */
export function visibilityTimeoutParam(p: ParsedRedisUrl, dflt: number, url: string): number {
  const seconds = p.params.get('visibility_timeout');
  if (seconds === null) return intParam(p, 'visibilityTimeoutMs', dflt, url);
  if (p.params.has('visibilityTimeoutMs')) {
    throw new BrokerError(`Invalid Redis URL "${redactUrl(url)}": give visibilityTimeoutMs (ms) or kombu's visibility_timeout (seconds), not both`);
  }
  const n = Number(seconds);
  if (!Number.isFinite(n) || n <= 0)
    throw new BrokerError(`Invalid Redis URL "${redactUrl(url)}": visibility_timeout must be a number of seconds > 0, got "${seconds}"`);
  return Math.round(n * 1000);
}

/** Reads an integer query parameter (ms), or the default. */
export function intParam(p: ParsedRedisUrl, name: string, dflt: number, url: string): number {
  const v = p.params.get(name);
  if (v === null) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) {
    throw new BrokerError(`Invalid Redis URL "${redactUrl(url)}": ${name} must be an integer > 0, got "${v}"`);
  }
  return n;
}

/**
 * Tracks connections of one driver so that an outage is logged once when it starts and once when
 * every connection is back.
 */
export class OutageLog {
  private readonly down = new Set<Redis>();
  constructor(
    private readonly log: Logger | undefined,
    private readonly what: string,
  ) {}

  watch(client: Redis): Redis {
    client.on('error', (err: Error) => {
      if (this.down.size === 0) {
        // A refused password is not an outage: say so instead of promising a reconnect that cannot help.
        if (isAuthenticationError(err))
          this.log?.error({ err: { message: err.message } }, `${this.what}: authentication failed (${err.message}); check the password in the URL`);
        else this.log?.warn({ err: { message: err.message } }, `${this.what}: connection lost, reconnecting with backoff`);
      }
      this.down.add(client);
    });
    client.on('ready', () => {
      if (this.down.delete(client) && this.down.size === 0) this.log?.info(`${this.what}: connection restored`);
    });
    return client;
  }
}

/**
 * ioredis options: wait through outages (commands queue and are resent), back off up to 2 s, and
 * the URL's TLS options.
 */
export function redisOptions(parsed: ParsedRedisUrl, extra: RedisOptions = {}): RedisOptions {
  return {
    maxRetriesPerRequest: null,
    retryStrategy: (attempt) => backoffDelay(attempt, 50, 2_000),
    ...(parsed.tls ? { tls: parsed.tls } : {}),
    ...extra,
  };
}

/** Resolves when `client` answers PING; throws BrokerError after `timeoutMs`. */
export async function pingWithin(client: Redis, timeoutMs: number, url: string, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  // ioredis retries in silence; the last connection error (refused, TLS certificate, auth) says why.
  let last: Error | undefined;
  const onError = (err: Error) => (last = err);
  client.on('error', onError);
  try {
    await Promise.race([
      client.ping().catch((err: unknown) => {
        if (!isAuthenticationError(err)) throw err;
        throw new BrokerError(
          `${what}: authentication to ${redactUrl(url)} failed: ${(err as Error).message.replace(/\.$/, '')}. Check the user and password in the URL.`,
          { cause: err },
        );
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const why = last ? ` Last error: ${last.message}.` : '';
          reject(
            new BrokerError(`${what}: cannot reach Redis at ${redactUrl(url)} within ${timeoutMs} ms.${why} Is the server running and the URL right?`, {
              cause: last,
            }),
          );
        }, timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    client.off('error', onError);
  }
}

/** QUIT, or a plain disconnect when Redis does not answer it in time (a dead link never does). */
export async function quit(client: Redis): Promise<void> {
  let answered = false;
  await within(
    client.quit().then(() => (answered = true)),
    CLOSE_TIMEOUT_MS,
  );
  if (!answered) client.disconnect();
}
