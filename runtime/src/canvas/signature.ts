/**
 * Signatures as Celery's plain dicts (spec §1.4): `{task, args, kwargs, options, subtask_type,
 * immutable}`. A canvas (chain, group, chord, chunks, map/starmap) is a signature whose children
 * sit in `kwargs`, so TypeScript and Python canvases are the same data. Builders here; applying
 * them is apply.ts.
 */
import { randomUUID } from 'node:crypto';
import { CanvasError } from '../errors.js';
import type { SignatureDict } from '../protocol/task-message.js';

export type { SignatureDict };

/** Celery's task names of the canvas signatures (their `task` field). */
export const CANVAS_TASKS = {
  chain: 'celery.chain',
  group: 'celery.group',
  chord: 'celery.chord',
  xmap: 'celery.map',
  xstarmap: 'celery.starmap',
  chunks: 'celery.chunks',
} as const;

/** The `subtask_type`s this process can apply (null: a plain task). */
export type SubtaskType = keyof typeof CANVAS_TASKS;
const KNOWN = new Set<string>(Object.keys(CANVAS_TASKS));

/** A signature dict of a task by name (Celery's `signature(name, args, kwargs, **options)`). */
export function signature(
  name: string,
  args: readonly unknown[] = [],
  kwargs: Record<string, unknown> = {},
  options: Record<string, unknown> = {},
): SignatureDict {
  return { task: name, args: [...args], kwargs: { ...kwargs }, options: { ...options }, subtask_type: null, immutable: false };
}

/** `task` over each item of `it` in one message (Celery's `task.map(it)`): a list of results. */
export function xmap(task: SignatureDict, it: readonly unknown[], options: Record<string, unknown> = {}): SignatureDict {
  return { ...canvasSignature('xmap', { task, it: [...it] }, options), immutable: true };
}

/** `task(*args)` for each args list of `it` in one message (Celery's `task.starmap(it)`). */
export function xstarmap(task: SignatureDict, it: readonly (readonly unknown[])[], options: Record<string, unknown> = {}): SignatureDict {
  return { ...canvasSignature('xstarmap', { task, it: it.map((a) => [...a]) }, options), immutable: true };
}

/** `it` split into parts of `n`, each a starmap message, applied as a group (Celery's `task.chunks(it, n)`). */
export function chunks(task: SignatureDict, it: readonly (readonly unknown[])[], n: number, options: Record<string, unknown> = {}): SignatureDict {
  return { ...canvasSignature('chunks', { task, it: it.map((a) => [...a]), n }, options), immutable: true };
}

/** A canvas signature of `type` with its children in kwargs, as Celery serializes it. */
export function canvasSignature(type: SubtaskType, kwargs: Record<string, unknown>, options: Record<string, unknown> = {}): SignatureDict {
  return { task: CANVAS_TASKS[type], args: [], kwargs, options: { ...options }, subtask_type: type, immutable: false };
}

/** A deep copy (signatures are plain JSON data). */
export function clone(sig: SignatureDict): SignatureDict {
  return structuredClone(sig);
}

/** A copy with `options` merged over the signature's own (Celery's `sig.set(**options)`). */
export function withOptions(sig: SignatureDict, options: Record<string, unknown>): SignatureDict {
  return { ...sig, options: { ...sig.options, ...options } };
}

/** A copy that applies `callback` with this one's result after success (Celery's `sig.link(callback)`). */
export function link(sig: SignatureDict, callback: SignatureDict): SignatureDict {
  return withOptions(sig, { link: [...((sig.options.link as SignatureDict[] | undefined) ?? []), callback] });
}

/** A copy that applies `errback` with this one's task id after failure (Celery's `sig.link_error(errback)`). */
export function linkError(sig: SignatureDict, errback: SignatureDict): SignatureDict {
  return withOptions(sig, { link_error: [...((sig.options.link_error as SignatureDict[] | undefined) ?? []), errback] });
}

/** An immutable copy: the parent's result is not prepended to its args (`.si()`, `sig.set(immutable=True)`). */
export function immutable(sig: SignatureDict): SignatureDict {
  return { ...sig, immutable: true };
}

