/**
 * A worker: ordered services started in order and stopped in reverse, as Celery's bootsteps
 * (without string paths): broker and backend, pool, the user's components (app.component, in
 * their dependency order: components.ts), events, metrics server, remote control, consumer. OS signals are the CLI's business; this is the library object, which sends
 * the app's worker signals (workerInit, workerReady, workerShuttingDown, workerShutdown, heartbeatSent).
 */
import type { Logger } from 'pino';
import type { App } from '../app/app.js';
import { createWorkerMetrics, type WorkerMetrics } from '../metrics/worker-metrics.js';
import { startMetricsServer, type MetricsServer } from '../metrics/server.js';
import type { PoolName } from '../app/config.js';
import { createPoolFromConfig, type Pool } from '../pools/pool.js';
import { parseAutoscale } from '../pools/autoscale.js';
import { LamportClock } from '../protocol/lamport-clock.js';
import { startMailbox, type Mailbox } from '../control/mailbox.js';
import { CeleriacError, ConfigError, redactUrl } from '../errors.js';
import { registerCanvasTasks } from '../canvas/builtins.js';
import { createEventDispatcher, type EventDispatcher } from '../events/dispatcher.js';
import { startComponents, type StartedComponents } from '../app/components.js';
import { Autoscaler } from './autoscaler.js';
import { Consumer } from './consumer.js';
import { startWatchdog, type Watchdog } from './watchdog.js';
import { startWorkerEvents, type WorkerEvents } from './heartbeat.js';

export interface Worker {
  /** `/metrics` URL, once started (null when the metrics port is disabled). */
  readonly metricsUrl: string | null;
  readonly metrics: WorkerMetrics;
  readonly log: Logger;
  /**
   * This worker's event dispatcher, once started (null before): remote control's enable_events /
   * disable_events call `events.enable()` / `events.disable()` and reply with the text they return.
   */
  readonly events: EventDispatcher | null;
  /** Sends a worker-heartbeat event now (the `heartbeat` control command); no-op before start. */
  heartbeat(): void;
  start(): Promise<void>;
  /** Stops consuming and gives back prefetched and scheduled messages; running tasks finish. */
  drain(): Promise<void>;
  /** Cancels a drain and consumes again; refused once the worker is stopping. */
  resume(): Promise<void>;
  /**
   * Warm stop: drain, wait up to the config's shutdownTimeoutMs for running tasks, then cut off
   * what is left. `graceful: false` (cold) cuts running tasks off at once; it also cuts short a
   * warm stop in progress. A cut-off task is never lost silently: its late-ack message goes back
   * to the queue, an early-acked one is stored FAILURE(WorkerLostError) (see Consumer.abortRunning).
   * `reason` names the cold stop in that error and the log (default "cold shutdown").
   */
  stop(opts?: { graceful?: boolean; reason?: string }): Promise<void>;
  /** Why the worker is not healthy (the /healthz answer), or null. */
  problem(): string | null;
  /** Tasks running, prefetched and ETA-held. */
  counts(): { active: number; reserved: number; scheduled: number; processed: number };
}

export interface WorkerOptions {
  /** A pool name (default: the config's `pool`), or a pool made by the caller. */
  readonly pool?: Pool | PoolName;
  /**
   * The module that defines the app and its tasks, as a file URL (`import.meta.url` in that
   * module): the threads and processes pools import it in each runner.
   */
  readonly tasksModule?: string;
  /**
   * When the metrics port is taken (a second worker on the machine with the default port), listen
   * on any free port and log it, instead of failing. The CLI sets it when no port was asked for.
   */
  readonly anyMetricsPortWhenTaken?: boolean;
  /**
   * Called when remote control asks for a shutdown (Celery's `shutdown` command); default: a warm
   * stop(). The CLI passes its own, so that the process exits as after SIGTERM.
   */
  readonly onShutdownRequest?: (reason: string) => void;
}

