/**
 * Pure: WorkerPool (+ its TaskQueues) -> the Deployment and PodDisruptionBudget that run it.
 * No I/O and no clock, so every field is unit-tested; the reconciler applies the result.
 */
import type { V1Container, V1EnvVar, V1PodSpec } from '@kubernetes/client-node';
import { CONFIG_KEYS } from '../../../runtime/src/app/config.js';
import { canonicalJson, controllerRef } from '../k8s/apply.js';
import { celeryContainer } from './celery-worker.js';
import { POOL_LABEL, type KubeObject, type TaskQueue, type TaskQueueBroker, type WorkerPool } from '../types.js';

export const WORKER_CONTAINER = 'worker';
/** The runtime's env var for its warm shutdown timeout, from its config table. */
const SHUTDOWN_TIMEOUT_ENV = CONFIG_KEYS.find((k) => k.key === 'shutdownTimeoutMs')!.env[0]!;
/** The runtime's env var for its state folder (early-acked tasks a kill cut off are settled at the next start). */
const STATE_DIR_ENV = CONFIG_KEYS.find((k) => k.key === 'stateDir')!.env[0]!;
/**
 * In the pod's /tmp emptyDir, which outlives the container: the worker restarted after a SIGKILL
 * or an OOM kill finds there the early-acked tasks its predecessor was running.
 */
export const WORKER_STATE_DIR = '/tmp/celeriac-state';
/** Timing of the worker's startup probe (see workerDeployment). */
export const WORKER_STARTUP_PROBE = Object.freeze({ initialDelaySeconds: 2, periodSeconds: 1, failureThreshold: 300 });
/**
 * Worker pods run as the chart runs the operator pod (charts/celeriac/values.yaml): the image's
 * non-root user, no capabilities, RuntimeDefault seccomp and a read-only root filesystem with an
 * emptyDir at /tmp. `spec.template.podTemplate` replaces either context, or mounts its own /tmp.
 */
export const WORKER_POD_SECURITY_CONTEXT = Object.freeze({
  runAsNonRoot: true,
  runAsUser: 10001,
  runAsGroup: 10001,
  fsGroup: 10001,
  seccompProfile: { type: 'RuntimeDefault' },
});
export const WORKER_SECURITY_CONTEXT = Object.freeze({
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  runAsNonRoot: true,
  capabilities: { drop: ['ALL'] },
});
const TMP_VOLUME = 'celeriac-tmp';
export const DEFAULTS = {
  concurrency: 4,
  prefetchMultiplier: 1,
  replicas: 1,
  metricsPort: 9540,
  terminationGracePeriodSeconds: 300,
  maxUnavailable: 1 as number | string,
};

/**
 * Seconds of the pod's grace period kept back from the worker's warm shutdown (at most half the
 * period). The grace period starts at the pod's deletion, before the preStop /drain; once the
 * shutdown timeout passes, the worker still has to record what it cuts off (late-ack messages back
 * to the queue, FAILURE(WorkerLostError) for early-acked tasks) and close its connections, a few
 * broker and backend round trips, maybe across a reconnect. 10 s covers that; the kubelet's SIGKILL
 * at the end of the period would lose exactly the tasks the worker was about to record.
 */
export const SHUTDOWN_MARGIN_SECONDS = 10;

/** The worker's shutdown timeout (CELERIAC_SHUTDOWN_TIMEOUT_MS) for a pod grace period: grace minus the margin. */
export function shutdownTimeoutMs(graceSeconds: number): number {
  return Math.max(0, Math.round((graceSeconds - Math.min(SHUTDOWN_MARGIN_SECONDS, graceSeconds / 2)) * 1000));
}

/** Labels on the pool's Deployment, pods and PDB. The selector uses POOL_LABEL only. */
export function poolLabels(pool: WorkerPool): Record<string, string> {
  return {
    [POOL_LABEL]: pool.metadata.name,
    'app.kubernetes.io/name': 'celeriac-worker',
    'app.kubernetes.io/instance': pool.metadata.name,
    'app.kubernetes.io/managed-by': 'celeriac-operator',
  };
}

export function poolSelector(pool: WorkerPool): Record<string, string> {
  return { [POOL_LABEL]: pool.metadata.name };
}

