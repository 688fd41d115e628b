/**
 * memory:// — an in-process broker for tests and single-process apps.
 *
 * Features: priorities 0-9 (higher first, as on RabbitMQ), prefetch, ack/requeue, fan-out broadcast. URL: `memory://` or `memory://<name>`: every broker created
 * in one process with the same name shares the same queues (so an app's client and worker meet).
 * Messages live only as long as the process.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { WireMessage } from '../protocol/wire-message.js';
import { aborted, Signal } from '../transport/wait.js';
import { broadcastTopic, type Broker, type ConsumeOptions } from './broker.js';
import { Qos } from './qos.js';

interface Item {
  readonly message: WireMessage;
  readonly queue: string;
  readonly redelivered: boolean;
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
  /** Direct-exchange bindings: `exchange\0routingKey` -> listeners. */
  readonly direct = new EventEmitter();
  readonly changed = new Signal();
  queue(name: string): Queue {
    let q = this.queues.get(name);
    if (!q) this.queues.set(name, (q = new Queue()));
    return q;
  }
}

const hubs = new Map<string, MemoryHub>();

export function createMemoryBroker(url = 'memory://', opts: { logger?: Logger } = {}): Broker {
  const log = opts.logger?.child({ component: 'memory-broker' });
  const name = url.replace(/^memory:\/\//, '') || 'default';
  let hub = hubs.get(name);
  if (!hub) hubs.set(name, (hub = new MemoryHub()));
  const h = hub;
  h.fanout.setMaxListeners(0);
  h.direct.setMaxListeners(0);
  /** close() stops every consume() and subscribe() of this broker. */
  const closed = new AbortController();

  return {
    kind: 'memory',
    async connect() {},
    async publish(queue, message) {
      h.queue(queue).push({ message, queue, redelivered: false });
      h.changed.notify();
    },
    async consume(queues, onDelivery, copts: ConsumeOptions) {
      const signal = AbortSignal.any([copts.signal, closed.signal]);
      const qos = new Qos<Item>({
        settlers: {
          async ack() {},
          async requeue({ message, queue }) {
            h.queue(queue).push({ message, queue, redelivered: true }, true);
          },
        },
        onDelivery,
        prefetch: copts.prefetch,
        log,
        onSettled: () => h.changed.notify(),
      });
      let cursor = 0;
      const abort = () => h.changed.notify();
      signal.addEventListener('abort', abort, { once: true });
      try {
        while (!signal.aborted) {
          let delivered = false;
          while (!signal.aborted && qos.room() > 0) {
            let item: Item | undefined;
            // Round-robin over queues so that one busy queue does not starve the others.
            for (let i = 0; i < queues.length && !item; i++) {
              item = h.queues.get(queues[(cursor + i) % queues.length]!)?.shift();
            }
            cursor++;
            if (!item) break;
            delivered = true;
            qos.hand(item.message, { queue: item.queue, exchange: '', routingKey: item.queue, redelivered: item.redelivered }, item);
          }
          if (!delivered || qos.room() <= 0) await h.changed.wait();
        }
      } finally {
        signal.removeEventListener('abort', abort);
      }
    },
    async broadcast(exchange, message, routingKey) {
      const t = broadcastTopic(message, routingKey);
      h.fanout.emit(exchange, t.message, t.routingKey);
    },
    async subscribe(exchange, onMessage, outer) {
      const signal = AbortSignal.any([outer, closed.signal]);
      h.fanout.on(exchange, onMessage);
      await aborted(signal);
      h.fanout.off(exchange, onMessage);
    },
    async publishDirect(exchange, routingKey, message) {
      h.direct.emit(`${exchange}\0${routingKey}`, message);
    },
    async listenDirect(spec, onMessage, outer, onReady) {
      const signal = AbortSignal.any([outer, closed.signal]);
      const key = `${spec.exchange}\0${spec.routingKey}`;
      h.direct.on(key, onMessage);
      onReady?.();
      await aborted(signal);
      h.direct.off(key, onMessage);
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
