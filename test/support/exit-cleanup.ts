/**
 * Processes a test file started (workers, servers, clients) die with it, however it ends.
 *
 * The test runner stops a file that ran past its timeout with SIGTERM, and Node's default for
 * SIGTERM exits without running 'exit' listeners: the file's workers, Python clients and servers
 * kept running for the rest of the tier (a hung Python client and its two workers sat there
 * 8 minutes in one CI run). Here SIGTERM, SIGINT and SIGHUP exit through process.exit(), so the
 * 'exit' listener below kills whatever is still running.
 */
import type { ChildProcess } from 'node:child_process';
import { constants } from 'node:os';

const alive = new Map<ChildProcess, { group: boolean }>();

/** SIGKILLs `child` (its whole process group with `group`, for a detached child) if this process exits first. */
export function killOnExit(child: ChildProcess, opts: { group?: boolean } = {}): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  alive.set(child, { group: opts.group ?? false });
  child.once('exit', () => alive.delete(child));
}

/** Sends `signal` to the process group a detached `child` leads; nothing when it is gone. */
export function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // The group is already gone: nothing left to stop.
  }
}

process.once('exit', () => {
  for (const [child, { group }] of alive) {
    if (group) killGroup(child, 'SIGKILL');
    else child.kill('SIGKILL');
  }
});

for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  process.once(signal, () => process.exit(128 + constants.signals[signal]));
}