/** The signature's task id, assigning a new one to a copy when it has none (Celery's freeze). */
export function frozen(sig: SignatureDict): SignatureDict {
  return typeof sig.options?.task_id === 'string' ? sig : withOptions(sig, { task_id: randomUUID() });
}

/** The task id a signature's options carry, or null. */
export function taskIdOf(sig: SignatureDict): string | null {
  const id = sig.options?.task_id;
  return typeof id === 'string' && id !== '' ? id : null;
}

/** Signatures in a canvas field: a list of signatures, or a group signature (a chord header). */
export function childSignatures(v: unknown, where: string): SignatureDict[] {
  if (Array.isArray(v)) return v.map((s, i) => asSignature(s, `${where}[${i}]`));
  const sig = asSignature(v, where);
  if (sig.subtask_type === 'group') return childSignatures(sig.kwargs?.tasks, `${where}.tasks`);
  return [sig];
}

/** Checks the shape of a signature dict. */
export function asSignature(v: unknown, where: string): SignatureDict {
  if (!v || typeof v !== 'object' || Array.isArray(v) || typeof (v as SignatureDict).task !== 'string')
    throw new CanvasError(
      `${where}: expected a signature dict {task, args, kwargs, options, subtask_type, immutable}, got ${JSON.stringify(v)?.slice(0, 200)}`,
    );
  const s = v as SignatureDict;
  return {
    ...s,
    args: Array.isArray(s.args) ? s.args : [],
    kwargs: s.kwargs && typeof s.kwargs === 'object' ? s.kwargs : {},
    options: s.options ?? {},
    subtask_type: s.subtask_type ?? null,
    immutable: s.immutable === true,
  };
}

/**
 * Why this process cannot apply `sig` or a signature nested in it (an unknown `subtask_type`, or
 * a malformed canvas), or null. Checked when a message arrives, so a workflow fails at once
 * instead of hanging at the step it cannot take.
 */
export function unsupportedReason(sig: unknown, where = 'signature'): string | null {
  let s: SignatureDict;
  try {
    s = asSignature(sig, where);
  } catch (err) {
    return (err as Error).message;
  }
  if (s.subtask_type !== null && !KNOWN.has(s.subtask_type))
    return `${where} has subtask_type "${s.subtask_type}", which celeriac cannot apply (it applies ${[...KNOWN].join(', ')} and plain tasks)`;
  const nested: [unknown, string][] = [];
  const o = s.options;
  for (const k of ['link', 'link_error', 'chain'] as const)
    if (Array.isArray(o[k])) (o[k] as unknown[]).forEach((c, i) => nested.push([c, `${where}.options.${k}[${i}]`]));
  if (o.chord) nested.push([o.chord, `${where}.options.chord`]);
  if (s.subtask_type === 'chain' || s.subtask_type === 'group') {
    const tasks = s.kwargs.tasks;
    if (!Array.isArray(tasks)) return `${where}: a ${s.subtask_type} without kwargs.tasks`;
    tasks.forEach((c, i) => nested.push([c, `${where}.tasks[${i}]`]));
  }
  if (s.subtask_type === 'chord') {
    if (!s.kwargs.header) return `${where}: a chord without kwargs.header`;
    if (!s.kwargs.body) return `${where}: a chord without kwargs.body`;
    nested.push([s.kwargs.header, `${where}.header`], [s.kwargs.body, `${where}.body`]);
  }
  for (const [c, w] of nested) {
    const why = unsupportedReason(c, w);
    if (why) return why;
  }
  return null;
}

/**
 * The task ids whose results stand for `sig` (Celery's frozen result ids): a task's own, every
 * member of a group, every step of a chain, a chord's body. Failing a canvas stores FAILURE under
 * each, so nothing that waits on them hangs.
 */
export function resultIds(sig: SignatureDict): string[] {
  switch (sig.subtask_type) {
    case 'group':
    case 'chain':
      return (Array.isArray(sig.kwargs.tasks) ? (sig.kwargs.tasks as SignatureDict[]) : []).flatMap(resultIds);
    case 'chord':
      return sig.kwargs.body ? resultIds(sig.kwargs.body as SignatureDict) : [];
    default: {
      const id = taskIdOf(sig);
      return id ? [id] : [];
    }
  }
}
