/**
 * Writing objects the operator owns: server-side apply with field manager `celeriac-operator`,
 * controller owner references, and optimistic-concurrency retries for read-modify-write updates.
 */
import { isKubeStatus } from '../errors.js';
import { FIELD_MANAGER, type KubeObject, type OwnerReference } from '../types.js';
import type { KubeClient, ResourceType } from './kube-client.js';

/** Server-side apply of `obj` (force: the operator owns every field it sends). */
export function apply<T extends KubeObject>(kube: KubeClient, rt: ResourceType, obj: T): Promise<T> {
  return kube.apply<T>(rt, obj, { fieldManager: FIELD_MANAGER, force: true });
}

/** The owner reference that makes `owner` the managing controller of a child (GC cascades on delete). */
export function controllerRef(owner: KubeObject & { apiVersion?: string; kind?: string }): OwnerReference {
  if (!owner.metadata.uid || !owner.apiVersion || !owner.kind) {
    throw new Error(`controllerRef: ${owner.metadata.name} has no uid/apiVersion/kind (not read from the API server?)`);
  }
  return {
    apiVersion: owner.apiVersion,
    kind: owner.kind,
    name: owner.metadata.name,
    uid: owner.metadata.uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** True if `child` is controlled by `owner` (same uid). */
export function isControlledBy(child: KubeObject, owner: KubeObject): boolean {
  return (child.metadata.ownerReferences ?? []).some((r) => r.controller && r.uid === owner.metadata.uid);
}

/**
 * Runs `fn` again (up to `attempts` times) while it fails with 409 Conflict, as client-go's
 * RetryOnConflict: `fn` must re-read the object each time.
 */
export async function retryOnConflict<R>(fn: () => Promise<R>, attempts = 5): Promise<R> {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (i >= attempts || !isKubeStatus(err, 409)) throw err;
      await new Promise((r) => setTimeout(r, 10 * 2 ** i));
    }
  }
}

/** JSON with object keys sorted, for comparing desired and observed state. */
export function canonicalJson(v: unknown): string {
  return JSON.stringify(sortKeys(v));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') {
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
        .map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]),
    );
  }
  return v;
}

/**
 * Writes `next` into the status subresource with a merge patch, only if some key differs from
 * the object's current status (an unchanged status is not written, so no update event loops).
 * A `null` value removes the key.
 */
export async function patchStatusIfChanged<S extends object>(
  kube: KubeClient,
  rt: ResourceType,
  obj: KubeObject & { status?: S },
  next: { [K in keyof S]?: S[K] | null },
): Promise<boolean> {
  const current = (obj.status ?? {}) as Record<string, unknown>;
  const changed = Object.entries(next).some(([k, v]) => canonicalJson(v ?? null) !== canonicalJson(current[k] ?? null));
  if (!changed) return false;
  await kube.patch(rt, obj.metadata.namespace, obj.metadata.name, { status: next }, { type: 'merge', subresource: 'status' });
  return true;
}
