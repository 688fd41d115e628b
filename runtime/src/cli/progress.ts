/** Progress lines for long CLI work, on stderr so that stdout stays the command's answer. */
import type { AsyncResult } from '../app/result.js';
import type { TaskMeta } from '../protocol/result-meta.js';
import { sleep } from '../transport/wait.js';

/** How long to wait before reading again after a failed read. */
const RETRY_READ_MS = 500;
/** Characters of the bar between its brackets. */
const BAR_WIDTH = 24;

/** Where followState writes: raw text (it adds its own newlines), and whether that is a terminal. */
export interface ProgressOutput {
  write(text: string): void;
  /** On a terminal a progress bar is redrawn in place; elsewhere each change is one line. */
  readonly tty: boolean;
}

/** `{ current, total }` of a meta such as Celery's PROGRESS convention, or null. */
function progressOf(result: unknown): { current: number; total: number } | null {
  if (typeof result !== 'object' || result === null) return null;
  const { current, total } = result as Record<string, unknown>;
  return typeof current === 'number' && typeof total === 'number' && total > 0 ? { current, total } : null;
}

/** One line for a state: `PROGRESS [#####-----] 3/10 30%` when the meta has current/total, else the state. */
export function describeState(meta: Pick<TaskMeta, 'status' | 'result'>): string {
  const p = progressOf(meta.result);
  if (!p) return `state: ${meta.status}`;
  const ratio = Math.min(1, Math.max(0, p.current / p.total));
  const filled = Math.round(ratio * BAR_WIDTH);
  return `state: ${meta.status} [${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}] ${p.current}/${p.total} ${Math.round(ratio * 100)}%`;
}

/**
 * Shows the task's state each time it changes (PENDING, STARTED, a custom PROGRESS with its bar,
 * RETRY, ...) until the task is ready or `signal` aborts, so `call --wait` on a slow task shows
 * what it waits for. A failed read is shown and reading goes on: the wait itself reports real
 * failures.
 */
export function followState(result: AsyncResult, prefix: string, out: ProgressOutput, signal: AbortSignal): void {
  /** True while the last thing written is a bar to redraw in place. */
  let barShown = false;
  const show = (line: string, redraw: boolean) => {
    if (signal.aborted) return;
    if (out.tty && redraw) {
      out.write(`\r${prefix}${line}\x1b[K`);
      barShown = true;
      return;
    }
    out.write(`${barShown ? '\n' : ''}${prefix}${line}\n`);
    barShown = false;
  };
  const run = async () => {
    while (!signal.aborted) {
      try {
        for await (const meta of result.follow({ signal })) show(describeState(meta), progressOf(meta.result) !== null);
        break;
      } catch (err) {
        show(`state: unknown (${(err as Error).message})`, false);
        await sleep(RETRY_READ_MS, signal);
      }
    }
    if (barShown) out.write('\n');
  };
  void run();
}
