/**
 * A worker: components started in dependency order and stopped in reverse, as Celery's bootsteps
 * (without string paths): its own services (./services.ts: broker, backend, tracing, metrics,
 * watchdog, pool, events, heartbeat, control, consumer, autoscaler) and the user's
 * (app.component), ordered among them (app/components.ts). OS signals are the CLI's business; this
 * is the library object, which sends the app's worker signals (workerInit, workerReady,
 * workerShuttingDown, workerShutdown, heartbeatSent).
 */
import type { Logger } from 'pino';
import type { App } from '../app/app.js';
import { createWorkerMetrics, type WorkerMetrics } from '../metrics/worker-metrics.js';
import type { PoolName } from '../app/config.js';
import { createPoolFromConfig, type Pool } from '../pools/pool.js';
import { parseAutoscale } from '../pools/autoscale.js';
import { CeleriacError, redactUrl } from '../errors.js';
import { registerCanvasTasks } from '../canvas/builtins.js';
import type { EventDispatcher } from '../events/dispatcher.js';
import { ComponentRunner } from '../app/components.js';
import { createWorkerServices, type StopMode } from './services.js';

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
  let draining: Promise<void> | null = null;
  let stopped: Promise<void> | null = null;
  let running: ComponentRunner | null = null;
  let ready = false;
  // Until stop() says otherwise, a stop is the cold one that follows a failed start.
  let stopMode: StopMode = { graceful: false, reason: 'the worker failed to start' };
  // A running worker keeps its process alive even when its broker holds no handle (memory://).
  let keepAlive: NodeJS.Timeout | null = null;
  // Celery's --autoscale=max,min, parsed once for the pool's first size and the autoscaler.
  const autoscale = config.autoscale === null ? null : parseAutoscale(config.autoscale);
  const pool = typeof opts.pool === 'object' ? opts.pool : createPoolFromConfig(config, { name: opts.pool, tasksModule: opts.tasksModule, log, autoscale });
  /** Sends a worker signal (sender: the node name) when a handler listens. */
  const signal = async <N extends 'workerInit' | 'workerReady' | 'workerShutdown' | 'heartbeatSent'>(name: N) => {
    if (app.signals.has(name)) await app.signals.send(name, { sender: config.hostname }, log);
  };
  /** Builds the services with the app's components among them (at start: a workerInit handler may still add one). */
  const services = () =>
    createWorkerServices(
      {
        app,
        pool,
        autoscale,
        metrics,
        log,
        metricsHooks: {
          // Alive while stopping: a warm shutdown may take the whole grace period, and a failing
          // liveness probe would have the kubelet kill the tasks it is waiting for.
          healthy: () => worker.problem() === null,
          problem: () => worker.problem(),
          ready: () => ready && stopped === null && draining === null && worker.problem() === null,
          drain: () => worker.drain(),
          resume: () => worker.resume(),
        },
        anyMetricsPortWhenTaken: opts.anyMetricsPortWhenTaken ?? false,
        drain: () => worker.drain(),
        draining: () => draining !== null,
        stopMode: () => stopMode,
        onHeartbeat: () => {
          // Handlers' errors are logged by send itself; the heartbeat timer goes on.
          void signal('heartbeatSent');
        },
        onShutdownRequest: (reason) => {
          if (opts.onShutdownRequest) opts.onShutdownRequest(reason);
          else void worker.stop();
        },
      },
      app.components,
    );
  let parts: ReturnType<typeof services>['parts'] | null = null;

  const worker: Worker = {
    get metricsUrl() {
      return parts?.server?.url ?? null;
    },
    metrics,
    log,
    get events() {
      return parts?.events ?? null;
    },
    heartbeat() {
      parts?.workerEvents?.heartbeat();
    },
    async start() {
      await signal('workerInit');
      registerCanvasTasks(app);
      const built = services();
      parts = built.parts;
      // Each component logs under its own name (`component` once per line: not the worker's).
      running = new ComponentRunner(built.components, config.hostname, app.log.child({ node: config.hostname }));
      await running.start();
      // --watch restarts the whole worker process, from the CLI (cli/watch-supervisor.ts).
      if (config.watch) log.warn('watch: only the CLI (celeriac worker --watch) restarts a worker on changes; ignored here');
      keepAlive = setInterval(() => undefined, 1 << 30);
      ready = true;
      log.info(
        {
          broker: redactUrl(config.brokerUrl),
          backend: redactUrl(config.resultBackend),
          queues: config.queues,
          concurrency: pool.size,
          pool: pool.kind,
          tasks: [...app.tasks.keys()],
          metrics: worker.metricsUrl,
          taskEvents: config.workerSendTaskEvents,
          components: running.names,
        },
        `worker ready: consuming ${config.queues.join(', ')} with ${pool.size} slots`,
      );
      await signal('workerReady');
    },
    drain() {
      return (draining ??= (async () => {
        log.info('draining: stopped consuming; running tasks finish');
        await parts?.consumer?.stopConsuming();
      })());
    },
    async resume() {
      const consumer = parts?.consumer;
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
      if (stopped && o.graceful === false) void parts?.consumer?.abortRunning(coldReason);
      return (stopped ??= (async () => {
        stopMode = { graceful: o.graceful ?? true, reason: coldReason };
        if (app.signals.has('workerShuttingDown'))
          await app.signals.send('workerShuttingDown', { sender: config.hostname, how: stopMode.graceful ? 'warm' : 'cold' }, log);
        // In reverse: the consumer drains, waits for its tasks and cuts off the rest; then the others.
        await running?.stop();
        if (keepAlive) clearInterval(keepAlive);
        log.info({ processed: parts?.consumer?.processed ?? 0 }, 'worker stopped');
        await signal('workerShutdown');
      })());
    },
    problem() {
      const consumer = parts?.consumer;
      if (consumer?.failure) return `the consumer stopped: ${consumer.failure.message}`;
      if (pool.healthy?.() === false) return `the ${pool.kind} pool has no runner: its last starts failed`;
      const stuck = consumer ? parts?.watchdog?.stuck((id) => consumer.isRunning(id)) : null;
      return stuck ? `task ${stuck.task.name}[${stuck.task.id}] blocked the event loop for ${stuck.blockedMs / 1000}s or more and is still running` : null;
    },
    counts() {
      const consumer = parts?.consumer;
      return { ...(consumer?.counts() ?? { active: 0, reserved: 0, scheduled: 0 }), processed: consumer?.processed ?? 0 };
    },
  };
  return worker;
}
