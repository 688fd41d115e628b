/**
 * Runners as child processes (child_process.fork of ./runner-entry.js), Celery's prefork: each
 * child has its own heap and crash domain, and memory it leaks is given back when it is replaced.
 * Messages use Node's 'advanced' IPC serialization (V8's), so bytes cross as bytes.
 */
import { fork } from 'node:child_process';
import type { Logger } from 'pino';
import type { RunnerHandle } from './runners.js';
import type { FromRunner } from './crossing.js';

const ENTRY = new URL('./runner-entry.js', import.meta.url);

export function spawnProcess(log: Logger): RunnerHandle {
  // The worker's own node flags (--max-old-space-size, --enable-source-maps) apply to its children.
  const child = fork(ENTRY, [], { serialization: 'advanced' });
  // Failing to start, or a message to a child that has just died: its exit event settles its task.
  child.on('error', (err) => log.error({ err, runner: child.pid }, `runner process failed: ${err.message}`));
  return {
    id: child.pid ?? -1,
    send: (m) => {
      // A child that has just died cannot take a message: its exit event settles the task.
      if (child.connected) child.send(m);
    },
    onMessage: (fn) => void child.on('message', (m) => fn(m as FromRunner)),
    onExit: (fn) => void child.once('exit', (code, signal) => fn({ code, signal })),
    kill: () => void child.kill('SIGKILL'),
  };
}
