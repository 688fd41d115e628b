/**
 * The broker seam: a few byte-moving primitives. Routing, acks policy, retries, ETA,
 * dead-lettering and duplicate suppression live in the worker; a driver only stores, delivers and
 * settles messages (with the bookkeeping of ./qos.ts).
 *
 * Drivers: memory.ts (one process), file.ts (several processes on one machine), redis.ts, amqp.ts.
 * How to add one: ./README.md.
 */

import type { WireMessage } from '../protocol/wire-message.js';

/** Where a delivery came from. */
export interface DeliveryInfo {
  readonly queue: string;
  readonly exchange: string;
  readonly routingKey: string;
  /** True when the broker delivered this message before (visibility timeout, requeue, reconnect). */
  readonly redelivered: boolean;
}

/** One received message; settle it with ack() or requeue() (only the first call counts). */
export interface Delivery {
  readonly message: WireMessage;
  readonly info: DeliveryInfo;
  /** Removes the message from the broker for good. */
  ack(): Promise<void>;
  /**
   * Gives the message back to its queue, marked redelivered (shutdown, prefetched work, a handler
   * that threw). Never rejects: a give-back that fails is logged, and the broker restores the
   * message itself (connection close, visibility timeout).
   */
  requeue(): Promise<void>;
}

export interface ConsumeOptions {
  /**
   * Deliveries handed out but not yet settled, at most (concurrency x prefetch multiplier).
   * A function is read again before each fetch: the worker raises the limit while it holds ETA
   * messages (as Celery's `qos.increment_eventually`), so held tasks do not starve new work.
   * AMQP drivers re-issue basic.qos when the value changes.
   */
  readonly prefetch: number | (() => number);
  /** Aborting stops consuming; the promise returned by consume() settles then. */
  readonly signal: AbortSignal;
}

/** A transient queue bound to a direct exchange (a remote-control client's reply queue). */
export interface DirectListen {
  readonly exchange: string;
  readonly routingKey: string;
  readonly queue: string;
}

export interface Broker {
  /** "memory" | "file" | "redis" | "amqp": used in logs and errors. */
  readonly kind: string;
  /** Connects (with retries where the driver has them); throws BrokerError when it cannot. */
  connect(signal?: AbortSignal): Promise<void>;
  /** Publishes to a queue (AMQP: default exchange, routing key = queue). */
  publish(queue: string, message: WireMessage): Promise<void>;
  /**
   * Delivers messages from `queues` to `onDelivery` until `opts.signal` aborts. At most
   * `opts.prefetch` deliveries are unsettled at once; a delivery whose handler rejects is given
   * back. Resolves after the abort.
   */
  consume(queues: readonly string[], onDelivery: (delivery: Delivery) => Promise<void>, opts: ConsumeOptions): Promise<void>;
  /**
   * Fan-out to every subscriber of `exchange` (remote control, events). `routingKey` (default:
   * `message.properties.routing_key`, else '') is the topic: `task.succeeded` on `celeryev`.
   */
  broadcast(exchange: string, message: WireMessage, routingKey?: string): Promise<void>;
  /** Receives broadcasts on `exchange` (every routing key) with their routing key until `signal` aborts. */
  subscribe(exchange: string, onMessage: (message: WireMessage, routingKey: string) => void, signal: AbortSignal): Promise<void>;
  /**
   * Publishes to the direct exchange `exchange` (not a task queue's): every queue bound to it with
   * `routingKey` gets a copy; with none bound the message is dropped, as kombu does. Remote-control
   * replies travel this way (spec §7.3).
   */
  publishDirect(exchange: string, routingKey: string, message: WireMessage): Promise<void>;
  /**
   * Declares the transient queue `queue` bound to the direct `exchange` with `routingKey` and hands
   * its messages to `onMessage` (no acks) until `signal` aborts; then removes the binding and the
   * queue. `onReady` runs once the binding exists: send the request after it, not before.
   */
  listenDirect(spec: DirectListen, onMessage: (message: WireMessage) => void, signal: AbortSignal, onReady?: () => void): Promise<void>;
  /** Messages ready in `queue` (all priority levels). */
  depth(queue: string): Promise<number>;
  /** Deletes the ready messages of `queue`; returns how many. */
  purge(queue: string): Promise<number>;
  close(): Promise<void>;
}

/**
 * The topic of a broadcast and the message to send: `routingKey` when given, else the message's
 * `routing_key` property (taken out of the message), else ''. The one rule of every driver.
 */
export function broadcastTopic(message: WireMessage, routingKey?: string): { routingKey: string; message: WireMessage } {
  const { routing_key: prop, ...properties } = message.properties;
  return { routingKey: routingKey ?? (typeof prop === 'string' ? prop : ''), message: prop === undefined ? message : { ...message, properties } };
}
