/**
 * The worker's own services as components (app/components.ts, Celery's bootsteps), declared in
 * this start order with their real dependencies; they stop in reverse:
 *
 *   broker · backend (rides the broker for rpc://) · tracing · metrics (/metrics, /healthz: up
 *   for the whole shutdown) · watchdog · pool · [the user's components] · events · heartbeat
 *   (worker-online; worker-offline when it stops) · control (answers during the whole warm
 *   shutdown) · consumer (stops with: drain, wait up to shutdownTimeoutMs, cut off the rest) ·
 *   autoscaler (stops first, so the pool is not resized while it drains)
 *
 * A user component may require any of them or start before any of them.
 */
import type { App } from '../app/app.js';
import type { Component } from '../app/components.js';
import { ConfigError } from '../errors.js';
import type { Broker } from '../brokers/broker.js';
import type { ResultBackend } from '../backends/result-backend.js';
import { startMailbox, type Mailbox } from '../control/mailbox.js';
import { createEventDispatcher, type EventDispatcher } from '../events/dispatcher.js';
import type { WorkerMetrics } from '../metrics/worker-metrics.js';
import { startMetricsServer, type MetricsServerHooks, type MetricsServer } from '../metrics/server.js';
import type { Pool } from '../pools/pool.js';
import { LamportClock } from '../protocol/lamport-clock.js';
import type { Logger } from 'pino';
import { Autoscaler } from './autoscaler.js';
import { Consumer } from './consumer.js';
import { startWorkerEvents, type WorkerEvents } from './heartbeat.js';
import { startWatchdog, type Watchdog } from './watchdog.js';

/** How the worker stops: set by Worker.stop() (or a failed start) before the services stop. */
export interface StopMode {
  readonly graceful: boolean;
  /** Names a cold stop in the cut-off tasks' WorkerLostError and the log. */
  readonly reason: string;
}

export interface ServiceDeps {
  readonly app: App;
  readonly pool: Pool;
  /** Celery's --autoscale=max,min (null: a fixed pool). */
  readonly autoscale: { readonly max: number; readonly min: number } | null;
  readonly metrics: WorkerMetrics;
  readonly log: Logger;
  /** The metrics server's probes and drain/resume endpoints. */
  readonly metricsHooks: Omit<MetricsServerHooks, 'registry'>;
  readonly anyMetricsPortWhenTaken: boolean;
  /** Stops consuming (Worker.drain: the same drain a /drain request or an earlier stop started). */
  drain(): Promise<void>;
  /** True once a drain was asked for: the consumer then starts without consuming. */
  draining(): boolean;
  stopMode(): StopMode;
  onHeartbeat(): void;
  onShutdownRequest(reason: string): void;
}

/** The running parts the worker reads (null until their service starts). */
export interface ServiceParts {
  readonly consumer: Consumer | null;
  readonly events: EventDispatcher | null;
  readonly workerEvents: WorkerEvents | null;
  readonly server: MetricsServer | null;
  readonly watchdog: Watchdog | null;
}

/** What the consumer is built from (control builds it too: remote control reaches it before it consumes). */
const CONSUMER_NEEDS = ['broker', 'backend', 'tracing', 'watchdog', 'pool', 'events'];

/**
 * The worker's services with `user` components placed after the pool (their default place), in
 * declaration order, and the parts they start.
 */
