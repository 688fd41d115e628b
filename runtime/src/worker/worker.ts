/**
 * A worker: ordered services started in order and stopped in reverse, as Celery's bootsteps
 * (without string paths or a dependency solver): broker and backend, metrics server, remote
 * control, consumer. Signals are the CLI's business; this is the library object.
 */
import type { Logger } from 'pino';
import type { App } from '../app/app.js';
import { createWorkerMetrics, type WorkerMetrics } from '../metrics/worker-metrics.js';
import { startMetricsServer, type MetricsServer } from '../metrics/server.js';
import { createEventLoopPool, type Pool } from '../pools/pool.js';
import { LamportClock } from '../protocol/control.js';
import { startMailbox, type Mailbox } from '../control/mailbox.js';
import { CeleriacError, redactUrl } from '../errors.js';
import { registerCanvasTasks } from '../canvas/builtins.js';
import { Autoscaler } from './autoscaler.js';
import { Consumer } from './consumer.js';

export interface Worker {
  /** `/metrics` URL, once started (null when the metrics port is disabled). */
  readonly metricsUrl: string | null;
  readonly metrics: WorkerMetrics;
  readonly log: Logger;
  start(): Promise<void>;
  /** Stops consuming and gives back prefetched and scheduled messages; running tasks finish. */
  drain(): Promise<void>;
  /** Cancels a drain and consumes again; refused once the worker is stopping. */
  resume(): Promise<void>;
  /**
   * Warm stop: drain, wait up to the config's shutdownTimeoutMs for running tasks, then give back
   * what is left. `graceful: false` (cold) gives running late-ack tasks back at once.
   */
  stop(opts?: { graceful?: boolean }): Promise<void>;
  /** Tasks running, prefetched and ETA-held. */
  counts(): { active: number; reserved: number; scheduled: number; processed: number };
}

export interface WorkerOptions {
  /** The pool tasks run in (default: the event-loop pool with the config's concurrency). */
  readonly pool?: Pool;
  /**
   * Called when remote control asks for a shutdown (Celery's `shutdown` command); default: a warm
   * stop(). The CLI passes its own, so that the process exits as after SIGTERM.
   */
  readonly onShutdownRequest?: (reason: string) => void;
}

export function createWorker(app: App, opts: WorkerOptions = {}): Worker {
  const config = app.config;
  const log = app.log.child({ component: 'worker', hostname: config.hostname });
  const metrics = createWorkerMetrics();
  let consumer: Consumer | null = null;
  let server: MetricsServer | null = null;
  let mailbox: Mailbox | null = null;
  const clock = new LamportClock();
  let draining: Promise<void> | null = null;
  let stopped: Promise<void> | null = null;
  // A running worker keeps its process alive even when its broker holds no handle (memory://).
  let keepAlive: NodeJS.Timeout | null = null;
  // Autoscaling starts at its minimum (Celery's --autoscale=max,min).
  const pool = opts.pool ?? createEventLoopPool(config.autoscaleMax !== null ? config.autoscaleMin : config.concurrency);
  let autoscaler: Autoscaler | null = null;
  let autoscaleTimer: NodeJS.Timeout | null = null;

  const worker: Worker = {
    get metricsUrl() {
      return server?.url ?? null;
    },
    metrics,
    log,
    async start() {
      registerCanvasTasks(app);
      const broker = await app.broker();
      const backend = await app.backend();
      await pool.start();
      consumer = new Consumer({
        app,
        config,
        broker,
        backend,
        pool,
        metrics,
        log,
        prefetchSlots: () => autoscaler?.max ?? pool.size,
        onTaskReceived: () => {
          autoscaler?.taskReceived();
          autoscaler?.step();
        },
      });
      if (config.autoscaleMax !== null) {
        const c = consumer;
        autoscaler = new Autoscaler(
          {
            pool,
            held: () => {
              const n = c.counts();
              return n.active + n.reserved;
            },
            onResize: () => c.poolResized(),
            log,
          },
          config.autoscaleMax,
          config.autoscaleMin,
        );
        const a = autoscaler;
        autoscaleTimer = setInterval(() => a.step(), 1000);
        autoscaleTimer.unref();
      }
      if (config.metricsPort !== null) {
        server = await startMetricsServer(config.metricsPort, {
          registry: metrics.registry,
          healthy: () => stopped === null,
          ready: () => stopped === null && draining === null,
          drain: () => worker.drain(),
          resume: () => worker.resume(),
        });
      }
      mailbox = startMailbox(broker, {
        app,
        hostname: config.hostname,
        log,
        pool,
        autoscaler,
        clock,
        startedAt: Date.now(),
        consumer,
        shutdown(reason) {
          log.warn({ reason }, 'warm shutdown requested by remote control');
          if (opts.onShutdownRequest) opts.onShutdownRequest(reason);
          else void worker.stop();
        },
      });
      consumer.start();
      keepAlive = setInterval(() => undefined, 1 << 30);
      log.info(
        {
          broker: redactUrl(config.brokerUrl),
          backend: redactUrl(config.resultBackend),
          queues: config.queues,
          concurrency: pool.size,
          pool: pool.kind,
          tasks: [...app.tasks.keys()],
          metrics: server?.url ?? null,
        },
        `worker ready: consuming ${config.queues.join(', ')} with ${pool.size} slots`,
      );
    },
    drain() {
      return (draining ??= (async () => {
        log.info('draining: stopped consuming; running tasks finish');
        await consumer?.stopConsuming();
      })());
    },
    async resume() {
      if (stopped) throw new CeleriacError('E_STOPPING', 'the worker is shutting down');
      if (!draining || !consumer) return;
      await draining;
      draining = null;
      consumer.start();
      log.info('drain cancelled: consuming again');
    },
    stop(o = {}) {
      // A second, cold stop during a warm one cuts the wait short (Celery's second Ctrl-C).
      if (stopped && o.graceful === false) void consumer?.abortRunning();
      return (stopped ??= (async () => {
        const graceful = o.graceful ?? true;
        await worker.drain();
        if (graceful && consumer) {
          const left = await consumer.waitIdle(config.shutdownTimeoutMs);
          if (left.length > 0) log.warn({ taskIds: left }, `warm shutdown: ${left.length} task(s) still running after ${config.shutdownTimeoutMs} ms`);
        }
        await consumer?.abortRunning();
        mailbox?.stop();
        if (autoscaleTimer) clearInterval(autoscaleTimer);
        await pool.stop({ graceful, timeoutMs: config.shutdownTimeoutMs });
        await server?.close();
        await app.close();
        if (keepAlive) clearInterval(keepAlive);
        log.info({ processed: consumer?.processed ?? 0 }, 'worker stopped');
      })());
    },
    counts() {
      return { ...(consumer?.counts() ?? { active: 0, reserved: 0, scheduled: 0 }), processed: consumer?.processed ?? 0 };
    },
  };
  return worker;
}
