/**
 * A runner: the entry of a pool thread (worker_threads) or child process (child_process.fork).
 * It imports the same tasks module as the worker, with the worker's configuration on top, then
 * runs one task at a time through trace(), so `this` (ids, retry(), replace(), log, signal, the
 * soft time limit) is the very same code as in the event-loop pool.
 *
 * The runner has its own app: its broker and backend connect lazily, only when a task itself
 * sends a task or reads a result, as each Celery prefork child has its own connections. Proxying
 * those calls through the worker would serialize every send through one message channel and
 * still need the same connection code in the runner's app. Only this.addToChord() and
 * this.applyChild() need the worker's own state (the task's chord and children): those calls
 * cross to the worker and back. Results, retries, links and acks stay with the worker (the outcome
 * crosses back).
 *
 * The hard time limit is not applied here: the worker terminates the whole runner.
 */
import { getHeapStatistics } from 'node:v8';
import { parentPort, threadId } from 'node:worker_threads';
import type { Logger } from 'pino';
import { importApp } from '../app/app-module.js';
import type { App } from '../app/app.js';
import type { AsyncResult } from '../app/result.js';
import type { Signals } from '../app/signals.js';
import type { ChildCall, Task } from '../app/task.js';
import type { DeliveryInfo } from '../brokers/broker.js';
import { resultFromTuple } from '../canvas/apply.js';
import type { SignatureDict, TaskRequest } from '../protocol/task-message.js';
import { extendedMetaOf, withExtendedMeta, type TaskMeta } from '../protocol/result-meta.js';
import { crossError, crossOutcome, uncrossError, uncrossRequest, type FromRunner, type ToRunner } from './crossing.js';
import { TaskControl, trace, type CanvasOp, type TaskCanvas, type TraceInput } from './trace.js';

const post: (m: FromRunner) => void = parentPort ? (m) => parentPort!.postMessage(m) : (m) => process.send!(m);
const inThread = parentPort !== null;

/**
 * Memory this runner holds, in KiB: a child process's resident set (Celery's measure); a thread
 * shares its process's, so its own V8 heap.
 */
const measuredKib = (): number => Math.round((inThread ? getHeapStatistics().used_heap_size : process.memoryUsage.rss()) / 1024);
let memoryKib = (): number => 0;

/** Reports a task failed by the runner itself (not by the task's own code). */
/** A request to run a task. */
type RunMessage = Extract<ToRunner, { type: 'run' }>;

const failed = (m: RunMessage, err: unknown, runtimeMs = 0) =>
  post({ type: 'done', job: m.job, outcome: crossOutcome({ state: 'FAILURE', error: err, runtimeMs }, m.request.serializer), memoryKib: memoryKib() });

let app: App | null = null;

/** Canvas calls sent to the worker and not yet answered, by call number. */
const canvasCalls = new Map<number, { resolve: (tuple: unknown[]) => void; reject: (err: unknown) => void; serializer: string }>();
let nextCanvasCall = 0;

/**
 * this.addToChord() and this.applyChild() of the running task: the worker keeps the task's chord
 * and children, so it does them (the event-loop pool's very code) and answers.
 */
function canvasOf(serializer: string): TaskCanvas {
  const ask = (op: CanvasOp, sig: SignatureDict, childCall?: ChildCall) =>
    new Promise<unknown[]>((resolve, reject) => {
      const call = nextCanvasCall++;
      canvasCalls.set(call, { resolve, reject, serializer });
      try {
        post({ type: 'canvas', call, op, sig, ...(childCall ? { childCall } : {}) });
      } catch (err) {
        // A value structured clone refuses (a function): the task's call fails with it.
        canvasCalls.delete(call);
        reject(err);
      }
    }).then((tuple) => resultFromTuple(app!, tuple));
  return {
    addToChord: (sig) => ask('addToChord', sig) as Promise<AsyncResult>,
    applyChild: (sig, childCall) => ask('applyChild', sig, childCall),
  };
}

