/**
 * KubeClient: the operator's one seam to the Kubernetes API.
 *
 * It sends and receives raw JSON. @kubernetes/client-node provides the KubeConfig (kubeconfig files,
 * in-cluster service account, exec/token plugins, TLS); its typed APIs are not used because their
 * model serializer drops fields it does not know and turns timestamps into Dates, and its informer
 * stops on errors (see informer.ts). Server-side apply goes out as `application/apply-patch+yaml`
 * (JSON is valid YAML; `+json` gives 415).
 */
import https from 'node:https';
import http from 'node:http';
import type { KubeConfig } from '@kubernetes/client-node';
import { KubeApiError } from '../errors.js';
import { FIELD_MANAGER, type KubeObject } from '../types.js';

/** Where a kind of object lives in the API. */
export interface ResourceType {
  readonly group: string; // '' for core
  readonly version: string;
  readonly kind: string;
  readonly plural: string;
  readonly namespaced: boolean;
}

export const resources = {
  taskQueues: { group: 'celeriac.io', version: 'v1alpha1', kind: 'TaskQueue', plural: 'taskqueues', namespaced: true },
  workerPools: { group: 'celeriac.io', version: 'v1alpha1', kind: 'WorkerPool', plural: 'workerpools', namespaced: true },
  taskSchedules: { group: 'celeriac.io', version: 'v1alpha1', kind: 'TaskSchedule', plural: 'taskschedules', namespaced: true },
  deployments: { group: 'apps', version: 'v1', kind: 'Deployment', plural: 'deployments', namespaced: true },
  podDisruptionBudgets: { group: 'policy', version: 'v1', kind: 'PodDisruptionBudget', plural: 'poddisruptionbudgets', namespaced: true },
  secrets: { group: '', version: 'v1', kind: 'Secret', plural: 'secrets', namespaced: true },
  pods: { group: '', version: 'v1', kind: 'Pod', plural: 'pods', namespaced: true },
  events: { group: '', version: 'v1', kind: 'Event', plural: 'events', namespaced: true },
  leases: { group: 'coordination.k8s.io', version: 'v1', kind: 'Lease', plural: 'leases', namespaced: true },
  namespaces: { group: '', version: 'v1', kind: 'Namespace', plural: 'namespaces', namespaced: false },
  serviceAccounts: { group: '', version: 'v1', kind: 'ServiceAccount', plural: 'serviceaccounts', namespaced: true },
  customResourceDefinitions: {
    group: 'apiextensions.k8s.io',
    version: 'v1',
    kind: 'CustomResourceDefinition',
    plural: 'customresourcedefinitions',
    namespaced: false,
  },
} as const satisfies Record<string, ResourceType>;

export function apiVersionOf(rt: ResourceType): string {
  return rt.group ? `${rt.group}/${rt.version}` : rt.version;
}

/** The REST path of a collection, an object, or an object's subresource. */
export function resourcePath(rt: ResourceType, namespace?: string, name?: string, subresource?: string): string {
  let p = rt.group ? `/apis/${rt.group}/${rt.version}` : `/api/${rt.version}`;
  if (rt.namespaced && namespace) p += `/namespaces/${encodeURIComponent(namespace)}`;
  p += `/${rt.plural}`;
  if (name !== undefined) p += `/${encodeURIComponent(name)}`;
  if (subresource) p += `/${subresource}`;
  return p;
}

export interface ListResult<T> {
  items: T[];
  resourceVersion: string;
}

/** One event of a watch stream; BOOKMARK carries only metadata.resourceVersion. */
export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: T;
}

export interface WatchOptions {
  namespace?: string;
  labelSelector?: string;
  resourceVersion: string;
  /** The server ends the watch after this long (client-go picks 5-10 minutes). */
  timeoutSeconds: number;
  signal: AbortSignal;
}

export type PatchType = 'merge' | 'json';

