/** Child processes for tests: output kept for failure messages, stopped by signal with a deadline. */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { killOnExit } from './exit-cleanup.js';

/** The repository root (this file is dist/test/support/processes.js once built). */
export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

export type Started = ChildProcess & { output: () => string };

/** Starts a process and keeps the last 20 kB of its stdout and stderr; it is killed if the test file exits first. */
export function startProcess(cmd: string, args: readonly string[], opts: { env: NodeJS.ProcessEnv; cwd?: string }): Started {
  const child = spawn(cmd, args, { env: opts.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  killOnExit(child);
  let out = '';
  const keep = (b: Buffer) => {
    out = (out + b.toString()).slice(-20_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  return Object.assign(child, { output: () => out });
}

/** The first JSON log line of `p` that contains `needle`, parsed (throws until there is one: use with eventually). */
export function jsonLogLine<T = Record<string, unknown>>(p: Started, needle: string): T {
  const line = p
    .output()
    .split('\n')
    .find((l) => l.includes(needle));
  if (!line) throw new Error(`no log line with ${needle} yet`);
  return JSON.parse(line) as T;
}

/** Sends `signal` and waits for the exit (SIGKILL after 15 s). */
export async function stopProcess(child: ChildProcess | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(t);
}

/** A `celeriac worker` process running the compiled tasks module `module` (path under dist/). */
export function startWorker(module: string, queue: string, env: NodeJS.ProcessEnv, extraArgs: readonly string[] = []): Started {
  return startProcess(
    process.execPath,
    [
      join(repoRoot, 'dist/runtime/src/cli/main.js'),
      'worker',
      '-A',
      join(repoRoot, module),
      '-Q',
      queue,
      '--metrics-port',
      'none',
      '-n',
      `${queue}-${Math.random().toString(36).slice(2, 8)}@localhost`,
      ...extraArgs,
    ],
    { env: { ...process.env, ...env } },
  );
}

/** Arguments of a Python Celery worker (solo pool, no gossip/mingle/heartbeat) for app module `module` on `queue`. */
export function pythonWorkerArgs(module: string, queue: string, node: string): string[] {
  return [
    '-m',
    'celery',
    '-A',
    module,
    'worker',
    '-P',
    'solo',
    '-Q',
    queue,
    '-n',
    node,
    '--without-gossip',
    '--without-mingle',
    '--without-heartbeat',
    '-l',
    'WARNING',
  ];
}

/** Runs `f`; a failure carries the output of each process, labelled, for the report. */
export async function withOutputOf<T>(procs: Record<string, { output(): string } | undefined>, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    const logs = Object.entries(procs).map(([label, p]) => `\n--- ${label} ---\n${p?.output() ?? '(not started)'}`);
    throw new Error(`${(err as Error).message}${logs.join('')}`, { cause: err });
  }
}
