/**
 * Applies a signature dict, whatever its shape, as Celery's canvas does (celery/canvas.py):
 * a plain task is sent; a chain sends its first step with the rest (reversed) in `embed.chain`;
 * a group sends each member with the group id and index; a chord stores its header size in the
 * result backend and sends each header task with the body in `embed.chord`. The one path of a
 * TypeScript client and of a worker applying a link, an errback, a chain step or a chord body,
 * so a Python-built canvas and a TypeScript one run alike.
 */
import { randomUUID } from 'node:crypto';
import { signatureSendOptions, type SendOptions } from '../app/send.js';
import type { AsyncResult } from '../app/result.js';
import type { ResultBackend } from '../backends/result-backend.js';
import { CanvasError } from '../errors.js';
import { GroupResult, savedTree, type GroupHost } from './group.js';
import { asSignature, CANVAS_TASKS, childSignatures, taskIdOf, unsupportedReason, withOptions, type SignatureDict } from './signature.js';

/** What applying needs from the app (App has all of it). */
export interface CanvasHost {
  sendTask(name: string, args?: readonly unknown[], kwargs?: Record<string, unknown>, options?: SendOptions): Promise<AsyncResult>;
  backend(): Promise<ResultBackend>;
  asyncResult(id: string): AsyncResult;
}

/** One application of a signature (Celery's `sig.apply_async(args, kwargs, **options)`). */
export interface ApplyCall {
  /** Prepended to the signature's args unless it is immutable (a parent's result, partial args). */
  readonly args?: readonly unknown[];
  /** Merged over the signature's kwargs. */
  readonly kwargs?: Record<string, unknown>;
  /** Options over the signature's own. */
  readonly options?: SendOptions;
}

/** A task's result, or a group's. */
export type CanvasResult = AsyncResult | GroupResult;

/** Celery's result tuple (`as_tuple()`), as stored in a parent's `children`: `[[id, null], null]`, a group's with its members. */
export function resultTuple(r: CanvasResult): unknown[] {
  return r instanceof GroupResult ? [[r.id, null], r.results.map(resultTuple)] : [[r.id, null], null];
}

/** The result a result tuple stands for (the inverse of resultTuple; the parent links are not in it). */
export function resultFromTuple(host: GroupHost, tuple: unknown[]): CanvasResult {
  const [[id], members] = tuple as [[string], unknown[][] | null];
  return members
    ? new GroupResult(
        id,
        members.map((m) => resultFromTuple(host, m)),
        host,
      )
    : host.asyncResult(id);
}

const defined = <T extends object>(o: T): Partial<T> => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;

/** The signature's own options under the call's (Celery: `dict(self.options, **options)`). */
const merged = (sig: SignatureDict, call: ApplyCall): SendOptions => ({ ...defined(signatureSendOptions(sig)), ...defined(call.options ?? {}) });

const argsOf = (sig: SignatureDict, call: ApplyCall): unknown[] => (sig.immutable || !call.args ? [...sig.args] : [...call.args, ...sig.args]);

/**
 * Applies `sig`. Throws CanvasError before sending anything when a part of it cannot be applied
 * (an unknown subtask_type; a chord on a backend that cannot join).
 */
export async function applySignature(host: CanvasHost, sig: SignatureDict, call: ApplyCall = {}): Promise<CanvasResult> {
  const why = unsupportedReason(sig);
  if (why) throw new CanvasError(why);
  return apply(host, asSignature(sig, 'signature'), call);
}

async function apply(host: CanvasHost, sig: SignatureDict, call: ApplyCall): Promise<CanvasResult> {
  switch (sig.subtask_type) {
    case 'chain':
      return applyChain(host, sig, call);
    case 'group':
      return applyGroup(host, childSignatures(sig.kwargs.tasks, 'group.tasks'), argsOf(sig, call), call.kwargs, merged(sig, call));
    case 'chord':
      return applyChord(host, sig, call);
    case 'chunks':
      // Celery sends chunks' parts where routes send celery.starmap, not by the inner task as a
      // lone map/starmap (seen on 5.2 and 5.7: its route_name does not reach the parts).
      return applyGroup(host, chunkSignatures(sig), [], undefined, { ...merged(sig, call), routeName: CANVAS_TASKS.xstarmap });
    default: {
      // A plain task; xmap/xstarmap are plain tasks too (celery.map/celery.starmap, immutable).
      const kwargs = { ...sig.kwargs, ...(call.kwargs ?? {}) };
      const o = merged(sig, call);
      const mapped = sig.subtask_type === 'xmap' || sig.subtask_type === 'xstarmap';
      return host.sendTask(sig.task, argsOf(sig, call), kwargs, mapped ? { routeName: innerTaskName(sig), ...o } : o);
    }
  }
}

