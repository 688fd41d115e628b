/**
 * A real Flower 2.x process (from the interop virtualenv) for tests through its HTTP API. Flower
 * runs as `python -m celery [-A app] -b <broker> flower`, with its API open without
 * authentication (FLOWER_UNAUTHENTICATED_API). Ready once /healthcheck answers.
 */
import { eventually } from './eventually.js';
import { startProcess, stopProcess, type Started } from './processes.js';
import { freePort } from './servers.js';

export interface FlowerOptions {
  /** A Python with Celery and Flower (CELERIAC_PYTHON). */
  readonly python: string;
  readonly brokerUrl: string;
  /** Default: a free port. */
  readonly port?: number;
  /**
   * A Celery app module (`-A`) for Flower to know task names by: its rate-limit and time-limit
   * endpoints answer 404 for tasks its app does not have. Resolved from `cwd`/PYTHONPATH in `env`.
   */
  readonly app?: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
}

export interface RunningFlower {
  readonly url: string;
  readonly process: Started;
  stop(): Promise<void>;
}

export async function startFlower(o: FlowerOptions): Promise<RunningFlower> {
  const port = o.port ?? (await freePort());
  const args = ['-m', 'celery', ...(o.app ? ['-A', o.app] : []), '-b', o.brokerUrl, 'flower', `--port=${port}`, '--address=127.0.0.1'];
  const proc = startProcess(o.python, args, {
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', ...o.env, FLOWER_UNAUTHENTICATED_API: 'true' },
    cwd: o.cwd,
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    await eventually(
      async () => {
        if (proc.exitCode !== null) throw new Error(`Flower exited with ${proc.exitCode}:\n${proc.output()}`);
        const res = await fetch(`${url}/healthcheck`);
        if (!res.ok) throw new Error(`Flower /healthcheck answered ${res.status}`);
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
  } catch (err) {
    await stopProcess(proc);
    throw new Error(`Flower did not start on ${url}: ${(err as Error).message}\n${proc.output()}`, { cause: err });
  }
  return { url, process: proc, stop: () => stopProcess(proc) };
}
