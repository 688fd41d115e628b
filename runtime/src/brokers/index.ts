/**
 * Broker URL scheme -> driver factory. Add a driver: write `<name>.ts` implementing Broker
 * (./broker.ts), add its scheme here, and run the broker contract suite on it (test/contract/).
 */
import type { Logger } from 'pino';
import { ConfigError, redactUrl } from '../errors.js';
import { createAmqpBroker } from './amqp.js';
import type { Broker } from './broker.js';
import { createFileBroker } from './file.js';
import { createMemoryBroker } from './memory.js';
import { createRedisBroker } from './redis.js';

/** What every driver may be given besides its URL. */
export interface BrokerFactoryOptions {
  readonly logger?: Logger;
}

export type BrokerFactory = (url: string, opts: BrokerFactoryOptions) => Broker;

const factories: Record<string, BrokerFactory> = {
  'memory:': createMemoryBroker,
  'file:': createFileBroker,
  'redis:': createRedisBroker,
  'rediss:': createRedisBroker,
  'amqp:': createAmqpBroker,
  'amqps:': createAmqpBroker,
};

/** Schemes the broker URL may use. */
export function brokerSchemes(): string[] {
  return Object.keys(factories).map((s) => s.slice(0, -1));
}

/** Creates the broker for `url`; an unknown scheme is a ConfigError naming the known ones. */
export function createBroker(url: string, opts: BrokerFactoryOptions = {}): Broker {
  const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(url)?.[0]?.toLowerCase() ?? '';
  const make = factories[scheme];
  if (!make) {
    throw new ConfigError([
      `brokerUrl: unsupported scheme in "${redactUrl(url)}" (supported: ${brokerSchemes()
        .map((s) => `${s}://`)
        .join(', ')})`,
    ]);
  }
  return make(url, opts);
}
