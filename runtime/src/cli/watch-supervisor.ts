/**
 * `worker --watch` (development): ES modules cannot be unloaded from a running process, so this
 * process only watches and runs the real worker as a child (the same command line), restarting it
 * with a warm shutdown (running tasks finish; prefetched messages go back) when a file changes, as
 * `node --watch` does. The whole worker restarts, not only its pool, so that tasks added or
 * options changed by the edit are known to the worker too, in every pool.
 *
 * Node keeps no list of the files an ES module imported, so the tasks module's folder (and below)
 * stands for "the module and what it imports" (node_modules and dot folders excluded); a burst of
 * writes (an editor saving, tsc emitting) is one change.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { watch } from 'node:fs';
import { dirname, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';

const SOURCE = /\.(c|m)?(j|t)sx?$|\.json$/;
const SETTLE_MS = 200;

/** Calls `onChange` after a source file under the tasks module's folder changed; returns the function that stops watching. */
function watchTasksModule(tasksModule: string, onChange: (file: string) => void, log: Logger): () => void {
  const dir = dirname(fileURLToPath(tasksModule));
  let timer: NodeJS.Timeout | null = null;
  const watcher = watch(dir, { recursive: true }, (_event, name) => {
    const file = name ? String(name) : '';
    if (!SOURCE.test(file) || file.split(sep).some((part) => part === 'node_modules' || part.startsWith('.'))) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      log.info({ file }, `${file} changed: restarting the worker`);
      onChange(file);
    }, SETTLE_MS);
  });
  watcher.on('error', (err) => log.error({ err, dir }, '--watch: watching the tasks folder failed; edits are no longer picked up'));
  log.info({ dir }, `--watch: the worker restarts when a source file under ${dir} changes`);
  return () => {
    if (timer) clearTimeout(timer);
    watcher.close();
  };
}

/** Set in the child's environment: it is the worker, not another supervisor. */
export const WATCHED_CHILD = 'CELERIAC_WATCHED_CHILD';

/** Runs the worker command line as a child and restarts it on changes, until SIGTERM/SIGINT. */
export function superviseWatched(tasksModule: string, parentLog: Logger): Promise<void> {
  const log = parentLog.child({ component: 'watch' });
  let child: ChildProcess | null = null;
  let restart = false;
  let stopping = false;
  const start = () => {
    // Its own process group: a terminal's Ctrl-C reaches it once, forwarded from here.
    child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
      stdio: 'inherit',
      detached: true,
      env: { ...process.env, [WATCHED_CHILD]: '1' },
    });
    log.info({ pid: child.pid }, 'worker started');
    child.once('error', (err) => {
      // Node itself could not be started again: nothing to supervise.
      log.fatal({ err }, 'cannot start the worker');
      process.exit(1);
    });
    child.once('exit', (code, signal) => {
      child = null;
      if (stopping) process.exit(code ?? 0);
      if (restart) {
        restart = false;
        return start();
      }
      log.error({ code, signal }, 'worker exited; waiting for a change to the tasks module to start it again');
    });
  };
  const stopWatching = watchTasksModule(
    tasksModule,
    () => {
      if (!child) return start();
      restart = true;
      child.kill('SIGTERM'); // warm shutdown: running tasks finish first
    },
    log,
  );
  const onSignal = (sig: NodeJS.Signals) => {
    stopping = true;
    stopWatching();
    if (child) child.kill(sig);
    else process.exit(0);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  start();
  return new Promise(() => undefined);
}