export function createWorker(app: App, opts: WorkerOptions = {}): Worker {
  const config = app.config;
  // `node`, not `hostname`: pino's base bindings already carry the machine's `hostname`, and a
  // JSON line with a key twice is rejected or silently overwritten by log pipelines.
  const log = app.log.child({ component: 'worker', node: config.hostname });
  const metrics = createWorkerMetrics();
  let consumer: Consumer | null = null;
  let watchdog: Watchdog | null = null;
  let events: EventDispatcher | null = null;
  let workerEvents: WorkerEvents | null = null;
  let server: MetricsServer | null = null;
  let mailbox: Mailbox | null = null;
  let userComponents: StartedComponents | null = null;
  const clock = new LamportClock();
  let draining: Promise<void> | null = null;
  let stopped: Promise<void> | null = null;
  // A running worker keeps its process alive even when its broker holds no handle (memory://).
  let keepAlive: NodeJS.Timeout | null = null;
  const pool = typeof opts.pool === 'object' ? opts.pool : createPoolFromConfig(config, { name: opts.pool, tasksModule: opts.tasksModule, log });
  // Autoscaling starts at its minimum (Celery's --autoscale=max,min; createPoolFromConfig sizes the pool so).
  const autoscaleLimits = config.autoscale === null ? null : parseAutoscale(config.autoscale);
  let autoscaler: Autoscaler | null = null;
  let autoscaleTimer: NodeJS.Timeout | null = null;
  /** Sends a worker signal (sender: the node name) when a handler listens. */
  const signal = async <N extends 'workerInit' | 'workerReady' | 'workerShutdown' | 'heartbeatSent'>(name: N) => {
    if (app.signals.has(name)) await app.signals.send(name, { sender: config.hostname }, log);
  };

  const worker: Worker = {
    get metricsUrl() {
      return server?.url ?? null;
    },
    metrics,
    log,
    get events() {
      return events;
    },
    heartbeat() {
      workerEvents?.heartbeat();
    },
    async start() {
      await signal('workerInit');
      registerCanvasTasks(app);
      const broker = await app.broker();
      const backend = await app.backend();
      await app.tracing(); // configured but not loadable: fail at start, not on every task
      await pool.start();
      // Celery's solo pool sends worker_process_init in the worker itself; runners send their own.
      if (pool.kind === 'event-loop' && app.signals.has('workerProcessInit'))
        await app.signals.send('workerProcessInit', { sender: config.hostname, pid: process.pid }, log);
      try {
        userComponents = await startComponents(app.components, config.hostname, log);
      } catch (err) {
        // The worker does not start: what it started so far is stopped before the error goes up.
        log.error({ err }, (err as Error).message);
        await pool.stop({ graceful: false, timeoutMs: 0 });
        await app.close();
        throw err;
      }
      if (config.eventLoopBlockedMs !== null) {
        const results = {
          url: config.resultBackend,
          expiresMs: config.resultExpiresMs,
          chordOrdered: config.resultChordOrdered,
          dateTags: config.jsonDateTags,
        };
        const w = (watchdog = await startWatchdog({ thresholdMs: config.eventLoopBlockedMs, log, results }));
        metrics.onCollect(() => metrics.eventLoopLag.set(w.takeMaxLagMs() / 1000));
      }
      events = createEventDispatcher({
        broker,
        hostname: config.hostname,
        log: log.child({ component: 'events' }),
        taskEvents: config.workerSendTaskEvents,
        clock,
      });
      consumer = new Consumer({
        app,
        config,
        broker,
        backend,
        pool,
        metrics,
        events,
        log,
        watchdog,
        // Celery's qos follows the autoscaler's maximum.
        prefetchSlots: () => autoscaler?.max ?? pool.size,
        onTaskReceived: () => {
          autoscaler?.taskReceived();
          autoscaler?.step();
        },
      });
      if (autoscaleLimits) {
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
          autoscaleLimits.max,
          autoscaleLimits.min,
        );
        const a = autoscaler;
        autoscaleTimer = setInterval(() => a.step(), 1000);
        autoscaleTimer.unref();
      }
      // --watch restarts the whole worker process, from the CLI (cli/watch-supervisor.ts).
      if (config.watch) log.warn('watch: only the CLI (celeriac worker --watch) restarts a worker on changes; ignored here');
      if (config.metricsPort !== null) {
        const hooks = {
          registry: metrics.registry,
          // Alive while stopping: a warm shutdown may take the whole grace period, and a failing
          // liveness probe would have the kubelet kill the tasks it is waiting for.
          healthy: () => worker.problem() === null,
          problem: () => worker.problem(),
          ready: () => stopped === null && draining === null && worker.problem() === null,
          drain: () => worker.drain(),
          resume: () => worker.resume(),
        };
        const port = config.metricsPort;
        server = await startMetricsServer(port, hooks).catch(async (err: NodeJS.ErrnoException) => {
          if (err.code !== 'EADDRINUSE') throw err;
          if (!opts.anyMetricsPortWhenTaken)
            throw new ConfigError([
              `--metrics-port ${port}: the port is in use (another worker on this machine?). Give each worker its own ` +
                `(--metrics-port <port> or CELERIAC_METRICS_PORT), 0 for any free port, or none to turn /metrics off`,
            ]);
          const s = await startMetricsServer(0, hooks);
          log.warn({ port, metrics: s.url }, `metrics port ${port} is in use (another worker on this machine?): serving /metrics on port ${s.port}`);
          return s;
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
        events: {
          enable: () => events!.enable(),
          disable: () => events!.disable(),
          heartbeat: () => workerEvents?.heartbeat(),
        },
        shutdown(reason) {
          log.warn({ reason }, 'warm shutdown requested by remote control');
          if (opts.onShutdownRequest) opts.onShutdownRequest(reason);
          else void worker.stop();
        },
      });
      consumer.start();
      const c = consumer;
      workerEvents = startWorkerEvents(
        events,
        () => ({ active: c.counts().active, processed: c.processed }),
        config.workerHeartbeatIntervalMs,
        () => {
          // Handlers' errors are logged by send itself; the heartbeat timer goes on.
          void signal('heartbeatSent');
        },
      );
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
          taskEvents: config.workerSendTaskEvents,
        },
        `worker ready: consuming ${config.queues.join(', ')} with ${pool.size} slots`,
      );
      await signal('workerReady');
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
      const coldReason = o.reason ?? 'cold shutdown';
      // A second, cold stop during a warm one cuts the wait short (Celery's second Ctrl-C).
      if (stopped && o.graceful === false) void consumer?.abortRunning(coldReason);
      return (stopped ??= (async () => {
        const graceful = o.graceful ?? true;
        if (app.signals.has('workerShuttingDown'))
          await app.signals.send('workerShuttingDown', { sender: config.hostname, how: graceful ? 'warm' : 'cold' }, log);
        if (autoscaleTimer) clearInterval(autoscaleTimer);
        await worker.drain();
        let why = coldReason;
        if (graceful && consumer) {
          const left = await consumer.waitIdle(config.shutdownTimeoutMs);
          why = `warm shutdown timeout (shutdownTimeoutMs ${config.shutdownTimeoutMs}) passed`;
          if (left.length > 0)
            log.warn({ taskIds: left }, `warm shutdown: ${left.length} task(s) still running after ${config.shutdownTimeoutMs} ms: cutting them off`);
        }
        await consumer?.abortRunning(why);
        mailbox?.stop();
        // After the tasks, before the pool and connections: a task always finds its components started.
        await userComponents?.stop();
        await pool.stop({ graceful, timeoutMs: config.shutdownTimeoutMs });
        await watchdog?.stop();
        await server?.close();
        await workerEvents?.stop();
        await app.close();
        if (keepAlive) clearInterval(keepAlive);
        log.info({ processed: consumer?.processed ?? 0 }, 'worker stopped');
        await signal('workerShutdown');
      })());
    },
    problem() {
      if (consumer?.failure) return `the consumer stopped: ${consumer.failure.message}`;
      if (pool.healthy?.() === false) return `the ${pool.kind} pool has no runner: its last starts failed`;
      const c = consumer;
      const stuck = c ? watchdog?.stuck((id) => c.isRunning(id)) : null;
      return stuck ? `task ${stuck.task.name}[${stuck.task.id}] blocked the event loop for ${stuck.blockedMs / 1000}s or more and is still running` : null;
    },
    counts() {
      return { ...(consumer?.counts() ?? { active: 0, reserved: 0, scheduled: 0 }), processed: consumer?.processed ?? 0 };
    },
  };
  return worker;
}
