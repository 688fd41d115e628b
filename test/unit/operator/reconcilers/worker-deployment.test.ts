import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  brokerEnv,
  poolSelectorString,
  sameBroker,
  shutdownTimeoutMs,
  workerArgs,
  workerDeployment,
  workerDisruptionBudget,
} from '../../../../operator/src/reconcilers/worker-deployment.js';
import type { TaskQueue, WorkerPool } from '../../../../operator/src/types.js';

function pool(spec: Partial<WorkerPool['spec']> = {}): WorkerPool {
  return {
    apiVersion: 'celeriac.io/v1alpha1',
    kind: 'WorkerPool',
    metadata: { name: 'shop', namespace: 'prod', uid: 'uid-1', generation: 3 },
    spec: { queues: ['default', 'reports'], template: { image: 'img:1', tasksModule: '/app/tasks.js' }, ...spec },
  };
}

function tq(name: string, queue: string, broker: TaskQueue['spec']['broker'] = { type: 'redis', urlSecretRef: { name: 'redis' } }): TaskQueue {
  return { apiVersion: 'celeriac.io/v1alpha1', kind: 'TaskQueue', metadata: { name, namespace: 'prod' }, spec: { broker, queue: { name: queue } } };
}

const queues = [tq('default', 'celery'), tq('reports', 'reports')];

describe('workerArgs', () => {
  it('builds the worker command line from the pool and its queues, defaults included', () => {
    assert.deepEqual(workerArgs(pool(), queues), [
      'worker',
      '-A',
      '/app/tasks.js',
      '-Q',
      'celery,reports',
      '-c',
      '4',
      '--prefetch-multiplier',
      '1',
      '--metrics-port',
      '9540',
    ]);
  });

  it('carries concurrency, prefetch, port, log level and extra args', () => {
    const p = pool({
      concurrency: 16,
      prefetchMultiplier: 2,
      metricsPort: 9999,
      template: { image: 'i', tasksModule: 'm.js', logLevel: 'debug', args: ['--max-tasks-per-child', '100'] },
    });
    assert.deepEqual(workerArgs(p, [queues[0]!]), [
      'worker',
      '-A',
      'm.js',
      '-Q',
      'celery',
      '-c',
      '16',
      '--prefetch-multiplier',
      '2',
      '--metrics-port',
      '9999',
      '-l',
      'debug',
      '--max-tasks-per-child',
      '100',
    ]);
  });
});

describe('brokerEnv', () => {
  it('takes the whole URL from the Secret with urlSecretRef', () => {
    assert.deepEqual(brokerEnv({ type: 'redis', urlSecretRef: { name: 's' } }), [
      { name: 'CELERIAC_BROKER_URL', valueFrom: { secretKeyRef: { name: 's', key: 'url' } } },
    ]);
    assert.deepEqual(brokerEnv({ type: 'amqp', urlSecretRef: { name: 's', key: 'broker' } })[0]?.valueFrom?.secretKeyRef?.key, 'broker');
  });

  it('uses a password-free spec URL as a plain value', () => {
    assert.deepEqual(brokerEnv({ type: 'redis', url: 'redis://r:6379/1' }), [{ name: 'CELERIAC_BROKER_URL', value: 'redis://r:6379/1' }]);
  });

  it('assembles host, default port, database and credentials by $(VAR) expansion, never the password itself', () => {
    const env = brokerEnv({ type: 'redis', host: 'redis.svc', database: 2, credentialsSecretRef: { name: 'c' } });
    assert.deepEqual(env, [
      { name: 'CELERIAC_BROKER_USERNAME', valueFrom: { secretKeyRef: { name: 'c', key: 'username' } } },
      { name: 'CELERIAC_BROKER_PASSWORD', valueFrom: { secretKeyRef: { name: 'c', key: 'password' } } },
      { name: 'CELERIAC_BROKER_URL', value: 'redis://$(CELERIAC_BROKER_USERNAME):$(CELERIAC_BROKER_PASSWORD)@redis.svc:6379/2' },
    ]);
  });

  it('encodes the AMQP vhost and picks TLS schemes and ports', () => {
    assert.equal(brokerEnv({ type: 'amqp', host: 'mq' })[0]?.value, 'amqp://mq:5672/%2F');
    assert.equal(brokerEnv({ type: 'amqp', host: 'mq', virtualHost: 'shop', tls: { enabled: true } })[0]?.value, 'amqps://mq:5671/shop');
    assert.equal(brokerEnv({ type: 'redis', host: 'r', tls: { enabled: true } })[0]?.value, 'rediss://r:6380/0');
    assert.equal(brokerEnv({ type: 'redis', host: 'fd00::1', port: 7000 })[0]?.value, 'redis://[fd00::1]:7000/0');
  });

  it('passes spec.broker.tls on to the workers as the runtime URL options, on TLS URLs only', () => {
    const insecure = { enabled: true, insecureSkipVerify: true, serverName: 'redis.internal' };
    assert.equal(brokerEnv({ type: 'redis', host: 'r', tls: insecure })[0]?.value, 'rediss://r:6380/0?tlsInsecure=true&tlsServerName=redis.internal');
    assert.equal(
      brokerEnv({ type: 'amqp', url: 'amqps://mq/shop?heartbeat=30', tls: { serverName: 'mq.internal' } })[0]?.value,
      'amqps://mq/shop?heartbeat=30&tlsServerName=mq.internal',
    );
    const withCreds = brokerEnv({ type: 'amqp', host: 'mq', tls: insecure, credentialsSecretRef: { name: 'c' } });
    assert.match(
      withCreds.find((e) => e.name === 'CELERIAC_BROKER_URL')!.value!,
      /^amqps:\/\/\$\(CELERIAC_BROKER_USERNAME\).*@mq:5671\/%2F\?tlsInsecure=true&tlsServerName=redis\.internal$/,
    );
    // AMQP priorities become the queues' x-max-priority; Redis keeps them in kombu's sub-lists.
    assert.equal(brokerEnv({ type: 'amqp', host: 'mq' }, 10)[0]?.value, 'amqp://mq:5672/%2F?maxPriority=10');
    assert.equal(brokerEnv({ type: 'redis', host: 'r' }, 10)[0]?.value, 'redis://r:6379/0');
    // Not TLS: nothing to verify, so nothing is added.
    assert.equal(brokerEnv({ type: 'redis', url: 'redis://r:6379/1', tls: { insecureSkipVerify: true } })[0]?.value, 'redis://r:6379/1');
  });
});

