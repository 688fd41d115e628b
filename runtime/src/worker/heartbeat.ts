/**
 * Worker events (Celery's `worker/heartbeat.py`, spec §6.4): `worker-online` at start,
 * `worker-heartbeat` every `freq` seconds, `worker-offline` at shutdown. Monitors such as Flower
 * list a worker as online while its heartbeats arrive (expiry: 2 x freq).
 */
import { createRequire } from 'node:module';
import { loadavg, type } from 'node:os';
import type { EventDispatcher } from '../events/dispatcher.js';

/** celeriac's version, from the package.json of the install (same path from src/ and dist/). */
function packageVersion(): string {
  try {
    const require = createRequire(import.meta.url);
    for (const p of ['../../../package.json', '../../../../package.json']) {
      try {
        const pkg = require(p) as { name?: string; version?: string };
        if (pkg.name === 'celeriac' && typeof pkg.version === 'string') return pkg.version;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw err;
      }
    }
  } catch (err) {
    // Only a label in monitors: say so in the field rather than fail the worker.
    return `unknown (${(err as Error).message})`;
  }
  return 'unknown';
}

const SW_VER = packageVersion();

export interface WorkerEvents {
  /** Sends a heartbeat now (the `heartbeat` control command, which Flower sends on connect). */
  heartbeat(): void;
  /** Stops the heartbeats, sends `worker-offline` and waits until it is out. */
  stop(): Promise<void>;
}

/** Starts the worker's events: online now, a heartbeat every `freqMs`. */
export function startWorkerEvents(events: EventDispatcher, counts: () => { active: number; processed: number }, freqMs: number): WorkerEvents {
  const fields = () => ({
    freq: freqMs / 1000,
    ...counts(),
    // Rounded up to 2 decimals as Celery does; zeros where the platform has none (Windows).
    loadavg: loadavg().map((x) => Math.ceil(x * 100) / 100),
    sw_ident: 'celeriac',
    sw_ver: SW_VER,
    sw_sys: type(),
  });
  events.send('worker-online', fields());
  const timer = setInterval(() => events.send('worker-heartbeat', fields()), freqMs);
  timer.unref();
  return {
    heartbeat: () => events.send('worker-heartbeat', fields()),
    async stop() {
      clearInterval(timer);
      events.send('worker-offline', fields());
      await events.flush();
    },
  };
}
