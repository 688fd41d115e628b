/**
 * An in-memory KubeClient for unit tests of the reconcilers' branch logic (pure logic only:
 * behaviour against the real API server is tested in test/operator on kube-apiserver + etcd).
 *
 * What it models, as the API server does:
 * - create (409 AlreadyExists), get/replace/patch/delete of a missing object (404 NotFound, or
 *   null/false where the real client returns that), all as the real client's KubeApiError;
 * - uid, a resourceVersion that increases on every change (and only then), generation bumped when
 *   anything outside metadata and status changes, metadata.resourceVersion in a write as a
 *   precondition (409 Conflict);
 * - the status subresource: writes to the object keep its status, writes to `status` change only status;
 * - merge patches (RFC 7386: null removes a key);
 * - server-side apply as create-or-merge: maps merge, lists are replaced, and fields the same
 *   field manager applied before but left out now are removed;
 * - finalizers: delete of an object with finalizers sets deletionTimestamp, and removing the last
 *   finalizer then deletes it;
 * - list and watch with a namespace and an equality label selector (a watch replays changes after
 *   its resourceVersion, then follows live changes until its timeout or abort).
 *
 * Not modelled (these throw, so a test cannot pass on a silent wrong answer): JSON patches, the
 * scale subresource, set-based label selectors. Field ownership conflicts between managers are
 * not modelled either: every apply behaves as `force: true`.
 *
 * Extras for tests: `informer(rt)` is an Informer over the store (reads are immediate, events fire
 * synchronously on each change), `writes` lists every write in order, and `intercept` lets a test
 * make a request fail (e.g. 403 Forbidden on the Deployment apply).
 */
import { KubeApiError } from '../../operator/src/errors.js';
import { canonicalJson } from '../../operator/src/k8s/apply.js';
import { rfc3339 } from '../../operator/src/k8s/conditions.js';
import type { Informer, InformerEvent } from '../../operator/src/k8s/informer.js';
import {
  apiVersionOf,
  resourcePath,
  type KubeClient,
  type ListResult,
  type ResourceType,
  type WatchEvent,
  type WatchOptions,
} from '../../operator/src/k8s/kube-client.js';
import { FIELD_MANAGER, type KubeObject } from '../../operator/src/types.js';

/** One call to the client, as `writes` records it and `intercept` sees it. */
export interface KubeRequest {
  verb: 'get' | 'list' | 'create' | 'replace' | 'apply' | 'patch' | 'delete' | 'watch';
  resource: ResourceType;
  namespace: string | undefined;
  name: string | undefined;
  subresource?: 'status' | 'scale';
  /** The object, patch or apply body sent, as sent. */
  body?: unknown;
}

export interface MemoryKube extends KubeClient {
  /** Every create, replace, apply, patch and delete past the intercept hook, in order (refused ones too). */
  readonly writes: KubeRequest[];
  /** Runs before every request; throw from it to make the request fail. Replaces any earlier hook. */
  intercept(hook: ((req: KubeRequest) => void) | null): void;
  /** An Informer backed by the store: `get`/`list` read it directly, events fire on each change. */
  informer<T extends KubeObject>(rt: ResourceType): Informer<T>;
}

/** Resources whose status is a subresource (object writes keep status; status writes keep the rest). */
const WITH_STATUS = new Set([
  'taskqueues',
  'workerpools',
  'taskschedules',
  'deployments',
  'poddisruptionbudgets',
  'pods',
  'namespaces',
  'customresourcedefinitions',
]);

type Json = Record<string, unknown>;

interface Change {
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  resource: ResourceType;
  object: KubeObject;
}

