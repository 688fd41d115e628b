/**
 * Pure: the worker container of a WorkerPool that runs Python Celery workers (`spec.celery`).
 *
 * - Command line: `celery -A <app> worker -Q <queues> -c <concurrency> --prefetch-multiplier <n>
 *   -P <pool> -n celery@$(POD_NAME)` plus `--without-mingle` / `--without-gossip` (default on) and
 *   `-l`; the user's `template.args` come last. Heartbeats stay on: they are worker events the
 *   operator reads, and they cost one small message every 2 s.
 * - Hostname = `celery@<pod name>`: the autoscaler finds a pod's worker by it (inspect, drain).
 * - Broker: `CELERY_BROKER_URL`, which Celery reads before its own config (celery/app/utils.py
 *   `broker_url`), built from the same env as celeriac workers get (the password stays in the
 *   Secret). celeriac's URL options (maxPriority, tlsInsecure) are not added: kombu does not know
 *   them; priorities and TLS belong in the Celery app's own settings.
 * - No HTTP server in a Celery worker: readiness is `celery inspect ping` to the pod's own node
 *   (so Ready means "answers remote control", which the autoscaler needs), and the preStop hook
 *   asks for Celery's warm shutdown over the pidbox (`control shutdown`, checked against Celery 5.2
 *   and 5.7 workers; the worker exits though the client reports no reply): stop consuming, give
 *   prefetched messages back, let running tasks finish. The kubelet's SIGTERM after it asks for the
 *   same warm shutdown again (Celery only sets its stop flag once more), and tasks still running
 *   when the grace period ends are killed: size terminationGracePeriodSeconds to the longest task.
 */
import type { V1Container, V1EnvVar } from '@kubernetes/client-node';
import type { CelerySpec, TaskQueue, WorkerPool } from '../types.js';

/** Celery's defaults that the CRD repeats (`default:` in crds/celeriac.io_workerpools.yaml). */
export const CELERY_DEFAULTS = { pool: 'prefork', withoutMingle: true, withoutGossip: true, events: 'Enable' } as const;

/** The nodename prefix: a pod's worker is `celery@<pod name>`. */
export const CELERY_NODE_PREFIX = 'celery@';

/** The Celery worker nodename of a pod. */
export function celeryNodeName(pod: string): string {
  return `${CELERY_NODE_PREFIX}${pod}`;
}

/** The pod a Celery nodename belongs to (null for a worker not named by this operator). */
export function podOfCeleryNode(node: string): string | null {
  return node.startsWith(CELERY_NODE_PREFIX) ? node.slice(CELERY_NODE_PREFIX.length) : null;
}

/** celeriac's log levels -> Celery's (`-l`). */
const LOG_LEVELS: Record<string, string> = { trace: 'DEBUG', debug: 'DEBUG', info: 'INFO', warn: 'WARNING', error: 'ERROR' };

/** `celery` arguments (after the entrypoint) for the pool's workers. */
export function celeryWorkerArgs(
  pool: WorkerPool,
  queues: readonly TaskQueue[],
  celery: CelerySpec,
  o: { concurrency: number; prefetchMultiplier: number },
): string[] {
  const s = pool.spec;
  const args = [
    '-A',
    celery.app,
    'worker',
    '-Q',
    queues.map((q) => q.spec.queue.name).join(','),
    '-c',
    String(o.concurrency),
    '--prefetch-multiplier',
    String(o.prefetchMultiplier),
    '-P',
    celery.pool ?? CELERY_DEFAULTS.pool,
    // $(POD_NAME) is expanded by the kubelet from the container env.
    '-n',
    celeryNodeName('$(POD_NAME)'),
  ];
  if (celery.withoutMingle ?? CELERY_DEFAULTS.withoutMingle) args.push('--without-mingle');
  if (celery.withoutGossip ?? CELERY_DEFAULTS.withoutGossip) args.push('--without-gossip');
  if (s.template.logLevel) args.push('-l', LOG_LEVELS[s.template.logLevel] ?? s.template.logLevel.toUpperCase());
  return [...args, ...(s.template.args ?? [])];
}

/** The Celery-specific parts of the worker container: command, args, env, probes, preStop. */
export function celeryContainer(
  pool: WorkerPool,
  queues: readonly TaskQueue[],
  celery: CelerySpec,
  o: { concurrency: number; prefetchMultiplier: number; brokerEnv: readonly V1EnvVar[] },
): Pick<V1Container, 'command' | 'args' | 'env' | 'readinessProbe' | 'lifecycle'> {
  // `sh -c` because exec hooks and probes get no $(VAR) expansion; the app name is passed as an
  // env var, never pasted into the shell text.
  const self = (command: string) => `celery -A "$CELERY_APP" ${command} -d "${CELERY_NODE_PREFIX}$POD_NAME"`;
  return {
    command: pool.spec.template.command ?? ['celery'],
    args: celeryWorkerArgs(pool, queues, celery, o),
    env: [
      ...o.brokerEnv,
      // Defined after CELERIAC_BROKER_URL, so the kubelet expands it.
      { name: 'CELERY_BROKER_URL', value: '$(CELERIAC_BROKER_URL)' },
      { name: 'CELERY_APP', value: celery.app },
    ],
    readinessProbe: { exec: { command: ['sh', '-c', `exec ${self('inspect ping --timeout 5')}`] }, periodSeconds: 10, timeoutSeconds: 10, failureThreshold: 3 },
    // A worker never replies to `shutdown`, so the client exits 69 ("No nodes replied") even when
    // the request went out: `|| true` spares every pod deletion a FailedPreStopHook Warning. Had
    // the request really failed, the kubelet's SIGTERM right after asks for the same warm shutdown.
    lifecycle: { preStop: { exec: { command: ['sh', '-c', `${self('control shutdown --timeout 1')} >/dev/null 2>&1 || true`] } } },
  };
}
