/**
 * Worker events (Celery's `worker/heartbeat.py`, spec §6.4): `worker-online` at start,
 * `worker-heartbeat` every `freq` seconds, `worker-offline` at shutdown. Monitors such as Flower
 * list a worker as online while its heartbeats arrive (expiry: 2 x freq).
 */
import { createRequire } from 'node:module';
import { loadavg, type } from 'node:os';
import type { EventDispatcher } from '../events/dispatcher.js';

/** celeriac's version, from the package's package.json (dist/runtime/src/worker/ is four levels down). */
function packageVersion(): string {
  const pkg = createRequire(import.meta.url)('../../../../package.json') as { name?: string; version?: string };
  return pkg.name === 'celeriac' && typeof pkg.version === 'string' ? pkg.version : 'unknown';
}

const SW_VER = packageVersion();

export interface WorkerEvents {
  /** Sends a heartbeat now (the `heartbeat` control command, which Flower sends on connect). */
  heartbeat(): void;
  /** Stops the heartbeats, sends `worker-offline` and waits until it is out. */
  stop(): Promise<void>;
}

/** Starts the worker's events: online now, a heartbeat every `freqMs`; `onHeartbeat` after each (Celery's heartbeat_sent). */
export function startWorkerEvents(
  events: EventDispatcher,
  counts: () => { active: number; processed: number },
  freqMs: number,
  onHeartbeat: () => void = () => undefined,
): WorkerEvents {
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
  const heartbeat = () => {
    events.send('worker-heartbeat', fields());
    onHeartbeat();
  };
  const timer = setInterval(heartbeat, freqMs);
  timer.unref();
  return {
    heartbeat,
    async stop() {
      clearInterval(timer);
      events.send('worker-offline', fields());
      await events.flush();
    },
  };
}
