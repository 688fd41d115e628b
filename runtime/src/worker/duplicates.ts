/**
 * Duplicate suppression for the consumer, keyed by task id + retry count + replacement nesting
 * (the identity of a task message across copies; a task that replaced itself hands its id on with
 * Celery's `replaced_task_nesting` header one higher). Copies come from the broker, not from users: a publish that ioredis
 * resent after a reconnect (stored twice), a redelivery whose ack was lost with its AMQP channel.
 * - A copy of a message acknowledged lately (the last 10,000 first runs, and the last 10,000
 *   retries and replacements) is acknowledged and dropped.
 * - A copy of a message this worker still holds (reserved, scheduled or running) is settled as
 *   the first one is: acknowledged with it, or given back with it. It never runs twice here.
 * Messages without a task id in their headers (protocol v1, undecodable) are not checked.
 */
import type { Logger } from 'pino';
import type { Delivery } from '../brokers/broker.js';

/** Acknowledged identities remembered, at most (in each book). */
const RECENT_ACKS = 10_000;

/**
 * Held and recently acknowledged identities of one kind. The filter keeps two books: nearly every
 * message is a first run (retries and replacement nesting 0) and is keyed by its task id alone,
 * the string its headers already hold; the others by `id:retries:nesting`. Separate books, so an
 * id that looks like another message's composite key (a task id "x:1:0") never matches it. A
 * composite key for every message cost about 200 bytes per remembered identity (a tree of
 * concatenated strings holding the id): 2 MB of the worker's live heap for the 10,000 acks, each
 * entry surviving long enough to be promoted and collected by a full GC.
 */
class Book {
  /** Identities held -> copies that arrived meanwhile (null until one does). */
  readonly held = new Map<string, Delivery[] | null>();
  readonly acked = new Set<string>();
  /**
   * The acknowledged identities in the order they came, RECENT_ACKS slots used round: the oldest
   * is forgotten in O(1). Deleting a Set's first entry found by `values().next()` walks the holes
   * earlier deletes left until the table is rebuilt, thousands of steps per ack at 10,000.
   */
  private readonly order: string[] = [];
  private next = 0;

  /** Remembers `key` as acknowledged, forgetting the oldest past RECENT_ACKS. */
  remember(key: string): void {
    if (this.acked.has(key)) return;
    this.acked.add(key);
    if (this.order.length < RECENT_ACKS) {
      this.order.push(key);
      return;
    }
    this.acked.delete(this.order[this.next]!);
    this.order[this.next] = key;
    this.next = (this.next + 1) % RECENT_ACKS;
  }
}

/** `retries` or `replaced_task_nesting` as the composite key writes it is "0" (absent counts as 0). */
const isZero = (v: unknown): boolean => v === undefined || v === null || v === 0 || String(v) === '0';

export class DuplicateFilter {
  private readonly firstRuns = new Book();
  private readonly others = new Book();

  constructor(private readonly log: Logger) {}

  /**
   * The delivery to work on (wrapped so that its settle releases its copies), or null when it is
   * a copy: then this filter settles it.
   */
  admit(d: Delivery): Delivery | null {
    const { id, retries, replaced_task_nesting: nesting } = d.message.headers;
    if (typeof id !== 'string') return d;
    const first = isZero(retries) && isZero(nesting);
    const book = first ? this.firstRuns : this.others;
    const key = first ? id : `${id}:${String(retries ?? 0)}:${String(nesting ?? 0)}`;
    if (book.acked.has(key)) {
      this.log.warn({ queue: d.info.queue, taskId: id }, 'copy of a message already acknowledged; dropped');
      d.ack().catch((err: unknown) => this.log.warn({ err, queue: d.info.queue }, 'acknowledging a dropped copy failed; the broker keeps it'));
      return null;
    }
    const copies = book.held.get(key);
    if (copies !== undefined) {
      this.log.warn({ queue: d.info.queue, taskId: id }, 'copy of a message this worker still holds; settled when that one is');
      if (copies) copies.push(d);
      else book.held.set(key, [d]);
      return null;
    }
    book.held.set(key, null);
    return new HeldDelivery(d, key, book, this);
  }

  /** @internal The first delivery of `key` was settled: settle its copies the same way. */
  released(book: Book, key: string, acked: boolean): void {
    const copies = book.held.get(key);
    book.held.delete(key);
    if (acked) book.remember(key);
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
    private readonly book: Book,
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
    this.filter.released(this.book, this.key, acked);
  }
}