function onCanvasAnswer(m: Extract<ToRunner, { type: 'canvas-done' | 'canvas-failed' }>): void {
  const waiter = canvasCalls.get(m.call);
  // None: the answer is for a task that ended without awaiting its call.
  if (!waiter) return;
  canvasCalls.delete(m.call);
  if (m.type === 'canvas-done') waiter.resolve(m.tuple);
  else waiter.reject(uncrossError(m.error, waiter.serializer));
}
let log: Logger | null = null;

/**
 * What trace() runs for one request. A class, not an object literal with a `log` getter (such a
 * literal is a dictionary-mode object, costly to build once per task); the child logger and the
 * canvas are made on first use, ctx.updateState's store is a method.
 */
class RunnerRun implements TraceInput {
  readonly info: DeliveryInfo;
  readonly hostname: string;
  readonly ctl = new TaskControl();
  readonly hardLimitByPool = true;
  readonly signals: Signals;
  readonly #m: RunMessage;
  readonly #app: App;
  #log: Logger | null = null;
  #canvas: TaskCanvas | null = null;

  constructor(
    m: RunMessage,
    readonly req: TaskRequest,
    readonly task: Task,
    app: App,
  ) {
    this.#m = m;
    this.#app = app;
    this.info = m.info;
    this.hostname = m.hostname;
    this.signals = app.signals;
  }

  get log(): Logger {
    return (this.#log ??= log!.child({ taskId: this.req.id, taskName: this.req.displayName }));
  }

  get canvas(): TaskCanvas {
    return (this.#canvas ??= canvasOf(this.#m.request.serializer));
  }

  /** The runner's own backend, as a Celery prefork child stores update_state itself. */
  async storeState(meta: TaskMeta): Promise<void> {
    const a = this.#app;
    const { req, info } = this;
    const stored = a.config.resultExtended ? withExtendedMeta(meta, extendedMetaOf(req, this.hostname, info.routingKey || info.queue)) : meta;
    await (await a.backend()).store(stored, { replyTo: req.replyTo, correlationId: req.correlationId });
  }
}

async function onMessage(m: ToRunner): Promise<void> {
  if (m.type === 'init') {
    try {
      app = await importApp(m.tasksModule, `tasks module ${m.tasksModule}`);
      app.configure(m.config);
      if (m.measureMemory) memoryKib = measuredKib;
      log = app.log.child({ component: 'runner', pid: process.pid, ...(inThread ? { thread: threadId } : {}) });
      // Celery's worker_process_init: in each runner, once its app is loaded.
      if (app.signals.has('workerProcessInit')) await app.signals.send('workerProcessInit', { sender: app.config.hostname, pid: process.pid }, log);
      post({ type: 'ready' });
    } catch (err) {
      post({ type: 'fatal', error: crossError(err, 'json') });
    }
    return;
  }
  if (m.type !== 'run') return onCanvasAnswer(m);
  const req = uncrossRequest(m.request);
  const task = app!.tasks.get(req.name);
  if (!task) {
    // The worker checked the name against its own copy of the module: they differ (a file changed between the imports).
    return failed(m, new Error(`Task "${req.name}" is not registered in this runner's copy of the tasks module`));
  }
  const outcome = await trace(new RunnerRun(m, req, task, app!));
  try {
    post({ type: 'done', job: m.job, outcome: crossOutcome(outcome, m.request.serializer), memoryKib: memoryKib() });
  } catch (err) {
    // A result the wire cannot carry (a cycle, a BigInt in msgpack): the worker could not store it either.
    failed(m, err, outcome.runtimeMs);
  }
}

const receive = (m: ToRunner) =>
  onMessage(m).catch((err) => {
    // Only a request the runner cannot decode gets here: the task fails, the runner serves on.
    if (m.type === 'run') failed(m, err);
    else post({ type: 'fatal', error: crossError(err, 'json') });
  });
if (parentPort) parentPort.on('message', receive);
else {
  process.on('message', receive);
  // The worker is gone (killed itself): a runner has nobody to report to.
  process.on('disconnect', () => process.exit(0));
  // A terminal's Ctrl-C reaches the whole process group: the worker decides (warm shutdown lets
  // the running task finish), as Celery's children ignore SIGINT.
  process.on('SIGINT', () => undefined);
}
