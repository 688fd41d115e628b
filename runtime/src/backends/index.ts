/**
 * Result backend URL scheme -> ResultBackend. Key-value drivers are wrapped by
 * createKeyValueResultBackend; rpc:// (rides the broker) registers a full ResultBackend.
 */
import type { Logger } from 'pino';
import type { Broker } from '../brokers/broker.js';
import { ConfigError, redactUrl } from '../errors.js';
import type { KeyValueStore } from './backend.js';
import { createFileStore } from './file.js';
import { createMemoryStore } from './memory.js';
import { createRedisStore } from './redis.js';
import { createKeyValueResultBackend, type ResultBackend } from './result-backend.js';
import { createRpcBackend } from './rpc.js';

export interface BackendOptions {
  /** Result expiry (Celery's result_expires); null keeps results forever. */
  readonly expiresMs: number | null;
  /** Celery's result_chord_ordered (default true): a chord join kept in header order, else in finishing order. */
  readonly chordOrdered?: boolean;
  /** JSON results: Dates as kombu 5.3+'s datetime tag (config jsonDateTags). */
  readonly dateTags?: boolean;
  /** The app's broker, for backends that ride it (rpc://). */
  readonly broker: Broker;
  readonly logger?: Logger;
}

const stores: Record<string, (url: string, opts: { logger?: Logger }) => KeyValueStore> = {
  'memory:': createMemoryStore,
  'file:': createFileStore,
  'redis:': createRedisStore,
  'rediss:': createRedisStore,
};
const backends: Record<string, (url: string, opts: BackendOptions) => ResultBackend> = {
  'rpc:': createRpcBackend,
};

export function backendSchemes(): string[] {
  return [...Object.keys(stores), ...Object.keys(backends)].map((s) => s.slice(0, -1));
}

export function createResultBackend(url: string, opts: BackendOptions): ResultBackend {
  const scheme = schemeOf(url);
  const store = stores[scheme];
  if (store) return keyValueBackend(store, url, opts);
  const backend = backends[scheme];
  if (backend) return backend(url, opts);
  throw new ConfigError([
    `resultBackend: unsupported scheme in "${redactUrl(url)}" (supported: ${backendSchemes()
      .map((s) => `${s}://`)
      .join(', ')})`,
  ]);
}

/**
 * The result backend of `url` made without the app, for a thread that must store while the
 * worker's loop is blocked (the event-loop watchdog), or null when the results cannot be reached
 * from there: rpc:// rides the worker's broker channel and memory:// lives in one thread only.
 */
export function createDetachedResultBackend(url: string, opts: Omit<BackendOptions, 'broker'>): ResultBackend | null {
  const scheme = schemeOf(url);
  const store = scheme === 'memory:' ? undefined : stores[scheme];
  return store ? keyValueBackend(store, url, opts) : null;
}

/** `redis:` of `redis://host`, lower case ('' when none). */
const schemeOf = (url: string): string => /^[a-z][a-z0-9+.-]*:/i.exec(url)?.[0]?.toLowerCase() ?? '';

function keyValueBackend(store: (typeof stores)[string], url: string, opts: Omit<BackendOptions, 'broker'>): ResultBackend {
  return createKeyValueResultBackend(store(url, { logger: opts.logger }), {
    expiresMs: opts.expiresMs,
    chordJoin: { ordered: opts.chordOrdered ?? true },
    dateTags: opts.dateTags,
  });
}
