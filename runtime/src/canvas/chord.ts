/**
 * chord: a header group whose results, in order, are passed to a body (Celery's `chord`). The
 * join is Celery 5.x's on the result backend (spec §5.5, backends/redis.py on_chord_part_return):
 * every header task adds its outcome; the one that completes the header applies the body, or
 * fails it with ChordError naming the failed task. Also what a failed task does to the rest of
 * its chain (Celery's mark_as_failure), so a waiting caller never hangs.
 */
import type { Logger } from 'pino';
import type { SendOptions } from '../app/send.js';
import type { AsyncResult } from '../app/result.js';
import type { ChordPart, ResultBackend, SavedResult } from '../backends/result-backend.js';
import { CanvasError, ChordError } from '../errors.js';
import { buildMeta, exceptionRepr, exceptionToDict, isExceptionDict, States, type ExceptionDict, type TaskState } from '../protocol/result-meta.js';
import { applySignature, type CanvasHost } from './apply.js';
import { asSignature, canvasSignature, frozen, resultIds, taskIdOf, withOptions, type SignatureDict } from './signature.js';
import { group } from './group.js';

/** A chord signature: `header` tasks in parallel, then `body` with their results (Celery's `chord(header, body)`). */
export function chord(header: readonly SignatureDict[] | SignatureDict, body: SignatureDict, options: Record<string, unknown> = {}): SignatureDict {
  const h = Array.isArray(header) ? group(header) : (header as SignatureDict);
  return canvasSignature('chord', { header: h, body, kwargs: {} }, options);
}

/** A task that finished, as the canvas needs to know it (from its request). */
export interface FinishedTask {
  readonly id: string;
  readonly group: string | null;
  readonly groupIndex: number | null;
  readonly rootId: string;
  /** The chord body, when this task is a chord header part. */
  readonly chord: SignatureDict | null;
  /** The rest of its chain (spec §1.5). */
  readonly chain: readonly SignatureDict[] | null;
  /** Options for what is sent on its behalf (serializer, parent). */
  readonly send?: SendOptions;
}

/** Failed states that fail a chord (Celery's PROPAGATE_STATES). */
const PROPAGATE = new Set<TaskState>([States.FAILURE, States.REVOKED]);

/**
 * Records a finished chord header task in the join (Celery's on_chord_part_return). The task that
 * completes the header applies the body with the results in header order, or, when one failed,
 * stores ChordError as the body's FAILURE and fires its errbacks.
 */
export async function chordPartReturned(host: CanvasHost, t: FinishedTask, state: TaskState, result: unknown, log: Logger): Promise<void> {
  if (!t.group || !t.chord) return;
  const backend = await host.backend();
  const body = asSignature(t.chord, 'chord body');
  if (!backend.chords) {
    await failCanvas(host, body, new ChordError(`the ${backend.kind} result backend cannot join chords; the body of chord ${t.group} cannot run`), t, log);
    return;
  }
  const joined = await backend.chords.addPart(t.group, t.groupIndex, { taskId: t.id, state, result });
  if (!joined) return;
  let results: unknown[];
  try {
    results = await headerResults(backend, t.group, joined.parts);
  } catch (err) {
    // Celery: a failed part is ChordError("Dependency …"); anything else, a "Join error".
    const e = err instanceof ChordError ? err : new ChordError(`Join error: ${joinErrorRepr(err)}`, { cause: err });
    log.error({ err: e, groupId: t.group }, `chord ${t.group} failed: its body is stored as FAILURE`);
    try {
      await failCanvas(host, body, e, t, log);
    } finally {
      await joined.failed();
    }
    return;
  }
  if (!(await joined.keepClaim())) {
    // Celery 5.7's rule: the claim lapsed and another worker took the dispatch over; it sends the body.
    log.warn({ groupId: t.group }, `chord ${t.group}: body not sent here, another worker holds its dispatch claim`);
    return;
  }
  try {
    await applySignature(host, body, { args: [results], options: { ...t.send, rootId: t.rootId, parentId: t.id } });
  } catch (err) {
    log.error({ err, groupId: t.group }, `chord ${t.group}: applying the body failed`);
    await failCanvas(host, body, new ChordError(`Callback error: ${(err as Error).message}`, { cause: err }), t, log);
  } finally {
    // The body went out (or failed); a lost claim only leaves the join's keys to expire (as Celery, a warning).
    if (!(await joined.finish())) log.warn({ groupId: t.group }, `chord ${t.group}: dispatch claim lost before cleanup, its keys are left to expire`);
  }
}

/** Celery's result_chord_join_timeout default: how long a saved header's join waits for a member. */
const CHORD_JOIN_TIMEOUT_MS = 3_000;

/**
 * The values the body gets (Celery's RedisBackend.on_chord_part_return). A header saved because
 * it holds groups (a chain ending in a group; Celery's apply_chord) is joined with its nesting,
 * each such member as the list of its members' values; otherwise the joined parts in join order.
 */