export interface KubeClient {
  /** Reads an object (or its `status` / `scale` subresource); null when it does not exist. */
  get<T extends KubeObject>(rt: ResourceType, namespace: string | undefined, name: string, opts?: { subresource?: 'status' | 'scale' }): Promise<T | null>;
  list<T extends KubeObject>(rt: ResourceType, opts?: { namespace?: string; labelSelector?: string }): Promise<ListResult<T>>;
  create<T extends KubeObject>(rt: ResourceType, obj: T): Promise<T>;
  replace<T extends KubeObject>(rt: ResourceType, obj: T): Promise<T>;
  /** Server-side apply with field manager `celeriac-operator` (force: we own what we send). */
  apply<T extends KubeObject>(rt: ResourceType, obj: T, opts?: { fieldManager?: string; force?: boolean; dryRun?: boolean }): Promise<T>;
  /** Merge or JSON patch of an object or of its `status` / `scale` subresource. */
  patch<T extends KubeObject>(
    rt: ResourceType,
    namespace: string | undefined,
    name: string,
    patch: unknown,
    opts?: { type?: PatchType; subresource?: 'status' | 'scale' },
  ): Promise<T>;
  /** Deletes; resolves false when the object was already gone. */
  delete(
    rt: ResourceType,
    namespace: string | undefined,
    name: string,
    opts?: { propagationPolicy?: 'Background' | 'Foreground' | 'Orphan' },
  ): Promise<boolean>;
  /** Streams watch events until the server ends the watch (resolves) or it fails (rejects). */
  watch<T extends KubeObject>(rt: ResourceType, opts: WatchOptions, onEvent: (e: WatchEvent<T>) => void): Promise<void>;
}

interface Transport {
  base: URL;
  options: https.RequestOptions;
}

const CONTENT_TYPES: Record<PatchType | 'apply', string> = {
  merge: 'application/merge-patch+json',
  json: 'application/json-patch+json',
  apply: 'application/apply-patch+yaml',
};

