/**
 * A record of the task calls an app sends, for users' unit tests: assert that a web handler sent
 * `shop.email` with these arguments, without a broker (`publish: false`) or with one.
 */
import { AssertionError } from 'node:assert';
import { isDeepStrictEqual } from 'node:util';
import { interceptSends, type App } from '../app/app.js';
import type { SendOptions } from '../app/send.js';

/** One recorded call. */
export interface SentTask {
  readonly id: string;
  readonly name: string;
  readonly args: readonly unknown[];
  readonly kwargs: Record<string, unknown>;
  readonly options: SendOptions;
}

/** What a call must have been sent with; fields left out are not compared. Options compare by the keys given. */
export interface SentMatch {
  readonly args?: readonly unknown[];
  readonly kwargs?: Record<string, unknown>;
  readonly options?: Partial<SendOptions>;
}

/** The calls an app sent, with assertions on them (from {@link recordSends}). */
export interface SendRecorder {
  /** Every call since the start (or the last clear()), in order. */
  readonly sent: readonly SentTask[];
  /** The calls of task `name`. */
  of(name: string): SentTask[];
  /** Throws an AssertionError (listing what was sent) unless a call of `name` matches; returns the first that does. */
  assertSent(name: string, match?: SentMatch): SentTask;
  /** Throws an AssertionError if any call of `name` was sent. */
  assertNotSent(name: string): void;
  /** Forgets the calls recorded so far. */
  clear(): void;
  /** Stops recording. */
  stop(): void;
}

/** Options of {@link recordSends}. */
export interface RecordOptions {
  /**
   * Publish the calls as usual (default true). false: nothing reaches a broker, and each call
   * resolves with an AsyncResult for its id that stays PENDING.
   */
  readonly publish?: boolean;
}

/** Records the task calls `app` sends from now on: `delay()`, `applyAsync()` and `sendTask()`. */
export function recordSends(app: App, opts: RecordOptions = {}): SendRecorder {
  const sent: SentTask[] = [];
  const publish = opts.publish ?? true;
  const stop = interceptSends(app, async (call, send) => {
    sent.push({ id: call.options.taskId, name: call.name, args: call.args, kwargs: call.kwargs, options: call.options });
    return publish ? send() : app.asyncResult(call.options.taskId);
  });
  const matches = (s: SentTask, m: SentMatch) =>
    (m.args === undefined || isDeepStrictEqual(s.args, m.args)) &&
    (m.kwargs === undefined || isDeepStrictEqual(s.kwargs, m.kwargs)) &&
    Object.entries(m.options ?? {}).every(([k, v]) => isDeepStrictEqual((s.options as Record<string, unknown>)[k], v));
  const listing = () =>
    sent.length === 0
      ? 'nothing was sent'
      : `sent:\n${sent.map((s) => `  ${s.name} args=${JSON.stringify(s.args)} kwargs=${JSON.stringify(s.kwargs)}`).join('\n')}`;
  return {
    sent,
    of: (name) => sent.filter((s) => s.name === name),
    assertSent(name, m = {}) {
      const found = sent.find((s) => s.name === name && matches(s, m));
      if (!found) throw new AssertionError({ message: `expected ${name} to be sent with ${JSON.stringify(m)}; ${listing()}` });
      return found;
    },
    assertNotSent(name) {
      if (sent.some((s) => s.name === name)) throw new AssertionError({ message: `expected ${name} not to be sent; ${listing()}` });
    },
    clear: () => void sent.splice(0),
    stop,
  };
}
