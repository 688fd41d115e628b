/**
 * The result seam the app and worker use. `createKeyValueResultBackend` gives Celery's meaning
 * (keys `celery-task-meta-<id>`, JSON meta, expiry, "never overwrite SUCCESS") to any
 * KeyValueStore; rpc:// implements ResultBackend directly over the broker.
 */
import { BackendError, ResultTimeoutError } from '../errors.js';
import { parseJson, stringifyJson } from '../protocol/json.js';
import { READY_STATES, type TaskMeta, type TaskState } from '../protocol/result-meta.js';
import { sleep } from '../transport/wait.js';
import type { KeyValueStore } from './backend.js';

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

/** Celery's chord bookkeeping in the result backend (spec §5.5) and GroupResult.save/restore. */
export interface ChordStore {
  /** Stores the header size, before the last header task is published (Celery's set_chord_size). */
  setSize(groupId: string, size: number): Promise<void>;
  /**
   * Adds one finished header task. Resolves with every part in group_index order when this one
   * completed the header (exactly one caller sees that), else null.
   */
  addPart(groupId: string, groupIndex: number | null, part: ChordPart): Promise<ChordPart[] | null>;
  /** Deletes the join's keys once the body is applied or failed. */
  clear(groupId: string): Promise<void>;
  /** Saves a group's task ids as Celery's GroupResult.save (`celery-taskset-meta-<gid>`). */
  saveGroup(groupId: string, taskIds: readonly string[]): Promise<void>;
  /** The task ids of a saved group (Celery's GroupResult.restore), or null. */
  restoreGroup(groupId: string): Promise<string[] | null>;
  /** Deletes a saved group. */
  forgetGroup(groupId: string): Promise<void>;
}

export const TASK_META_PREFIX = 'celery-task-meta-';
export const GROUP_META_PREFIX = 'celery-taskset-meta-';

/** The task id of a plain task's Celery result tuple (`[[id, parent], null]`); null for a group's (members in place of null) or anything else. */
const tupleId = (t: unknown): string | null => (Array.isArray(t) && Array.isArray(t[0]) && typeof t[0][0] === 'string' && t[1] == null ? t[0][0] : null);

