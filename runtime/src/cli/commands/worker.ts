/** `celeriac worker`: run a worker until SIGTERM/SIGINT (warm), or a second signal (cold). */
import { Command } from 'commander';
import { createWorker } from '../../worker/worker.js';
import { appModuleUrl, loadApp, withConnectionOptions } from '../load-app.js';
import { superviseWatched, WATCHED_CHILD } from '../watch-supervisor.js';
import { beatFromFlags, withBeatOptions, type BeatFlags } from './beat.js';

/** After an uncaught exception the process state is suspect: the cold stop gets this long, then the process exits anyway. */
const CRASH_STOP_MS = 10_000;

interface WorkerFlags extends BeatFlags {
  beat?: boolean;
  app?: string;
  broker?: string;
  resultBackend?: string;
  queues?: string;
  concurrency?: string;
  pool?: string;
  maxTasksPerChild?: string;
  maxMemoryPerChild?: string;
  autoscale?: string;
  watch?: boolean;
  prefetchMultiplier?: string;
  hostname?: string;
  metricsPort?: string;
  loglevel?: string;
  events?: boolean;
}

export function workerCommand(): Command {
  return withBeatOptions(withConnectionOptions(new Command('worker')))
    .description('Run a worker: consume queues and execute the tasks of --app.')
    .option('-Q, --queues <list>', 'comma-separated queues to consume (default: celery); env CELERIAC_QUEUES')
    .option('-c, --concurrency <n>', 'tasks run at once (default 10); env CELERIAC_CONCURRENCY')
    .option('-P, --pool <name>', 'event-loop (default), threads or processes; Celery names solo and prefork too; env CELERIAC_POOL')
    .option('--max-tasks-per-child <n>', 'threads/processes: replace a runner after N tasks')
    .option('--max-memory-per-child <kib>', 'threads/processes: replace a runner past this memory (KiB) after a task')
    .option('--autoscale <max,min>', 'grow to MAX slots or children with load, shrink to MIN when idle')
    .option('--watch', 'development: restart the worker (warm) when a file of the tasks module folder changes')
    .option('--prefetch-multiplier <n>', 'messages reserved per slot (default 4; 0 = unlimited)')
    .option('-n, --hostname <name>', 'node name, name@host (default celeriac@<hostname>)')
    .option(
      '--metrics-port <port>',
      'port of /metrics, /healthz, /drain (default 9540, or any free port when 9540 is taken; 0 = any free port; none = off); env CELERIAC_METRICS_PORT',
    )
    .option('-l, --loglevel <level>', 'trace, debug, info, warn, error (default info)')
    .option('-E, --events', 'send task events for monitors (Flower, celeriac events); env CELERIAC_WORKER_SEND_TASK_EVENTS')
    .option('-B, --beat', 'also run beat (safe with many workers: one beat leads at a time)')
    .addHelpText(
      'after',
      '\nSIGTERM, SIGINT or the remote-control command shutdown: warm shutdown (stop consuming, give back prefetched messages, let running tasks finish for up to\nCELERIAC_SHUTDOWN_TIMEOUT_MS). A second signal: cold shutdown. Tasks still running then are cut off, never lost:\nlate-ack messages go back to the queue, early-acked tasks are stored FAILURE(WorkerLostError).',
    )
    .action(async (f: WorkerFlags) => {
      const app = await loadApp(
        f,
        {
          brokerUrl: f.broker,
          resultBackend: f.resultBackend,
          queues: f.queues,
          concurrency: f.concurrency,
          pool: f.pool,
          maxTasksPerChild: f.maxTasksPerChild,
          maxMemoryPerChildKib: f.maxMemoryPerChild,
          autoscale: f.autoscale,
          watch: process.env[WATCHED_CHILD] === undefined ? f.watch : false,
          prefetchMultiplier: f.prefetchMultiplier,
          hostname: f.hostname,
          metricsPort: f.metricsPort,
          logLevel: f.loglevel,
          workerSendTaskEvents: f.events,
        },
        true,
      );
      const tasksModule = appModuleUrl((f.app ?? process.env.CELERIAC_APP)!);
      if (app.config.watch && process.env[WATCHED_CHILD] === undefined) return superviseWatched(tasksModule, app.log);
      // With no port asked for, a second worker on this machine takes any free port for /metrics.
      const portAsked = f.metricsPort !== undefined || process.env.CELERIAC_METRICS_PORT !== undefined;
      let signals = 0;
      // Remote control's shutdown is a warm shutdown, as the first SIGTERM.
      const worker = createWorker(app, {
        tasksModule,
        anyMetricsPortWhenTaken: !portAsked,
        onShutdownRequest: () => signals === 0 && onSignal('remote control'),
      });
      const beat = f.beat ? await beatFromFlags(app, f) : null;
      const onSignal = (sig: NodeJS.Signals | 'remote control') => {
        signals++;
        worker.log.info({ signal: sig }, signals === 1 ? 'warm shutdown requested (send again for cold shutdown)' : 'cold shutdown requested');
        void Promise.resolve(signals === 1 ? beat?.stop() : undefined)
          .then(() => worker.stop({ graceful: signals === 1, reason: `cold shutdown (second ${sig})` }))
          .then(() => process.exit(0));
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
      // A bug that escapes everything (an unhandled rejection counts too) ends the process, but first
      // a cold stop records the running tasks (WorkerLostError, or their messages back in the queue).
      process.on('uncaughtException', (err, origin) => {
        worker.log.fatal({ err, origin }, 'uncaught exception: cold shutdown, then exit 1');
        setTimeout(() => process.exit(1), CRASH_STOP_MS).unref();
        void worker
          .stop({ graceful: false, reason: `the worker crashed (${err instanceof Error ? err.message : String(err)})` })
          .finally(() => process.exit(1));
      });
      await worker.start();
      await beat?.start();
    });
}
