/**
 * Broker URL scheme -> driver factory. Add a driver: write `<name>.ts` implementing Broker
 * (./broker.ts), add its scheme here, and run the broker contract suite on it (test/contract/).
 *
 * Each driver is imported when its scheme is first asked for: a worker on file:// never loads
 * ioredis or amqplib (an idle worker's memory is mostly the libraries it loaded).
 */
import type { Logger } from 'pino';
import { ConfigError, redactUrl } from '../errors.js';
import type { Broker } from './broker.js';

/** What every driver may be given besides its URL. */
export interface BrokerFactoryOptions {
  readonly logger?: Logger;
}

export type BrokerFactory = (url: string, opts: BrokerFactoryOptions) => Broker;

const memory = async (): Promise<BrokerFactory> => (await import('./memory.js')).createMemoryBroker;
const file = async (): Promise<BrokerFactory> => (await import('./file.js')).createFileBroker;
const redis = async (): Promise<BrokerFactory> => (await import('./redis.js')).createRedisBroker;
const amqp = async (): Promise<BrokerFactory> => (await import('./amqp.js')).createAmqpBroker;

/** Scheme -> the driver's factory, imported on first use. */
const factories: Record<string, () => Promise<BrokerFactory>> = {
  'memory:': memory,
  'file:': file,
  'redis:': redis,
  'rediss:': redis,
  'amqp:': amqp,
  'amqps:': amqp,
};

/** Schemes the broker URL may use. */
export function brokerSchemes(): string[] {
  return Object.keys(factories).map((s) => s.slice(0, -1));
}

/**
 * Creates the broker for `url`, importing its driver; an unknown scheme is a ConfigError naming
 * the known ones.
 */
export async function createBroker(url: string, opts: BrokerFactoryOptions = {}): Promise<Broker> {
  const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(url)?.[0]?.toLowerCase() ?? '';
  const load = factories[scheme];
  if (!load) {
    throw new ConfigError([
      `brokerUrl: unsupported scheme in "${redactUrl(url)}" (supported: ${brokerSchemes()
        .map((s) => `${s}://`)
        .join(', ')})`,
    ]);
  }
  return (await load())(url, opts);
}
