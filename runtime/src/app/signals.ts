/**
 * Signals: typed hooks named and timed as Celery's (`celery/signals.py`), so a Celery user maps
 * them one to one (`task_prerun` -> `taskPrerun`). Connect them in the tasks module, so the
 * worker and every pool runner (which imports the same module) have them:
 *
 * ```ts
 * app.signals.connect('taskPostrun', ({ taskId, state }) => db.release(taskId), { sender: 'shop.charge' });
 * ```
 *
 * | signal | Celery | sent | where |
 * |---|---|---|---|
 * | beforeTaskPublish / afterTaskPublish | before/after_task_publish | around each publish of a task message | the sending app |
 * | taskReceived | task_received | a task message was accepted (not revoked or expired at intake) | worker |
 * | taskPrerun | task_prerun | just before the task function runs | where the task runs (*) |
 * | taskSuccess / taskFailure / taskRetry | task_success / task_failure / task_retry | the task's outcome is known | where the task runs (*) |
 * | taskPostrun | task_postrun | after the outcome, last (not when the run was terminated) | where the task runs (*) |
 * | taskRevoked | task_revoked | revoked or expired before running, or terminated while running | worker |
 * | taskRejected | task_rejected | a message the worker cannot decode | worker |
 * | taskUnknown | task_unknown | a message for a task not registered here | worker |
 * | workerInit / workerReady | worker_init / worker_ready | start begins / the worker consumes | worker |
 * | workerShuttingDown / workerShutdown | worker_shutting_down / worker_shutdown | stop begins / everything is stopped | worker |
 * | workerProcessInit | worker_process_init | a pool runner loaded the tasks module; the event-loop pool started (as Celery's solo) | each runner, or the worker |
 * | heartbeatSent | heartbeat_sent | a worker-heartbeat event was sent | worker |
 *
 * (*) The event-loop pool runs tasks in the worker; threads and processes in a runner, as Celery's
 * prefork children send task_prerun/success/failure/retry/postrun. One difference: Celery's child
 * stores the result before task_success/failure; here the worker stores it after the outcome
 * crosses back, so a handler of taskSuccess must not expect the result in the backend yet.
 *
 * `sender` is the task name for task signals and the worker's node name for worker signals;
 * `connect(..., { sender })` only receives those. A handler may be async (it is awaited, in
 * connect order); an error in a handler is logged and never changes the task's outcome.
 */
import type { Logger } from 'pino';
import type { TaskRequest } from '../protocol/task-message.js';
import type { WireMessage } from '../protocol/wire-message.js';
import type { Task } from './task.js';

/** The arguments of each signal (Celery's keyword arguments, camelCased). */
export interface SignalArgs {
  /** Headers may be changed by the handler: the message is sent with them. */
  beforeTaskPublish: PublishArgs;
  afterTaskPublish: PublishArgs;
  taskReceived: { sender: string; request: TaskRequest };
  taskPrerun: { sender: string; taskId: string; task: Task; args: readonly unknown[]; kwargs: Readonly<Record<string, unknown>> };
  taskPostrun: {
    sender: string;
    taskId: string;
    task: Task;
    args: readonly unknown[];
    kwargs: Readonly<Record<string, unknown>>;
    /** The value, the error, or the Retry, as Celery's retval. */
    retval: unknown;
    /** SUCCESS, FAILURE, RETRY, REJECTED or IGNORED. */
    state: string;
  };
  taskSuccess: { sender: string; taskId: string; result: unknown };
  taskFailure: {
    sender: string;
    taskId: string;
    exception: unknown;
    args: readonly unknown[];
    kwargs: Readonly<Record<string, unknown>>;
    traceback: string | null;
  };
  /** `reason`: the error that caused the retry, or the Retry itself. */
  taskRetry: { sender: string; request: TaskRequest; reason: unknown };
  /** `signum` 15 when terminated (Celery's SIGTERM), else null. */
  taskRevoked: { sender: string; request: TaskRequest; terminated: boolean; signum: number | null; expired: boolean };
  /** `sender`: the task name when the headers give one, else null. */
  taskRejected: { sender: string | null; message: WireMessage; exc: unknown };
  taskUnknown: { sender: string; name: string; id: string; message: WireMessage; exc: unknown };
  workerInit: { sender: string };
  workerReady: { sender: string };
  /** `how`: warm (running tasks may finish) or cold. */
  workerShuttingDown: { sender: string; how: 'warm' | 'cold' };
  workerShutdown: { sender: string };
  workerProcessInit: { sender: string; pid: number };
  heartbeatSent: { sender: string };
}

/** before/afterTaskPublish: the message as it goes out (Celery's body, exchange, routing_key, headers, properties). */
export interface PublishArgs {
  readonly sender: string;
  readonly taskId: string;
  readonly args: readonly unknown[];
  readonly kwargs: Readonly<Record<string, unknown>>;
  readonly exchange: string;
  readonly routingKey: string;
  readonly headers: Record<string, unknown>;
  readonly properties: Readonly<Record<string, unknown>>;
}

/** The signals an app sends: `taskPrerun`, `workerReady`, ... (Celery's names, camelCased). */
export type SignalName = keyof SignalArgs;
/** A handler of one signal; it may be async (it is awaited before the sender goes on). */
export type SignalHandler<N extends SignalName> = (args: SignalArgs[N]) => void | Promise<void>;

/** An app's signals: connect handlers; the worker, runners and app send. */
export interface Signals {
  /** Adds a handler, for one sender (task name or node name) when given; returns its disconnect. */
  connect<N extends SignalName>(name: N, handler: SignalHandler<N>, opts?: { sender?: string }): () => void;
  /** True when a handler is connected, so a sender builds the arguments only then. */
  has(name: SignalName): boolean;
  /**
   * Runs the matching handlers in connect order, awaiting each; a failing one is logged on `log`.
   * @internal sent by the app, the worker and the runners
   */
  send<N extends SignalName>(name: N, args: SignalArgs[N], log: Logger): Promise<void>;
}

interface Connection {
  readonly handler: (args: never) => void | Promise<void>;
  readonly sender: string | undefined;
}

export function createSignals(): Signals {
  const handlers = new Map<SignalName, Connection[]>();
  return {
    connect(name, handler, opts = {}) {
      const c: Connection = { handler: handler as Connection['handler'], sender: opts.sender };
      handlers.set(name, [...(handlers.get(name) ?? []), c]);
      return () =>
        handlers.set(
          name,
          (handlers.get(name) ?? []).filter((x) => x !== c),
        );
    },
    has(name) {
      return (handlers.get(name)?.length ?? 0) > 0;
    },
    async send(name, args, log) {
      const sender = (args as { sender: string | null }).sender;
      for (const c of handlers.get(name) ?? []) {
        if (c.sender !== undefined && c.sender !== sender) continue;
        try {
          await (c.handler as SignalHandler<typeof name>)(args);
        } catch (err) {
          // Celery's robust send: a hook must never change what happens to the task or the worker.
          log.error({ err, signal: name, sender }, `a ${name} signal handler failed: ${(err as Error)?.message ?? String(err)}`);
        }
      }
    },
  };
}