/** The selector as the string the scale subresource exposes (`status.selector`). */
export function poolSelectorString(pool: WorkerPool): string {
  return Object.entries(poolSelector(pool))
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

const DEFAULT_PORTS = { redis: 6379, rediss: 6380, amqp: 5672, amqps: 5671 } as const;

/** True when two TaskQueues point at the same broker with the same credentials. */
export function sameBroker(a: TaskQueueBroker, b: TaskQueueBroker): boolean {
  return canonicalJson(a) === canonicalJson(b);
}

/**
 * Broker settings as container env: CELERIAC_BROKER_URL, from the Secret when the URL or the
 * credentials live in one (the password never appears in the Deployment). With host +
 * credentialsSecretRef, the URL is put together by Kubernetes' $(VAR) expansion, so the Secret
 * must have both keys (an empty username is fine for Redis) and the password must be URL-safe.
 */
export function brokerEnv(broker: TaskQueueBroker, maxPriority = 0, o: { runtimeOptions?: boolean } = {}): V1EnvVar[] {
  if (broker.urlSecretRef) {
    // The URL is the Secret's as it is: worker URL options (tlsInsecure, tlsServerName, maxPriority) belong in it.
    return [{ name: 'CELERIAC_BROKER_URL', valueFrom: { secretKeyRef: { name: broker.urlSecretRef.name, key: broker.urlSecretRef.key ?? 'url' } } }];
  }
  // Python Celery workers read the URL with kombu, which does not know the runtime's options.
  const withQuery = (url: string) => (o.runtimeOptions === false ? url : withOptions(url, broker, maxPriority));
  if (broker.url) return [{ name: 'CELERIAC_BROKER_URL', value: withQuery(broker.url) }];
  const tls = broker.tls?.enabled === true;
  const scheme = broker.type === 'redis' ? (tls ? 'rediss' : 'redis') : tls ? 'amqps' : 'amqp';
  const port = broker.port ?? DEFAULT_PORTS[scheme];
  const path = broker.type === 'redis' ? `/${broker.database ?? 0}` : `/${encodeURIComponent(broker.virtualHost ?? '/')}`;
  const host = broker.host ?? 'localhost';
  const hostPort = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  const creds = broker.credentialsSecretRef;
  if (!creds) return [{ name: 'CELERIAC_BROKER_URL', value: withQuery(`${scheme}://${hostPort}${path}`) }];
  return [
    { name: 'CELERIAC_BROKER_USERNAME', valueFrom: { secretKeyRef: { name: creds.name, key: creds.usernameKey ?? 'username' } } },
    { name: 'CELERIAC_BROKER_PASSWORD', valueFrom: { secretKeyRef: { name: creds.name, key: creds.passwordKey ?? 'password' } } },
    { name: 'CELERIAC_BROKER_URL', value: withQuery(`${scheme}://$(CELERIAC_BROKER_USERNAME):$(CELERIAC_BROKER_PASSWORD)@${hostPort}${path}`) },
  ];
}

/**
 * Appends the runtime's URL options for the workers: spec.broker.tls on a TLS URL
 * (runtime/src/transport/tls-params.ts; on a plain URL they mean nothing and the runtime refuses
 * them), and on AMQP the queues' priority levels as `maxPriority` (x-max-priority).
 */
function withOptions(url: string, broker: TaskQueueBroker, maxPriority: number): string {
  const q = new URLSearchParams();
  if (/^(rediss|amqps):/i.test(url)) {
    if (broker.tls?.insecureSkipVerify) q.set('tlsInsecure', 'true');
    if (broker.tls?.serverName) q.set('tlsServerName', broker.tls.serverName);
  }
  if (broker.type === 'amqp' && maxPriority > 0) q.set('maxPriority', String(maxPriority));
  const query = q.toString();
  return query ? `${url}${url.includes('?') ? '&' : '?'}${query}` : url;
}

/** The worker command line (after the entrypoint). */
export function workerArgs(pool: WorkerPool, queues: readonly TaskQueue[]): string[] {
  const s = pool.spec;
  const args = [
    'worker',
    '-A',
    // Required by the CRD unless spec.celery is set (then celeryContainer builds the command line).
    s.template.tasksModule ?? '',
    '-Q',
    queues.map((q) => q.spec.queue.name).join(','),
    '-c',
    String(s.concurrency ?? DEFAULTS.concurrency),
    '--prefetch-multiplier',
    String(s.prefetchMultiplier ?? DEFAULTS.prefetchMultiplier),
    '--metrics-port',
    String(s.metricsPort ?? DEFAULTS.metricsPort),
  ];
  if (s.template.logLevel) args.push('-l', s.template.logLevel);
  return [...args, ...(s.template.args ?? [])];
}

export interface WorkerDeploymentInput {
  pool: WorkerPool;
  /** The TaskQueues named in spec.queues, in that order (all on the same broker). */
  queues: readonly TaskQueue[];
  replicas: number;
  /** Hash of the broker credentials (from the Secrets), put on the pods so a rotation rolls them. */
  credentialsHash?: string | null;
}

export const CREDENTIALS_HASH_ANNOTATION = 'celeriac.io/broker-credentials-hash';

/** The Deployment running the pool (applied with server-side apply). */
export function workerDeployment({ pool, queues, replicas, credentialsHash }: WorkerDeploymentInput): KubeObject & { spec: Record<string, unknown> } {
  const s = pool.spec;
  const first = queues[0];
  if (!first) throw new Error(`WorkerPool ${pool.metadata.name}: no TaskQueues given`);
  const port = s.metricsPort ?? DEFAULTS.metricsPort;
  const labels = poolLabels(pool);
  const overrides = s.template.podTemplate ?? {};
  const { containers: extraContainers = [], ...podOverrides } = overrides.spec ?? {};
  const workerOverride = extraContainers.find((c) => c.name === WORKER_CONTAINER);
  const sidecars = extraContainers.filter((c) => c.name !== WORKER_CONTAINER);

  const grace = s.terminationGracePeriodSeconds ?? DEFAULTS.terminationGracePeriodSeconds;
  const userEnv = [...(s.template.env ?? []), ...(workerOverride?.env ?? [])];
  const unlessSet = (name: string, value: string): V1EnvVar[] => (userEnv.some((e) => e.name === name) ? [] : [{ name, value }]);
  // A warm shutdown waits as long as the pod may live (minus the margin), unless the user says otherwise.
  const shutdownEnv = [...unlessSet(SHUTDOWN_TIMEOUT_ENV, String(shutdownTimeoutMs(grace))), ...unlessSet(STATE_DIR_ENV, WORKER_STATE_DIR)];
  const podEnv: V1EnvVar[] = [
    { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
  ];
  const env: V1EnvVar[] = [
    ...podEnv,
    // One broker per pool (checked by the reconciler); the runtime has one x-max-priority for it.
    ...brokerEnv(first.spec.broker, Math.max(...queues.map((q) => q.spec.queue.priorityLevels ?? 0))),
    ...shutdownEnv,
    ...(s.template.env ?? []),
  ];
  const ownTmp = (workerOverride?.volumeMounts ?? []).some((m) => m.mountPath === '/tmp');
  const worker: V1Container = {
    ...(workerOverride ?? {}),
    securityContext: workerOverride?.securityContext ?? structuredClone(WORKER_SECURITY_CONTEXT),
    volumeMounts: [...(workerOverride?.volumeMounts ?? []), ...(ownTmp ? [] : [{ name: TMP_VOLUME, mountPath: '/tmp' }])],
    name: WORKER_CONTAINER,
    // A worker that exits on an error leaves its last log lines as the termination message, which
    // the WorkerPool's Ready condition quotes (reason WorkerFailing).
    terminationMessagePolicy: workerOverride?.terminationMessagePolicy ?? 'FallbackToLogsOnError',
    image: s.template.image,
    command: s.template.command ?? ['celeriac'],
    args: workerArgs(pool, queues),
    env: [...env, ...(workerOverride?.env ?? [])],
    ports: [{ name: 'metrics', containerPort: port, protocol: 'TCP' }, ...(workerOverride?.ports ?? [])],
    // The worker listens only once its broker and backend are connected, which takes from about a
    // second to as long as the broker needs. A startup probe follows that real start time: every
    // second from 2 s on (up to 5 min), while readiness and liveness wait until it succeeds. Without
    // it the first readiness probe came at once (refused: a Warning Event per pod) and the next one
    // 10 s later, so a new pod stayed NotReady ~10 s longer than needed and the autoscaler, which
    // scrapes only Ready pods, did not count it.
    startupProbe: { ...WORKER_STARTUP_PROBE, httpGet: { path: '/healthz', port: 'metrics' } },
    // Ready = consuming (/readyz answers 503 once draining), so a pod being drained leaves its
    // Services; the autoscaler still scrapes the pods it drains (autoscaler.ts).
    readinessProbe: { httpGet: { path: '/readyz', port: 'metrics' }, periodSeconds: 5, failureThreshold: 2 },
    livenessProbe: { httpGet: { path: '/healthz', port: 'metrics' }, periodSeconds: 20, failureThreshold: 6, timeoutSeconds: 5 },
    // The worker stops consuming and hands back prefetched messages before SIGTERM; running tasks
    // then finish within terminationGracePeriodSeconds minus SHUTDOWN_MARGIN_SECONDS (warm shutdown).
    lifecycle: { preStop: { httpGet: { path: '/drain', port: 'metrics' } } },
  };
  if (s.celery) {
    // Python Celery workers: their own command line, env, probes and preStop; no metrics port.
    const celery = celeryContainer(pool, queues, s.celery, {
      concurrency: s.concurrency ?? DEFAULTS.concurrency,
      prefetchMultiplier: s.prefetchMultiplier ?? DEFAULTS.prefetchMultiplier,
      brokerEnv: brokerEnv(first.spec.broker, 0, { runtimeOptions: false }),
    });
    Object.assign(worker, celery, {
      env: [...podEnv, ...celery.env!, ...(s.template.env ?? []), ...(workerOverride?.env ?? [])],
      ports: workerOverride?.ports ?? [],
    });
    delete worker.startupProbe;
    delete worker.livenessProbe;
  }
  if (s.template.imagePullPolicy) worker.imagePullPolicy = s.template.imagePullPolicy;
  if (s.template.resources) worker.resources = s.template.resources;

  const podSpec: V1PodSpec = {
    ...(podOverrides as Partial<V1PodSpec>),
    securityContext: podOverrides.securityContext ?? structuredClone(WORKER_POD_SECURITY_CONTEXT),
    volumes: [...(podOverrides.volumes ?? []), ...(ownTmp ? [] : [{ name: TMP_VOLUME, emptyDir: {} }])],
    terminationGracePeriodSeconds: grace,
    // Kubernetes puts every Service of the namespace into the env as <NAME>_PORT=tcp://…: a Service
    // called celeriac-metrics (the chart's) would set CELERIAC_METRICS_PORT, which the worker reads
    // as its own setting. Workers find services by DNS; a pod template can turn the links back on.
    enableServiceLinks: podOverrides.enableServiceLinks ?? false,
    containers: [worker, ...sidecars],
  };

  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: pool.metadata.name,
      namespace: pool.metadata.namespace,
      labels,
      ownerReferences: [controllerRef(pool)],
    },
    spec: {
      replicas,
      selector: { matchLabels: poolSelector(pool) },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: 0 } },
      template: {
        metadata: {
          labels: { ...(overrides.metadata?.labels ?? {}), ...labels },
          annotations: {
            ...(overrides.metadata?.annotations ?? {}),
            ...(s.celery ? {} : { 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(port), 'prometheus.io/path': '/metrics' }),
            ...(credentialsHash ? { [CREDENTIALS_HASH_ANNOTATION]: credentialsHash } : {}),
          },
        },
        spec: podSpec,
      },
    },
  };
}

/** The PodDisruptionBudget for the pool's pods, or null when disabled. */
export function workerDisruptionBudget(pool: WorkerPool): (KubeObject & { spec: Record<string, unknown> }) | null {
  if (pool.spec.podDisruptionBudget?.enabled === false) return null;
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: {
      name: pool.metadata.name,
      namespace: pool.metadata.namespace,
      labels: poolLabels(pool),
      ownerReferences: [controllerRef(pool)],
    },
    spec: {
      maxUnavailable: pool.spec.podDisruptionBudget?.maxUnavailable ?? DEFAULTS.maxUnavailable,
      selector: { matchLabels: poolSelector(pool) },
    },
  };
}
