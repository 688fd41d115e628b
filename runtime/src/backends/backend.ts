/**
 * The result backend seam: drivers store strings under keys; ResultStore (result-store.ts) owns
 * Celery's meaning (task meta, states, expiry, groups and chords).
 *
 * Drivers: memory.ts, file.ts, redis.ts; rpc.ts rides the broker instead.
 */
/** The keys of one chord (Celery's `celery-taskset-meta-<gid>.j`, `.t`, `.s`). */
export interface ChordKeys {
  readonly join: string;
  readonly counter: string;
  readonly size: string;
}

export interface KeyValueStore {
  /** "memory" | "file" | "redis": used in logs and errors. */
  readonly kind: string;
  get(key: string): Promise<string | null>;
  mget(keys: readonly string[]): Promise<(string | null)[]>;
  /** Sets the value; with `ttlMs` it expires (Celery's `result_expires`). */
  set(key: string, value: string, opts?: { ttlMs?: number }): Promise<void>;
  /**
   * Optional: set() unless the stored value is a Celery meta with status SUCCESS, atomically and in
   * one round trip (instead of get() then set(): Celery's "never overwrite SUCCESS" rule).
   */
  setUnlessSuccess?(key: string, value: string, opts?: { ttlMs?: number }): Promise<void>;
  /** Atomically increments an integer counter (chords). */
  incr(key: string, opts?: { ttlMs?: number }): Promise<number>;
  delete(key: string): Promise<void>;
  /**
   * Optional native chord join (Celery's Redis pipeline, spec §5.5): atomically adds `member` to
   * `keys.join` (a sorted set scored by `score` when `ordered`, else a list it is pushed onto, as
   * Celery's `result_chord_ordered`), refreshes the TTL of the three keys, and returns the join's
   * size and the values of `keys.counter` and `keys.size`. Stores without it join through incr()
   * (result-backend.ts); only a store that Python workers share needs Celery's layout.
   */
  chordAdd?(
    keys: ChordKeys,
    score: number | null,
    member: string,
    opts: { ttlMs?: number; ordered: boolean },
  ): Promise<{ count: number; counter: string | null; size: string | null }>;
  /** With chordAdd: the members of `key`, by score (sorted set) or in push order (the first `total` of a list). */
  chordMembers?(key: string, opts: { ordered: boolean; total: number }): Promise<string[]>;
  /**
   * Optional push: resolves the next time `key` is set, or when `signal` aborts.
   * Stores without it are polled by AsyncResult.
   */
  watch?(key: string, signal: AbortSignal): Promise<void>;
  close(): Promise<void>;
}
