// The autoscaler's connection to a Celery pool is configured by the pool's broker URL alone: the
// operator's own environment is not a celeriac app's. Kubernetes puts service links into every
// pod (the chart's Service `celeriac-metrics` gives CELERIAC_METRICS_PORT=tcp://IP:8080), and the
// runtime's config lets CELERIAC_* env win over options; reading them failed every Celery pool's
// metrics on a default install (found by test/cluster/python-workers.test.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { connectCeleryPool } from '../../../../operator/src/autoscaler/celery-pool.js';

describe('connectCeleryPool', () => {
  it("ignores the operator pod's CELERIAC_* env (service links)", async () => {
    const saved = process.env.CELERIAC_METRICS_PORT;
    process.env.CELERIAC_METRICS_PORT = 'tcp://10.96.149.15:8080';
    try {
      const c = connectCeleryPool({
        brokerUrl: 'redis://127.0.0.1:6379/3',
        queues: ['q'],
        celery: { app: 'proj' },
        targets: async () => [],
        isDraining: () => false,
        log: pino({ level: 'silent' }),
      });
      await c.close();
    } finally {
      if (saved === undefined) delete process.env.CELERIAC_METRICS_PORT;
      else process.env.CELERIAC_METRICS_PORT = saved;
    }
  });
});
