/**
 * Delivery bookkeeping of one consume() call, written once for every driver (kombu's virtual
 * `QoS`): a driver implements two primitives for a message it handed out, ack and requeue
 * (`Settlers`), and calls `hand()` for each message it takes. This module
 * - counts unsettled deliveries against the prefetch limit (`room()`),
 * - settles each delivery at most once (a second ack or requeue does nothing),
 * - gives a message back when its handler throws, and logs a give-back that failed: the broker
 *   still has the message (visibility timeout, connection close), so that is reported, not thrown.
 * Dead-lettering and duplicate suppression are worker policy: see worker/consumer.ts.
 */
import type { Logger } from 'pino';
import type { WireMessage } from '../protocol/wire-message.js';
import { prefetchLimit } from '../transport/wait.js';
import type { Delivery, DeliveryInfo } from './broker.js';

/** The two primitives a driver implements for a message it handed out, identified by `Tag`. */
export interface Settlers<Tag> {
  /** Removes the message from the broker for good. */
  ack(tag: Tag): Promise<void>;
  /** Gives the message back to its queue, marked redelivered. */
  requeue(tag: Tag): Promise<void>;
}

export interface QosOptions<Tag> {
  readonly settlers: Settlers<Tag>;
  readonly onDelivery: (delivery: Delivery) => Promise<void>;
  readonly prefetch: number | (() => number);
  readonly log: Logger | undefined;
  /** Runs after each settle, once the driver's primitive has started (wakes a waiting fetch loop). */
  readonly onSettled?: () => void;
}

/** Unsettled deliveries of one consume() call. */
export class Qos<Tag> {
  /** Deliveries handed out and not settled yet. */
  unsettled = 0;

  constructor(private readonly o: QosOptions<Tag>) {}

  /** How many more messages may be handed out now (Infinity without a prefetch limit). */
  room(): number {
    return prefetchLimit(this.o.prefetch) - this.unsettled;
  }

  /** Hands a message the driver took to the handler; `tag` is what the driver's primitives get back. */
  hand(message: WireMessage, info: DeliveryInfo, tag: Tag): void {
    this.unsettled++;
    const d = new OnceDelivery(this, message, info, tag);
    this.o.onDelivery(d).catch((err: unknown) => {
      // Say what happens to the message: a handler may have settled it before it threw.
      const what =
        d.settledAs === 'ack'
          ? 'message was already acknowledged'
          : d.settledAs === 'requeue'
            ? 'message already given back to its queue'
            : 'message given back to its queue';
      this.o.log?.error({ err, queue: info.queue }, `delivery handler failed; ${what}`);
      return d.requeue();
    });
  }

  /** @internal Called by a delivery on its first settle. */
  settle(tag: Tag, how: 'ack' | 'requeue', queue: string): Promise<void> {
    const { settlers, log } = this.o;
    const p =
      how === 'ack'
        ? settlers.ack(tag)
        : settlers.requeue(tag).catch((err: unknown) => {
            // The broker still holds the message: it comes back when the connection closes or its
            // visibility timeout passes. Nothing for the caller to do, so reported here.
            log?.warn({ err, queue }, 'could not give a message back to its queue; the broker restores it later');
          });
    this.unsettled--;
    this.o.onSettled?.();
    return p;
  }
}

/** A delivery that settles once: later calls resolve without doing anything. */
class OnceDelivery<Tag> implements Delivery {
  /** How the delivery was settled first; null while unsettled. */
  settledAs: 'ack' | 'requeue' | null = null;

  constructor(
    private readonly qos: Qos<Tag>,
    readonly message: WireMessage,
    readonly info: DeliveryInfo,
    private readonly tag: Tag,
  ) {}

  ack(): Promise<void> {
    if (this.settledAs) return Promise.resolve();
    this.settledAs = 'ack';
    return this.qos.settle(this.tag, 'ack', this.info.queue);
  }

  requeue(): Promise<void> {
    if (this.settledAs) return Promise.resolve();
    this.settledAs = 'requeue';
    return this.qos.settle(this.tag, 'requeue', this.info.queue);
  }
}
