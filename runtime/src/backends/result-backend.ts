/**
 * The result seam the app and worker use. `createKeyValueResultBackend` gives Celery's meaning
 * (keys `celery-task-meta-<id>`, JSON meta, expiry, "never overwrite SUCCESS") to any
 * KeyValueStore; rpc:// implements ResultBackend directly over the broker.
 */
import { randomUUID } from 'node:crypto';
import { BackendError, ResultTimeoutError } from '../errors.js';
import { parseJson, stringifyJson } from '../protocol/json.js';
import { READY_STATES, type TaskMeta, type TaskState } from '../protocol/result-meta.js';
import { pythonJsonDumps } from '../protocol/python-json.js';
import type { ChordKeys, KeyValueStore } from './backend.js';

/** Where a result goes besides the store (rpc:// sends it to the client's reply queue). */
export interface StoreContext {
  readonly replyTo?: string | null;
  readonly correlationId?: string;
}

export interface WaitOptions {
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
  /** Polling interval for stores without push (default 100 ms). */
  readonly intervalMs?: number;
}

export interface ResultBackend {
  /** "memory" | "file" | "redis" | "rpc": used in logs and errors. */
  readonly kind: string;
  /** Stores a state for a task. A stored SUCCESS is never overwritten (as Celery's KV backends). */
  store(meta: TaskMeta, ctx?: StoreContext): Promise<void>;
  /** The stored meta, or null when nothing is stored (PENDING). */
  get(taskId: string): Promise<TaskMeta | null>;
  /** Resolves with the first READY meta (SUCCESS, FAILURE, REVOKED); rejects with ResultTimeoutError. */
  waitReady(taskId: string, opts: WaitOptions): Promise<TaskMeta>;
  /**
   * Optional: the task `taskId` is about to be sent and its result is kept. A backend that pushes
   * results may start listening for it now, so that waitReady() soon after costs no round trip of
   * its own (Redis: SUBSCRIBE when sent, as Celery's ResultConsumer).
   */
  expect?(taskId: string): void;
  /** Deletes the stored result. */
  forget(taskId: string): Promise<void>;
  /**
   * Backends that receive results as messages (rpc://): the queue workers reply to, live before
   * it resolves. Clients put it into `reply_to` of the tasks they send.
   */
  replyTo?(): Promise<string>;
  /** Chord joins and saved groups; absent on backends that cannot join (rpc://, as Celery). */
  readonly chords?: ChordStore;
  close(): Promise<void>;
}

/** One header task's outcome as a chord join keeps it (Celery's `[1, id, state, result]`). */
export interface ChordPart {
  readonly taskId: string;
  readonly state: TaskState;
  /** The value, or the exception dict of a FAILURE/REVOKED. */
  readonly result: unknown;
}

/** A complete chord join, held by the one worker that sends the body (Celery 5.7's dispatch claim). */
export interface ChordJoin {
  /** Every part: in group_index order (ties by their encoded text, as a sorted set), or finishing order when unordered. */
  readonly parts: readonly ChordPart[];
  /** Just before the body is sent: false when the claim lapsed and another worker took it (then do not send). */
  keepClaim(): Promise<boolean>;
  /**
   * After the body is sent (or fails to be): deletes the join and marks the chord done, so a late
   * copy of a part does nothing. False when the claim was lost first (the join is left to expire).
   */
  finish(): Promise<boolean>;
  /** After the body is failed with ChordError: drops only the size, so a late copy of a part cannot fail it again (Celery 5.7). */
  failed(): Promise<void>;
}

/** How long the dispatch claim lasts at first (Celery 5.7: twice result_chord_join_timeout, at least 5 s). */
const CLAIM_TTL_MS = 6_000;
/** How long it lasts while the body is sent (Celery's estimate for its default publish retries). */
const CLAIM_PUBLISH_TTL_MS = 21_000;
/** How long a finished chord stays marked done (Celery 5.7: 300 s). */
const DONE_TTL_MS = 300_000;

/** A saved group's member (Celery's result tuple): a task, or a group with its members. */
export interface SavedResult {
  readonly id: string;
  /** The members when this member is itself a group, else null. */
  readonly members: readonly SavedResult[] | null;
}

