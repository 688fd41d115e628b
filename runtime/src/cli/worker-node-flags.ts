/**
 * The V8 heap settings `celeriac worker` runs with. Under load a worker's memory is mostly young
 * garbage: on V8's defaults the young generation grows to 16 MB semi-spaces on Node 20 and to
 * 64 MB on Node 24, so a worker running no-op tasks peaked at 141 MB of RSS on Node 20 and
 * 250 MB on Node 24 in `npm run bench`, against 118 and 150 MB with `--max-semi-space-size=4`, at
 * the same CPU per task (README "Memory").
 *
 * A V8 heap is sized when the process starts (`v8.setFlagsFromString` afterwards does not resize
 * it), so the worker command re-executes node in place with the flag (`process.execve`, Node
 * 22.15 and later: same pid, same arguments and environment) before loading anything else. It does
 * not when:
 * - the user chose a semi-space size (`--max-semi-space-size` in NODE_OPTIONS or node's flags,
 *   as the image does): theirs is kept;
 * - the process has an IPC channel (started by `fork()`): exec would close it;
 * - `process.execve` is missing (Node 20, Windows): the worker runs on V8's defaults, as before.
 */
import { accessSync, constants } from 'node:fs';

/** Node flags `celeriac worker` adds unless the user set the same setting. */
export const WORKER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4'];

/** The flag's name, as node accepts it with `-` or `_`. */
const flagName = (flag: string) => flag.replace(/=.*$/, '').replaceAll('_', '-');

/** Whether `args` (node's own flags) already set the setting of `flag`. */
export function setsFlag(args: readonly string[], flag: string): boolean {
  const name = flagName(flag);
  return args.some((a) => flagName(a) === name);
}

/** The command's name: the first argument that is not an option (`celeriac --debug worker ...`). */
export const commandName = (argv: readonly string[]): string | undefined => argv.slice(2).find((a) => !a.startsWith('-'));

/**
 * For `celeriac worker`: re-executes this process with {@link WORKER_NODE_FLAGS} when it may
 * (see above). Returns only when it does not.
 */
export function reexecWorkerWithNodeFlags(): void {
  if (commandName(process.argv) !== 'worker') return;
  const execve = (process as { execve?: (file: string, args: string[], env: NodeJS.ProcessEnv) => never }).execve;
  if (typeof execve !== 'function' || process.platform === 'win32' || process.channel) return;
  const nodeOptions = (process.env.NODE_OPTIONS ?? '').split(/\s+/).filter(Boolean);
  const add = WORKER_NODE_FLAGS.filter((f) => !setsFlag(process.execArgv, f) && !setsFlag(nodeOptions, f));
  if (add.length === 0) return;
  try {
    // Before Node's execve threw on failure it aborted the process: make sure the binary is there.
    accessSync(process.execPath, constants.X_OK);
    execve.call(process, process.execPath, [process.execPath, ...add, ...process.execArgv, ...process.argv.slice(1)], process.env);
  } catch {
    // node's binary is gone (replaced by an upgrade) or exec was refused: run on V8's defaults.
  }
}