const isMap = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const clone = <T>(v: T): T => structuredClone(v);
/** Equal as JSON, whatever the key order. */
const same = (a: unknown, b: unknown): boolean => canonicalJson(a) === canonicalJson(b);

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isMap(patch)) return clone(patch);
  const out: Json = isMap(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/**
 * Removes from `live` the fields `before` (the manager's previous apply) had and `now` lacks; in a
 * map only this manager's keys go, and the map itself only once it is empty.
 */
function pruneDropped(live: Json, before: Json, now: Json): void {
  for (const [k, v] of Object.entries(before)) {
    const l = live[k];
    if (isMap(v) && isMap(l)) {
      pruneDropped(l, v, isMap(now[k]) ? now[k] : {});
      if (!(k in now) && Object.keys(l).length === 0) delete live[k];
    } else if (!(k in now)) delete live[k];
  }
}

/** Everything but metadata and status: what bumps metadata.generation when it changes. */
function specPart(o: KubeObject): Json {
  const { metadata: _m, status: _s, ...rest } = o as KubeObject & { status?: unknown };
  return rest;
}

/** Equality selectors only: `a=b`, `a==b`, `a!=b`, `a`, `!a`, comma-separated. */
function selectorMatcher(selector: string | undefined): (labels: Record<string, string>) => boolean {
  if (!selector) return () => true;
  const tests = selector.split(',').map((term) => {
    const t = term.trim();
    let m: RegExpExecArray | null;
    if ((m = /^([\w./-]+)\s*!=\s*([\w.-]*)$/.exec(t))) {
      const [, k, v] = m as unknown as [string, string, string];
      return (l: Record<string, string>) => l[k] !== v;
    }
    if ((m = /^([\w./-]+)\s*==?\s*([\w.-]*)$/.exec(t))) {
      const [, k, v] = m as unknown as [string, string, string];
      return (l: Record<string, string>) => l[k] === v;
    }
    if ((m = /^!([\w./-]+)$/.exec(t))) {
      const k = m[1] as string;
      return (l: Record<string, string>) => !(k in l);
    }
    if (/^[\w./-]+$/.test(t)) return (l: Record<string, string>) => t in l;
    throw new Error(`memory-kube: label selector term "${t}" is not modelled (only equality selectors)`);
  });
  return (labels) => tests.every((f) => f(labels));
}

/** Creates an empty in-memory API server; `now` stamps creation and deletion timestamps. */
export function createMemoryKube(o: { now?: () => Date } = {}): MemoryKube {
  const now = o.now ?? (() => new Date());
  const store = new Map<string, KubeObject>();
  /** What each field manager last applied, per object key. */
  const applied = new Map<string, Map<string, Json>>();
  const history: Change[] = [];
  const listeners = new Set<(c: Change) => void>();
  const writes: KubeRequest[] = [];
  let hook: ((req: KubeRequest) => void) | null = null;
  let rv = 0;
  let uid = 0;

  const typeKey = (rt: ResourceType) => `${rt.group}/${rt.plural}`;
  const keyOf = (rt: ResourceType, ns: string | undefined, name: string) => `${typeKey(rt)}|${rt.namespaced ? (ns ?? '') : ''}|${name}`;
  const gr = (rt: ResourceType) => (rt.group ? `${rt.plural}.${rt.group}` : rt.plural);

  function notFound(method: string, rt: ResourceType, ns: string | undefined, name: string): KubeApiError {
    return new KubeApiError(404, 'NotFound', `${gr(rt)} "${name}" not found`, method, resourcePath(rt, ns, name));
  }

  function request(req: KubeRequest): void {
    hook?.(req);
    if (!['get', 'list', 'watch'].includes(req.verb)) writes.push(req);
  }

  function checkPrecondition(method: string, rt: ResourceType, current: KubeObject, sent: string | undefined): void {
    if (sent !== undefined && sent !== current.metadata.resourceVersion) {
      throw new KubeApiError(
        409,
        'Conflict',
        `Operation cannot be fulfilled on ${gr(rt)} "${current.metadata.name}": the object has been modified; please apply your changes to the latest version and try again`,
        method,
        resourcePath(rt, current.metadata.namespace, current.metadata.name),
      );
    }
  }

  function emit(type: Change['type'], rt: ResourceType, obj: KubeObject): void {
    const change: Change = { rv, type, resource: rt, object: clone(obj) };
    history.push(change);
    for (const l of listeners) l(change);
  }

  /**
   * Stores `next` in place of `prev` if anything changed: new resourceVersion, generation bumped
   * when the spec part changed, deletion completed once a deleting object has no finalizers left.
   */
  function commit<T extends KubeObject>(rt: ResourceType, key: string, prev: KubeObject, next: KubeObject): T {
    next.metadata.resourceVersion = prev.metadata.resourceVersion;
    if (same(prev, next)) return clone(next) as T;
    next.metadata.generation = (prev.metadata.generation ?? 1) + (same(specPart(prev), specPart(next)) ? 0 : 1);
    next.metadata.resourceVersion = String(++rv);
    if (next.metadata.deletionTimestamp && (next.metadata.finalizers ?? []).length === 0) {
      store.delete(key);
      applied.delete(key);
      emit('DELETED', rt, next);
    } else {
      store.set(key, next);
      emit('MODIFIED', rt, next);
    }
    return clone(next) as T;
  }

  /** The object written to the main resource: status stays as stored where it is a subresource. */
  function keepStatus(rt: ResourceType, prev: KubeObject | undefined, next: Json): void {
    if (!WITH_STATUS.has(rt.plural)) return;
    const status = (prev as Json | undefined)?.status;
    if (status === undefined) delete next.status;
    else next.status = clone(status);
  }

  function insert<T extends KubeObject>(rt: ResourceType, obj: KubeObject): T {
    const { namespace, name } = obj.metadata;
    const key = keyOf(rt, namespace, name);
    if (store.has(key)) {
      throw new KubeApiError(409, 'AlreadyExists', `${gr(rt)} "${name}" already exists`, 'POST', resourcePath(rt, namespace));
    }
    const next = { ...clone(obj), apiVersion: apiVersionOf(rt), kind: rt.kind } as KubeObject;
    keepStatus(rt, undefined, next as unknown as Json);
    next.metadata = {
      ...next.metadata,
      uid: `uid-${++uid}`,
      generation: 1,
      creationTimestamp: rfc3339(now()),
      resourceVersion: String(++rv),
    };
    delete next.metadata.deletionTimestamp;
    store.set(key, next);
    emit('ADDED', rt, next);
    return clone(next) as T;
  }

  function matching(rt: ResourceType, namespace: string | undefined, selector: string | undefined): (obj: KubeObject) => boolean {
    const labelsMatch = selectorMatcher(selector);
    return (obj) => (!namespace || obj.metadata.namespace === namespace) && labelsMatch(obj.metadata.labels ?? {});
  }

  function storeInformer<T extends KubeObject>(rt: ResourceType): Informer<T> {
    const handlers: Record<InformerEvent, ((obj: T, old?: T) => void)[]> = { add: [], update: [], delete: [] };
    const previous = new Map<string, T>();
    for (const [key, obj] of store) if (key.startsWith(`${typeKey(rt)}|`)) previous.set(key, clone(obj) as T);
    listeners.add((c) => {
      if (typeKey(c.resource) !== typeKey(rt)) return;
      const key = keyOf(rt, c.object.metadata.namespace, c.object.metadata.name);
      const obj = clone(c.object) as T;
      const old = previous.get(key);
      if (c.type === 'DELETED') previous.delete(key);
      else previous.set(key, obj);
      const event: InformerEvent = c.type === 'ADDED' ? 'add' : c.type === 'MODIFIED' ? 'update' : 'delete';
      for (const h of handlers[event]) h(obj, old);
    });
    return {
      resource: rt,
      get: (ns, name) => {
        const obj = store.get(keyOf(rt, ns, name));
        return obj ? (clone(obj) as T) : undefined;
      },
      list: (ns) =>
        [...store.entries()].filter(([k, v]) => k.startsWith(`${typeKey(rt)}|`) && (!ns || v.metadata.namespace === ns)).map(([, v]) => clone(v) as T),
      on: (event, cb) => void handlers[event].push(cb),
      synced: true,
      waitForSync: async () => undefined,
      start: () => undefined,
      stop: async () => undefined,
    };
  }

  const client: MemoryKube = {
    writes,
    intercept(h) {
      hook = h;
    },
    informer: storeInformer,

    async get<T extends KubeObject>(rt: ResourceType, namespace: string | undefined, name: string, opts: { subresource?: 'status' | 'scale' } = {}) {
      request({ verb: 'get', resource: rt, namespace, name, subresource: opts.subresource });
      if (opts.subresource === 'scale') throw new Error('memory-kube: the scale subresource is not modelled');
      const obj = store.get(keyOf(rt, namespace, name));
      return obj ? (clone(obj) as T) : null;
    },

    async list<T extends KubeObject>(rt: ResourceType, opts: { namespace?: string; labelSelector?: string } = {}): Promise<ListResult<T>> {
      request({ verb: 'list', resource: rt, namespace: opts.namespace, name: undefined });
      const wanted = matching(rt, opts.namespace, opts.labelSelector);
      const items = [...store.entries()].filter(([k, v]) => k.startsWith(`${typeKey(rt)}|`) && wanted(v)).map(([, v]) => clone(v) as T);
      return { items, resourceVersion: String(rv) };
    },

    async create<T extends KubeObject>(rt: ResourceType, obj: T) {
      request({ verb: 'create', resource: rt, namespace: obj.metadata.namespace, name: obj.metadata.name, body: clone(obj) });
      return insert<T>(rt, obj);
    },

    async replace<T extends KubeObject>(rt: ResourceType, obj: T) {
      const { namespace, name } = obj.metadata;
      request({ verb: 'replace', resource: rt, namespace, name, body: clone(obj) });
      const key = keyOf(rt, namespace, name);
      const prev = store.get(key);
      if (!prev) throw notFound('PUT', rt, namespace, name);
      checkPrecondition('PUT', rt, prev, obj.metadata.resourceVersion);
      const next = { ...clone(obj), apiVersion: apiVersionOf(rt), kind: rt.kind } as KubeObject;
      keepStatus(rt, prev, next as unknown as Json);
      next.metadata = {
        ...next.metadata,
        uid: prev.metadata.uid,
        creationTimestamp: prev.metadata.creationTimestamp,
        deletionTimestamp: prev.metadata.deletionTimestamp,
      };
      if (!next.metadata.deletionTimestamp) delete next.metadata.deletionTimestamp;
      return commit<T>(rt, key, prev, next);
    },

    async apply<T extends KubeObject>(rt: ResourceType, obj: T, opts: { fieldManager?: string; force?: boolean; dryRun?: boolean } = {}) {
      const { namespace, name } = obj.metadata;
      const body = { apiVersion: apiVersionOf(rt), kind: rt.kind, ...clone(obj) } as unknown as Json;
      request({ verb: 'apply', resource: rt, namespace, name, body: clone(body) });
      const manager = opts.fieldManager ?? FIELD_MANAGER;
      const key = keyOf(rt, namespace, name);
      const prev = store.get(key);
      if (opts.dryRun) {
        const preview = (prev ? mergePatch(prev, body) : body) as T;
        keepStatus(rt, prev, preview as unknown as Json);
        return preview;
      }
      let result: T;
      if (!prev) {
        result = insert<T>(rt, body as unknown as T);
      } else {
        checkPrecondition('PATCH', rt, prev, obj.metadata.resourceVersion);
        const next = mergePatch(prev, body) as Json;
        const before = applied.get(key)?.get(manager);
        if (before) pruneDropped(next, before, body);
        keepStatus(rt, prev, next);
        const meta = next.metadata as KubeObject['metadata'];
        Object.assign(meta, { uid: prev.metadata.uid, creationTimestamp: prev.metadata.creationTimestamp });
        result = commit<T>(rt, key, prev, next as unknown as KubeObject);
      }
      if (store.has(key)) {
        const managers = applied.get(key) ?? new Map<string, Json>();
        managers.set(manager, body);
        applied.set(key, managers);
      }
      return result;
    },

    async patch<T extends KubeObject>(
      rt: ResourceType,
      namespace: string | undefined,
      name: string,
      patch: unknown,
      opts: { type?: 'merge' | 'json'; subresource?: 'status' | 'scale' } = {},
    ) {
      request({ verb: 'patch', resource: rt, namespace, name, subresource: opts.subresource, body: clone(patch) });
      if ((opts.type ?? 'merge') !== 'merge') throw new Error('memory-kube: JSON patches are not modelled');
      if (opts.subresource === 'scale') throw new Error('memory-kube: the scale subresource is not modelled');
      const key = keyOf(rt, namespace, name);
      const prev = store.get(key);
      if (!prev) throw notFound('PATCH', rt, namespace, name);
      const p = (isMap(patch) ? patch : {}) as { metadata?: { resourceVersion?: string } };
      checkPrecondition('PATCH', rt, prev, p.metadata?.resourceVersion);
      const merged = mergePatch(prev, patch) as Json;
      let next: Json;
      if (opts.subresource === 'status') {
        // Only status changes through the status subresource.
        next = { ...clone(prev), status: merged.status } as Json;
        if (merged.status === undefined) delete next.status;
      } else {
        next = merged;
        keepStatus(rt, prev, next);
        const meta = next.metadata as KubeObject['metadata'];
        Object.assign(meta, { uid: prev.metadata.uid, creationTimestamp: prev.metadata.creationTimestamp });
      }
      return commit<T>(rt, key, prev, next as unknown as KubeObject);
    },

    async delete(rt, namespace, name, opts = {}) {
      request({ verb: 'delete', resource: rt, namespace, name, body: opts.propagationPolicy });
      const key = keyOf(rt, namespace, name);
      const prev = store.get(key);
      if (!prev) return false;
      if ((prev.metadata.finalizers ?? []).length > 0) {
        if (!prev.metadata.deletionTimestamp) {
          const next = clone(prev);
          next.metadata.deletionTimestamp = rfc3339(now());
          commit(rt, key, prev, next);
        }
        return true;
      }
      store.delete(key);
      applied.delete(key);
      rv++;
      emit('DELETED', rt, { ...prev, metadata: { ...prev.metadata, resourceVersion: String(rv) } });
      return true;
    },

    async watch<T extends KubeObject>(rt: ResourceType, opts: WatchOptions, onEvent: (e: WatchEvent<T>) => void) {
      request({ verb: 'watch', resource: rt, namespace: opts.namespace, name: undefined });
      const wanted = matching(rt, opts.namespace, opts.labelSelector);
      const from = Number(opts.resourceVersion || '0');
      const deliver = (c: Change) => {
        if (c.rv > from && typeKey(c.resource) === typeKey(rt) && wanted(c.object)) onEvent({ type: c.type, object: clone(c.object) as T });
      };
      for (const c of history) deliver(c);
      if (opts.signal.aborted) return;
      await new Promise<void>((resolve) => {
        const end = () => {
          listeners.delete(deliver);
          clearTimeout(timer);
          opts.signal.removeEventListener('abort', end);
          resolve();
        };
        const timer = setTimeout(end, opts.timeoutSeconds * 1000);
        listeners.add(deliver);
        opts.signal.addEventListener('abort', end, { once: true });
      });
    },
  };
  return client;
}
