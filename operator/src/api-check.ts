/**
 * The operator's start-up check of the Kubernetes API: it must answer, the celeriac.io CRDs must be
 * installed and the operator must be allowed to list them. Each failure says which of these it is:
 * a server that answers "busy" (429 while a new CRD's storage initializes, 503) is not an
 * unreachable one.
 */
import type { Logger } from 'pino';
import { KubeApiError, OperatorError } from './errors.js';
import { sleep } from '../../runtime/src/transport/wait.js';
import { resources, type KubeClient } from './k8s/kube-client.js';

export interface ApiCheckOptions {
  /** The watched namespace; all namespaces when absent. */
  namespace?: string | undefined;
  log: Logger;
  /** Attempts before giving up (the wait grows by a second per attempt). */
  attempts?: number;
  /** Replaceable for tests. */
  sleep?: (ms: number) => Promise<void>;
}

/** Answers that mean "the server is there but not ready for this request yet". */
const BUSY = new Set([429, 503]);

/** Resolves once WorkerPools, TaskQueues and TaskSchedules can be listed; throws an OperatorError that says what to fix. */
export async function checkApi(kube: KubeClient, o: ApiCheckOptions): Promise<void> {
  const attempts = o.attempts ?? 5;
  const wait = o.sleep ?? sleep;
  for (let attempt = 1; ; attempt++) {
    try {
      await kube.list(resources.workerPools, { namespace: o.namespace });
      await kube.list(resources.taskQueues, { namespace: o.namespace });
      await kube.list(resources.taskSchedules, { namespace: o.namespace });
      return;
    } catch (err) {
      if (err instanceof KubeApiError && err.statusCode === 404) {
        throw new OperatorError(
          'E_CRDS_MISSING',
          'The celeriac.io CRDs are not installed in this cluster: run `kubectl apply -f crds/` (or install the Helm chart)',
          { cause: err },
        );
      }
      if (err instanceof KubeApiError && (err.statusCode === 401 || err.statusCode === 403)) {
        throw new OperatorError(
          'E_FORBIDDEN',
          `The operator may not list WorkerPools/TaskQueues/TaskSchedules: ${err.message}. Check its ServiceAccount's RBAC.`,
          {
            cause: err,
          },
        );
      }
      const busy = err instanceof KubeApiError && BUSY.has(err.statusCode);
      const answered = err instanceof KubeApiError;
      if (attempt >= attempts) {
        throw answered
          ? new OperatorError('E_API_ERROR', `The Kubernetes API server kept answering with an error after ${attempts} attempts: ${err.message}`, {
              cause: err,
            })
          : new OperatorError('E_API_UNREACHABLE', `Cannot reach the Kubernetes API server: ${String((err as Error).message)}`, { cause: err });
      }
      const what = busy
        ? `API server busy (${err.statusCode} ${err.reason}; e.g. a new CRD's storage is still initializing); retrying`
        : answered
          ? `API server answered ${err.statusCode} ${err.reason}; retrying`
          : 'API server not reachable yet; retrying';
      o.log.warn({ err, attempt }, what);
      await wait(1000 * attempt);
    }
  }
}