/** Celery's chord bookkeeping in the result backend (spec §5.5) and GroupResult.save/restore. */
export interface ChordStore {
  /** Stores the header size, before the last header task is published (Celery's set_chord_size). */
  setSize(groupId: string, size: number): Promise<void>;
  /** One more header part to wait for: a task added to a running chord (Celery's add_to_chord, INCR `.t`). */
  addToChord(groupId: string): Promise<void>;
  /**
   * Adds one finished header task (once per task id and index). Resolves with the complete join
   * when this part completed the header and holds the body's dispatch (one caller does), else null.
   */
  addPart(groupId: string, groupIndex: number | null, part: ChordPart): Promise<ChordJoin | null>;
  /** Saves a group as Celery's GroupResult.save (`celery-taskset-meta-<gid>`); a member with members is a nested group. */
  saveGroup(groupId: string, members: readonly SavedResult[]): Promise<void>;
  /** A saved group with its nesting (Celery's GroupResult.restore; a chord header Celery saved because it holds groups), or null. */
  restoreGroupTree(groupId: string): Promise<SavedResult[] | null>;
  /** Deletes a saved group. */
  forgetGroup(groupId: string): Promise<void>;
}

export const TASK_META_PREFIX = 'celery-task-meta-';
export const GROUP_META_PREFIX = 'celery-taskset-meta-';

/** Options of the chord join (Celery's `result_backend_transport_options`). */
export interface ChordJoinOptions {
  /** Celery's `result_chord_ordered` (default true): the body gets header order, else finishing order. */
  readonly ordered: boolean;
}

/** Celery's result tuple `[[id, parent], null]`, or a group's `[[id, parent], [members…]]`. */
function savedResult(t: unknown, gid: string, kind: string): SavedResult {
  if (!Array.isArray(t) || !Array.isArray(t[0]) || typeof t[0][0] !== 'string')
    throw new BackendError(`Saved group ${gid} in the ${kind} backend: a member is not a result tuple: ${JSON.stringify(t)?.slice(0, 120)}`);
  return { id: t[0][0], members: Array.isArray(t[1]) ? t[1].map((m) => savedResult(m, gid, kind)) : null };
}

const asTuple = (r: SavedResult): unknown[] => [[r.id, null], r.members === null ? null : r.members.map(asTuple)];