/**
 * The name a map or starmap message is routed by: its inner task's, not celery.map or
 * celery.starmap (Celery's `route_name=task_name_from(self.kwargs['task'])`), so `routes` for a
 * task send its maps to the same queue. The inner task's own options (its `queue`) do not count,
 * as in Celery; the map's own options do (as Celery 5.7; 5.2 ignores them).
 */
function innerTaskName(sig: SignatureDict): string | undefined {
  const inner = sig.kwargs.task as SignatureDict | string | undefined;
  return typeof inner === 'string' ? inner : typeof inner?.task === 'string' ? inner.task : undefined;
}

/** chunks(task, it, n): a group of starmap tasks over `n`-sized parts of `it` (Celery's chunks.group()). */
function chunkSignatures(sig: SignatureDict): SignatureDict[] {
  const { task, it, n } = sig.kwargs as { task?: unknown; it?: unknown; n?: unknown };
  if (!Array.isArray(it) || typeof n !== 'number' || n < 1) throw new CanvasError(`chunks: expected kwargs {task, it: [...], n >= 1}, got n=${String(n)}`);
  const parts: SignatureDict[] = [];
  for (let i = 0; i < it.length; i += n)
    parts.push({
      task: CANVAS_TASKS.xstarmap,
      args: [],
      kwargs: { task, it: it.slice(i, i + n) },
      options: {},
      subtask_type: 'xstarmap',
      immutable: true,
    });
  return parts;
}

/** How many header parts a signature adds to a chord (Celery's `_chord._descend`). */
function chordSize(sig: SignatureDict): number {
  switch (sig.subtask_type) {
    case 'group':
      return childSignatures(sig.kwargs.tasks, 'group.tasks').reduce((n, t) => n + chordSize(t), 0);
    case 'chain': {
      const steps = childSignatures(sig.kwargs.tasks, 'chain.tasks');
      for (let i = steps.length - 1; i >= 0; i--) {
        const n = chordSize(steps[i]!);
        if (n > 0) return n;
      }
      return 0;
    }
    case 'chord':
      return chordSize(asSignature(sig.kwargs.body, 'chord.body'));
    case 'chunks':
      return chunkSignatures(sig).length;
    default:
      return 1;
  }
}

/**
 * The group members with the group_index each is sent with, nested groups unrolled into the same
 * group. A chord header is unrolled as Celery freezes it (group._freeze_unroll): a nested group's
 * members go to the front of the queue in reverse (`deque.extendleft`), and indexes run on across
 * the flattened header. A plain group keeps its order and each member keeps its index in its own
 * group (group._prepared).
 */
function unrolled(tasks: readonly SignatureDict[], header: boolean): [SignatureDict, number][] {
  if (!header)
    return tasks.flatMap((t, i): [SignatureDict, number][] =>
      t.subtask_type === 'group' ? unrolled(childSignatures(t.kwargs.tasks, 'group.tasks'), false) : [[t, i]],
    );
  const stack = [...tasks];
  const out: [SignatureDict, number][] = [];
  while (stack.length > 0) {
    const t = stack.shift()!;
    if (t.subtask_type === 'group') stack.unshift(...childSignatures(t.kwargs.tasks, 'group.tasks').reverse());
    else out.push([t, out.length]);
  }
  return out;
}

/**
 * Sends each member with the group id and its index; as a chord header, each carries the body
 * and the size is stored before the last one is sent (Celery's _apply_tasks). A group that is
 * itself a part of a chord header (the last step of a chain there: options `chord` and `group`)
 * sends its members into that chord, as Celery freezes it: the outer group id, the chord, and
 * their index in this group.
 */
async function applyGroup(
  host: CanvasHost,
  tasks: SignatureDict[],
  args: unknown[],
  kwargs: Record<string, unknown> | undefined,
  o: SendOptions,
  chord: { body: SignatureDict; backend: ResultBackend } | null = null,
): Promise<GroupResult> {
  const gid = o.taskId ?? randomUUID();
  const { taskId: _own, chain: _chain, chord: outerChord, group: outerGroup, groupIndex: _index, ...shared } = o;
  const inOuterChord = !chord && outerChord && outerGroup !== undefined;
  const members = unrolled(tasks, chord !== null || Boolean(inOuterChord));
  const size = chord ? members.reduce((n, [t]) => n + chordSize(t), 0) : 0;
  const results: CanvasResult[] = [];
  for (const [i, [m, index]] of members.entries()) {
    if (chord && i === members.length - 1) await chord.backend.chords!.setSize(gid, size);
    const options: SendOptions = inOuterChord
      ? { ...shared, group: outerGroup, groupIndex: index, chord: outerChord }
      : { ...shared, group: gid, groupIndex: index, chord: chord?.body };
    results.push(await apply(host, m, { args, kwargs, options }));
  }
  return new GroupResult(gid, results, host);
}

