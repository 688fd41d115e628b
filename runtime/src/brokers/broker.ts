/**
 * The broker seam: a few byte-moving primitives. Routing, acks policy, retries and ETA live in
 * the worker; a driver only stores, delivers and settles messages.
 *
 * Drivers: memory.ts (one process), file.ts (several processes on one machine), redis.ts, amqp.ts.
 * How to add one: ./README.md.
 */

/**
 * A transport-neutral message. Header and property names are Celery's wire names (snake_case),
 * so that drivers translate them 1:1 into kombu's Redis envelope or AMQP basic properties.
 */
export interface WireMessage {
  /** Serialized (and possibly compressed) body bytes. */
  readonly body: Buffer;
  /** e.g. `application/json`, `application/x-msgpack`, `application/x-yaml`. */
  readonly contentType: string;
  /** `utf-8` for text serializers, `binary` for msgpack. */
  readonly contentEncoding: string;
  /** Celery message headers (`task`, `id`, `eta`, …) plus user headers. */
  readonly headers: Record<string, unknown>;
  /**
   * Message properties by Celery name: `correlation_id`, `reply_to`, `delivery_mode`, `priority`,
   * `expiration`; unknown ones are kept and ignored.
   */
  readonly properties: Record<string, unknown>;
}

/** Where a delivery came from. */
export interface DeliveryInfo {
  readonly queue: string;
  readonly exchange: string;
  readonly routingKey: string;
  /** True when the broker delivered this message before (visibility timeout, requeue, reconnect). */
  readonly redelivered: boolean;
}

/** One received message; settle it exactly once with ack() or reject(). */
export interface Delivery {
  readonly message: WireMessage;
  readonly info: DeliveryInfo;
  /** Removes the message from the broker for good. */
  ack(): Promise<void>;
  /**
   * `requeue: true` gives the message back to its queue (shutdown, prefetched work);
   * `requeue: false` moves it to the dead-letter queue `<queue>.dead` with `reason`, never drops it.
   */
  reject(opts: { requeue: boolean; reason?: string }): Promise<void>;
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

export interface Broker {
  /** "memory" | "file" | "redis" | "amqp": used in logs and errors. */
  readonly kind: string;
  /** Connects (with retries where the driver has them); throws BrokerError when it cannot. */
  connect(signal?: AbortSignal): Promise<void>;
  /** Publishes to a queue (AMQP: default exchange, routing key = queue). */
  publish(queue: string, message: WireMessage): Promise<void>;
  /**
   * Delivers messages from `queues` to `onDelivery` until `opts.signal` aborts. At most
   * `opts.prefetch` deliveries are unsettled at once. Resolves after the abort.
   */
  consume(
    queues: readonly string[],
    onDelivery: (delivery: Delivery) => Promise<void>,
    opts: ConsumeOptions,
  ): Promise<void>;
  /** Fan-out to every subscriber of `exchange` (remote control, events). */
  broadcast(exchange: string, message: WireMessage): Promise<void>;
  /** Receives broadcasts on `exchange` until `signal` aborts. */
  subscribe(exchange: string, onMessage: (message: WireMessage) => void, signal: AbortSignal): Promise<void>;
  /** Messages ready in `queue` (all priority levels). */
  depth(queue: string): Promise<number>;
  /** Deletes the ready messages of `queue`; returns how many. */
  purge(queue: string): Promise<number>;
  close(): Promise<void>;
}
