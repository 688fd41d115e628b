/**
 * Drain and resume for Python Celery workers, through Celery's own remote control (the
 * WorkerClient of a `spec.celery` pool; celeriac pods use worker-client.ts's HTTP /drain):
 * - drain: `cancel_consumer` for each of the pool's queues, addressed to the pod's worker
 *   (`celery@<pod>`). The worker stops taking messages; what it already holds it still runs:
 *   prefetched (reserved) and ETA-held tasks stay with it, unacknowledged, on Redis as on RabbitMQ
 *   (neither kombu transport gives them back on a basic_cancel; only a closed channel, or Redis'
 *   visibility timeout, would). So the autoscaler removes the pod only once inspect shows no
 *   task running, reserved or scheduled on it (scale-plan.ts `load` = 0), never on `active` alone.
 * - resume: `add_consumer` for each queue: the worker consumes again.
 * Each call waits for the worker's reply; no reply, or an error reply, rejects with
 * WorkerRequestError naming the pod. Celery replies before its event loop carries the change out
 * (`call_soon`); a message the worker still takes in between shows up in the next inspect, so
 * the pod is not removed with it.
 */
import type { Control, NodeReply } from '../../../runtime/src/app/control.js';
import { WorkerRequestError, type WorkerClient, type WorkerPodAddress } from './worker-client.js';

export interface CeleryDrainOptions {
  control: Pick<Control, 'cancelConsumer' | 'addConsumer'>;
  /** The broker queue names the pool's workers consume. */
  queues: readonly string[];
  nodeName: (pod: string) => string;
  timeoutMs?: number;
}

export function createCeleryDrainClient(o: CeleryDrainOptions): WorkerClient {
  const timeoutMs = o.timeoutMs ?? 3000;

  async function each(command: 'cancel_consumer' | 'add_consumer', pod: WorkerPodAddress): Promise<void> {
    const node = o.nodeName(pod.name);
    const opts = { destination: [node], reply: true, timeoutMs, limit: 1 };
    for (const queue of o.queues) {
      let replies: NodeReply[];
      try {
        replies = await (command === 'cancel_consumer' ? o.control.cancelConsumer(queue, opts) : o.control.addConsumer(queue, opts));
      } catch (err) {
        throw new WorkerRequestError(pod.name, `${command} ${queue} to ${node} (pod ${pod.name}) failed: ${(err as Error).message}`, { cause: err });
      }
      const body = replies.find((r) => node in r)?.[node] as { ok?: string; error?: string } | undefined;
      if (!body) throw new WorkerRequestError(pod.name, `${command} ${queue}: no reply from ${node} (pod ${pod.name}) within ${timeoutMs} ms`);
      if (body.error !== undefined) throw new WorkerRequestError(pod.name, `${command} ${queue}: ${node} (pod ${pod.name}) answered ${body.error}`);
    }
  }

  return {
    drain: (pod) => each('cancel_consumer', pod),
    resume: (pod) => each('add_consumer', pod),
  };
}
