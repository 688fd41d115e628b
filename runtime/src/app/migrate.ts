/**
 * Moves waiting messages from one broker to another (`celeriac migrate`), as Celery's
 * `celery migrate` (celery/contrib/migrate.py): each message is published to the destination
 * queue of the same name exactly as it was taken (body bytes, headers, properties), and only
 * then acknowledged on the source, so a failure in between leaves a copy on both sides, never a
 * loss. Messages keep their order within a queue.
 *
 * It moves the messages waiting when it starts (the source's depth then, up to `limit`), and stops
 * early when nothing arrives for `idleMs` (another consumer took them), as Celery's timeout.
 */
import type { Broker, Delivery } from '../brokers/broker.js';
import { BrokerError } from '../errors.js';

export interface MigrateOptions {
  readonly queues: readonly string[];
  /** Most messages to move over all queues (default: all waiting). */
  readonly limit?: number;
  /** Stop a queue after this long without a delivery (default 1000 ms, Celery's timeout). */
  readonly idleMs?: number;
  /** Called after each message is moved. */
  readonly onProgress?: (p: MigrateProgress) => void;
}

export interface MigrateProgress {
  readonly queue: string;
  /** Moved from this queue so far, and how many it had waiting at the start (capped by the limit). */
  readonly moved: number;
  readonly total: number;
  /** Task name and id from the headers, when the message is a task. */
  readonly task: string | null;
  readonly id: string | null;
}

/** Messages moved per queue, in the order of `queues`. */
export type MigrateResult = { queue: string; moved: number }[];

const PREFETCH = 64;
const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);

/** Moves the waiting messages of `o.queues` from `from` to `to` (both connected). */
export async function migrateMessages(from: Broker, to: Broker, o: MigrateOptions): Promise<MigrateResult> {
  const result: MigrateResult = [];
  let left = o.limit ?? Infinity;
  for (const queue of o.queues) {
    const total = Math.min(left, await from.depth(queue));
    const moved = total > 0 ? await migrateQueue(from, to, queue, total, o) : 0;
    result.push({ queue, moved });
    left -= moved;
  }
  return result;
}

async function migrateQueue(from: Broker, to: Broker, queue: string, total: number, o: MigrateOptions): Promise<number> {
  const ctl = new AbortController();
  let taken = 0;
  let moved = 0;
  /** The first step that failed: publishing to the destination, or acknowledging on the source. */
  let failure: { step: 'publish' | 'ack'; err: unknown } | null = null;
  // Deliveries are moved one after the other, in the order they came, while more are prefetched.
  // `move` never rejects (a failure is recorded and stops the queue), so the chain never does.
  let chain = Promise.resolve();
  let idle: NodeJS.Timeout | undefined;
  const armIdle = () => {
    clearTimeout(idle);
    // Stop only once the moves under way are done: a stopped consumer may give back what it holds.
    idle = setTimeout(() => void chain.then(() => ctl.abort()), o.idleMs ?? 1000);
  };
  const fail = (step: 'publish' | 'ack', err: unknown) => {
    failure ??= { step, err };
    ctl.abort();
  };
  const move = async (d: Delivery) => {
    if (ctl.signal.aborted) return d.requeue();
    try {
      await to.publish(queue, d.message);
    } catch (err) {
      fail('publish', err);
      return d.requeue();
    }
    // The last one: stop fetching before settling it, so no message is taken that is not moved.
    if (moved + 1 >= total) ctl.abort();
    try {
      await d.ack();
    } catch (err) {
      // Published but still on the source (the broker gives it back): a copy on both sides,
      // which the caller must hear of rather than a count that says it moved.
      return fail('ack', err);
    }
    moved++;
    o.onProgress?.({ queue, moved, total, task: str(d.message.headers.task), id: str(d.message.headers.id) });
  };
  armIdle();
  const consuming = from.consume(
    [queue],
    (d) => {
      armIdle();
      // Prefetched past the count waiting at the start (or the limit): left where it was.
      if (++taken > total) return d.requeue();
      return (chain = chain.then(() => move(d)));
    },
    // Never more unsettled than are left to move: a message fetched past the count would sit
    // taken (unacknowledged) on the source until given back.
    { prefetch: () => Math.max(1, Math.min(PREFETCH, total - moved)), signal: ctl.signal },
  );
  try {
    await consuming;
    await chain;
  } finally {
    clearTimeout(idle);
  }
  if (failure !== null) {
    const { step, err } = failure as { step: 'publish' | 'ack'; err: unknown };
    const what =
      step === 'publish'
        ? `publishing to the destination (${to.kind}) failed after ${moved} message(s); the message is still on the source`
        : `acknowledging on the source (${from.kind}) failed after ${moved} message(s); that message was published to the destination and will be delivered again on the source (a copy on both sides)`;
    throw new BrokerError(`migrate ${queue}: ${what}`, { cause: err });
  }
  return moved;
}