/** Chords over any KeyValueStore: Celery's Redis layout when the store has chordAdd, else incr(). */
function createChordStore(store: KeyValueStore, ttl: { ttlMs: number } | undefined, join: ChordJoinOptions, dateTags: boolean): ChordStore {
  const group = (gid: string) => GROUP_META_PREFIX + gid;
  const keys = (gid: string): ChordKeys => {
    const g = group(gid);
    return { group: g, join: `${g}.j`, counter: `${g}.t`, size: `${g}.s`, seen: `${g}.d`, claim: `${g}.c` };
  };
  const decode = (gid: string, member: string): ChordPart => {
    try {
      const [, taskId, state, result] = parseJson(member) as [number, string, TaskState, unknown];
      return { taskId, state, result };
    } catch (err) {
      throw new BackendError(`Chord ${gid}: a header result in the ${store.kind} backend is not JSON`, { cause: err });
    }
  };
  /**
   * Without a native join: each part takes a slot (`.j.slots`), is stored there with its score,
   * and only then counted (`.j.n`), so the part that counts last finds every slot written.
   */
  const addByIncr = async (gid: string, index: number | null, member: string) => {
    const k = keys(gid);
    const slot = await store.incr(`${k.join}.slots`, ttl);
    await store.set(`${k.join}.${slot}`, JSON.stringify([index, member]), ttl);
    const count = await store.incr(`${k.join}.n`, ttl);
    const [counter, size] = await store.mget([k.counter, k.size]);
    return { count, counter: counter ?? null, size: size ?? null };
  };
  /** The parts stored by addByIncr, in join order: a sorted set's (score, then text) or finishing order. */
  const membersByIncr = async (gid: string, total: number): Promise<string[]> => {
    const k = keys(gid);
    const stored = await store.mget(Array.from({ length: total }, (_, i) => `${k.join}.${i + 1}`));
    const parts = stored.map((m, i) => {
      if (m === null) throw new BackendError(`Chord ${gid}: header result ${i + 1} is missing from the ${store.kind} backend`);
      const [score, member] = JSON.parse(m) as [number | null, string];
      return { score: score ?? Infinity, member };
    });
    if (join.ordered) parts.sort((a, b) => a.score - b.score || (a.member < b.member ? -1 : a.member > b.member ? 1 : 0));
    return parts.map((p) => p.member);
  };
  const restoreGroupTree = async (gid: string): Promise<SavedResult[] | null> => {
    const text = await store.get(group(gid));
    if (text === null) return null;
    let meta: { result?: unknown };
    try {
      meta = JSON.parse(text) as { result?: unknown };
    } catch (err) {
      throw new BackendError(`Saved group ${gid} in the ${store.kind} backend is not JSON`, { cause: err });
    }
    const children = Array.isArray(meta.result) ? meta.result[1] : null;
    if (!Array.isArray(children)) throw new BackendError(`Saved group ${gid} in the ${store.kind} backend has no result tuple`);
    return children.map((c) => savedResult(c, gid, store.kind));
  };
  return {
    async setSize(gid, size) {
      // A chord applied again under its frozen group id is a new run (Celery 5.7 drops the claim).
      await store.delete(keys(gid).claim);
      await store.set(keys(gid).size, String(size), ttl);
    },
    async addToChord(gid) {
      await store.incr(keys(gid).counter, ttl);
    },
    async addPart(gid, index, part) {
      // Python's bytes for the same outcome: a sorted set orders members of one score by their text.
      const member = pythonJsonDumps([1, part.taskId, part.state, part.result], dateTags);
      const k = keys(gid);
      const token = randomUUID();
      const r = store.chordAdd
        ? await store.chordAdd(k, index, member, { ...ttl, ordered: join.ordered, taskId: part.taskId, claimToken: token, claimTtlMs: CLAIM_TTL_MS })
        : { ...(await addByIncr(gid, index, member)), claimed: true };
      // No size yet: the client stores it just before publishing the last header task, so an
      // early part cannot be the last one (Celery's same rule).
      if (r.size === null) return null;
      const total = Number(r.size) + Number(r.counter ?? 0);
      if (r.count !== total || !r.claimed) return null;
      const members = store.chordMembers ? await store.chordMembers(k.join, { ordered: join.ordered, total }) : await membersByIncr(gid, total);
      const slots = async () =>
        store.chordAdd
          ? []
          : [`${k.join}.n`, `${k.join}.slots`, ...Array.from({ length: Number((await store.get(`${k.join}.slots`)) ?? 0) }, (_, i) => `${k.join}.${i + 1}`)];
      return {
        parts: members.map((m) => decode(gid, m)),
        keepClaim: async () => (store.chordExtendClaim ? store.chordExtendClaim(k, token, CLAIM_PUBLISH_TTL_MS) : true),
        async finish() {
          if (store.chordFinish) return store.chordFinish(k, token, DONE_TTL_MS);
          await Promise.all([k.join, k.counter, k.size, ...(await slots())].map((key) => store.delete(key)));
          return true;
        },
        failed: () => store.delete(k.size),
      };
    },
    saveGroup: (gid, members) => store.set(group(gid), JSON.stringify({ result: [[gid, null], members.map(asTuple)] }), ttl),
    restoreGroupTree,
    forgetGroup: (gid) => store.delete(group(gid)),
  };
}

/** With a watching store, how often a wait re-reads anyway (a lost push costs at most this). */
const WATCH_RECHECK_MS = 1000;
/**
 * expect() watches a sent task's key only while this client waits for results, or did within
 * this long: a client that calls get() gains a round trip per call, and a producer that never
 * waits (most of them) does not pay a subscription and a pushed result per task it sends.
 */
const EXPECT_AFTER_WAIT_MS = 2000;

/**
 * listen() over a store that has only watch() (a store written before listen() existed): watches
 * again after each set. A watch that fails is handed to the waiter (`onSet(err)`), which throws it.
 */
function listenByWatch(watch: NonNullable<KeyValueStore['watch']>): (key: string, onSet: (err?: unknown) => void) => () => void {
  return (key, onSet) => {
    const ctl = new AbortController();
    void (async () => {
      while (!ctl.signal.aborted) {
        await watch(key, ctl.signal);
        if (!ctl.signal.aborted) onSet();
      }
    })().catch((err: unknown) => onSet(err ?? new BackendError(`watch(${key}) failed`)));
    return () => ctl.abort();
  };
}

