/**
 * createApp: configuration, the task registry, and the client side (sendTask, AsyncResult,
 * revoke). The broker and result backend connect lazily, on first use, once.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Broker } from '../brokers/broker.js';
import type { WireMessage } from '../protocol/wire-message.js';
import { createBroker } from '../brokers/index.js';
import { createResultBackend } from '../backends/index.js';
import type { ResultBackend } from '../backends/result-backend.js';
import { CeleriacError, ConfigError } from '../errors.js';
import { createEventDispatcher, type EventDispatcher } from '../events/dispatcher.js';
import { createLogger } from '../logging/logger.js';
import { revokedMeta } from '../protocol/result-meta.js';
import type { MessageSigner } from '../protocol/signing.js';
import type { SignatureDict } from '../protocol/task-message.js';
import { loadTracing, tracedSend, type Tracing } from '../tracing/tracing.js';
import type { BeatSchedule } from './beat-schedule.js';
import { bindArguments, type ParamNames } from './arguments.js';
import { loadConfig, type Config } from './config.js';
import { Control, type ControlCommandSpec } from './control.js';
import { AsyncResult } from './result.js';
import { createRouter, type Routes } from './routes.js';
import { signerFromConfig } from './security.js';
import type { Component } from './components.js';
import { createSignals, type PublishArgs, type Signals } from './signals.js';
import { outgoingTask, type SendOptions } from './send.js';
import { parseRateLimit, resolveBase, type ApplyOptions, type Task, type TaskFn, type TaskOptions } from './task.js';

/** createApp options: any config key (see config.ts), plus `broker`/`backend` shorthands. */
export interface AppOptions extends Partial<Omit<Config, 'acceptContent' | 'queues'>> {
  readonly broker?: string;
  readonly backend?: string;
  readonly acceptContent?: readonly string[];
  readonly queues?: readonly string[];
  /**
   * Celery's task_routes: task name, `*` glob or RegExp -> queue (or `{ queue, priority }`), or
   * router functions; one router or a list asked in order. Applies to every task message, the
   * worker's links, errbacks and chain steps included. See routes.ts for forms and precedence.
   */
  readonly routes?: Routes;
  /** Logger to use; default: one made from the config's logLevel. */
  readonly logger?: Logger;
  /** Periodic tasks for `celeriac beat` / `worker -B` (Celery's beat_schedule; see beat/schedules.ts). */
  readonly beatSchedule?: BeatSchedule;
  /**
   * The environment the `CELERIAC_*` variables are read from (they win over these options);
   * default `process.env`. `{}` makes these options the whole config, for a client embedded in a
   * process whose environment is not a celeriac app's (the operator: Kubernetes service links put
   * e.g. `CELERIAC_METRICS_PORT=tcp://10.96.0.7:8080` into its pod).
   */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

export interface App {
  readonly config: Config;
  readonly log: Logger;
  /** Node name of this process as a client: `gen<pid>@<host>`, Celery's `origin`. */
  readonly origin: string;
  /** Defines a task. The name is what other languages call it by (e.g. "proj.tasks.add"). */
  task<A extends unknown[], R, const P extends ParamNames<A> = ParamNames<A>>(
    name: string,
    fn: TaskFn<A, R>,
    options?: TaskOptions & { readonly params?: P },
  ): Task<A, R, P>;
  /** Registered tasks by name. */
  readonly tasks: ReadonlyMap<string, Task>;
  /** Periodic tasks run by beat (createApp's beatSchedule). */
  readonly beatSchedule: BeatSchedule;
  /**
   * Sends a task by name (it may live in another worker or language). Every task message goes
   * through here, the worker's retries, links and chain steps too (send.ts), so all are routed
   * alike.
   */
  sendTask<R = unknown>(name: string, args?: readonly unknown[], kwargs?: Record<string, unknown>, options?: SendOptions): Promise<AsyncResult<R>>;
  /** A handle on a task by id. */
  asyncResult<R = unknown>(id: string): AsyncResult<R>;
  /** A signature dict (for link, linkError, canvas) of a task by name. */
  signature(name: string, args?: readonly unknown[], kwargs?: Record<string, unknown>, options?: Record<string, unknown>): SignatureDict;
  /** Remote control of workers, Python and celeriac alike (Celery's app.control). */
  readonly control: Control;
  /**
   * Adds a remote-control command this app's workers answer (Celery's `@control_command` and
   * `@inspect_command`); a built-in of the same name is replaced, as in Celery's Panel.
   */
  controlCommand(name: string, spec: ControlCommandSpec): void;
  /** Commands added with controlCommand, by name. */
  readonly controlCommands: ReadonlyMap<string, ControlCommandSpec>;
  /** Hooks named and timed as Celery's signals (signals.ts); connect them in the tasks module. */
  readonly signals: Signals;
  /**
   * Adds a service the worker starts and stops with itself, in dependency order (components.ts,
   * Celery's bootsteps); declare it in the tasks module.
   */
  component(c: Component): void;
  /** Components added with component(), in declaration order. */
  readonly components: readonly Component[];
  /** Revokes a task on every worker (and stores REVOKED, as Celery >= 5.6.2). */
  revoke(taskId: string, opts?: { terminate?: boolean }): Promise<void>;
  /** Re-reads configuration with CLI flags on top (before the first connection only). */
  configure(flags: Partial<Record<keyof Config, unknown>>): void;
  /**
   * Signs and verifies auth-serialized messages (read from the security config once); null without keys.
   * @internal the worker's plumbing, not a user API
   */
  signer(): MessageSigner | null;
  /** The connected broker. */
  broker(): Promise<Broker>;
  /** The connected result backend. */
  backend(): Promise<ResultBackend>;
  /**
   * OpenTelemetry spans (tracing/tracing.ts), or null when the `tracing` config is off.
   * @internal the worker's plumbing, not a user API
   */
  tracing(): Promise<Tracing | null>;
  /** Closes the broker and backend connections. */
  close(): Promise<void>;
}

/** One task call as it leaves an app; celeriac/testing observes and steers these. */
export interface OutgoingCall {
  readonly name: string;
  readonly args: readonly unknown[];
  readonly kwargs: Record<string, unknown>;
  /** The call's options; `taskId` is always set. */
  readonly options: SendOptions & { readonly taskId: string };
  /**
   * True for a Task's delay()/applyAsync(); false for sendTask(), which is also how a worker sends
   * on a task's behalf (retries, links, chain steps), as Celery's send_task, never eager.
   */
  readonly viaTask: boolean;
}

/** Wraps the sending of one call: `send()` publishes it; return its result handle. */
export type SendInterceptor = (call: OutgoingCall, send: () => Promise<AsyncResult>) => Promise<AsyncResult>;

const interceptorsOf = new WeakMap<App, SendInterceptor[]>();

/**
 * Puts `interceptor` around every task call `app` sends (the first added is outermost) until the
 * returned function is called. The seam under celeriac/testing's eager mode and send recorder.
 */
export function interceptSends(app: App, interceptor: SendInterceptor): () => void {
  const list = interceptorsOf.get(app) ?? [];
  interceptorsOf.set(app, [...list, interceptor]);
  return () =>
    interceptorsOf.set(
      app,
      (interceptorsOf.get(app) ?? []).filter((i) => i !== interceptor),
    );
}

export function createApp(options: AppOptions = {}): App {
  const { broker: brokerUrl, backend: backendUrl, routes, logger, beatSchedule = {}, env, ...rest } = options;
  const route = createRouter(routes);
  const configOptions: Record<string, unknown> = { ...rest };
  if (brokerUrl !== undefined) configOptions.brokerUrl = brokerUrl;
  if (backendUrl !== undefined) configOptions.resultBackend = backendUrl;
  let config = loadConfig({ options: configOptions, env });
  const makeLogger = (c: Config) =>
    createLogger({ level: c.logLevel, name: c.name, pretty: c.logFormat === 'auto' ? undefined : c.logFormat === 'pretty', stream: c.logStream });
  let log = logger ?? makeLogger(config);
  const origin = `gen${process.pid}@${hostname()}`;
  const tasks = new Map<string, Task>();
  const controlCommands = new Map<string, ControlCommandSpec>();
  const signals = createSignals();
  const components: Component[] = [];
  let control: Control | null = null;
  let brokerP: Promise<Broker> | null = null;
  /** Built on first use from the security config; undefined until then. */
  let signer: MessageSigner | null | undefined;
  let backendP: Promise<ResultBackend> | null = null;
  /** The backend once made (send() tells it about results to expect without awaiting it). */
  let backendMade: ResultBackend | null = null;
  let tracingP: Promise<Tracing> | null = null;
  const tracing = async (): Promise<Tracing | null> => (config.tracing ? (tracingP ??= loadTracing()) : null);
  /** Sends task-sent events when taskSendSentEvent is on; made on first use. */
  let sentEvents: EventDispatcher | null = null;

  /** The broker once connected: send() takes it without an await (a producer sends thousands a second). */
  let brokerMade: Broker | null = null;
  /** This process's rpc:// reply queue once live, with the backend that owns it. */
  let replyQueue: { backend: ResultBackend; name: string } | null = null;
  const broker = (): Promise<Broker> =>
    (brokerP ??= (async () => {
      const b = await createBroker(config.brokerUrl, { logger: log });
      await b.connect();
      if (brokerP !== null) brokerMade = b;
      return b;
    })());
  const backend = (): Promise<ResultBackend> =>
    (backendP ??= (async () =>
      (backendMade = await createResultBackend(config.resultBackend, {
        expiresMs: config.resultExpiresMs,
        chordOrdered: config.resultChordOrdered,
        dateTags: config.jsonDateTags,
        broker: await broker(),
        logger: log,
      })))());

  const host = { backend, revoke: (id: string, o: { terminate: boolean }) => app.revoke(id, o) };

  /** After a publish failed with `err`: one more try after a short pause covers a reconnecting broker (drivers retry on their own too). */
  async function publishAgain(b: Broker, queue: string, message: WireMessage, err: unknown, o: SendOptions, id: string, name: string): Promise<void> {
    if (o.retry === false) throw err;
    log.warn({ err, taskId: id, taskName: name }, 'publish failed, retrying once');
    await new Promise((r) => setTimeout(r, 200));
    await b.publish(queue, message);
  }

  async function send(name: string, args: readonly unknown[], kwargs: Record<string, unknown>, o: SendOptions): Promise<AsyncResult> {
    const id = o.taskId ?? randomUUID();
    // rpc:// results come back to this process's reply queue, which must exist before the task does.
    // Once it does, and once the broker is connected, nothing below waits before the publish.
    const rb = o.replyTo === undefined && config.resultBackend.startsWith('rpc:') ? (backendMade ?? (await backend())) : null;
    let ownReplyTo: string | undefined;
    if (rb?.replyTo) {
      if (replyQueue?.backend !== rb) {
        const name = await rb.replyTo();
        replyQueue = { backend: rb, name };
      }
      ownReplyTo = replyQueue.name;
    }
    const out = outgoingTask(name, args, kwargs, o, {
      config,
      origin,
      task: tasks.get(name)?.options,
      route: route(o.routeName ?? name, args, kwargs, o),
      ownReplyTo,
      id,
      now: Date.now(),
      signer: config.taskSerializer === 'auth' || o.serializer === 'auth' ? app.signer() : null,
    });
    const { queue } = out;
    const b = brokerMade ?? (await broker());
    // Celery's before/after_task_publish; the handlers of the first may change the headers.
    const publishArgs = (headers: Record<string, unknown>): PublishArgs => ({
      sender: name,
      taskId: id,
      args,
      kwargs,
      exchange: '',
      routingKey: queue,
      headers,
      properties: out.message.properties,
    });
    let outgoing = out.message;
    if (signals.has('beforeTaskPublish')) {
      const headers = { ...outgoing.headers };
      await signals.send('beforeTaskPublish', publishArgs(headers), log);
      outgoing = { ...outgoing, headers };
    }
    // Without tracing, the driver's promise as it is: no async step of our own per task.
    const publishing = config.tracing
      ? tracedSend(await tracing(), { name, id, queue, retries: o.retries ?? 0, broker: b.kind }, async (traceHeaders) => {
          const message = traceHeaders ? { ...outgoing, headers: { ...outgoing.headers, ...traceHeaders } } : outgoing;
          try {
            await b.publish(queue, message);
          } catch (err) {
            await publishAgain(b, queue, message, err, o, id, name);
          }
        })
      : b.publish(queue, outgoing);
    // A backend that pushes results may listen for this one from now on: its SUBSCRIBE goes out
    // right after the publish (written first, so the task reaches the worker no later), and get()
    // then costs no SUBSCRIBE round trip after the publish.
    if (outgoing.headers.ignore_result !== true) backendMade?.expect?.(id);
    try {
      await publishing;
    } catch (err) {
      if (config.tracing) throw err; // retried inside the span already
      await publishAgain(b, queue, outgoing, err, o, id, name);
    }
    if (signals.has('afterTaskPublish')) await signals.send('afterTaskPublish', publishArgs(outgoing.headers), log);
    if (config.taskSendSentEvent) {
      const h = out.message.headers;
      sentEvents ??= createEventDispatcher({ broker: b, hostname: origin, log: log.child({ component: 'events' }), taskEvents: true });
      sentEvents.send('task-sent', {
        uuid: id,
        root_id: h.root_id,
        parent_id: h.parent_id,
        name,
        args: h.argsrepr,
        kwargs: h.kwargsrepr,
        retries: h.retries,
        eta: h.eta,
        expires: h.expires,
        queue,
        exchange: '',
        routing_key: queue,
      });
    }
    return new AsyncResult(id, host);
  }

  /** send() through the interceptors celeriac/testing put on this app, if any. */
  function dispatch(name: string, args: readonly unknown[], kwargs: Record<string, unknown>, o: SendOptions, viaTask: boolean): Promise<AsyncResult> {
    const chain = interceptorsOf.get(app);
    if (!chain || chain.length === 0) return send(name, args, kwargs, o);
    const call: OutgoingCall = { name, args, kwargs, options: { ...o, taskId: o.taskId ?? randomUUID() }, viaTask };
    const step = (i: number): Promise<AsyncResult> => (i === chain.length ? send(name, args, kwargs, call.options) : chain[i]!(call, () => step(i + 1)));
    return step(0);
  }

  const app: App = {
    get config() {
      return config;
    },
    get log() {
      return log;
    },
    origin,
    tasks,
    beatSchedule: Object.freeze({ ...beatSchedule }),
    task<A extends unknown[], R, const P extends ParamNames<A> = ParamNames<A>>(
      name: string,
      fn: TaskFn<A, R>,
      ownOptions: TaskOptions & { readonly params?: P } = {},
    ): Task<A, R, P> {
      const taskOptions = resolveBase(ownOptions);
      if (typeof name !== 'string' || name === '') throw new ConfigError(['task name: expected a non-empty string']);
      if (tasks.has(name)) throw new ConfigError([`task "${name}" is defined twice`]);
      if (typeof fn !== 'function') throw new ConfigError([`task "${name}": expected a function, got ${typeof fn}`]);
      if (taskOptions.rateLimit) {
        try {
          parseRateLimit(taskOptions.rateLimit);
        } catch (err) {
          throw new ConfigError([`task "${name}" rateLimit: ${(err as Error).message}`]);
        }
      }
      if (taskOptions.params !== undefined && (!Array.isArray(taskOptions.params) || taskOptions.params.some((p) => typeof p !== 'string' || p === '')))
        throw new ConfigError([`task "${name}" params: expected a list of parameter names`]);
      if (taskOptions.params && new Set(taskOptions.params).size !== taskOptions.params.length)
        throw new ConfigError([`task "${name}" params: a name is given twice (${taskOptions.params.join(', ')})`]);
      const options = Object.freeze({ ...taskOptions });
      const sig = (immutable: boolean, args: unknown[]): SignatureDict => ({ ...app.signature(name, args), immutable });
      const t: Task<A, R, P> = {
        name,
        options,
        fn,
        delay: (...args: A) => dispatch(name, args, {}, {}, true) as never,
        applyAsync: (args?: readonly unknown[], kwargs?: Record<string, unknown>, o?: ApplyOptions) => {
          // Celery's typing check: a keyword the task cannot bind fails here, not in the worker.
          bindArguments(name, options, args ?? [], kwargs ?? {});
          return dispatch(name, args ?? [], kwargs ?? {}, o ?? {}, true) as never;
        },
        s: (...args: Partial<A>) => sig(false, args),
        si: (...args: Partial<A>) => sig(true, args),
      };
      tasks.set(name, t as unknown as Task);
      return t;
    },
    sendTask: (name, args = [], kwargs = {}, o = {}) => dispatch(name, args, kwargs, o, false) as never,
    asyncResult: (id) => new AsyncResult(id, host),
    signature: (name, args = [], kwargs = {}, opts = {}) => ({ task: name, args: [...args], kwargs, options: opts, subtask_type: null, immutable: false }),
    get control() {
      return (control ??= new Control({
        broker,
        get log() {
          return log;
        },
        get acceptContent() {
          return config.acceptContent;
        },
      }));
    },
    controlCommand(name, spec) {
      if (typeof name !== 'string' || !/^\w+$/.test(name)) throw new ConfigError([`control command name: expected letters, digits and _, got "${name}"`]);
      if (typeof spec?.handler !== 'function') throw new ConfigError([`control command "${name}": expected a handler function`]);
      if (spec.type !== 'inspect' && spec.type !== 'control') throw new ConfigError([`control command "${name}": type must be "inspect" or "control"`]);
      controlCommands.set(name, spec);
    },
    controlCommands,
    signals,
    component(c) {
      if (components.some((x) => x.name === c.name)) throw new ConfigError([`component "${c.name}" is added twice`]);
      components.push(c);
    },
    components,
    async revoke(taskId, o = {}) {
      // Stored first: a worker that terminates the task then records "terminated" over it.
      await (await backend()).store(revokedMeta(taskId, 'revoked'));
      await app.control.revoke(taskId, { terminate: o.terminate ?? false });
    },
    configure(flags) {
      if (brokerP || backendP) throw new CeleriacError('E_CONFIG_LATE', 'configure() must run before the app connects to its broker');
      config = loadConfig({ options: configOptions, flags });
      signer = undefined;
      if (!logger) log = makeLogger(config);
    },
    signer: () => (signer === undefined ? (signer = signerFromConfig(config)) : signer),
    broker,
    backend,
    tracing,
    async close() {
      const [b, r] = [brokerP, backendP];
      brokerP = backendP = null;
      backendMade = brokerMade = null;
      replyQueue = null;
      await sentEvents?.flush();
      sentEvents = null;
      if (r) await (await r).close();
      if (b) await (await b).close();
    },
  };
  return app;
}
