/**
 * Redis connections shared by the Redis broker and the Redis result store: URL parsing (redis://,
 * rediss:// with TLS, password, db index), reconnect with capped exponential backoff, and one log
 * line per outage (not one per retry).
 */
import type { ConnectionOptions } from 'node:tls';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { BrokerError, isAuthenticationError, redactUrl } from '../errors.js';
import { takeTlsParams } from './tls-params.js';
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

/** Splits a redis:// or rediss:// URL; `own` names query parameters that are celeriac's, not ioredis's. */
export function parseRedisUrl(url: string, own: readonly string[]): ParsedRedisUrl {
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
  for (const name of own) {
    const v = u.searchParams.get(name);
    if (v !== null) params.set(name, v);
    u.searchParams.delete(name);
  }
  const tls = takeTlsParams(u, 'rediss:', url);
  return { ioredisUrl: u.toString(), db, params, tls };
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
