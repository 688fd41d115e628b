/**
 * Finalizer removal (controllerutil.RemoveFinalizer) as a merge patch carrying
 * the resourceVersion, so a concurrent change gives 409 and the list is re-read instead of clobbered.
 */
import { isKubeStatus } from '../errors.js';
import type { KubeObject } from '../types.js';
import { retryOnConflict } from './apply.js';
import type { KubeClient, ResourceType } from './kube-client.js';

export function hasFinalizer(obj: KubeObject, finalizer: string): boolean {
  return (obj.metadata.finalizers ?? []).includes(finalizer);
}

/** Patches the finalizer list computed by `edit`, re-reading and retrying on conflict. Returns the latest object, or null if it is gone. */
async function editFinalizers<T extends KubeObject>(
  kube: KubeClient,
  rt: ResourceType,
  obj: T,
  done: (o: T) => boolean,
  edit: (finalizers: string[]) => string[],
): Promise<T | null> {
  let current: T | null = obj;
  return retryOnConflict(async () => {
    if (!current || done(current)) return current;
    const { namespace, name, resourceVersion } = current.metadata;
    try {
      return await kube.patch<T>(rt, namespace, name, { metadata: { finalizers: edit(current.metadata.finalizers ?? []), resourceVersion } });
    } catch (err) {
      if (isKubeStatus(err, 409)) current = await kube.get<T>(rt, namespace, name);
      throw err;
    }
  });
}

/** Removes `finalizer`; resolves quietly if the object or the finalizer is already gone. */
export async function removeFinalizer<T extends KubeObject>(kube: KubeClient, rt: ResourceType, obj: T, finalizer: string): Promise<void> {
  try {
    await editFinalizers(
      kube,
      rt,
      obj,
      (o) => !hasFinalizer(o, finalizer),
      (f) => f.filter((x) => x !== finalizer),
    );
  } catch (err) {
    if (!isKubeStatus(err, 404)) throw err;
  }
}
