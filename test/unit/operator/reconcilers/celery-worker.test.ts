import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { celeryNodeName, podOfCeleryNode } from '../../../../operator/src/reconcilers/celery-worker.js';
import { workerDeployment } from '../../../../operator/src/reconcilers/worker-deployment.js';
import type { TaskQueue, WorkerPool } from '../../../../operator/src/types.js';

function pool(spec: Partial<WorkerPool['spec']> = {}): WorkerPool {
  return {
    apiVersion: 'celeriac.io/v1alpha1',
    kind: 'WorkerPool',
    metadata: { name: 'py', namespace: 'prod', uid: 'uid-1', generation: 1 },
    spec: { queues: ['default', 'reports'], template: { image: 'shop-py:1' }, celery: { app: 'proj.celery:app' }, ...spec },
  };
}

function tq(name: string, queue: string, broker: TaskQueue['spec']['broker']): TaskQueue {
  return {
    apiVersion: 'celeriac.io/v1alpha1',
    kind: 'TaskQueue',
    metadata: { name, namespace: 'prod' },
    spec: { broker, queue: { name: queue, priorityLevels: 10 } },
  };
}

type Container = {
  command: string[];
  args: string[];
  env: { name: string; value?: string; valueFrom?: unknown }[];
  ports: unknown[];
  readinessProbe?: { exec: { command: string[] } };
  startupProbe?: unknown;
  livenessProbe?: unknown;
  lifecycle: { preStop: { exec: { command: string[] } } };
};
function container(p: WorkerPool, queues: TaskQueue[]): Container {
  const d = workerDeployment({ pool: p, queues, replicas: 2 }) as unknown as { spec: { template: { spec: { containers: Container[] } } } };
  return d.spec.template.spec.containers[0]!;
}

const amqp = { type: 'amqp', url: 'amqp://guest:guest@rabbit:5672/%2F' } as const;
const queues = [tq('default', 'celery', amqp), tq('reports', 'reports', amqp)];

describe('Celery worker container (spec.celery)', () => {
  it('runs `celery -A <app> worker` with the queues, concurrency, prefetch, pool and the pod name as nodename', () => {
    const c = container(pool({ concurrency: 8, prefetchMultiplier: 4 }), queues);
    assert.deepEqual(c.command, ['celery']);
    assert.deepEqual(c.args, [
      '-A',
      'proj.celery:app',
      'worker',
      '-Q',
      'celery,reports',
      '-c',
      '8',
      '--prefetch-multiplier',
      '4',
      '-P',
      'prefork',
      '-n',
      'celery@$(POD_NAME)',
      '--without-mingle',
      '--without-gossip',
    ]);
  });

  it('takes the pool, mingle, gossip and log level from the spec and appends template.args', () => {
    const p = pool({
      celery: { app: 'proj', pool: 'threads', withoutMingle: false, withoutGossip: false },
      template: { image: 'i', logLevel: 'warn', args: ['--max-tasks-per-child', '10'] },
    });
    const args = container(p, [queues[0]!]).args;
    assert.deepEqual(args.slice(args.indexOf('-P')), ['-P', 'threads', '-n', 'celery@$(POD_NAME)', '-l', 'WARNING', '--max-tasks-per-child', '10']);
  });

  it('gives Celery its broker URL without celeriac URL options, after POD_NAME so the kubelet expands it', () => {
    const env = container(pool(), queues).env;
    const names = env.map((e) => e.name);
    assert.ok(names.indexOf('POD_NAME') < names.indexOf('CELERY_BROKER_URL'));
    assert.ok(names.indexOf('CELERIAC_BROKER_URL') < names.indexOf('CELERY_BROKER_URL'));
    assert.equal(env.find((e) => e.name === 'CELERIAC_BROKER_URL')?.value, 'amqp://guest:guest@rabbit:5672/%2F', 'no ?maxPriority: kombu does not know it');
    assert.equal(env.find((e) => e.name === 'CELERY_BROKER_URL')?.value, '$(CELERIAC_BROKER_URL)');
    assert.equal(env.find((e) => e.name === 'CELERY_APP')?.value, 'proj.celery:app');
    assert.ok(!names.includes('CELERIAC_SHUTDOWN_TIMEOUT_MS'), 'a runtime setting Celery does not read');
  });

  it('checks readiness and shuts down warm over the pidbox, addressed to the pod’s own node; no HTTP probes or port', () => {
    const c = container(pool(), queues);
    assert.deepEqual(c.readinessProbe?.exec.command, ['sh', '-c', 'exec celery -A "$CELERY_APP" inspect ping --timeout 5 -d "celery@$POD_NAME"']);
    assert.deepEqual(c.lifecycle.preStop.exec.command, [
      'sh',
      '-c',
      'celery -A "$CELERY_APP" control shutdown --timeout 1 -d "celery@$POD_NAME" >/dev/null 2>&1 || true',
    ]);
    assert.equal(c.startupProbe, undefined);
    assert.equal(c.livenessProbe, undefined);
    assert.deepEqual(c.ports, []);
  });

  it('maps nodenames to pods and back', () => {
    assert.equal(celeryNodeName('py-7d9-abc'), 'celery@py-7d9-abc');
    assert.equal(podOfCeleryNode('celery@py-7d9-abc'), 'py-7d9-abc');
    assert.equal(podOfCeleryNode('worker1@host'), null);
  });
});