export function createWorkerServices(d: ServiceDeps, user: readonly Component[]): { components: Component[]; parts: ServiceParts } {
  const { app, pool, metrics, log } = d;
  const config = app.config;
  const clock = new LamportClock();
  let broker: Broker | null = null;
  let backend: ResultBackend | null = null;
  let mailbox: Mailbox | null = null;
  // Autoscaling starts at its minimum (createPoolFromConfig sizes the pool so).
  const autoscaler = d.autoscale
    ? new Autoscaler(
        {
          pool,
          held: () => {
            const n = parts.consumer?.counts();
            return n ? n.active + n.reserved : 0;
          },
          onResize: () => parts.consumer?.poolResized(),
          log,
        },
        d.autoscale.max,
        d.autoscale.min,
      )
    : null;
  const parts: { -readonly [K in keyof ServiceParts]: ServiceParts[K] } = { consumer: null, events: null, workerEvents: null, server: null, watchdog: null };

  /** Built once, by control or the consumer, whichever starts first (both require CONSUMER_NEEDS). */
  const consumer = (): Consumer =>
    (parts.consumer ??= new Consumer({
      app,
      config,
      broker: broker!,
      backend: backend!,
      pool,
      metrics,
      events: parts.events!,
      log,
      watchdog: parts.watchdog,
      // Celery's qos follows the autoscaler's maximum.
      prefetchSlots: () => autoscaler?.max ?? pool.size,
      onTaskReceived: () => {
        autoscaler?.taskReceived();
        autoscaler?.step();
      },
    }));

  const before: Component[] = [
    {
      name: 'broker',
      start: async () => void (broker = await app.broker()),
      // Closes the backend's connection too (it may ride the broker's), after the app's own task-sent events.
      stop: () => app.close(),
    },
    { name: 'backend', requires: ['broker'], start: async () => void (backend = await app.backend()) },
    // Configured but not loadable: fail at start, not on every task.
    { name: 'tracing', start: async () => void (await app.tracing()) },
    {
      name: 'metrics',
      async start() {
        if (config.metricsPort === null) return;
        const hooks = { registry: metrics.registry, ...d.metricsHooks };
        const port = config.metricsPort;
        parts.server = await startMetricsServer(port, hooks).catch(async (err: NodeJS.ErrnoException) => {
          if (err.code !== 'EADDRINUSE') throw err;
          if (!d.anyMetricsPortWhenTaken)
            throw new ConfigError([
              `--metrics-port ${port}: the port is in use (another worker on this machine?). Give each worker its own ` +
                `(--metrics-port <port> or CELERIAC_METRICS_PORT), 0 for any free port, or none to turn /metrics off`,
            ]);
          const s = await startMetricsServer(0, hooks);
          log.warn({ port, metrics: s.url }, `metrics port ${port} is in use (another worker on this machine?): serving /metrics on port ${s.port}`);
          return s;
        });
      },
      stop: async () => parts.server?.close(),
    },
    {
      name: 'watchdog',
      async start() {
        if (config.eventLoopBlockedMs === null) return;
        const results = {
          url: config.resultBackend,
          expiresMs: config.resultExpiresMs,
          chordOrdered: config.resultChordOrdered,
          dateTags: config.jsonDateTags,
        };
        const w = (parts.watchdog = await startWatchdog({ thresholdMs: config.eventLoopBlockedMs, exact: config.eventLoopBlockedExact, log, results }));
        metrics.onCollect(() => metrics.eventLoopLag.set(w.takeMaxLagMs() / 1000));
      },
      stop: async () => parts.watchdog?.stop(),
    },
    {
      name: 'pool',
      async start() {
        await pool.start();
        // Celery's solo pool sends worker_process_init in the worker itself; runners send their own.
        if (pool.kind === 'event-loop' && app.signals.has('workerProcessInit'))
          await app.signals.send('workerProcessInit', { sender: config.hostname, pid: process.pid }, log);
      },
      stop: () => pool.stop({ graceful: d.stopMode().graceful, timeoutMs: config.shutdownTimeoutMs }),
    },
  ];
  const after: Component[] = [
    {
      name: 'events',
      requires: ['broker'],
      start() {
        parts.events = createEventDispatcher({
          broker: broker!,
          hostname: config.hostname,
          log: log.child({ component: 'events' }),
          taskEvents: config.workerSendTaskEvents,
          clock,
        });
      },
      stop: async () => void (await parts.events?.flush()),
    },
    {
      name: 'heartbeat',
      requires: ['events'],
      start() {
        const counts = () => ({ active: parts.consumer?.counts().active ?? 0, processed: parts.consumer?.processed ?? 0 });
        parts.workerEvents = startWorkerEvents(parts.events!, counts, config.workerHeartbeatIntervalMs, d.onHeartbeat);
      },
      stop: async () => parts.workerEvents?.stop(),
    },
    {
      name: 'control',
      requires: [...CONSUMER_NEEDS, 'heartbeat'],
      before: ['consumer'],
      start() {
        const events = parts.events!;
        mailbox = startMailbox(broker!, {
          app,
          hostname: config.hostname,
          log,
          pool,
          autoscaler,
          clock,
          startedAt: Date.now(),
          consumer: consumer(),
          events: { enable: () => events.enable(), disable: () => events.disable(), heartbeat: () => parts.workerEvents?.heartbeat() },
          shutdown(reason) {
            log.warn({ reason }, 'warm shutdown requested by remote control');
            d.onShutdownRequest(reason);
          },
        });
      },
      stop: () => mailbox?.stop(),
    },
    {
      name: 'consumer',
      requires: CONSUMER_NEEDS,
      async start() {
        // Before consuming: tasks a killed predecessor was running are settled first.
        await consumer().recoverLost();
        // A drain asked for while the worker started (/drain) holds until resumed.
        if (!d.draining()) consumer().start();
      },
      async stop() {
        const c = consumer();
        const { graceful, reason } = d.stopMode();
        await d.drain();
        let why = reason;
        if (graceful) {
          const left = await c.waitIdle(config.shutdownTimeoutMs);
          why = `warm shutdown timeout (shutdownTimeoutMs ${config.shutdownTimeoutMs}) passed`;
          if (left.length > 0)
            log.warn({ taskIds: left }, `warm shutdown: ${left.length} task(s) still running after ${config.shutdownTimeoutMs} ms: cutting them off`);
        }
        await c.abortRunning(why);
      },
    },
  ];
  let autoscaleTimer: NodeJS.Timeout | undefined;
  after.push({
    name: 'autoscaler',
    requires: ['pool', 'consumer'],
    start() {
      if (!autoscaler) return;
      autoscaleTimer = setInterval(() => autoscaler.step(), 1000);
      autoscaleTimer.unref();
    },
    stop: () => clearInterval(autoscaleTimer),
  });
  return { components: [...before, ...user, ...after], parts };
}
