/**
 * The event receiver (Celery's `events/receiver.py`): subscribes to every routing key of the
 * `celeryev` exchange and hands each event (batches unpacked) to `onEvent` with `local_received`
 * added. Used by `celeriac events` and by tests.
 */
import type { Logger } from 'pino';
import type { Broker } from '../brokers/broker.js';
import { decodeEvents, EVENT_EXCHANGE, type CeleryEvent } from '../protocol/events.js';
import type { LamportClock } from '../protocol/lamport-clock.js';

/** An event as received: the sender's fields plus when it arrived here (epoch seconds). */
export interface ReceivedEvent extends CeleryEvent {
  readonly local_received: number;
}

/** What receiveEvents() listens for, and until when. */
export interface ReceiveOptions {
  readonly log: Logger;
  /** @internal adjusted with every clock received (kombu's LamportClock.adjust), when given */
  readonly clock?: LamportClock;
}

/**
 * Receives events until `signal` aborts; an undecodable message is logged and skipped. PUB/SUB
 * keeps nothing for late subscribers: events sent before the subscription is in place are lost.
 */
export function receiveEvents(broker: Pick<Broker, 'subscribe'>, onEvent: (e: ReceivedEvent) => void, signal: AbortSignal, o: ReceiveOptions): Promise<void> {
  const onMessage: Parameters<Broker['subscribe']>[1] = (m, routingKey) => {
    let events: CeleryEvent[];
    try {
      events = decodeEvents(m);
    } catch (err) {
      // A stranger on the exchange must not stop the monitor.
      o.log.warn({ err, routingKey }, 'ignored an undecodable event message');
      return;
    }
    const now = Date.now() / 1000;
    for (const e of events) {
      if (o.clock && typeof e.clock === 'number') o.clock.adjust(e.clock);
      onEvent({ ...e, local_received: now });
    }
  };
  return broker.subscribe(EVENT_EXCHANGE, onMessage, signal);
}
