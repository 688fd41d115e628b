/**
 * The result backend seam: drivers store strings under keys; ResultStore (result-store.ts) owns
 * Celery's meaning (task meta, states, expiry, groups and chords).
 *
 * Drivers: memory.ts, file.ts, redis.ts; rpc.ts rides the broker instead.
 */
/** The keys of one chord (Celery's `celery-taskset-meta-<gid>` and its `.j`, `.t`, `.s`, `.d`, `.c`). */
export interface ChordKeys {
  /** The saved group (a complex header), whose TTL the join refreshes. */
  readonly group: string;
  readonly join: string;
  readonly counter: string;
  readonly size: string;
  /** Celery 5.7's set of parts already joined (`<task id>:<score>`), so a redelivered part counts once. */
  readonly seen: string;
  /** Celery 5.7's dispatch claim: a token while one worker sends the body, then "done". */
  readonly claim: string;
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
   * Optional native chord join (Celery 5.7's Redis script, spec §5.5): unless the chord is done,
   * atomically adds `member` to `keys.join` once per `taskId` and score (a sorted set scored by
   * `score` when `ordered`, else a list, as Celery's `result_chord_ordered`), refreshes the TTLs,
   * and when the join is complete claims the body's dispatch with `claimToken`. Returns the
   * join's size (-1 when the chord is done), the counter and size values and whether this call
   * holds the claim. Stores without it join through incr() (result-backend.ts); only a store that
   * Python workers share needs Celery's layout.
   */
  chordAdd?(
    keys: ChordKeys,
    score: number | null,
    member: string,
    opts: { ttlMs?: number; ordered: boolean; taskId: string; claimToken: string; claimTtlMs: number },
  ): Promise<{ count: number; counter: string | null; size: string | null; claimed: boolean }>;
  /** With chordAdd: the members of `key`, by score (sorted set) or in push order (the first `total` of a list). */
  chordMembers?(key: string, opts: { ordered: boolean; total: number }): Promise<string[]>;
  /** With chordAdd: keeps the dispatch claim for `ttlMs` more, or takes it again if it lapsed while the chord is unsent; false when another holds it. */
  chordExtendClaim?(keys: ChordKeys, claimToken: string, ttlMs: number): Promise<boolean>;
  /** With chordAdd: if `claimToken` still holds the claim, deletes the join's keys and marks the chord done for `doneTtlMs`; false otherwise. */
  chordFinish?(keys: ChordKeys, claimToken: string, doneTtlMs: number): Promise<boolean>;
  /**
   * Optional push: resolves the next time `key` is set, or when `signal` aborts.
   * Stores without it are polled by AsyncResult.
   */
  watch?(key: string, signal: AbortSignal): Promise<void>;
  /**
   * Optional, with watch(): calls `onSet` each time `key` is set from now on, until the returned
   * function is called. For a waiter that stays (AsyncResult.get()): no AbortSignal per wake-up.
   * A store that has it can take watch() from watchByListen(). A store with watch() alone is
   * listened to by calling watch() again after each set.
   */
  listen?(key: string, onSet: () => void): () => void;
  /**
   * Optional, with watch(): `key` is about to be set (its task is being sent): start watching now,
   * so that a watch() and get() soon after need no round trip of their own (Celery's Redis
   * ResultConsumer subscribes when the task is sent). Watched for a short while when nobody waits.
   */
  expect?(key: string): void;
  close(): Promise<void>;
}

/**
 * Whether a stored value is a Celery meta whose own status is SUCCESS (decoded: text inside its
 * result, a PROGRESS reporting "status": "SUCCESS" say, does not count). For setUnlessSuccess.
 */
export function isSuccessMeta(text: string | null): boolean {
  if (text === null || !text.includes('"SUCCESS"')) return false;
  try {
    return (JSON.parse(text) as { status?: unknown } | null)?.status === 'SUCCESS';
  } catch {
    return false;
  }
}

/** watch() over a store's listen(): resolves at the next set of `key`, or when `signal` aborts. */
export function watchByListen(listen: NonNullable<KeyValueStore['listen']>): NonNullable<KeyValueStore['watch']> {
  return (key, signal) =>
    new Promise<void>((resolve) => {
      if (signal.aborted) return resolve();
      const done = () => {
        stop();
        signal.removeEventListener('abort', done);
        resolve();
      };
      const stop = listen(key, done);
      signal.addEventListener('abort', done, { once: true });
    });
}
