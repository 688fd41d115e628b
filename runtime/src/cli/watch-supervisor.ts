/**
 * `worker --watch` with the event-loop pool: ES modules cannot be unloaded from a running
 * process, so this process only watches and runs the real worker as a child (the same command
 * line), restarting it with a warm shutdown (running tasks finish) when a file changes, as
 * `node --watch` does. The threads and processes pools reload their runners in place instead.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createLogger } from '../logging/logger.js';
import { watchTasksModule } from '../pools/watch.js';

/** Set in the child's environment: it is the worker, not another supervisor. */
export const WATCHED_CHILD = 'CELERIAC_WATCHED_CHILD';

export function superviseWatched(tasksModule: string): Promise<void> {
  const log = createLogger({ level: process.env.CELERIAC_LOG_LEVEL ?? 'info', name: 'celeriac' }).child({ component: 'watch' });
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
