/** Small waiting helpers shared by the broker drivers and the result stores. */

/** A level-less wake-up: wait() resolves at the next notify(). One promise serves all waiters. */
export class Signal {
  private pending: { promise: Promise<void>; resolve: () => void } | null = null;
  wait(): Promise<void> {
    if (!this.pending) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.pending = { promise, resolve };
    }
    return this.pending.promise;
  }
  notify(): void {
    const p = this.pending;
    this.pending = null;
    p?.resolve();
  }
}

/** The current prefetch limit (a number or a function read before each fetch); 0 = unlimited. */
export function prefetchLimit(prefetch: number | (() => number)): number {
  const n = typeof prefetch === 'function' ? prefetch() : prefetch;
  return n <= 0 ? Number.POSITIVE_INFINITY : n;
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * `p`, or null as soon as `signal` aborts: a consumer stops even while its broker is down and a
 * command waits for the reconnect (p keeps running; a later rejection of it is ignored).
 */
export function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T | null> {
  if (signal.aborted) {
    p.catch(() => undefined);
    return Promise.resolve(null);
  }
  let onAbort: () => void = () => undefined;
  const stop = new Promise<null>((resolve) => {
    onAbort = () => resolve(null);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  return Promise.race([p, stop]).finally(() => {
    signal.removeEventListener('abort', onAbort);
    p.catch(() => undefined);
  });
}

/** Resolves when `signal` aborts (at once if it already has). */
export function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

/** How long close() waits for a server's answer before it drops the connection. */
export const CLOSE_TIMEOUT_MS = 2_000;

/**
 * Whether `p` settled (either way) within `ms`. Close handshakes and last commands on a dead link
 * (a partition: no reply, no close) never settle; shutdown must not wait for them.
 */
export function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  return Promise.race([
    p.then(
      () => true,
      () => true,
    ),
    late,
  ]).finally(() => clearTimeout(timer));
}
