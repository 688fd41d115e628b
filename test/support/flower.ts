/** A real Flower process (from the interop virtualenv) for tests that check what Flower shows. */
import { eventually } from './eventually.js';
import { startProcess, stopProcess } from './processes.js';
import { freePort } from './servers.js';

/**
 * Starts `python -m celery -b <brokerUrl> flower` on 127.0.0.1 and waits until it answers
 * /healthcheck. Flower listens to events and sends enable_events every 5 s.
 */
export async function startFlower(o: { python: string; brokerUrl: string; port?: number }): Promise<{ url: string; stop(): Promise<void> }> {
  const port = o.port ?? (await freePort());
  const proc = startProcess(o.python, ['-m', 'celery', '-b', o.brokerUrl, 'flower', `--port=${port}`, '--address=127.0.0.1'], {
    // Flower 2.x answers its /api with 401 unless this is set (or auth is configured).
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', FLOWER_UNAUTHENTICATED_API: 'true' },
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    await eventually(
      async () => {
        if (proc.exitCode !== null) throw new Error(`flower exited with ${proc.exitCode}`);
        const r = await fetch(`${url}/healthcheck`);
        if (!r.ok) throw new Error(`flower /healthcheck: HTTP ${r.status}`);
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
  } catch (err) {
    await stopProcess(proc);
    throw new Error(`Flower did not start: ${(err as Error).message}\n${proc.output()}`, { cause: err });
  }
  return { url, stop: () => stopProcess(proc) };
}
