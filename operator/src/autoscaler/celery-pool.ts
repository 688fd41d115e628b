/**
 * The autoscaler's connection to a `spec.celery` pool: one runtime App on the pool's broker
 * (remote control and the event receiver, the same client `celeriac inspect` and `celeriac
 * events` use) serving the pool's in-flight source (metric-sources/celery-workers.ts) and its
 * drain client (celery-drain.ts). celeriac pools scrape /metrics and call /drain instead.
 */
import type { Logger } from 'pino';
import { createApp } from '../../../runtime/src/app/app.js';
import { receiveEvents } from '../../../runtime/src/events/receiver.js';
import { createCeleryWorkersSource, type CeleryWorkersSource } from '../metric-sources/celery-workers.js';
import { celeryNodeName } from '../reconcilers/celery-worker.js';
import type { CelerySpec } from '../types.js';
import { createCeleryDrainClient } from './celery-drain.js';
import type { WorkerClient } from './worker-client.js';

export interface CeleryPoolConnection {
  readonly workers: CeleryWorkersSource;
  readonly client: WorkerClient;
  close(): Promise<void>;
}

export function connectCeleryPool(o: {
  brokerUrl: string;
  queues: readonly string[];
  celery: CelerySpec;
  targets: () => Promise<readonly { readonly pod: string }[]>;
  isDraining: (pod: string) => boolean;
  log: Logger;
  timeoutMs?: number;
}): CeleryPoolConnection {
  const log = o.log.child({ component: 'celery-pool' });
  // env {}: the pool's broker URL is the whole config; the operator's own env is not a worker's
  // (service links put CELERIAC_METRICS_PORT=tcp://... there, and it would win over the options).
  const app = createApp({ broker: o.brokerUrl, logger: log, env: {} });
  const workers = createCeleryWorkersSource({
    control: app.control,
    receiveEvents: async (onEvent, signal) => receiveEvents(await app.broker(), onEvent, signal, { log }),
    targets: o.targets,
    nodeName: celeryNodeName,
    isDraining: o.isDraining,
    events: o.celery.events ?? 'Enable',
    log,
    timeoutMs: o.timeoutMs,
  });
  return {
    workers,
    client: createCeleryDrainClient({ control: app.control, queues: o.queues, nodeName: celeryNodeName, timeoutMs: o.timeoutMs }),
    async close() {
      await workers.close();
      await app.close();
    },
  };
}