/**
 * Celery's _chord.run: the body frozen with its id (the chord's task_id), the rest of an
 * enclosing chain and an enclosing chord moved onto the body, then the header sent as a group.
 */
async function applyChord(host: CanvasHost, sig: SignatureDict, call: ApplyCall): Promise<AsyncResult> {
  const backend = await host.backend();
  if (!backend.chords)
    throw new CanvasError(
      `a chord needs a result backend that joins its header; the ${backend.kind} backend cannot (Celery refuses chords on rpc:// too): use redis://, memory:// or file://`,
    );
  const header = asSignature(sig.kwargs.header, 'chord.header');
  const headerTasks = childSignatures(header, 'chord.header');
  const o = merged(sig, call);
  const body = asSignature(sig.kwargs.body, 'chord.body');
  // Celery 5.7 gives the chord the body's id, 5.2 the header's: an id the body already has wins (freeze).
  const bodyOptions: Record<string, unknown> = {};
  if (o.chain) bodyOptions.chain = o.chain;
  // A chord that is itself a header part (of an outer chord) completes through its body.
  if (o.chord) Object.assign(bodyOptions, { chord: o.chord, group_id: o.group, group_index: o.groupIndex });
  if (o.queue && body.options.queue === undefined) bodyOptions.queue = o.queue;
  const frozenBody = frozen(withOptions(body, bodyOptions), o.taskId);
  const gid = taskIdOf(header) ?? randomUUID();
  const { chain: _chain, chord: _chord, taskId: _own, group: _group, groupIndex: _index, ...headerOptions } = o;
  if (headerTasks.length === 0) {
    // No header task will ever complete the chord: the body runs now with no results (as Celery).
    const r = (await apply(host, frozenBody, { args: [[]], options: { rootId: o.rootId, parentId: o.parentId } })) as AsyncResult;
    r.parent = new GroupResult(gid, [], host);
    return r;
  }
  // A header holding groups (a chain that ends in one) is saved before it is sent, so whoever
  // completes the chord joins it with its nesting (Celery's RedisBackend.apply_chord).
  const frozenHeader = headerTasks.map((t) => frozen(t));
  const headerResults = unrolled(frozenHeader, true).map(([t]) => resultOf(host, t));
  if (headerResults.some((r) => r instanceof GroupResult)) await backend.chords.saveGroup(gid, savedTree(headerResults));
  const headerResult = await applyGroup(host, frozenHeader, argsOf(sig, call), call.kwargs, { ...headerOptions, taskId: gid }, { body: frozenBody, backend });
  const result = resultOf(host, frozenBody);
  rootOf(result).parent = headerResult;
  return result as AsyncResult;
}

/** Steps of a chain with nested chains spliced in, and each group followed by a step made a chord with it (Celery's prepare_steps). */
function chainSteps(sig: SignatureDict): SignatureDict[] {
  const flat = childSignatures(sig.kwargs.tasks, 'chain.tasks').flatMap((t) => (t.subtask_type === 'chain' ? chainSteps(t) : [t]));
  const steps: SignatureDict[] = [];
  for (let i = flat.length - 1; i >= 0; i--) {
    const t = flat[i]!;
    const next = steps[0];
    if (t.subtask_type === 'group' && next) {
      steps[0] = { task: CANVAS_TASKS.chord, args: [], kwargs: { header: t, body: next, kwargs: {} }, options: {}, subtask_type: 'chord', immutable: false };
    } else {
      steps.unshift(t);
    }
  }
  return steps;
}

/**
 * A copy of `sig` with the task ids its results will have (Celery's freeze), so the caller knows
 * them before anything runs. An id already there wins; `id` is for the result that completes
 * the signature (a task, a chain's last step, a chord's body).
 */
