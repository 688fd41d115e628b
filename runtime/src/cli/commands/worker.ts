/** `celeriac worker`: run a worker until SIGTERM/SIGINT (warm), or a second signal (cold). */
import { Command } from 'commander';
import { createWorker } from '../../worker/worker.js';
import { loadApp, withConnectionOptions } from '../load-app.js';
import { beatFromFlags, withBeatOptions, type BeatFlags } from './beat.js';

interface WorkerFlags extends BeatFlags {
  beat?: boolean;
  app?: string;
  broker?: string;
  resultBackend?: string;
  queues?: string;
  concurrency?: string;
  autoscale?: string;
  prefetchMultiplier?: string;
  hostname?: string;
  metricsPort?: string;
  loglevel?: string;
}

export function workerCommand(): Command {
  return withBeatOptions(withConnectionOptions(new Command('worker')))
    .description('Run a worker: consume queues and execute the tasks of --app.')
    .option('-Q, --queues <list>', 'comma-separated queues to consume (default: celery); env CELERIAC_QUEUES')
    .option('-c, --concurrency <n>', 'tasks run at once (default 10); env CELERIAC_CONCURRENCY')
    .option('--autoscale <max,min>', 'grow the pool up to max slots when tasks wait, shrink to min when idle (as Celery)')
    .option('--prefetch-multiplier <n>', 'messages reserved per slot (default 4; 0 = unlimited)')
    .option('-n, --hostname <name>', 'node name, name@host (default celeriac@<hostname>)')
    .option('--metrics-port <port>', 'port of /metrics, /healthz, /drain (default 9540; 0 = any free port; none = off)')
    .option('-l, --loglevel <level>', 'trace, debug, info, warn, error (default info)')
    .option('-B, --beat', 'also run beat (safe with many workers: one beat leads at a time)')
    .addHelpText(
      'after',
      '\nSIGTERM, SIGINT or the remote-control command shutdown: warm shutdown (stop consuming, finish running tasks, give back the rest).\nA second signal: cold shutdown (running late-ack tasks are given back too).',
    )
    .action(async (f: WorkerFlags) => {
      const app = await loadApp(
        f,
        {
          brokerUrl: f.broker,
          resultBackend: f.resultBackend,
          queues: f.queues,
          concurrency: f.concurrency,
          autoscaleMax: f.autoscale?.split(',')[0],
          autoscaleMin: f.autoscale?.split(',')[1] || undefined,
          prefetchMultiplier: f.prefetchMultiplier,
          hostname: f.hostname,
          metricsPort: f.metricsPort,
          logLevel: f.loglevel,
        },
        true,
      );
      let signals = 0;
      // Remote control's shutdown is a warm shutdown, as the first SIGTERM.
      const worker = createWorker(app, { onShutdownRequest: () => signals === 0 && onSignal('remote control') });
      const beat = f.beat ? await beatFromFlags(app, f) : null;
      const onSignal = (sig: NodeJS.Signals | 'remote control') => {
        signals++;
        worker.log.info({ signal: sig }, signals === 1 ? 'warm shutdown requested (send again for cold shutdown)' : 'cold shutdown requested');
        void Promise.resolve(signals === 1 ? beat?.stop() : undefined)
          .then(() => worker.stop({ graceful: signals === 1 }))
          .then(() => process.exit(0));
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
      await worker.start();
      await beat?.start();
    });
}
