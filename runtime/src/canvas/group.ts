/**
 * group: tasks run in parallel under one group id (Celery's `group`), and GroupResult, the handle
 * on their results: get/join, completedCount, ready, successful, and save/restore in Celery's
 * `celery-taskset-meta-<gid>` format, so Python's `GroupResult.restore(gid)` reads what this saves.
 */
import { AsyncResult, type ResultSet } from '../app/result.js';
import type { ResultBackend, SavedResult } from '../backends/result-backend.js';
import { CanvasError, ResultTimeoutError } from '../errors.js';
import { canvasSignature, type SignatureDict } from './signature.js';

/** A group signature of `tasks` (Celery's `group(sig, …)`); options are apply options (`task_id` is the group id). */
export function group(tasks: readonly SignatureDict[], options: Record<string, unknown> = {}): SignatureDict {
  return canvasSignature('group', { tasks: [...tasks] }, options);
}

/** What a GroupResult needs from its app. */
export interface GroupHost {
  backend(): Promise<ResultBackend>;
  asyncResult(id: string): AsyncResult;
}

export class GroupResult implements ResultSet {
  /** The result this group follows (a chain step before it), when known. */
  parent: AsyncResult | ResultSet | null = null;

  constructor(
    /** The group id (`group` header of every member). */
    readonly id: string,
    /** One result per member, in group order; a member that is a group (a chain ending in one) is its GroupResult. */
    readonly results: readonly (AsyncResult | GroupResult)[],
    private readonly host: GroupHost,
  ) {}

  /** The member results (Celery's `GroupResult.children`). */
  get children(): readonly (AsyncResult | GroupResult)[] {
    return this.results;
  }

  /**
   * Waits for every member and returns their values in group order (Celery's join): a failed
   * member throws its TaskFailedError unless `propagate` is false; `timeout` is for the whole group.
   */
  async get(opts: { timeout?: number; propagate?: boolean; interval?: number } = {}): Promise<unknown[]> {
    const deadline = opts.timeout === undefined ? null : Date.now() + opts.timeout;
    const values: unknown[] = [];
    for (const r of this.results) {
      const left = deadline === null ? undefined : deadline - Date.now();
      if (left !== undefined && left <= 0) throw new ResultTimeoutError(r.id, opts.timeout!, r instanceof GroupResult ? 'PENDING' : await r.state());
      values.push(await r.get({ timeout: left, propagate: opts.propagate, interval: opts.interval }));
    }
    return values;
  }

  /** Celery's name for get(). */
  join(opts: { timeout?: number; propagate?: boolean; interval?: number } = {}): Promise<unknown[]> {
    return this.get(opts);
  }

  /** How many members succeeded (a group member counts once, when all of it did). */
  async completedCount(): Promise<number> {
    return (await Promise.all(this.results.map((r) => r.successful()))).filter(Boolean).length;
  }

  /** True once every member is ready (SUCCESS, FAILURE or REVOKED). */
  async ready(): Promise<boolean> {
    return (await Promise.all(this.results.map((r) => r.ready()))).every(Boolean);
  }

  /** True when every member succeeded. */
  async successful(): Promise<boolean> {
    return (await Promise.all(this.results.map((r) => r.successful()))).every(Boolean);
  }

  /** True when a member failed. */
  async failed(): Promise<boolean> {
    return (await Promise.all(this.results.map((r) => r.failed()))).some(Boolean);
  }

  /** Revokes every member. */
  async revoke(opts: { terminate?: boolean } = {}): Promise<void> {
    await Promise.all(this.results.map((r) => r.revoke(opts)));
  }

  /** Saves the group so any process, Python's GroupResult.restore too, can find it by id. */
  async save(): Promise<void> {
    await chordsOf(await this.host.backend()).saveGroup(this.id, savedTree(this.results));
  }

  /** Deletes the saved group (not the members' results). */
  async delete(): Promise<void> {
    await chordsOf(await this.host.backend()).forgetGroup(this.id);
  }

  /** A saved group by id (saved here or by Python's GroupResult.save), nested groups as GroupResults, or null. */
  static async restore(host: GroupHost, id: string): Promise<GroupResult | null> {
    const tree = await chordsOf(await host.backend()).restoreGroupTree(id);
    const build = (m: SavedResult): AsyncResult | GroupResult => (m.members ? new GroupResult(m.id, m.members.map(build), host) : host.asyncResult(m.id));
    return tree === null ? null : new GroupResult(id, tree.map(build), host);
  }
}

/** What GroupResult.save stores of results (Celery's as_tuple): ids, a group with its members. */
export function savedTree(results: readonly (AsyncResult | GroupResult)[]): SavedResult[] {
  return results.map((r) => (r instanceof GroupResult ? { id: r.id, members: savedTree(r.results) } : { id: r.id, members: null }));
}

function chordsOf(backend: ResultBackend) {
  if (!backend.chords)
    throw new CanvasError(`the ${backend.kind} result backend cannot save groups (Celery's rpc:// cannot either); use redis://, memory:// or file://`);
  return backend.chords;
}
