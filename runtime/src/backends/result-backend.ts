/**
 * The result seam the app and worker use. `createKeyValueResultBackend` gives Celery's meaning
 * (keys `celery-task-meta-<id>`, JSON meta, expiry, "never overwrite SUCCESS") to any
 * KeyValueStore; rpc:// implements ResultBackend directly over the broker.
 */
import { BackendError, ResultTimeoutError } from '../errors.js';
import { READY_STATES, type TaskMeta } from '../protocol/result-meta.js';
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
  close(): Promise<void>;
}

export const TASK_META_PREFIX = 'celery-task-meta-';

export function createKeyValueResultBackend(store: KeyValueStore, opts: { expiresMs: number | null }): ResultBackend {
  const key = (id: string) => TASK_META_PREFIX + id;
  const ttl = opts.expiresMs && opts.expiresMs > 0 ? { ttlMs: opts.expiresMs } : undefined;

  /** The stored meta; a value that is not Celery's meta fails at once, naming the key (never PENDING forever). */
  const parse = (id: string, text: string | null): TaskMeta | null => {
    if (text === null) return null;
    let meta: unknown;
    try {
      meta = JSON.parse(text);
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
    async store(meta) {
      if (store.setUnlessSuccess) return store.setUnlessSuccess(key(meta.task_id), JSON.stringify(meta), ttl);
      const prev = await get(meta.task_id);
      if (prev?.status === 'SUCCESS') return;
      await store.set(key(meta.task_id), JSON.stringify(meta), ttl);
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