async function headerResults(backend: ResultBackend, gid: string, parts: readonly ChordPart[]): Promise<unknown[]> {
  const saved = await backend.chords!.restoreGroupTree(gid);
  if (saved) return joinSaved(backend, saved);
  const failed = parts.find((p) => PROPAGATE.has(p.state));
  if (failed) throw new ChordError(`Dependency ${failed.taskId} raised ${exceptionRepr(failed.result)}`);
  return parts.map((p) => p.result);
}

/** Celery's GroupResult.join_native(propagate=True) of a saved header: the first failure throws its exception. */
async function joinSaved(backend: ResultBackend, members: readonly SavedResult[]): Promise<unknown[]> {
  const values: unknown[] = [];
  for (const m of members) {
    if (m.members) {
      values.push(await joinSaved(backend, m.members));
      continue;
    }
    const meta = await backend.waitReady(m.id, { timeoutMs: CHORD_JOIN_TIMEOUT_MS });
    if (PROPAGATE.has(meta.status)) throw new JoinFailure(meta.result);
    values.push(meta.result);
  }
  return values;
}

/** A saved header member's failure, as join_native raises it (the member's own exception). */
class JoinFailure extends Error {
  constructor(readonly exc: unknown) {
    super(exceptionRepr(exc));
  }
}

/** `repr()` of what a saved header's join raised: a member's exception, or ours (a timeout). */
function joinErrorRepr(err: unknown): string {
  if (err instanceof JoinFailure) return exceptionRepr(err.exc);
  return exceptionRepr(exceptionToDict(err));
}

/**
 * Celery's Task.add_to_chord: `sig` joins the chord `t` is a header part of, with t's group id,
 * index and body; the chord waits for one more part (the `.t` counter) before it is sent.
 */
export async function addToChord(host: CanvasHost, t: FinishedTask, sig: SignatureDict): Promise<AsyncResult> {
  if (!t.chord || !t.group) throw Object.assign(new Error('Current task is not member of any chord'), { name: 'ValueError', excModule: 'builtins' });
  const backend = await host.backend();
  if (!backend.chords) throw new CanvasError(`add_to_chord: the ${backend.kind} result backend cannot join chords`);
  const member = frozen(
    withOptions(asSignature(sig, 'add_to_chord signature'), { group_id: t.group, group_index: t.groupIndex, chord: t.chord, root_id: t.rootId }),
  );
  await backend.chords.addToChord(t.group);
  return (await applySignature(host, member, { options: { ...t.send, rootId: t.rootId, parentId: t.id } })) as AsyncResult;
}

/**
 * Stores `err` as FAILURE under every result id of `sig` and applies its link_error signatures
 * with the failed id (Celery's chord_error_from_stack, old-style errbacks).
 */
export async function failCanvas(host: CanvasHost, sig: SignatureDict, err: Error, t: FinishedTask, log: Logger): Promise<void> {
  const backend = await host.backend();
  const exc = exceptionToDict(err);
  for (const id of resultIds(sig)) await backend.store(buildMeta(id, States.FAILURE, exc, { traceback: null }));
  const errbacks = sig.options.link_error;
  const id = taskIdOf(sig) ?? resultIds(sig)[0];
  if (!Array.isArray(errbacks) || !id) return;
  for (const eb of errbacks as SignatureDict[]) {
    try {
      await applySignature(host, eb, { args: [id], options: { ...t.send, rootId: t.rootId, parentId: id } });
    } catch (e) {
      // One errback that cannot be sent must not keep the others from running.
      log.error({ err: e, errback: eb }, `errback of ${id} could not be applied`);
    }
  }
}

/**
 * A task failed or was revoked: the rest of its chain never runs, so (as Celery's mark_as_failure)
 * each remaining step with a task id gets the same FAILURE, and a remaining step that is a chord
 * header part reports to its chord, so a caller waiting on the chain's end sees the error.
 */
export async function chainFailed(
  host: CanvasHost,
  t: FinishedTask,
  state: TaskState,
  exc: ExceptionDict,
  traceback: string | null,
  log: Logger,
): Promise<void> {
  const backend = await host.backend();
  for (const raw of t.chain ?? []) {
    const step = asSignature(raw, 'chain step');
    // A canvas step completes through its results (a chord through its body): fail each of them.
    for (const id of resultIds(step)) await backend.store(buildMeta(id, state, exc, { traceback }));
    const o = step.options;
    const id = taskIdOf(step);
    if (step.subtask_type === null && id && o.chord && typeof o.group_id === 'string') {
      const part: FinishedTask = {
        ...t,
        id,
        group: o.group_id,
        groupIndex: typeof o.group_index === 'number' ? o.group_index : null,
        chord: o.chord as SignatureDict,
        chain: null,
      };
      await chordPartReturned(host, part, state, exc, log);
    }
  }
}
