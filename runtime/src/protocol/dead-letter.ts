/**
 * celeriac's dead-letter convention: a message the worker refuses (undecodable, unregistered task,
 * a task's `Reject(requeue=False)`) is published to the queue `<queue>.dead`, with headers that say
 * why and from where, and the original is acknowledged. The queue is an ordinary queue on every
 * broker, so operators read, requeue or purge it with the usual tools.
 */
import type { WireMessage } from './wire-message.js';

/** Header naming why the message was dead-lettered. */
export const DEAD_REASON_HEADER = 'x-celeriac-dead-reason';
/** Header naming the queue the message was taken from. */
export const DEAD_QUEUE_HEADER = 'x-celeriac-dead-queue';
const SUFFIX = '.dead';

/** The dead-letter queue of `queue`. */
export function deadLetterQueue(queue: string): string {
  return `${queue}${SUFFIX}`;
}

/** Whether `queue` is a dead-letter queue (AMQP declares these as plain durable queues). */
export function isDeadLetterQueue(queue: string): boolean {
  return queue.endsWith(SUFFIX);
}

/** The copy of `message` that goes to `<queue>.dead`, with why (`reason`, default "rejected") and from where. */
export function deadLettered(message: WireMessage, queue: string, reason: string | undefined): WireMessage {
  return { ...message, headers: { ...message.headers, [DEAD_REASON_HEADER]: reason ?? 'rejected', [DEAD_QUEUE_HEADER]: queue } };
}
