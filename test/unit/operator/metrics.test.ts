// operator/src/metrics.ts: the autoscaler's per-pool series follow the last poll and go with the pool.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createOperatorMetrics } from '../../../operator/src/metrics.js';

async function series(m: ReturnType<typeof createOperatorMetrics>, name: string): Promise<string[]> {
  const text = await m.registry.metrics();
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`))
    .sort();
}

describe('autoscaler metrics', () => {
  it('exports each metric of the last poll and the draining pods, dropping a metric no longer read', async () => {
    const m = createOperatorMetrics();
    m.setAutoscaling('ns', 'shop', {
      metrics: [
        { name: 'backlog', value: 40 },
        { name: 'inFlight', value: 3 },
      ],
      draining: ['shop-a'],
    });
    m.setAutoscaling('ns', 'other', { metrics: [{ name: 'backlog', value: 1 }], draining: [] });
    m.setAutoscaling('ns', 'shop', { metrics: [{ name: 'backlog', value: 12 }], draining: ['shop-a', 'shop-b'] });
    assert.deepEqual(await series(m, 'celeriac_autoscaler_metric_value'), [
      'celeriac_autoscaler_metric_value{namespace="ns",workerpool="other",metric="backlog"} 1',
      'celeriac_autoscaler_metric_value{namespace="ns",workerpool="shop",metric="backlog"} 12',
    ]);
    assert.deepEqual(await series(m, 'celeriac_autoscaler_draining_pods'), [
      'celeriac_autoscaler_draining_pods{namespace="ns",workerpool="other"} 0',
      'celeriac_autoscaler_draining_pods{namespace="ns",workerpool="shop"} 2',
    ]);
  });

  it('drops every series of a pool that stops autoscaling or is deleted', async () => {
    const m = createOperatorMetrics();
    m.setAutoscaling('ns', 'a', { metrics: [{ name: 'backlog', value: 5 }], draining: [] });
    m.setAutoscaling('ns', 'b', { metrics: [{ name: 'backlog', value: 6 }], draining: [] });
    m.desiredReplicas.set({ namespace: 'ns', workerpool: 'b' }, 2);
    m.setAutoscaling('ns', 'a', null);
    m.forgetWorkerPool('ns', 'b');
    assert.deepEqual(await series(m, 'celeriac_autoscaler_metric_value'), []);
    assert.deepEqual(await series(m, 'celeriac_autoscaler_draining_pods'), []);
    assert.deepEqual(await series(m, 'celeriac_autoscaler_desired_replicas'), []);
  });
});
