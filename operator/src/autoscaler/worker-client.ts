/**
 * The autoscaler's calls to a worker pod's own HTTP endpoint (runtime/src/metrics/server.ts):
 * `GET /drain` (stop consuming, give back prefetched messages, let running tasks finish) and
 * `GET /resume` (cancel a drain: consume again). One request each, with a timeout; a failure
 * rejects with an error naming the pod and what it answered.
 */
import { OperatorError } from '../errors.js';

export interface WorkerClientOptions {
  /** The worker's metrics port (spec.metricsPort). */
  port: number;
  timeoutMs?: number;
}

/** A pod the client talks to. */
export interface WorkerPodAddress {
  readonly name: string;
  readonly ip: string;
}

export interface WorkerClient {
  drain(pod: WorkerPodAddress): Promise<void>;
  resume(pod: WorkerPodAddress): Promise<void>;
}

/** A /drain or /resume request failed; the message names the pod. */
export class WorkerRequestError extends OperatorError {
  constructor(
    readonly pod: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('E_WORKER_REQUEST', message, options);
  }
}

export function createWorkerClient(o: WorkerClientOptions): WorkerClient {
  const timeoutMs = o.timeoutMs ?? 3000;

  async function call(path: '/drain' | '/resume', pod: WorkerPodAddress): Promise<void> {
    const url = `http://${pod.ip}:${o.port}${path}`;
    let res: Response;
    try {
      res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    } catch (err) {
      throw new WorkerRequestError(pod.name, `GET ${url} (pod ${pod.name}) failed: ${(err as Error).message}`, { cause: err });
    }
    if (!res.ok) throw new WorkerRequestError(pod.name, `GET ${url} (pod ${pod.name}) answered ${res.status} ${res.statusText}`);
  }

  return {
    drain: (pod) => call('/drain', pod),
    resume: (pod) => call('/resume', pod),
  };
}
