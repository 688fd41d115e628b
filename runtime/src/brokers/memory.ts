/**
 * memory:// — an in-process broker for tests and single-process apps.
 *
 * Features: priorities 0-9 (higher first, as on RabbitMQ), prefetch, ack/requeue, dead-lettering to
 * `<queue>.dead`, fan-out broadcast. URL: `memory://` or `memory://<name>`: every broker created
 * in one process with the same name shares the same queues (so an app's client and worker meet).
 * Messages live only as long as the process.
 */
import { EventEmitter } from 'node:events';
import type { Broker, ConsumeOptions, Delivery, WireMessage } from './broker.js';
import { aborted, prefetchLimit, Signal } from './wait.js';

interface Item {
  message: WireMessage;
  redelivered: boolean;
}

class Queue {
  /** One FIFO per priority; index 9 is served first. */
  readonly levels: Item[][] = Array.from({ length: 10 }, () => []);
  size = 0;
  push(item: Item, front = false): void {
    const p = Math.min(9, Math.max(0, Number(item.message.properties.priority ?? 0) || 0));
    if (front) this.levels[p]!.unshift(item);
    else this.levels[p]!.push(item);
    this.size++;
  }
  shift(): Item | undefined {
    if (this.size === 0) return undefined;
    for (let p = 9; p >= 0; p--) {
      const l = this.levels[p]!;
      if (l.length > 0) {
        this.size--;
        return l.shift();
      }
    }
    return undefined;
  }
  clear(): number {
    const n = this.size;
    for (const l of this.levels) l.length = 0;
    this.size = 0;
    return n;
  }
}

/** The shared state behind one memory:// name. */
class MemoryHub {
  readonly queues = new Map<string, Queue>();
  readonly fanout = new EventEmitter();
  readonly changed = new Signal();
  queue(name: string): Queue {
    let q = this.queues.get(name);
    if (!q) this.queues.set(name, (q = new Queue()));
    return q;
  }
}

const hubs = new Map<string, MemoryHub>();

export function createMemoryBroker(url = 'memory://'): Broker {
  const name = url.replace(/^memory:\/\//, '') || 'default';
  let hub = hubs.get(name);
  if (!hub) hubs.set(name, (hub = new MemoryHub()));
  const h = hub;
  h.fanout.setMaxListeners(0);
  /** close() stops every consume() and subscribe() of this broker. */
  const closed = new AbortController();

  return {
    kind: 'memory',
    async connect() {},
    async publish(queue, message) {
      h.queue(queue).push({ message, redelivered: false });
      h.changed.notify();
    },
    async consume(queues, onDelivery, opts: ConsumeOptions) {
      const signal = AbortSignal.any([opts.signal, closed.signal]);
      let unsettled = 0;
      let cursor = 0;
      const abort = () => h.changed.notify();
      signal.addEventListener('abort', abort, { once: true });
      try {
        while (!signal.aborted) {
          let delivered = false;
          while (!signal.aborted && unsettled < prefetchLimit(opts.prefetch)) {
            let item: Item | undefined;
            let from = '';
            // Round-robin over queues so that one busy queue does not starve the others.
            for (let i = 0; i < queues.length && !item; i++) {
              from = queues[(cursor + i) % queues.length]!;
              item = h.queues.get(from)?.shift();
            }
            cursor++;
            if (!item) break;
            delivered = true;
            unsettled++;
            const it = item;
            const q = from;
            let settled = false;
            const settle = () => {
              if (settled) return false;
              settled = true;
              unsettled--;
              h.changed.notify();
              return true;
            };
            const d: Delivery = {
              message: it.message,
              info: { queue: q, exchange: '', routingKey: q, redelivered: it.redelivered },
              async ack() {
                settle();
              },
              async reject({ requeue, reason }) {
                if (!settle()) return;
                if (requeue) h.queue(q).push({ message: it.message, redelivered: true }, true);
                else h.queue(`${q}.dead`).push({ message: deadLettered(it.message, q, reason), redelivered: false });
                h.changed.notify();
              },
            };
            onDelivery(d).catch(() => d.reject({ requeue: true }));
          }
          if (!delivered || unsettled >= prefetchLimit(opts.prefetch)) await h.changed.wait();
        }
      } finally {
        signal.removeEventListener('abort', abort);
      }
    },
    async broadcast(exchange, message) {
      h.fanout.emit(exchange, message);
    },
    async subscribe(exchange, onMessage, outer) {
      const signal = AbortSignal.any([outer, closed.signal]);
      h.fanout.on(exchange, onMessage);
      await aborted(signal);
      h.fanout.off(exchange, onMessage);
    },
    async depth(queue) {
      return h.queues.get(queue)?.size ?? 0;
    },
    async purge(queue) {
      return h.queues.get(queue)?.clear() ?? 0;
    },
    async close() {
      closed.abort();
    },
  };
}

/** The copy of a message that goes to `<queue>.dead`, with why and from where. */
export function deadLettered(message: WireMessage, queue: string, reason: string | undefined): WireMessage {
  return {
    ...message,
    headers: { ...message.headers, 'x-celeriac-dead-reason': reason ?? 'rejected', 'x-celeriac-dead-queue': queue },
  };
}
