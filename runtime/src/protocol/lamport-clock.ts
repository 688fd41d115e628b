/**
 * One logical clock per process side for events and remote control, as kombu's: forward() before
 * each send, adjust() on each clock received, so Celery peers can order what they see.
 */
/** Celery's Lamport clock (kombu `LamportClock`): forwarded on send, adjusted on receipt. */
export class LamportClock {
  private value = 0;
  /** Ticks and returns the new value. */
  forward(): number {
    return ++this.value;
  }
  /** Moves past a value seen in a message. */
  adjust(other: unknown): number {
    const n = Number(other);
    if (Number.isFinite(n) && n > this.value) this.value = Math.floor(n);
    return ++this.value;
  }
  get now(): number {
    return this.value;
  }
}
