/**
 * Retry timing: capped exponential backoff per key and a global token bucket, combined by max
 * as client-go's DefaultTypedControllerRateLimiter does (5 ms -> 1000 s per key, 10 qps burst 100).
 * Pure except for the injected clock.
 */
import { backoffDelay } from '../../../runtime/src/transport/backoff.js';

/** A token bucket that hands out reservations: `reserve()` returns how long to wait for a token. */
export interface TokenBucket {
  reserve(): number;
  /** Takes a token if one is there now; false (and nothing taken) otherwise. */
  tryTake(): boolean;
}

/** Refills at `qps` tokens per second up to `burst`; starts full. */
export function createTokenBucket(o: { qps: number; burst: number; now?: () => number }): TokenBucket {
  const now = o.now ?? Date.now;
  let tokens = o.burst;
  let last = now();
  function refill(): void {
    const t = now();
    tokens = Math.min(o.burst, tokens + ((t - last) / 1000) * o.qps);
    last = t;
  }
  return {
    reserve() {
      refill();
      tokens -= 1; // may go negative: later reservations queue up behind this one
      return tokens >= 0 ? 0 : Math.ceil((-tokens / o.qps) * 1000);
    },
    tryTake() {
      refill();
      if (tokens < 1) return false;
      tokens -= 1;
      return true;
    },
  };
}

export interface RateLimiter {
  /** Delay for the next retry of `key`, counting this failure. */
  when(key: string): number;
  /** The key succeeded: its backoff starts over. */
  forget(key: string): void;
  retries(key: string): number;
}

export interface RateLimiterOptions {
  baseDelayMs?: number;
  maxDelayMs?: number;
  qps?: number;
  burst?: number;
  now?: () => number;
}

/** Per-key exponential backoff (default 5 ms -> 1000 s) combined by max with a token bucket (default 10 qps, burst 100). */
export function createRateLimiter(o: RateLimiterOptions = {}): RateLimiter {
  const base = o.baseDelayMs ?? 5;
  const max = o.maxDelayMs ?? 1_000_000;
  const bucket = createTokenBucket({ qps: o.qps ?? 10, burst: o.burst ?? 100, now: o.now });
  const failures = new Map<string, number>();
  return {
    when(key) {
      const n = failures.get(key) ?? 0;
      failures.set(key, n + 1);
      return Math.max(backoffDelay(n, base, max), bucket.reserve());
    },
    forget(key) {
      failures.delete(key);
    },
    retries(key) {
      return failures.get(key) ?? 0;
    },
  };
}
