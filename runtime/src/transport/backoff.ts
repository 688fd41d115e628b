/** Capped exponential backoff for reconnect and retry loops. */

/** The delay before retry `attempt` (0-based): `baseMs * 2^attempt`, at most `maxMs`. */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
}

/** The delays of one retry loop: next() gives the next delay (doubling up to the cap); reset() after a success. */
export class Backoff {
  private attempt = 0;
  constructor(
    private readonly baseMs: number,
    private readonly maxMs: number,
  ) {}
  next(): number {
    return backoffDelay(this.attempt++, this.baseMs, this.maxMs);
  }
  reset(): void {
    this.attempt = 0;
  }
}