describe('workerDeployment broker URL', () => {
  it("gives AMQP workers the highest priorityLevels of the pool's queues as maxPriority", () => {
    const amqp = { type: 'amqp' as const, host: 'mq' };
    const [a, b] = [tq('a', 'a', amqp), tq('b', 'b', amqp)];
    a.spec.queue.priorityLevels = 5;
    b.spec.queue.priorityLevels = 10;
    const env = (workerDeployment({ pool: pool(), queues: [a, b], replicas: 1 }).spec as any).template.spec.containers[0].env as {
      name: string;
      value?: string;
    }[];
    assert.equal(env.find((e) => e.name === 'CELERIAC_BROKER_URL')?.value, 'amqp://mq:5672/%2F?maxPriority=10');
  });
});

describe('sameBroker', () => {
  it('compares broker settings regardless of key order', () => {
    assert.equal(sameBroker({ type: 'redis', host: 'a', port: 1 }, { port: 1, host: 'a', type: 'redis' }), true);
    assert.equal(sameBroker({ type: 'redis', host: 'a' }, { type: 'redis', host: 'b' }), false);
  });
});

describe('workerDeployment', () => {
  it('labels, selects and owns the pods, and sets replicas', () => {
    const d = workerDeployment({ pool: pool(), queues, replicas: 3 });
    assert.equal(d.metadata.name, 'shop');
    assert.equal(d.metadata.namespace, 'prod');
    assert.deepEqual(d.metadata.ownerReferences, [
      { apiVersion: 'celeriac.io/v1alpha1', kind: 'WorkerPool', name: 'shop', uid: 'uid-1', controller: true, blockOwnerDeletion: true },
    ]);
    const spec = d.spec as any;
    assert.equal(spec.replicas, 3);
    assert.deepEqual(spec.selector, { matchLabels: { 'celeriac.io/worker-pool': 'shop' } });
    assert.equal(spec.template.metadata.labels['celeriac.io/worker-pool'], 'shop');
    assert.equal(poolSelectorString(pool()), 'celeriac.io/worker-pool=shop');
  });

  it('runs the worker with metrics port, scrape annotations, health probes, the /drain preStop and the grace period', () => {
    const spec = workerDeployment({ pool: pool({ metricsPort: 9600, terminationGracePeriodSeconds: 120 }), queues, replicas: 1 }).spec as any;
    const pod = spec.template;
    assert.deepEqual(pod.metadata.annotations, { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9600', 'prometheus.io/path': '/metrics' });
    assert.equal(pod.spec.terminationGracePeriodSeconds, 120);
    const c = pod.spec.containers[0];
    assert.deepEqual(c.command, ['celeriac']);
    assert.deepEqual(c.ports, [{ name: 'metrics', containerPort: 9600, protocol: 'TCP' }]);
    assert.deepEqual(c.lifecycle, { preStop: { httpGet: { path: '/drain', port: 'metrics' } } });
    // Ready means consuming: a draining pod turns NotReady (and leaves Services), alive stays /healthz.
    assert.deepEqual(c.readinessProbe.httpGet, { path: '/readyz', port: 'metrics' });
    assert.equal(c.livenessProbe.httpGet.path, '/healthz');
    assert.deepEqual(
      c.env.slice(0, 3).map((e: { name: string }) => e.name),
      ['POD_NAME', 'POD_NAMESPACE', 'CELERIAC_BROKER_URL'],
    );
  });

  it("gives the worker a shutdown timeout of the pod's grace period minus a margin, unless the user sets one", () => {
    const timeout = (spec: Partial<WorkerPool['spec']>) =>
      (workerDeployment({ pool: pool(spec), queues, replicas: 1 }).spec as any).template.spec.containers[0].env.filter(
        (e: { name: string }) => e.name === 'CELERIAC_SHUTDOWN_TIMEOUT_MS',
      );
    assert.deepEqual(timeout({}), [{ name: 'CELERIAC_SHUTDOWN_TIMEOUT_MS', value: '290000' }], 'default grace 300 s: 10 s kept back');
    assert.deepEqual(timeout({ terminationGracePeriodSeconds: 60 }), [{ name: 'CELERIAC_SHUTDOWN_TIMEOUT_MS', value: '50000' }]);
    assert.equal(shutdownTimeoutMs(10), 5_000, 'a short grace period keeps half back');
    assert.equal(shutdownTimeoutMs(1), 500);
    assert.equal(shutdownTimeoutMs(0), 0);
    const own = { name: 'CELERIAC_SHUTDOWN_TIMEOUT_MS', value: '1000' };
    assert.deepEqual(timeout({ template: { image: 'i', tasksModule: 'm.js', env: [own] } }), [own], "the user's value, once");
    const override = { template: { image: 'i', tasksModule: 'm.js', podTemplate: { spec: { containers: [{ name: 'worker', env: [own] }] } } } };
    assert.deepEqual(timeout(override as Partial<WorkerPool['spec']>), [own], "the worker container override's value, once");
  });

  it("gives the worker a state folder in the pod's /tmp emptyDir (early-acked tasks a kill cut off are settled by the restarted container), unless the user sets one", () => {
    const stateDir = (spec: Partial<WorkerPool['spec']>) =>
      (workerDeployment({ pool: pool(spec), queues, replicas: 1 }).spec as any).template.spec.containers[0].env.filter(
        (e: { name: string }) => e.name === 'CELERIAC_STATE_DIR',
      );
    assert.deepEqual(stateDir({}), [{ name: 'CELERIAC_STATE_DIR', value: '/tmp/celeriac-state' }]);
    const own = { name: 'CELERIAC_STATE_DIR', value: '/data/state' };
    assert.deepEqual(stateDir({ template: { image: 'i', tasksModule: 'm.js', env: [own] } }), [own], "the user's value, once");
  });

  it("turns off service links (the chart's celeriac-metrics Service would set CELERIAC_METRICS_PORT=tcp://…), unless the pod template turns them on", () => {
    const links = (spec: Partial<WorkerPool['spec']>) =>
      (workerDeployment({ pool: pool(spec), queues, replicas: 1 }).spec as any).template.spec.enableServiceLinks;
    assert.equal(links({}), false);
    assert.equal(links({ template: { image: 'i', tasksModule: 'm.js', podTemplate: { spec: { enableServiceLinks: true } } } }), true);
  });

  it('probes the start with a startup probe: soon after the process starts, then every second until the worker listens', () => {
    const c = (workerDeployment({ pool: pool(), queues, replicas: 1 }).spec as any).template.spec.containers[0];
    // Readiness and liveness wait for it, so the first readiness probe is not refused and a started
    // pod is Ready within a second instead of at the next 10 s readiness period.
    assert.deepEqual(c.startupProbe.httpGet, { path: '/healthz', port: 'metrics' });
    assert.ok(c.startupProbe.initialDelaySeconds >= 1, 'not probed before the process can listen');
    assert.equal(c.startupProbe.periodSeconds, 1);
    assert.ok(c.startupProbe.periodSeconds * c.startupProbe.failureThreshold >= 120, 'a slow broker connect is not a failed start');
    assert.equal(c.readinessProbe.initialDelaySeconds, undefined);
  });

  it('merges pod overrides: pod fields, the "worker" container, sidecars, labels that cannot steal the selector', () => {
    const p = pool({
      template: {
        image: 'img:1',
        tasksModule: 't.js',
        env: [{ name: 'A', value: '1' }],
        podTemplate: {
          metadata: { labels: { team: 'x', 'celeriac.io/worker-pool': 'evil' }, annotations: { note: 'n' } },
          spec: {
            nodeSelector: { pool: 'workers' },
            serviceAccountName: 'tasks',
            containers: [
              { name: 'worker', volumeMounts: [{ name: 'v', mountPath: '/v' }], env: [{ name: 'B', value: '2' }] },
              { name: 'sidecar', image: 'side:1' },
            ],
          },
        },
      },
    });
    const pod = (workerDeployment({ pool: p, queues, replicas: 1 }).spec as any).template;
    assert.equal(pod.metadata.labels.team, 'x');
    assert.equal(pod.metadata.labels['celeriac.io/worker-pool'], 'shop');
    assert.equal(pod.metadata.annotations.note, 'n');
    assert.deepEqual(pod.spec.nodeSelector, { pool: 'workers' });
    assert.equal(pod.spec.serviceAccountName, 'tasks');
    assert.deepEqual(
      pod.spec.containers.map((c: { name: string }) => c.name),
      ['worker', 'sidecar'],
    );
    const worker = pod.spec.containers[0];
    assert.deepEqual(worker.volumeMounts, [
      { name: 'v', mountPath: '/v' },
      { name: 'celeriac-tmp', mountPath: '/tmp' },
    ]);
    assert.deepEqual(worker.env.slice(-2), [
      { name: 'A', value: '1' },
      { name: 'B', value: '2' },
    ]);
    assert.equal(worker.image, 'img:1', 'the override cannot drop the image');
  });

  it('runs workers as the chart runs the operator: non-root, read-only root with a writable /tmp, no capabilities, RuntimeDefault seccomp', () => {
    const pod = (workerDeployment({ pool: pool(), queues, replicas: 1 }).spec as any).template.spec;
    assert.deepEqual(pod.securityContext, {
      runAsNonRoot: true,
      runAsUser: 10001,
      runAsGroup: 10001,
      fsGroup: 10001,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    const c = pod.containers[0];
    assert.deepEqual(c.securityContext, {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
    });
    assert.deepEqual(pod.volumes, [{ name: 'celeriac-tmp', emptyDir: {} }]);
    assert.deepEqual(c.volumeMounts, [{ name: 'celeriac-tmp', mountPath: '/tmp' }]);
  });

  it('lets the pod template override the security contexts and /tmp', () => {
    const podSecurity = { runAsUser: 2000, runAsNonRoot: true };
    const workerSecurity = { readOnlyRootFilesystem: false };
    const p = pool({
      template: {
        image: 'img:1',
        tasksModule: 't.js',
        podTemplate: {
          spec: {
            securityContext: podSecurity,
            volumes: [{ name: 'scratch', emptyDir: { medium: 'Memory' } }],
            containers: [{ name: 'worker', securityContext: workerSecurity, volumeMounts: [{ name: 'scratch', mountPath: '/tmp' }] }],
          },
        },
      },
    });
    const pod = (workerDeployment({ pool: p, queues, replicas: 1 }).spec as any).template.spec;
    assert.deepEqual(pod.securityContext, podSecurity);
    assert.deepEqual(pod.containers[0].securityContext, workerSecurity);
    assert.deepEqual(pod.volumes, [{ name: 'scratch', emptyDir: { medium: 'Memory' } }], 'no second /tmp volume');
    assert.deepEqual(pod.containers[0].volumeMounts, [{ name: 'scratch', mountPath: '/tmp' }]);
  });

  it('puts the credentials hash on the pods only when there is one', () => {
    const with_ = (workerDeployment({ pool: pool(), queues, replicas: 1, credentialsHash: 'abcd' }).spec as any).template.metadata.annotations;
    const without = (workerDeployment({ pool: pool(), queues, replicas: 1, credentialsHash: null }).spec as any).template.metadata.annotations;
    assert.equal(with_['celeriac.io/broker-credentials-hash'], 'abcd');
    assert.ok(!('celeriac.io/broker-credentials-hash' in without));
  });

  it('refuses to build without a TaskQueue', () => {
    assert.throws(() => workerDeployment({ pool: pool(), queues: [], replicas: 1 }), /no TaskQueues given/);
  });
});

describe('workerDisruptionBudget', () => {
  it('keeps maxUnavailable 1 by default, takes a percentage, and is absent when disabled', () => {
    const pdb = workerDisruptionBudget(pool())!;
    assert.deepEqual(pdb.spec, { maxUnavailable: 1, selector: { matchLabels: { 'celeriac.io/worker-pool': 'shop' } } });
    assert.equal(workerDisruptionBudget(pool({ podDisruptionBudget: { maxUnavailable: '25%' } }))!.spec.maxUnavailable, '25%');
    assert.equal(workerDisruptionBudget(pool({ podDisruptionBudget: { enabled: false } })), null);
  });
});
