/**
 * Duplicate suppression for the consumer, keyed by task id + retry count + replacement nesting
 * (the identity of a task message across copies; a task that replaced itself hands its id on with
 * Celery's `replaced_task_nesting` header one higher). Copies come from the broker, not from users: a publish that ioredis
 * resent after a reconnect (stored twice), a redelivery whose ack was lost with its AMQP channel.
 * - A copy of a message acknowledged lately (the last 10,000) is acknowledged and dropped.
 * - A copy of a message this worker still holds (reserved, scheduled or running) is settled as
 *   the first one is: acknowledged with it, or given back with it. It never runs twice here.
 * Messages without a task id in their headers (protocol v1, undecodable) are not checked.
 */
import type { Logger } from 'pino';
import type { Delivery } from '../brokers/broker.js';
import type { WireMessage } from '../protocol/wire-message.js';

/** Acknowledged identities remembered, at most. */
const RECENT_ACKS = 10_000;

/** Task id + retries + replacement nesting of a message, or null without a task id header. */
function identity(m: WireMessage): string | null {
  const id = m.headers.id;
  return typeof id === 'string' ? `${id}:${String(m.headers.retries ?? 0)}:${String(m.headers.replaced_task_nesting ?? 0)}` : null;
}

export class DuplicateFilter {
  /** Identities held -> copies that arrived meanwhile (null until one does). */
  private readonly held = new Map<string, Delivery[] | null>();
  private readonly acked = new Set<string>();

  constructor(private readonly log: Logger) {}

  /**
   * The delivery to work on (wrapped so that its settle releases its copies), or null when it is
   * a copy: then this filter settles it.
   */
  admit(d: Delivery): Delivery | null {
    const key = identity(d.message);
    if (key === null) return d;
    if (this.acked.has(key)) {
      this.log.warn({ queue: d.info.queue, taskId: d.message.headers.id }, 'copy of a message already acknowledged; dropped');
      d.ack().catch((err: unknown) => this.log.warn({ err, queue: d.info.queue }, 'acknowledging a dropped copy failed; the broker keeps it'));
      return null;
    }
    const copies = this.held.get(key);
    if (copies !== undefined) {
      this.log.warn({ queue: d.info.queue, taskId: d.message.headers.id }, 'copy of a message this worker still holds; settled when that one is');
      if (copies) copies.push(d);
      else this.held.set(key, [d]);
      return null;
    }
    this.held.set(key, null);
    return new HeldDelivery(d, key, this);
  }

  /** @internal The first delivery of `key` was settled: settle its copies the same way. */
  released(key: string, acked: boolean): void {
    const copies = this.held.get(key);
    this.held.delete(key);
    if (acked) {
      this.acked.add(key);
      if (this.acked.size > RECENT_ACKS) this.acked.delete(this.acked.values().next().value!);
    }
    for (const c of copies ?? []) {
      (acked ? c.ack() : c.requeue()).catch((err: unknown) => this.log.warn({ err, queue: c.info.queue }, 'settling a copy failed; the broker keeps it'));
    }
  }
}

/** A delivery whose first settle releases the copies held back by the filter. */
class HeldDelivery implements Delivery {
  private settled = false;

  constructor(
    private readonly d: Delivery,
    private readonly key: string,
    private readonly filter: DuplicateFilter,
  ) {}

  get message() {
    return this.d.message;
  }

  get info() {
    return this.d.info;
  }

  ack(): Promise<void> {
    this.release(true);
    return this.d.ack();
  }

  requeue(): Promise<void> {
    this.release(false);
    return this.d.requeue();
  }

  private release(acked: boolean): void {
    if (this.settled) return;
    this.settled = true;
    this.filter.released(this.key, acked);
  }
}
