/** `celeriac beat`: send the app's periodic tasks when due; run any number, one leads at a time. */
import { Command } from 'commander';
import type { App } from '../../app/app.js';
import { createBeat, type Beat } from '../../beat/scheduler.js';
import { createScheduleStore } from '../../beat/schedule-store.js';
import { ConfigError } from '../../errors.js';
import { loadApp, withConnectionOptions } from '../load-app.js';

export interface BeatFlags {
  schedule?: string;
  leaseMs?: string;
  catchUp?: boolean;
}

/** Adds beat's flags (shared by `beat` and `worker -B`). */
export function withBeatOptions(cmd: Command): Command {
  return cmd
    .option(
      '-s, --schedule <url>',
      'where last runs and the leader lease live: redis://… or file://<dir> (default: the broker when Redis, else file://); env CELERIAC_BEAT_SCHEDULE',
    )
    .option('--lease-ms <ms>', 'leader lease; a dead leader is replaced within about 1.3 leases (default 15000); env CELERIAC_BEAT_LEASE_MS')
    .option('--catch-up', 'send every run missed while no beat ran (default: only the latest, as Celery)');
}

/** Makes the beat the flags describe for `app` (its store connected). */
export async function beatFromFlags(app: App, f: BeatFlags): Promise<Beat> {
  const url = f.schedule ?? process.env.CELERIAC_BEAT_SCHEDULE ?? (/^rediss?:/.test(app.config.brokerUrl) ? app.config.brokerUrl : 'file://');
  const leaseText = f.leaseMs ?? process.env.CELERIAC_BEAT_LEASE_MS;
  const leaseMs = leaseText === undefined ? undefined : Number(leaseText);
  if (leaseMs !== undefined && !(Number.isInteger(leaseMs) && leaseMs >= 100))
    throw new ConfigError([`--lease-ms: expected an integer >= 100, got "${leaseText}"`]);
  const store = await createScheduleStore(url, { logger: app.log, prefix: `celeriac-beat:${app.config.name}` });
  return createBeat(app, { store, leaseMs, catchUp: f.catchUp ?? false });
}

export function beatCommand(): Command {
  return withBeatOptions(withConnectionOptions(new Command('beat')))
    .description("Send the periodic tasks of --app's beatSchedule when due. Run as many as you like: one leads, the others wait.")
    .option('-l, --loglevel <level>', 'trace, debug, info, warn, error (default info)')
    .action(async (f: BeatFlags & { app?: string; broker?: string; resultBackend?: string; loglevel?: string }) => {
      const app = await loadApp(f, { brokerUrl: f.broker, resultBackend: f.resultBackend, logLevel: f.loglevel }, true);
      const beat = await beatFromFlags(app, f);
      const onSignal = (sig: NodeJS.Signals) => {
        app.log.info({ signal: sig }, 'beat stopping');
        void beat
          .stop()
          .then(() => app.close())
          .then(() => process.exit(0));
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
      await beat.start();
    });
}
