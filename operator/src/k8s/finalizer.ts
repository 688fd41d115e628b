/**
 * Finalizer add/remove (controllerutil.AddFinalizer/RemoveFinalizer) as merge patches carrying
 * the resourceVersion, so a concurrent change gives 409 and the list is re-read instead of clobbered.
 */
import type { KubeObject } from '../types.js';
import { retryOnConflict } from './apply.js';
import type { KubeClient, ResourceType } from './kube-client.js';

export function hasFinalizer(obj: KubeObject, finalizer: string): boolean {
  return (obj.metadata.finalizers ?? []).includes(finalizer);
}

/** Adds `finalizer`; returns the updated object (or `obj` if it was there already). */
export async function addFinalizer<T extends KubeObject>(kube: KubeClient, rt: ResourceType, obj: T, finalizer: string): Promise<T> {
  if (hasFinalizer(obj, finalizer)) return obj;
  let current: T | null = obj;
  return retryOnConflict(async () => {
    if (!current) throw new Error('unreachable');
    const finalizers = [...(current.metadata.finalizers ?? []), finalizer];
    try {
      return await kube.patch<T>(rt, current.metadata.namespace, current.metadata.name, {
        metadata: { finalizers, resourceVersion: current.metadata.resourceVersion },
      });
    } catch (err) {
      current = await kube.get<T>(rt, current.metadata.namespace, current.metadata.name);
      if (!current) throw err;
      if (hasFinalizer(current, finalizer)) return current;
      throw err;
    }
  });
}

/** Removes `finalizer`; resolves quietly if the object or the finalizer is already gone. */
export async function removeFinalizer<T extends KubeObject>(kube: KubeClient, rt: ResourceType, obj: T, finalizer: string): Promise<void> {
  let current: T | null = obj;
  await retryOnConflict(async () => {
    if (!current || !hasFinalizer(current, finalizer)) return;
    const finalizers = (current.metadata.finalizers ?? []).filter((f) => f !== finalizer);
    try {
      await kube.patch(rt, current.metadata.namespace, current.metadata.name, {
        metadata: { finalizers, resourceVersion: current.metadata.resourceVersion },
      });
    } catch (err) {
      current = await kube.get<T>(rt, current.metadata.namespace, current.metadata.name);
      if (current && hasFinalizer(current, finalizer)) throw err;
    }
  });
}
