/**
 * A list+watch cache of one resource type, with the restarts client-node 1.4's own informer lacks:
 * it lists, then watches from the list's resourceVersion with bookmarks and a server-side timeout,
 * re-watches when the server ends the watch, re-lists on 410 Gone, retries any other error with
 * capped backoff (not in a tight loop: kubernetes-client/javascript #1933), and a watchdog aborts
 * a watch the server failed to end `watchGraceMs` after its timeoutSeconds: a healthy watch always
 * ends then, so one still open is a silently dead connection (kubernetes-client/javascript #596,
 * #958). An idle watch gets no events or bookmarks at all, so silence alone proves nothing.
 * A re-list fires `delete` for objects that vanished meanwhile.
 */
import type { Logger } from 'pino';
import { isKubeStatus } from '../errors.js';
import type { KubeObject } from '../types.js';
import { sleep } from '../../../runtime/src/transport/wait.js';
import { backoffDelay } from '../../../runtime/src/transport/backoff.js';
import type { KubeClient, ResourceType, WatchEvent } from './kube-client.js';

export type InformerEvent = 'add' | 'update' | 'delete';

export interface Informer<T extends KubeObject> {
  readonly resource: ResourceType;
  get(namespace: string | undefined, name: string): T | undefined;
  list(namespace?: string): T[];
  on(event: InformerEvent, cb: (obj: T, old?: T) => void): void;
  /** True once the first list has been loaded. */
  readonly synced: boolean;
  /** Resolves when the first list has been loaded. */
  waitForSync(signal?: AbortSignal): Promise<void>;
  start(): void;
  stop(): Promise<void>;
}

export interface InformerOptions {
  kube: KubeClient;
  resource: ResourceType;
  namespace?: string;
  labelSelector?: string;
  log: Logger;
  /** Abort a watch still open this long after its server-side timeout (a dead connection). */
  watchGraceMs?: number;
  /** Server-side watch timeout; client-go uses 5-10 minutes. */
  watchTimeoutSeconds?: number;
  /** Backoff between failed list/watch attempts. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

class Gone extends Error {}

export function keyOf(obj: KubeObject): string {
  return obj.metadata.namespace ? `${obj.metadata.namespace}/${obj.metadata.name}` : obj.metadata.name;
}

/** Creates a cache of `resource` (optionally one namespace, a label selector); call start(). */
export function createInformer<T extends KubeObject>(o: InformerOptions): Informer<T> {
  const log = o.log.child({ informer: o.resource.plural });
  const cache = new Map<string, T>();
  const handlers: Record<InformerEvent, ((obj: T, old?: T) => void)[]> = { add: [], update: [], delete: [] };
  const watchGraceMs = o.watchGraceMs ?? 60_000;
  let synced = false;
  let syncWaiters: (() => void)[] = [];
  let abort: AbortController | null = null;
  let loop: Promise<void> | null = null;

  function emit(ev: InformerEvent, obj: T, old?: T): void {
    for (const h of handlers[ev]) {
      try {
        h(obj, old);
      } catch (err) {
        // A handler bug must not kill the watch loop; it is logged with the object key.
        log.error({ err, key: keyOf(obj), event: ev }, 'informer event handler failed');
      }
    }
  }

  function upsert(obj: T): void {
    const key = keyOf(obj);
    const old = cache.get(key);
    cache.set(key, obj);
    if (!old) emit('add', obj);
    else if (old.metadata.resourceVersion !== obj.metadata.resourceVersion) emit('update', obj, old);
  }

  async function relist(): Promise<string> {
    const r = await o.kube.list<T>(o.resource, { namespace: o.namespace, labelSelector: o.labelSelector });
    const seen = new Set<string>();
    for (const item of r.items) {
      seen.add(keyOf(item));
      upsert(item);
    }
    for (const [key, obj] of cache) {
      if (!seen.has(key)) {
        cache.delete(key);
        emit('delete', obj);
      }
    }
    if (!synced) {
      synced = true;
      for (const w of syncWaiters.splice(0)) w();
    }
    return r.resourceVersion;
  }

  async function run(signal: AbortSignal): Promise<void> {
    let resourceVersion = '';
    let failures = 0;
    while (!signal.aborted) {
      try {
        if (!resourceVersion) resourceVersion = await relist();
        const watchAbort = new AbortController();
        const onStop = () => watchAbort.abort();
        signal.addEventListener('abort', onStop, { once: true });
        let stalled = false;
        const timeoutSeconds = o.watchTimeoutSeconds ?? Math.round(300 + Math.random() * 300);
        const watchdog = setTimeout(
          () => {
            stalled = true;
            watchAbort.abort();
          },
          timeoutSeconds * 1000 + watchGraceMs,
        );
        try {
          await o.kube.watch<T>(
            o.resource,
            { namespace: o.namespace, labelSelector: o.labelSelector, resourceVersion, timeoutSeconds, signal: watchAbort.signal },
            (e: WatchEvent<T>) => {
              failures = 0;
              if (e.type === 'ERROR') {
                const status = e.object as unknown as { code?: number; message?: string };
                if (status.code === 410) throw new Gone(status.message ?? 'resource version too old');
                throw new Error(`watch error event: ${status.code ?? '?'} ${status.message ?? ''}`);
              }
              if (e.object.metadata?.resourceVersion) resourceVersion = e.object.metadata.resourceVersion;
              if (e.type === 'ADDED' || e.type === 'MODIFIED') upsert(e.object);
              else if (e.type === 'DELETED') {
                const key = keyOf(e.object);
                if (cache.delete(key)) emit('delete', e.object);
              }
            },
          );
        } catch (err) {
          if (signal.aborted) return;
          if (!stalled) throw err;
        } finally {
          clearTimeout(watchdog);
          signal.removeEventListener('abort', onStop);
        }
        if (stalled) log.warn({ timeoutSeconds, watchGraceMs }, 'watch not ended by the server after its timeout (dead connection?); restarting it');
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof Gone || isKubeStatus(err, 410)) {
          log.info('watch resource version expired (410 Gone); re-listing');
          resourceVersion = '';
          continue;
        }
        const delay = backoffDelay(failures++, o.minBackoffMs ?? 500, o.maxBackoffMs ?? 30_000);
        // Any other failure (network, 5xx, RBAC): the cache keeps serving the last state while we retry.
        log.warn({ err, retryInMs: delay }, 'list/watch failed; retrying');
        resourceVersion = '';
        await sleep(delay, signal);
      }
    }
  }

  return {
    resource: o.resource,
    get(namespace, name) {
      return cache.get(namespace ? `${namespace}/${name}` : name);
    },
    list(namespace) {
      const all = [...cache.values()];
      return namespace ? all.filter((x) => x.metadata.namespace === namespace) : all;
    },
    on(event, cb) {
      handlers[event].push(cb);
    },
    get synced() {
      return synced;
    },
    waitForSync(signal) {
      if (synced) return Promise.resolve();
      return new Promise((resolve, reject) => {
        syncWaiters.push(resolve);
        signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
      });
    },
    start() {
      if (loop) return;
      abort = new AbortController();
      loop = run(abort.signal);
    },
    async stop() {
      abort?.abort();
      await loop;
      loop = null;
      syncWaiters = [];
    },
  };
}
