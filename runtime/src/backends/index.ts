/**
 * Result backend URL scheme -> ResultBackend. Key-value drivers are wrapped by
 * createKeyValueResultBackend; rpc:// (rides the broker) registers a full ResultBackend.
 * Each driver is imported when its scheme is first asked for (file:// never loads ioredis).
 */
import type { Logger } from 'pino';
import type { Broker } from '../brokers/broker.js';
import { ConfigError, redactUrl } from '../errors.js';
import type { KeyValueStore } from './backend.js';
import { createKeyValueResultBackend, type ResultBackend } from './result-backend.js';

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

type StoreFactory = (url: string, opts: { logger?: Logger }) => KeyValueStore;
const redis = async (): Promise<StoreFactory> => (await import('./redis.js')).createRedisStore;
/** Scheme -> the key-value driver's factory, imported on first use. */
const stores: Record<string, () => Promise<StoreFactory>> = {
  'memory:': async () => (await import('./memory.js')).createMemoryStore,
  'file:': async () => (await import('./file.js')).createFileStore,
  'redis:': redis,
  'rediss:': redis,
};
const backends: Record<string, () => Promise<(url: string, opts: BackendOptions) => ResultBackend>> = {
  'rpc:': async () => (await import('./rpc.js')).createRpcBackend,
};

export function backendSchemes(): string[] {
  return [...Object.keys(stores), ...Object.keys(backends)].map((s) => s.slice(0, -1));
}

/** The result backend of `url`, importing its driver; an unknown scheme is a ConfigError. */
export async function createResultBackend(url: string, opts: BackendOptions): Promise<ResultBackend> {
  const scheme = schemeOf(url);
  const store = stores[scheme];
  if (store) return keyValueBackend(await store(), url, opts);
  const backend = backends[scheme];
  if (backend) return (await backend())(url, opts);
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
export async function createDetachedResultBackend(url: string, opts: Omit<BackendOptions, 'broker'>): Promise<ResultBackend | null> {
  const scheme = schemeOf(url);
  const store = scheme === 'memory:' ? undefined : stores[scheme];
  return store ? keyValueBackend(await store(), url, opts) : null;
}

/** `redis:` of `redis://host`, lower case ('' when none). */
const schemeOf = (url: string): string => /^[a-z][a-z0-9+.-]*:/i.exec(url)?.[0]?.toLowerCase() ?? '';

function keyValueBackend(store: StoreFactory, url: string, opts: Omit<BackendOptions, 'broker'>): ResultBackend {
  return createKeyValueResultBackend(store(url, { logger: opts.logger }), {
    expiresMs: opts.expiresMs,
    chordJoin: { ordered: opts.chordOrdered ?? true },
    dateTags: opts.dateTags,
  });
}