/** `dateTags`: results write a Date as kombu 5.3+'s datetime tag (config jsonDateTags). */
export function createKeyValueResultBackend(
  store: KeyValueStore,
  opts: { expiresMs: number | null; chordJoin?: ChordJoinOptions; dateTags?: boolean },
): ResultBackend {
  const dateTags = opts.dateTags ?? false;
  const key = (id: string) => TASK_META_PREFIX + id;
  const ttl = opts.expiresMs && opts.expiresMs > 0 ? { ttlMs: opts.expiresMs } : undefined;

  /** The stored meta; a value that is not Celery's meta fails at once, naming the key (never PENDING forever). */
  const parse = (id: string, text: string | null): TaskMeta | null => {
    if (text === null) return null;
    let meta: unknown;
    try {
      meta = parseJson(text);
    } catch (err) {
      throw new BackendError(`Stored result ${key(id)} in the ${store.kind} backend is not JSON`, { cause: err });
    }
    if (meta === null || typeof meta !== 'object' || Array.isArray(meta) || typeof (meta as TaskMeta).status !== 'string') {
      throw new BackendError(`Stored result ${key(id)} in the ${store.kind} backend is JSON but not a task result (no "status"): ${text.slice(0, 80)}`);
    }
    return meta as TaskMeta;
  };

  const get = async (taskId: string) => parse(taskId, await store.get(key(taskId)));
  /** Stores `meta` unless a SUCCESS is stored, on a store without setUnlessSuccess (read, then set). */
  const storeChecked = async (meta: TaskMeta): Promise<void> => {
    const prev = await get(meta.task_id);
    if (prev?.status === 'SUCCESS') return;
    await store.set(key(meta.task_id), stringifyJson(meta, dateTags), ttl);
  };

  /**
   * Reads until the meta is READY, waiting in between for a set of the key (a store that listens),
   * a recheck or the abort. The listener is there before the first read and for the whole wait, so
   * a set between a read and the wait is not missed, and a set during a read reads again; no
   * AbortController, watch promise and sleep per wake-up (they cost the caller more than the read:
   * this is the round trip's last step). A push can be lost (fs.watch misses some renames made by
   * another process): a store that pushes is re-read every WATCH_RECHECK_MS anyway, so a lost
   * event costs a second, not the whole timeout; one that cannot push is polled every intervalMs.
   */
  async function waitFor(taskId: string, w: WaitOptions): Promise<TaskMeta> {
    const deadline = Date.now() + w.timeoutMs;
    const interval = w.intervalMs ?? 100;
    const listen = store.listen ?? (store.watch ? listenByWatch(store.watch) : null);
    const recheck = listen ? Math.max(interval, WATCH_RECHECK_MS) : interval;
    let set = false;
    let failed = null as { err: unknown } | null; // set by the listener (TypeScript does not see it)
    let wake: (() => void) | null = null;
    const stop = listen?.(key(taskId), (err?: unknown) => {
      if (err !== undefined) failed = { err };
      set = true;
      wake?.();
    });
    const aborted = () => wake?.();
    w.signal?.addEventListener('abort', aborted, { once: true });
    let last: TaskMeta | null = null;
    try {
      while (!w.signal?.aborted) {
        set = false;
        last = await get(taskId);
        if (last && READY_STATES.has(last.status)) return last;
        if (failed) throw failed.err;
        const left = deadline - Date.now();
        if (left <= 0) break;
        if (set || w.signal?.aborted) continue; // set while reading: read again
        let timer: NodeJS.Timeout | undefined;
        await new Promise<void>((resolve) => {
          wake = resolve;
          timer = setTimeout(resolve, Math.min(recheck, left));
        });
        clearTimeout(timer);
        wake = null;
      }
    } finally {
      stop?.();
      w.signal?.removeEventListener('abort', aborted);
    }
    throw new ResultTimeoutError(taskId, w.timeoutMs, last?.status ?? 'PENDING');
  }

  /** waitReady() calls in progress, and when the last one ended (performance.now()). */
  let waiting = 0;
  let waitedAt = -Infinity;

  return {
    kind: store.kind,
    expect: store.expect
      ? (taskId) => {
          if (waiting > 0 || performance.now() - waitedAt < EXPECT_AFTER_WAIT_MS) store.expect!(key(taskId));
        }
      : undefined,
    chords: createChordStore(store, ttl, opts.chordJoin ?? { ordered: true }, dateTags),
    store(meta) {
      if (!store.setUnlessSuccess) return storeChecked(meta);
      // The driver's promise as it is (no async step of our own); an EncodeError rejects it.
      try {
        return store.setUnlessSuccess(key(meta.task_id), stringifyJson(meta, dateTags), ttl);
      } catch (err) {
        return Promise.reject(err);
      }
    },
    get,
    async waitReady(taskId, w) {
      waiting++;
      try {
        return await waitFor(taskId, w);
      } finally {
        waiting--;
        waitedAt = performance.now();
      }
    },
    async forget(taskId) {
      await store.delete(key(taskId));
    },
    close: () => store.close(),
  };
}