/** Builds the production KubeClient from a loaded KubeConfig. */
export function createKubeClient(kubeConfig: KubeConfig, opts: { userAgent?: string } = {}): KubeClient {
  const userAgent = opts.userAgent ?? 'celeriac-operator';
  let cached: { at: number; t: Transport } | null = null;

  // Re-read credentials every minute so rotated service-account tokens are picked up; the agent is
  // kept in between so connections are reused.
  async function transport(): Promise<Transport> {
    if (cached && Date.now() - cached.at < 60_000) return cached.t;
    const cluster = kubeConfig.getCurrentCluster();
    if (!cluster) throw new KubeApiError(0, 'NoCluster', 'the kubeconfig has no current cluster', 'CONFIG', '-');
    const options: https.RequestOptions = {};
    await kubeConfig.applyToHTTPSOptions(options);
    const t = { base: new URL(cluster.server), options };
    cached = { at: Date.now(), t };
    return t;
  }

  async function send(
    method: string,
    path: string,
    query: Record<string, string | undefined>,
    body: unknown,
    contentType: string | undefined,
    signal?: AbortSignal,
  ): Promise<http.IncomingMessage> {
    const t = await transport();
    const url = new URL(t.base.pathname.replace(/\/$/, '') + path, t.base);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, v);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: http.OutgoingHttpHeaders = {
      ...(t.options.headers as http.OutgoingHttpHeaders | undefined),
      Accept: 'application/json',
      'User-Agent': userAgent,
    };
    if (t.options.auth) headers.Authorization = `Basic ${Buffer.from(t.options.auth).toString('base64')}`;
    if (payload !== undefined) {
      headers['Content-Type'] = contentType ?? 'application/json';
      headers['Content-Length'] = Buffer.byteLength(payload);
    }
    const lib = url.protocol === 'http:' ? http : https;
    return new Promise((resolve, reject) => {
      const req = lib.request(url, { method, headers, agent: t.options.agent, signal }, resolve);
      req.on('error', reject);
      req.end(payload);
    });
  }

  async function call<T>(method: string, path: string, query: Record<string, string | undefined> = {}, body?: unknown, contentType?: string): Promise<T> {
    const res = await send(method, path, query, body, contentType);
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const status = res.statusCode ?? 0;
    if (status >= 200 && status < 300) return (text ? JSON.parse(text) : {}) as T;
    throw apiError(status, text, method, path);
  }

  return {
    async get(rt, namespace, name, o = {}) {
      try {
        return await call('GET', resourcePath(rt, namespace, name, o.subresource));
      } catch (err) {
        if (err instanceof KubeApiError && err.statusCode === 404) return null;
        throw err;
      }
    },
    async list<T extends KubeObject>(rt: ResourceType, o: { namespace?: string; labelSelector?: string } = {}) {
      const r = await call<{ items?: T[]; metadata?: { resourceVersion?: string } }>('GET', resourcePath(rt, o.namespace), {
        labelSelector: o.labelSelector,
      });
      const kind = rt.kind;
      const apiVersion = apiVersionOf(rt);
      // List items come without kind/apiVersion; fill them so objects look the same as from a GET.
      const items = (r.items ?? []).map((i) => ({ apiVersion, kind, ...i }));
      return { items, resourceVersion: r.metadata?.resourceVersion ?? '' };
    },
    create(rt, obj) {
      return call('POST', resourcePath(rt, obj.metadata.namespace), {}, obj);
    },
    replace(rt, obj) {
      return call('PUT', resourcePath(rt, obj.metadata.namespace, obj.metadata.name), {}, obj);
    },
    apply(rt, obj, o = {}) {
      const body = { apiVersion: apiVersionOf(rt), kind: rt.kind, ...obj };
      return call(
        'PATCH',
        resourcePath(rt, obj.metadata.namespace, obj.metadata.name),
        { fieldManager: o.fieldManager ?? FIELD_MANAGER, force: String(o.force ?? true), dryRun: o.dryRun ? 'All' : undefined },
        body,
        CONTENT_TYPES.apply,
      );
    },
    patch(rt, namespace, name, patch, o = {}) {
      return call('PATCH', resourcePath(rt, namespace, name, o.subresource), { fieldManager: FIELD_MANAGER }, patch, CONTENT_TYPES[o.type ?? 'merge']);
    },
    async delete(rt, namespace, name, o = {}) {
      try {
        await call(
          'DELETE',
          resourcePath(rt, namespace, name),
          {},
          { kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy: o.propagationPolicy ?? 'Background' },
        );
        return true;
      } catch (err) {
        if (err instanceof KubeApiError && err.statusCode === 404) return false;
        throw err;
      }
    },
    async watch<T extends KubeObject>(rt: ResourceType, o: WatchOptions, onEvent: (e: WatchEvent<T>) => void) {
      const path = resourcePath(rt, o.namespace);
      const res = await send(
        'GET',
        path,
        {
          watch: 'true',
          allowWatchBookmarks: 'true',
          resourceVersion: o.resourceVersion,
          timeoutSeconds: String(o.timeoutSeconds),
          labelSelector: o.labelSelector,
        },
        undefined,
        undefined,
        o.signal,
      );
      const status = res.statusCode ?? 0;
      if (status !== 200) {
        const chunks: Buffer[] = [];
        for await (const c of res) chunks.push(c as Buffer);
        throw apiError(status, Buffer.concat(chunks).toString('utf8'), 'WATCH', path);
      }
      let buffered = '';
      res.setEncoding('utf8');
      for await (const chunk of res) {
        buffered += chunk as string;
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          if (line) onEvent(JSON.parse(line) as WatchEvent<T>);
        }
      }
    },
  };
}

function apiError(status: number, text: string, method: string, path: string): KubeApiError {
  let reason = String(status);
  let message = text.slice(0, 2000);
  try {
    const s = JSON.parse(text) as { reason?: string; message?: string };
    reason = s.reason ?? reason;
    message = s.message ?? message;
  } catch {
    // Not a Status object (e.g. a proxy's HTML page): keep the raw text as the message.
  }
  return new KubeApiError(status, reason, message, method, path);
}
