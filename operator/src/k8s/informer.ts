/**
 * A list+watch cache of one resource type, with the restarts client-node 1.4's own informer lacks:
 * it lists, then watches from the list's resourceVersion with bookmarks and a server-side timeout,
 * re-watches when the server ends the watch, re-lists on 410 Gone, retries any other error with
 * capped backoff (not in a tight loop: kubernetes-client/javascript #1933), and a watchdog aborts
 * a watch that has been silent for `watchdogMs` (silent stalls: kubernetes-client/javascript #596,
 * #958). A re-list fires `delete` for objects that vanished meanwhile.
 */
import type { Logger } from 'pino';
import { isKubeStatus } from '../errors.js';
import type { KubeObject } from '../types.js';
import { exponentialDelayMs, sleep } from './backoff.js';
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
  /** Restart a watch that saw no event or bookmark for this long. */
  watchdogMs?: number;
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
  const watchdogMs = o.watchdogMs ?? 5 * 60_000;
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
        let lastSeen = Date.now();
        let stalled = false;
        const watchdog = setInterval(() => {
          if (Date.now() - lastSeen > watchdogMs) {
            stalled = true;
            watchAbort.abort();
          }
        }, Math.min(watchdogMs, 30_000));
        const timeoutSeconds = o.watchTimeoutSeconds ?? Math.round(300 + Math.random() * 300);
        try {
          await o.kube.watch<T>(
            o.resource,
            { namespace: o.namespace, labelSelector: o.labelSelector, resourceVersion, timeoutSeconds, signal: watchAbort.signal },
            (e: WatchEvent<T>) => {
              lastSeen = Date.now();
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
          clearInterval(watchdog);
          signal.removeEventListener('abort', onStop);
        }
        if (stalled) log.warn({ watchdogMs }, 'watch silent for too long; restarting it');
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof Gone || isKubeStatus(err, 410)) {
          log.info('watch resource version expired (410 Gone); re-listing');
          resourceVersion = '';
          continue;
        }
        const delay = exponentialDelayMs(failures++, o.minBackoffMs ?? 500, o.maxBackoffMs ?? 30_000);
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