function frozen(sig: SignatureDict, id?: string): SignatureDict {
  switch (sig.subtask_type) {
    case 'chord': {
      const body = frozen(asSignature(sig.kwargs.body, 'chord.body'), id ?? taskIdOf(sig) ?? undefined);
      // The header too, so the chord's result knows its header (a GroupResult) before it runs.
      const h = sig.kwargs.header;
      const header = h && !Array.isArray(h) && (h as SignatureDict).subtask_type === 'group' ? frozen(asSignature(h, 'chord.header')) : h;
      return { ...sig, kwargs: { ...sig.kwargs, header, body } };
    }
    case 'group': {
      const tasks = childSignatures(sig.kwargs.tasks, 'group.tasks').map((t) => frozen(t));
      return withOptions({ ...sig, kwargs: { ...sig.kwargs, tasks } }, { task_id: taskIdOf(sig) ?? randomUUID() });
    }
    case 'chain': {
      const steps = chainSteps(sig);
      const tasks = steps.map((t, i) => frozen(t, i === steps.length - 1 ? (id ?? taskIdOf(sig) ?? undefined) : undefined));
      return { ...sig, kwargs: { ...sig.kwargs, tasks } };
    }
    default:
      return taskIdOf(sig) ? sig : withOptions(sig, { task_id: id ?? randomUUID() });
  }
}

/** The result a frozen signature will have: a chain's is its last step's, with the earlier ones as parents. */
function resultOf(host: CanvasHost, sig: SignatureDict): CanvasResult {
  switch (sig.subtask_type) {
    case 'group':
      return new GroupResult(
        taskIdOf(sig)!,
        childSignatures(sig.kwargs.tasks, 'group.tasks').map((t) => resultOf(host, t)),
        host,
      );
    case 'chord': {
      // The body's result, whose first parent is the header's GroupResult (Celery's chord result).
      const body = resultOf(host, asSignature(sig.kwargs.body, 'chord.body'));
      const header = asSignature(sig.kwargs.header, 'chord.header');
      if (taskIdOf(header)) rootOf(body).parent = resultOf(host, header);
      return body;
    }
    case 'chain': {
      let prev: CanvasResult | null = null;
      for (const step of childSignatures(sig.kwargs.tasks, 'chain.tasks')) {
        const r = resultOf(host, step);
        if (prev) rootOf(r).parent = prev;
        prev = r;
      }
      return prev!;
    }
    default:
      return host.asyncResult(taskIdOf(sig)!);
  }
}

/** The first result of a chain of parents (where a header or an earlier step attaches). */
function rootOf(r: CanvasResult): CanvasResult {
  let node = r;
  while (node.parent) node = node.parent as CanvasResult;
  return node;
}

/**
 * The last step of a chain that is a chord header part, with the chord's options. A group there
 * passes them on to its members, each with its index in the group, as Celery's group.freeze
 * does: whoever applies the group (a Python worker too) sends the members into the outer chord.
 */
function intoChord(step: SignatureDict, o: Record<string, unknown>): SignatureDict {
  if (step.subtask_type !== 'group') return withOptions(step, o);
  const tasks = unrolled(childSignatures(step.kwargs.tasks, 'group.tasks'), true).map(([t, i]) =>
    withOptions(t, { group_id: o.group_id, chord: o.chord, group_index: i }),
  );
  return withOptions({ ...step, kwargs: { ...step.kwargs, tasks } }, o);
}

/**
 * Sends the first step with the others, reversed, as its chain (spec §1.5). A group or chord
 * option of an enclosing canvas belongs to the last step, which completes the chain.
 */
async function applyChain(host: CanvasHost, sig: SignatureDict, call: ApplyCall): Promise<CanvasResult> {
  const o = merged(sig, call);
  const { chord, group, groupIndex, taskId, link, linkError, ...firstOptions } = o;
  const whole = frozen(sig, taskId);
  // A chain's errbacks go on every step, its links on the last one (Celery's chain.link_error/link).
  const steps = childSignatures(whole.kwargs.tasks, 'chain.tasks').map((t) =>
    linkError ? withOptions(t, { link_error: [...((t.options.link_error as SignatureDict[]) ?? []), ...[linkError].flat()] }) : t,
  );
  if (steps.length === 0) throw new CanvasError('an empty chain cannot be applied');
  const last = steps.length - 1;
  if (link) steps[last] = withOptions(steps[last]!, { link: [...((steps[last]!.options.link as SignatureDict[]) ?? []), ...[link].flat()] });
  if (chord || group !== undefined) steps[last] = intoChord(steps[last]!, defined({ chord, group_id: group, group_index: groupIndex }));
  const rest = steps.slice(1).reverse();
  // A chain's own kwargs hold its steps; the call's keyword arguments go to the first step.
  const firstCall: ApplyCall = { args: argsOf(sig, call), kwargs: call.kwargs, options: { ...firstOptions, chain: rest.length > 0 ? rest : undefined } };
  if (steps.length === 1) return apply(host, steps[0]!, { ...firstCall, options: { ...firstCall.options, chord, group, groupIndex } });
  await apply(host, steps[0]!, firstCall);
  return resultOf(host, { ...whole, kwargs: { ...whole.kwargs, tasks: steps } });
}
