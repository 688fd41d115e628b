/** Progress lines for long CLI work, on stderr so that stdout stays the command's answer. */
import type { AsyncResult } from '../app/result.js';

/** How often a waiting command reads the task's state. */
const STATE_POLL_MS = 500;

/**
 * Prints the task's state each time it changes (PENDING, STARTED, RETRY, ...) until `signal`
 * aborts, so `call --wait` on a slow task shows what it waits for. A failed read is printed and
 * the next poll tries again: the wait itself reports real failures.
 */
export function followState(result: AsyncResult, write: (line: string) => void, signal: AbortSignal): void {
  let last: string | null = null;
  const poll = async () => {
    try {
      const state = await result.state();
      if (state !== last && !signal.aborted) write(`state: ${state}`);
      last = state;
    } catch (err) {
      if (!signal.aborted) write(`state: unknown (${(err as Error).message})`);
    }
    if (!signal.aborted) setTimeout(() => void poll(), STATE_POLL_MS).unref();
  };
  void poll();
}