/** Chords over any KeyValueStore: Celery's Redis layout when the store has chordAdd, else incr(). */
function createChordStore(store: KeyValueStore, ttl: { ttlMs: number } | undefined, dateTags: boolean): ChordStore {
  const group = (gid: string) => GROUP_META_PREFIX + gid;
  const keys = (gid: string) => ({ join: `${group(gid)}.j`, counter: `${group(gid)}.t`, size: `${group(gid)}.s` });
  const decode = (gid: string, member: string): ChordPart => {
    try {
      const [, taskId, state, result] = parseJson(member) as [number, string, TaskState, unknown];
      return { taskId, state, result };
    } catch (err) {
      throw new BackendError(`Chord ${gid}: a header result in the ${store.kind} backend is not JSON`, { cause: err });
    }
  };
  /** Without a native sorted set: each part under `.j.<index>`, counted by incr (set first, so the last counter sees all). */
  const addByIncr = async (gid: string, index: number | null, member: string) => {
    if (index === null) throw new BackendError(`Chord ${gid}: a header task without group_index cannot join on the ${store.kind} backend`);
    const k = keys(gid);
    await store.set(`${k.join}.${index}`, member, ttl);
    const count = await store.incr(`${k.join}.n`, ttl);
    const [counter, size] = await store.mget([k.counter, k.size]);
    return { count, counter: counter ?? null, size: size ?? null };
  };
  return {
    setSize: (gid, size) => store.set(keys(gid).size, String(size), ttl),
    async addPart(gid, index, part) {
      const member = stringifyJson([1, part.taskId, part.state, part.result], dateTags);
      const k = keys(gid);
      const r = store.chordAdd ? await store.chordAdd(k, index, member, ttl) : await addByIncr(gid, index, member);
      // No size yet: the client stores it just before publishing the last header task, so an
      // early part cannot be the last one (Celery's same rule).
      if (r.size === null) return null;
      const total = Number(r.size) + Number(r.counter ?? 0);
      if (r.count !== total) return null;
      if (store.chordMembers) return (await store.chordMembers(k.join)).map((m) => decode(gid, m));
      const members = await store.mget(Array.from({ length: total }, (_, i) => `${k.join}.${i}`));
      return members.map((m, i) => {
        if (m === null) throw new BackendError(`Chord ${gid}: header result ${i} is missing from the ${store.kind} backend`);
        return decode(gid, m);
      });
    },
    async clear(gid) {
      const k = keys(gid);
      const parts = store.chordAdd ? [] : [`${k.join}.n`, ...Array.from({ length: Number((await store.get(k.size)) ?? 0) }, (_, i) => `${k.join}.${i}`)];
      await Promise.all([k.join, k.counter, k.size, ...parts].map((key) => store.delete(key)));
    },
    saveGroup: (gid, ids) => store.set(group(gid), stringifyJson({ result: [[gid, null], ids.map((id) => [[id, null], null])] }), ttl),
    async restoreGroup(gid) {
      const text = await store.get(group(gid));
      if (text === null) return null;
      let meta: { result?: unknown };
      try {
        meta = parseJson(text) as { result?: unknown };
      } catch (err) {
        throw new BackendError(`Saved group ${gid} in the ${store.kind} backend is not JSON`, { cause: err });
      }
      const children = Array.isArray(meta.result) ? meta.result[1] : null;
      if (!Array.isArray(children)) throw new BackendError(`Saved group ${gid} in the ${store.kind} backend has no result tuple`);
      return children.map((c) => {
        const id = tupleId(c);
        if (id === null) throw new BackendError(`Saved group ${gid}: a member is not a task result tuple (nested groups are not supported)`);
        return id;
      });
    },
    forgetGroup: (gid) => store.delete(group(gid)),
  };
}

/** `dateTags`: results write a Date as kombu 5.3+'s datetime tag (config jsonDateTags). */
export function createKeyValueResultBackend(store: KeyValueStore, opts: { expiresMs: number | null; dateTags?: boolean }): ResultBackend {
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

  return {
    kind: store.kind,
    chords: createChordStore(store, ttl, dateTags),
    async store(meta) {
      if (store.setUnlessSuccess) return store.setUnlessSuccess(key(meta.task_id), stringifyJson(meta, dateTags), ttl);
      const prev = await get(meta.task_id);
      if (prev?.status === 'SUCCESS') return;
      await store.set(key(meta.task_id), stringifyJson(meta, dateTags), ttl);
    },
    get,
    async waitReady(taskId, w) {
      const deadline = Date.now() + w.timeoutMs;
      const interval = w.intervalMs ?? 100;
      let last: TaskMeta | null = null;
      while (!w.signal?.aborted) {
        const ctl = new AbortController();
        const stop = () => ctl.abort();
        w.signal?.addEventListener('abort', stop, { once: true });
        // Subscribe before reading, so a store between the read and the wait is not missed.
        const changed = store.watch ? store.watch(key(taskId), ctl.signal) : null;
        try {
          last = await get(taskId);
          if (last && READY_STATES.has(last.status)) return last;
          const left = deadline - Date.now();
          if (left <= 0) break;
          await Promise.race([changed ?? sleep(Math.min(interval, left), ctl.signal), sleep(left, ctl.signal)]);
        } finally {
          ctl.abort();
          w.signal?.removeEventListener('abort', stop);
          await changed;
        }
      }
      throw new ResultTimeoutError(taskId, w.timeoutMs, last?.status ?? 'PENDING');
    },
    async forget(taskId) {
      await store.delete(key(taskId));
    },
    close: () => store.close(),
  };
}
