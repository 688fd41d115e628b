/**
 * The message every layer passes around: what protocol/ encodes and decodes and what a broker
 * driver moves. It lives here, below the drivers, so that protocol/ never imports brokers/.
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
  /**
   * Set by encodeTask to its header table when that holds only encodeTask's own keys: while
   * `headers === taskHeaders`, drivers may write the table from a template (taskHeadersJson,
   * the AMQP encoder). A copy with other headers (`{ ...m, headers }`) is written generically.
   */
  readonly taskHeaders?: Record<string, unknown>;
  /** Set by rawMessage(): why the driver could not read this message (it is dead-lettered as taken). */
  readonly unreadable?: string;
}

/** Content type of a message a driver could not read (not a kombu envelope): its body is the bytes as taken. */
export const UNREADABLE_CONTENT_TYPE = 'application/x-celeriac-unreadable';

/**
 * A message that is not a kombu envelope at all, kept as the raw bytes taken from the broker (so
 * the worker dead-letters them byte-exact) with why it could not be read (`unreadable`).
 */
export function rawMessage(raw: string | Buffer, why: string): WireMessage {
  const body = typeof raw === 'string' ? Buffer.from(raw, 'utf8') : raw;
  return { body, contentType: UNREADABLE_CONTENT_TYPE, contentEncoding: 'binary', headers: {}, properties: {}, unreadable: why };
}
