/**
 * The consumer: takes deliveries from the broker and follows Celery's intake rules (spec §1.7,
 * §8.2): drop duplicate copies (./duplicates.ts), decode, dead-letter bad input to `<queue>.dead`
 * with a reason, hold ETA tasks, honour revokes, expiry and rate limits, run tasks in the pool when
 * a slot is free, store results, publish retries, links and the next chain step, and ack (early by
 * default, late per task).
 */
import type { SignalArgs, SignalName, Signals } from '../app/signals.js';
import type { Logger } from 'pino';
import type { App } from '../app/app.js';
import type { Config } from '../app/config.js';
import type { SendOptions } from '../app/send.js';
import { parseRateLimit, type Task } from '../app/task.js';
import type { ResultBackend } from '../backends/result-backend.js';
import type { Broker, Delivery, DeliveryInfo } from '../brokers/broker.js';
import { applySignature, resultTuple } from '../canvas/apply.js';
import { addToChord, chainFailed, chordPartReturned, failCanvas, type FinishedTask } from '../canvas/chord.js';
import { chain } from '../canvas/chain.js';
import { ACCUMULATE } from '../canvas/builtins.js';
import { link, linkError, signature, unsupportedReason, withOptions } from '../canvas/signature.js';
import { CanvasError, CeleriacError, EncodeError, NotRegisteredError, ProtocolError, WorkerLostError } from '../errors.js';
import type { EventDispatcher } from '../events/dispatcher.js';
import { setScheduledDue, type WorkerMetrics, type Outcome, type TaskMetrics } from '../metrics/worker-metrics.js';
import type { Pool } from '../pools/pool.js';
import { queueInfo, type QueueInfo, type RequestInfo, type ScheduledInfo } from '../protocol/control.js';
import { deadLettered, deadLetterQueue } from '../protocol/dead-letter.js';
import type { TaskEventType } from '../protocol/events.js';
import { pyReprLimited, pyStr } from '../protocol/py-repr.js';
import {
  buildMeta,
  READY_STATES,
  exceptionRepr,
  exceptionToDict,
  revokedMeta,
  type ExceptionDict,
  States,
  tracebackOf,
  withExtendedMeta,
  extendedMetaOf,
  type TaskMeta,
  type TaskState,
} from '../protocol/result-meta.js';
import { acceptedContentTypes, serializerForContentType, type TaskSerializerName } from '../protocol/serializers.js';
import { AUTH_CONTENT_TYPE, type MessageSigner } from '../protocol/signing.js';
import { decodeTask, isoUtc, taskIdOf, type SignatureDict, type TaskRequest } from '../protocol/task-message.js';
import { pyRepr } from '../protocol/py-repr.js';
import { DuplicateFilter } from './duplicates.js';
import { StartedLedger } from './started-ledger.js';
import { TimerHeap } from './timer-heap.js';
import type { BlockingTask, Tracked, Watchdog } from './watchdog.js';
import { TaskControl, timeLimitsOf, TimeLimitExceeded, type TaskCanvas, type TaskOutcome, type TraceInput } from '../pools/trace.js';
import { runTask, tracedRun, type Tracing } from '../tracing/tracing.js';

/**
 * A task message taken in, from receipt to its settle. A class, not a literal with a getter: one
 * is made per task, and its fields keep one shape.
 */
class Job {
  /** When the task became runnable (receipt, or its ETA), for the wait metric. */
  dueAt = Date.now();
  /** When the pool started it (epoch ms, for remote control's time_start), null before. */
  startedAtMs: number | null = null;
  ctl: TaskControl | null = null;
  /** Result tuples of what the task applied with ctx.applyChild, stored first in its `children`. */
  readonly children: unknown[] = [];
  /** When the task started running (performance.now()), for the runtime of a cut-off task. */
  startedAt = 0;
  /** Set once the task has an outcome and the worker is storing it: a cut-off waits for it instead. */
  settling: Promise<void> | null = null;
  /** While it holds one of the pool's slots: from its start until the pool ran it (see Consumer.pump). */
  inSlot = false;
  /**
   * Its early ack, sent as it starts and not waited for (see Consumer.execute): true once the
   * broker took it, false when it failed (the broker still has the message). Null for a late ack.
   */
  acked: Promise<boolean> | null = null;
  /** Its note in the stateDir ledger while it runs early-acked (./started-ledger.ts), else null. */
  note: string | null = null;
  /**
   * While the pool runs it: the task as run (remote control's limits applied), else null; with
   * `late` and `ignore`, read by the watchdog only when it inspects a block (Consumer.inFlight).
   */
  running: Task | null = null;
  late = false;
  ignore = false;
  private logger: Logger | null = null;

  constructor(
    readonly d: Delivery,
    readonly req: TaskRequest,
    readonly task: Task,
    private readonly parent: Logger,
    /** Its queue and task's metrics (received, wait, duration, completed), looked up once. */
    readonly metrics: TaskMetrics,
  ) {}

  /**
   * The early ack: sent as the task starts and not waited for, as Celery's prefork pool acks when
   * its child has accepted the task, while it runs (waiting for it held the slot a round trip: on
   * Redis the ack rides on the next pop). A failed ack is logged and the task runs anyway: the
   * broker keeps the message and delivers it again, as it would to Celery.
   */
  async ackEarly(): Promise<boolean> {
    try {
      await this.d.ack();
      return true;
    } catch (err) {
      this.log.warn(
        { err },
        'acknowledging the message failed; the task runs anyway, and the broker delivers the message again (visibility timeout or reconnect)',
      );
      return false;
    }
  }

  /** A child logger bound to the task, made on first use (most tasks never log). */
  get log(): Logger {
    return (this.logger ??= this.parent.child({ taskId: this.req.id, taskName: this.req.displayName }));
  }
}

/** What JobRun asks of the consumer, on use only. */
interface JobHost {
  taskCanvas(j: Job): TaskCanvas;
  storeTaskState(j: Job, meta: TaskMeta): Promise<void>;
}

/**
 * What the pool runs for a job. A class, as Job: an object literal with the `log` getter is a
 * dictionary-mode object, costly to build once per task. The canvas and ctx.updateState are
 * methods and a getter, not closures made for every task (most tasks use neither).
 */
class JobRun implements TraceInput {
  readonly req: TaskRequest;
  readonly info: DeliveryInfo;
  readonly contentType: string;
  readonly #job: Job;
  readonly #host: JobHost;
  #canvas: TaskCanvas | null = null;

  constructor(
    job: Job,
    readonly task: Task,
    readonly hostname: string,
    readonly ctl: TaskControl,
    readonly signals: Signals,
    host: JobHost,
  ) {
    this.#job = job;
    this.#host = host;
    this.req = job.req;
    this.info = job.d.info;
    this.contentType = job.d.message.contentType;
  }

  /** Read on use: the job's child logger is made only for a task that logs. */
  get log(): Logger {
    return this.#job.log;
  }

  /** ctx.addToChord and ctx.applyChild, bound to the job when first read. */
  get canvas(): TaskCanvas {
    return (this.#canvas ??= this.#host.taskCanvas(this.#job));
  }

  /** ctx.updateState: unlike the worker's own stores, a failure reaches the task. */
  storeState(meta: TaskMeta): Promise<void> {
    return this.#host.storeTaskState(this.#job, meta);
  }
}

const REVOKED_LIMIT = 50_000;

/**
 * The signature a task replaces itself with, carrying on its workflow: the rest of its chain after
 * it, its links and errbacks on it (Celery's Task.replace).
 */
function replacement(req: TaskRequest, sig: SignatureDict): SignatureDict {
  // Every message of the replacement carries replaced_task_nesting one higher than this task's.
  const nesting = { replaced_task_nesting: Number(req.headers.replaced_task_nesting ?? 0) + 1 };
  const nested = (s: SignatureDict): SignatureDict =>
    withOptions(
      s.subtask_type === 'chain' ? { ...s, kwargs: { ...s.kwargs, tasks: (s.kwargs.tasks as SignatureDict[]).map((t) => withOptions(t, nesting)) } } : s,
      nesting,
    );
  // A group becomes a chord into celery.accumulate, whose result (the list) takes over the id.
  let s = sig.subtask_type === 'group' ? chain(sig, signature(ACCUMULATE, [], { index: 0 })) : sig;
  for (const cb of req.embed.callbacks ?? []) s = link(s, cb);
  for (const eb of req.embed.errbacks ?? []) s = linkError(s, eb);
  s = nested(s);
  const rest = req.embed.chain;
  if (rest && rest.length > 0) s = chain(s, ...[...rest].reverse().map((t) => withOptions(t, nesting)));
  return s;
}

/** Why this worker cannot apply the canvas a request carries (its links, chain or chord), or null. */
function unsupportedCanvas(req: TaskRequest): string | null {
  const e = req.embed;
  if (!e.callbacks && !e.errbacks && !e.chain && !e.chord) return null;
  const sigs: [unknown, string][] = [
    ...(e.callbacks ?? []).map((s, i): [unknown, string] => [s, `callbacks[${i}]`]),
    ...(e.errbacks ?? []).map((s, i): [unknown, string] => [s, `errbacks[${i}]`]),
    ...(e.chain ?? []).map((s, i): [unknown, string] => [s, `chain[${i}]`]),
  ];
  if (e.chord) sigs.push([e.chord, 'chord']);
  for (const [s, where] of sigs) {
    const why = unsupportedReason(s, where);
    if (why) return why;
  }
  return null;
}

export interface ConsumerDeps {
  readonly app: App;
  readonly config: Config;
  readonly broker: Broker;
  readonly backend: ResultBackend;
  readonly pool: Pool;
  readonly metrics: WorkerMetrics;
  /** Task events go out here (the dispatcher drops them while task events are off). */
  readonly events: EventDispatcher;
  readonly log: Logger;
  /** Notes the tasks in flight, so event-loop blocks can be blamed on them (null: no watchdog). */
  readonly watchdog?: Watchdog | null;
  /** Slots the prefetch is sized for (default: the pool's size; the autoscaler's maximum when autoscaling, as Celery). */
  readonly prefetchSlots?: () => number;
  /** Called for each task received (the autoscaler reacts at once, as Celery's). */
  readonly onTaskReceived?: () => void;
}

export class Consumer implements JobHost {
  private readonly accepted: ReadonlySet<string>;
  private readonly reserved: Job[] = [];
  /** Running jobs. Keyed by job, not id: a retry of a task can start before its previous run has settled. */
  private readonly active = new Set<Job>();
  private readonly revoked = new Set<string>();
  /** Tasks started since start, by name (Celery's `total_count`, the `total` of `stats`). */
  private readonly totals = new Map<string, number>();
  /** Rate and time limits set by remote control, over the tasks' own options. */
  private readonly limits = new Map<string, { rateLimit?: string | null; timeLimit?: number | null; softTimeLimit?: number | null }>();
  /** Queues consumed now: the configured ones, changed by add_consumer/cancel_consumer. */
  private queues: string[];
  private readonly eta: TimerHeap<Job>;
  private readonly buckets = new Map<string, { perMs: number; tokens: number; at: number }>();
  private consuming: AbortController | null = null;
  private consumeDone: Promise<void> = Promise.resolve();
  private idleWaiters: (() => void)[] = [];
  private stopping = false;
  private cuttingOff: Promise<void> | null = null;
  /** The app's tracing once read (undefined before the first task). */
  private tracing: Tracing | null | undefined = undefined;
  /** Why consuming stopped without being asked (the broker's consume failed or ended): /healthz answers 503. */
  failure: Error | null = null;
  private readonly duplicates: DuplicateFilter;
  /** Jobs cut off (shutdown) while the pool still runs them: still in flight for the watchdog. */
  private readonly cutOffRunning = new Set<Job>();
  /** Slots of the pool held by jobs (see pump): at most the pool's size. */
  private slotsBusy = 0;
  /**
   * Tasks run to their end since start (the heartbeat's `processed`); as Celery's count, a revoked
   * or expired task discarded without running is not one.
   */
  processed = 0;

  /** Verifies signed (auth) messages; null without a security config. */
  private readonly signer: MessageSigner | null;
  /** Early-acked tasks running, noted on disk (config stateDir), so a kill does not lose them; null without one. */
  private readonly ledger: StartedLedger | null;

  constructor(private readonly deps: ConsumerDeps) {
    this.ledger = deps.config.stateDir === null ? null : new StartedLedger(deps.config.stateDir);
    this.accepted = acceptedContentTypes(deps.config.acceptContent);
    // Read the keys now: a bad key or certificate stops the worker at start-up, not per message.
    this.signer = deps.app.signer();
    this.queues = [...deps.config.queues];
    this.duplicates = new DuplicateFilter(deps.log);
    this.eta = new TimerHeap<Job>((jobs) => {
      for (const j of jobs) {
        j.dueAt = Date.now();
        this.reserved.push(j);
      }
      this.pump();
    });
    deps.watchdog?.watch(() => this.inFlight());
    deps.metrics.slots.set(deps.pool.size);
    deps.pool.onResize?.((size) => {
      deps.metrics.slots.set(size);
      this.pump();
    });
    // In-flight gauges are read when Prometheus scrapes, not written on every task (hot path).
    deps.metrics.onCollect(() => {
      const m = deps.metrics;
      m.inFlight.set({ state: 'active' }, this.active.size);
      m.inFlight.set({ state: 'reserved' }, this.reserved.length);
      m.inFlight.set({ state: 'scheduled' }, this.eta.size);
      setScheduledDue(m.scheduledDue, (ats) => this.eta.countDueBy(ats), Date.now());
      m.busySlots.set(this.slotsBusy);
    });
  }

  /**
   * Settles the early-acked tasks a previous worker on the same stateDir was running when it was
   * killed without running any handler (SIGKILL, out of memory), as a cut-off task is settled:
   * FAILURE(WorkerLostError), or published again with republishOnWorkerLost (./started-ledger.ts).
   * A task whose outcome was stored before the kill keeps it; one this worker refuses now (its
   * content type is no longer accepted, its signature no longer checks) is refused as a new
   * message would be (FAILURE stored, dead-lettered); a note that cannot be read is kept aside
   * with an error line. Call once, before start().
   */
  async recoverLost(): Promise<void> {
    if (!this.ledger) return;
    const { app, log, broker, backend } = this.deps;
    const leftover = await this.ledger.takeLeftover();
    const unreadable = leftover.filter((l) => 'unreadable' in l).length;
    if (leftover.length > 0)
      log.warn(
        { count: leftover.length, unreadable, stateDir: this.ledger.dir },
        `${leftover.length} early-acked task(s) were running when the previous worker was killed: settling them as lost` +
          (unreadable > 0 ? ` (${unreadable} note(s) cannot be read and are kept aside)` : ''),
      );
    const why = 'the worker was killed while the task ran (SIGKILL or out of memory; found at the next start)';
    for (const left of leftover) {
      const { file } = left;
      if ('unreadable' in left) {
        // Written whole or not at all, so only something outside the worker breaks a note: what
        // task it stood for cannot be known. Kept aside for a person; the worker goes on.
        const kept = await this.ledger.setAside(file);
        log.error(
          { err: left.unreadable, file: kept, text: left.text.slice(0, 500) },
          `a note of a task running when the previous worker was killed cannot be read (${left.unreadable.message}): kept as ${kept}; its task (if any) was not settled`,
        );
        continue;
      }
      const { note } = left;
      // A delivery standing for the acknowledged message: giving it back publishes it again.
      const d: Delivery = {
        message: note.message,
        info: { ...note.info, redelivered: true },
        ack: async () => undefined,
        requeue: () => broker.publish(note.info.queue, note.message),
      };
      let req: TaskRequest;
      try {
        // The message was decoded once already, when it ran; a changed config (accept, signing) may refuse it now.
        req = decodeTask(note.message, this.accepted, this.deps.config, this.signer);
      } catch (err) {
        await this.refuse(d, decodeRefusal(err), taskIdOf(note.message));
        await this.ledger.remove(file);
        continue;
      }
      const known = await backend.get(req.id);
      if (known && READY_STATES.has(known.status)) {
        await this.ledger.remove(file);
        continue;
      }
      const task = app.tasks.get(req.name);
      if (task) {
        await this.giveUp(new Job(d, req, task, log, this.deps.metrics.task(d.info.queue, req.name)), why);
      } else {
        const err = new WorkerLostError(`Worker exited prematurely: ${why}.`);
        log.error(
          { taskId: req.id, taskName: req.name },
          `task ${req.name} was running when the worker was killed and is no longer registered: stored FAILURE(WorkerLostError)`,
        );
        await this.storeSafe(() => log, req, buildMeta(req.id, States.FAILURE, exceptionToDict(err), { traceback: null }));
      }
      await this.ledger.remove(file);
    }
  }

  /** Starts consuming; resolves when consumption stops (drain or shutdown). */
  start(): void {
    const { config, broker } = this.deps;
    const ctl = new AbortController();
    this.consuming = ctl;
    this.deps.metrics.draining.set(0);
    if (this.queues.length === 0) return; // every queue cancelled by remote control
    // Slots follow the pool (pool_grow/pool_shrink, autoscale); held ETA and rate-limited messages
    // raise the limit, as Celery's qos.increment_eventually.
    const slots = this.deps.prefetchSlots ?? (() => this.deps.pool.size);
    const prefetch = () => (config.prefetchMultiplier === 0 ? 0 : slots() * config.prefetchMultiplier + this.eta.size);
    this.failure = null;
    this.consumeDone = broker
      .consume(this.queues, (d) => this.onDelivery(d), { prefetch, signal: ctl.signal })
      .then(() => {
        if (!ctl.signal.aborted) throw new CeleriacError('E_CONSUMER_STOPPED', `the ${broker.kind} broker stopped delivering without being asked to`);
      });
    this.consumeDone.catch((err: Error) => {
      this.failure = err;
      this.deps.log.fatal({ err }, 'consuming from the broker failed: no task will arrive; /healthz answers 503');
      process.exitCode = 1;
    });
  }

  /**
   * Consumes `queues` from now on (add_consumer, cancel_consumer). Deliveries already taken stay
   * where they are: the old consumer settles them before it lets go of its channel.
   */
  async setQueues(queues: readonly string[]): Promise<void> {
    this.queues = [...new Set(queues)];
    const old = this.consuming;
    if (!old) return; // draining or stopped: the next start() uses the new list
    old.abort();
    await this.consumeDone.catch(() => undefined); // already logged by start()
    if (this.consuming === old && !this.stopping) this.start();
  }

  /** The queues consumed now. */
  consumedQueues(): readonly string[] {
    return this.queues;
  }

  /** `active_queues` (TV10). */
  activeQueues(): QueueInfo[] {
    return this.consuming ? this.queues.map((q) => queueInfo(q)) : [];
  }

  /** Stops consuming and gives back every message not yet started (prefetched and ETA-held). */
  async stopConsuming(): Promise<void> {
    this.deps.metrics.draining.set(1);
    this.consuming?.abort();
    this.consuming = null;
    await this.consumeDone.catch(() => undefined); // already logged by start()
    const back = [...this.reserved.splice(0), ...this.eta.drain()];
    await Promise.all(back.map((j) => j.d.requeue()));
    if (back.length > 0) this.deps.log.info({ count: back.length }, 'gave back prefetched and scheduled messages to the broker');
  }

  /** Resolves when no task is running, or after `timeoutMs` (then returns the ids still running). */
  async waitIdle(timeoutMs: number): Promise<string[]> {
    if (this.active.size > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, timeoutMs);
        this.idleWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return [...this.active].map((j) => j.req.id);
  }

  /** True while the task runs here (started, not yet settled or cut off). */
  isRunning(taskId: string): boolean {
    for (const j of this.active) if (j.req.id === taskId) return true;
    return false;
  }

  /**
   * Cuts off the running tasks (shutdown timeout passed, cold shutdown, crash) without losing one:
   * a late-ack message goes back to the queue; an early-acked task (its message is gone) is
   * published again when it opted in (republishOnWorkerLost), else stored FAILURE(WorkerLostError)
   * with its workflow failed as for any failure. Tasks already storing their outcome finish that.
   * Runs once: later calls wait for the first. `why` ends up in the stored error and the log.
   */
  abortRunning(why: string): Promise<void> {
    return (this.cuttingOff ??= this.cutOff(why));
  }

  private async cutOff(why: string): Promise<void> {
    this.stopping = true;
    const jobs = [...this.active];
    const settling = jobs.flatMap((j) => (j.settling ? [j.settling] : []));
    const cut = jobs.filter((j) => !j.settling);
    for (const j of cut) {
      this.active.delete(j);
      if (j.running) this.cutOffRunning.add(j);
      j.ctl?.abort('shutdown');
    }
    await Promise.all([
      // A failure there is logged by pump(); the cut-off goes on with the others.
      ...settling.map((p) => p.catch(() => undefined)),
      ...cut.map((j) =>
        this.giveUp(j, why).catch((err) => {
          // Logged with the task, so an operator can find what was not recorded; the others go on.
          j.log.error({ err }, `task cut off by ${why}, and recording that failed: its caller may wait forever`);
        }),
      ),
    ]);
    for (const w of this.idleWaiters.splice(0)) w();
  }

  /** One cut-off task: its message back to the broker, or FAILURE(WorkerLostError) stored. */
  private async giveUp(j: Job, why: string): Promise<void> {
    if (this.acksLate(j)) {
      await j.d.requeue();
      j.log.warn(`task cut off by ${why}: its message goes back to the queue (late ack)`);
      return;
    }
    if (j.acked && !(await j.acked)) {
      j.log.warn(`task cut off by ${why}: its early ack failed, so the broker still has its message and delivers it again`);
      return;
    }
    if (j.task.options.republishOnWorkerLost === true) {
      await this.deps.broker.publish(j.d.info.queue, j.d.message);
      j.log.warn(`task cut off by ${why}: published again to ${j.d.info.queue} (republishOnWorkerLost)`);
      return;
    }
    const err = new WorkerLostError(`Worker exited prematurely: ${why}. The task's message was acknowledged when it started (early ack).`);
    await this.settle(j, { state: 'FAILURE', error: err, runtimeMs: performance.now() - j.startedAt }, false, this.ignoresResult(j));
  }

  /**
   * Adds ids to the revoked set (Celery's LimitedSet of 50000); with `terminate`, aborts the
   * running tasks among them (the event-loop pool aborts the task's signal). Returns the ids
   * terminated.
   */
  revoke(ids: readonly string[], terminate: boolean): string[] {
    const terminated: string[] = [];
    for (const id of ids) {
      this.revoked.add(id);
      if (this.revoked.size > REVOKED_LIMIT) this.revoked.delete(this.revoked.values().next().value!);
      if (!terminate) continue;
      for (const job of this.active) {
        if (job.req.id !== id || !job.ctl) continue;
        job.log.info('revoked with terminate: aborting the running task');
        job.ctl.abort('terminated');
        terminated.push(id);
      }
    }
    this.deps.log.info({ taskIds: ids, terminate }, 'revoke received');
    return terminated;
  }

  /** After the pool was resized: the slots gauge follows, and free slots start reserved tasks. */
  poolResized(): void {
    this.deps.metrics.slots.set(this.deps.pool.size);
    this.pump();
  }

  /** The revoked ids, oldest first. */
  revokedIds(): string[] {
    return [...this.revoked];
  }

  /** Tasks started since start, by name. */
  totalsByTask(): Record<string, number> {
    return Object.fromEntries(this.totals);
  }

  /** The rate limit in force for a task (remote control's, else its own option). */
  rateLimitOf(task: Task): string | null {
    const set = this.limits.get(task.name);
    return set && 'rateLimit' in set ? (set.rateLimit ?? null) : (task.options.rateLimit ?? null);
  }

  /** Sets a task's rate limit (null: none); the token bucket starts afresh (Celery's reset_rate_limits). */
  setRateLimit(name: string, rateLimit: string | null): void {
    this.limits.set(name, { ...this.limits.get(name), rateLimit });
    this.buckets.delete(name);
    this.pump();
  }

  /** Sets a task's time limits in ms (null: none), for the runs that start from now on. */
  setTimeLimits(name: string, softMs: number | null, hardMs: number | null): void {
    this.limits.set(name, { ...this.limits.get(name), softTimeLimit: softMs, timeLimit: hardMs });
  }

  /** `active`, `reserved` and `scheduled` as Celery's Request.info() lists them. */
  requests(safe = false): { active: RequestInfo[]; reserved: RequestInfo[]; scheduled: ScheduledInfo[] } {
    return {
      active: [...this.active].map((j) => this.info(j, safe)),
      reserved: this.reserved.map((j) => this.info(j, safe)),
      scheduled: this.eta.items().map((j) => ({ eta: j.req.eta ? isoUtc(j.req.eta) : null, priority: 6, request: this.info(j, safe) })),
    };
  }

  /** `query_task`: the state (`active`, `reserved`, `scheduled`) and info of the ids held here. */
  findRequests(ids: readonly string[]): Record<string, [string, RequestInfo]> {
    const out: Record<string, [string, RequestInfo]> = {};
    const want = new Set(ids);
    const add = (state: string, jobs: Iterable<Job>) => {
      for (const j of jobs) if (want.has(j.req.id) && !(j.req.id in out)) out[j.req.id] = [state, this.info(j)];
    };
    add('active', this.active);
    add('reserved', this.reserved);
    add('scheduled', this.eta.items());
    return out;
  }

  private info(j: Job, safe = false): RequestInfo {
    const { req, d } = j;
    return {
      id: req.id,
      name: req.displayName,
      args: safe ? pyRepr(req.args) : req.args,
      kwargs: safe ? pyRepr(req.kwargs) : req.kwargs,
      type: req.name,
      hostname: this.deps.config.hostname,
      time_start: j.startedAtMs === null ? null : j.startedAtMs / 1000,
      acknowledged: j.startedAtMs !== null && !this.acksLate(j),
      delivery_info: { exchange: d.info.exchange, routing_key: d.info.routingKey, priority: req.priority, redelivered: d.info.redelivered },
      worker_pid: j.startedAtMs === null ? null : process.pid,
    };
  }

  /** Held and running work, for /metrics and the demo. */
  counts(): { active: number; reserved: number; scheduled: number } {
    return { active: this.active.size, reserved: this.reserved.length, scheduled: this.eta.size };
  }

  private acksLate(j: Job): boolean {
    return j.task.options.acksLate ?? this.deps.config.acksLate;
  }

  private ignoresResult(j: Job): boolean {
    return j.req.ignoreResult || j.task.options.ignoreResult === true;
  }

  /**
   * Moves a message the worker refuses to `<queue>.dead` with `reason` (published first, then the
   * original acknowledged: a crash in between leaves a duplicate, never a loss).
   */
  private async deadLetter(d: Delivery, reason: string, code: string): Promise<void> {
    this.deps.metrics.deadLettered.inc({ queue: d.info.queue, reason: code });
    await this.deps.broker.publish(deadLetterQueue(d.info.queue), deadLettered(d.message, d.info.queue, reason));
    await d.ack();
  }

  /**
   * A message the worker cannot run: FAILURE stored under its id when one can be read (so the
   * caller's get() fails at once with the Celery exception `exc`), then dead-lettered with the
   * reason. One log line and one metric, saying what was done.
   */
  private async refuse(d: Delivery, err: CeleriacError, id: string | null, exc: ExceptionDict = exceptionToDict(err)): Promise<void> {
    const { log } = this.deps;
    const m = d.message;
    const where = { queue: d.info.queue, headers: m.headers, contentType: m.contentType };
    if (id === null) {
      log.error({ err, ...where }, `unreadable task message (no task id) moved to ${d.info.queue}.dead: ${err.message}`);
    } else {
      const taskLog = log.child({ taskId: id, taskName: typeof m.headers.task === 'string' ? m.headers.task : undefined });
      taskLog.error({ err, ...where }, `task message refused, stored as FAILURE (${exc.exc_type}) and moved to ${d.info.queue}.dead: ${err.message}`);
      const props = m.properties;
      const ctx = {
        replyTo: typeof props.reply_to === 'string' ? props.reply_to : null,
        correlationId: typeof props.correlation_id === 'string' ? props.correlation_id : id,
      };
      await this.storeSafe(() => taskLog, ctx, buildMeta(id, States.FAILURE, exc, { traceback: null }));
    }
    return this.deadLetter(d, err.message, err.code);
  }

  private async onDelivery(delivery: Delivery): Promise<void> {
    const { log, app, metrics } = this.deps;
    const d = this.duplicates.admit(delivery);
    if (!d) return;
    let req: TaskRequest;
    try {
      req = decodeTask(d.message, this.accepted, this.deps.config, this.signer);
    } catch (err) {
      const refusal = decodeRefusal(err);
      const name = d.message.headers.task;
      await this.signal('taskRejected', () => ({ sender: typeof name === 'string' ? name : null, message: d.message, exc: refusal }));
      return this.refuse(d, refusal, taskIdOf(d.message));
    }
    const task = app.tasks.get(req.name);
    if (!task) {
      const err = new NotRegisteredError(req.name, [...app.tasks.keys()]);
      await this.signal('taskUnknown', () => ({ sender: req.name, name: req.name, id: req.id, message: d.message, exc: err }));
      this.taskEvent('task-failed', req.id, () => ({ exception: `NotRegistered(${pyStr(req.name)})` }));
      return this.refuse(d, err, req.id, { exc_type: 'NotRegistered', exc_message: [req.name], exc_module: 'celery.exceptions' });
    }
    const job = new Job(d, req, task, log, metrics.task(d.info.queue, req.name));
    const canvasProblem = unsupportedCanvas(req);
    if (canvasProblem) {
      // Refused before running: the workflow would stop at the step this worker cannot take.
      const err = new CanvasError(canvasProblem);
      job.log.error({ err, queue: d.info.queue }, `task with a canvas this worker cannot apply stored as FAILURE and moved to ${d.info.queue}.dead`);
      const exc = exceptionToDict(err);
      this.taskEvent('task-failed', req.id, () => ({ exception: exceptionRepr(exc), traceback: null }));
      await this.store(job, buildMeta(req.id, States.FAILURE, exc, { traceback: null, groupId: req.group, parentId: req.parentId }));
      await this.canvasStep(job, 'failing the rest of the workflow', () => chainFailed(app, this.finished(job), States.FAILURE, exc, null, job.log));
      await this.canvasStep(job, 'reporting to its chord', () => chordPartReturned(app, this.finished(job), States.FAILURE, exc, job.log));
      return this.deadLetter(d, err.message, err.code);
    }
    job.metrics.received();
    if (log.isLevelEnabled('debug')) job.log.debug({ queue: d.info.queue, eta: req.eta, retries: req.retries }, 'task received');
    const why = this.discardReason(job);
    if (why) return this.discard(job, why);
    if (app.signals.has('taskReceived')) await this.signal('taskReceived', () => ({ sender: req.name, request: req }));
    if (this.taskEventsOn())
      this.taskEvent('task-received', req.id, () => ({
        name: req.displayName,
        args: req.argsrepr,
        kwargs: req.kwargsrepr,
        root_id: req.rootId,
        parent_id: req.parentId,
        retries: req.retries,
        eta: req.eta && isoUtc(req.eta),
        expires: req.expires && isoUtc(req.expires),
      }));
    if (req.eta && req.eta.getTime() > Date.now()) {
      this.eta.push(req.eta.getTime(), job);
    } else {
      this.reserved.push(job);
    }
    this.pump();
    this.deps.onTaskReceived?.();
  }

  /** Why a task must not run: revoked or expired (checked at intake and again at start), or null. */
  private discardReason(j: Job): 'expired' | 'revoked' | null {
    if (j.req.expires !== null && j.req.expires.getTime() < Date.now()) return 'expired';
    return this.revoked.size > 0 && this.revoked.has(j.req.id) ? 'revoked' : null;
  }

  /** Stores REVOKED with the reason and acks, without running the task. */
  private async discard(j: Job, reason: 'expired' | 'revoked'): Promise<void> {
    j.log.info(`task ${reason}: discarded`);
    this.taskEvent('task-revoked', j.req.id, () => ({ terminated: false, signum: null, expired: reason === 'expired' }));
    await this.signal('taskRevoked', () => ({ sender: j.req.name, request: j.req, terminated: false, signum: null, expired: reason === 'expired' }));
    await this.store(j, revokedMeta(j.req.id, reason));
    await this.chordPart(j, States.REVOKED, revokedMeta(j.req.id, reason).result);
    this.count(j, 'revoked');
    await j.d.ack();
  }

  /** Takes a rate-limit token, or returns the ms until one is available. */
  private takeToken(j: Job): number {
    const limit = this.rateLimitOf(j.task);
    if (!limit) return 0;
    let b = this.buckets.get(j.task.name);
    const now = Date.now();
    if (!b) this.buckets.set(j.task.name, (b = { perMs: parseRateLimit(limit) / 1000, tokens: 1, at: now }));
    b.tokens = Math.min(1, b.tokens + (now - b.at) * b.perMs);
    b.at = now;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - b.tokens) / b.perMs);
  }

  /**
   * Starts reserved jobs while slots are free. A job holds its slot from its start until the pool
   * ran it, not while its outcome is stored and acked: those are round trips to the backend and
   * broker, and a slot held through them waits for Redis instead of running the next task (a
   * no-op task ran at 0.7x the rate). Jobs storing their outcome are bounded too: at most a
   * slot's worth more, so a slow backend stops the intake rather than piling up outcomes.
   */
  private pump(): void {
    const size = this.deps.pool.size;
    while (!this.stopping && this.slotsBusy < size && this.active.size < 2 * size && this.reserved.length > 0) {
      const j = this.reserved.shift()!;
      const wait = this.takeToken(j);
      if (wait > 0) {
        this.eta.push(Date.now() + wait, j);
        continue;
      }
      this.active.add(j);
      j.inSlot = true;
      this.slotsBusy++;
      void this.execute(j); // never rejects: it logs its own failure (no handler closure per task)
    }
  }

  /** Gives back the job's slot (once); startNext() then fills it. */
  private freeSlot(j: Job): void {
    if (!j.inSlot) return;
    j.inSlot = false;
    this.slotsBusy--;
  }

  /** pump() after `j` gave back its slot or left; a failure is logged with `j`, not thrown (nothing awaits execute()). */
  private startNext(j: Job): void {
    try {
      this.pump();
    } catch (err) {
      j.log.error({ err }, 'task bookkeeping failed (message kept unacknowledged until the connection drops)');
    }
  }

  /** True while task events are on: a hot-path caller checks first, so that it makes no `fields` closure when off. */
  private taskEventsOn(): boolean {
    return this.deps.events.enabled('task');
  }

  /** Sends a task event when task events are on; `fields` is only built then (reprs cost). */
  private taskEvent(type: TaskEventType, uuid: string, fields?: () => Record<string, unknown>): void {
    const { events } = this.deps;
    if (!events.enabled('task')) return;
    events.send(type, { uuid, ...fields?.() });
  }

  /** Sends an app signal from the worker; its arguments are built only when a handler listens. */
  private signal<N extends SignalName>(name: N, args: () => SignalArgs[N]): Promise<void> {
    const { signals } = this.deps.app;
    return signals.has(name) ? signals.send(name, args(), this.deps.log) : Promise.resolve();
  }

  private count(j: Job, outcome: Outcome): void {
    j.metrics.completed(outcome);
  }

  /** Runs a job to its settle; never rejects (a bookkeeping failure is logged with the task). */
  private async execute(j: Job): Promise<void> {
    const { req, d, task } = j;
    const { config } = this.deps;
    let ran = false;
    try {
      const why = this.discardReason(j);
      if (why) return await this.discard(j, why);
      const late = this.acksLate(j);
      // Noted before the ack: a kill between the two leaves a note for a message the broker
      // still has, so the task ends stored either way, never lost.
      if (!late && this.ledger) j.note = await this.ledger.add({ message: d.message, info: d.info });
      if (!late) j.acked = j.ackEarly();
      this.taskEvent('task-started', req.id);
      j.metrics.waited(Math.max(0, Date.now() - j.dueAt) / 1000);
      const ignore = this.ignoresResult(j);
      if (!ignore && (task.options.trackStarted ?? config.trackStarted)) {
        await this.store(j, buildMeta(req.id, States.STARTED, { pid: process.pid, hostname: config.hostname }));
      }
      // A revoke that came while the message was acknowledged or STARTED stored found no running
      // task to abort: checked again here, so the task does not run after all (Celery terminates on ack).
      const whyNow = this.discardReason(j);
      if (whyNow) return await this.discard(j, whyNow);
      const ctl = (j.ctl = new TaskControl());
      j.startedAt = performance.now();
      j.startedAtMs = Date.now();
      this.totals.set(req.name, (this.totals.get(req.name) ?? 0) + 1);
      ran = true;
      const limits = this.limits.get(task.name);
      const run = limits ? { ...task, options: { ...task.options, ...limits } } : task;
      // The run span (when tracing is on) covers the run and what the worker sends on its behalf.
      // Resolved once: the app's tracing is fixed by its config.
      const tracing = this.tracing !== undefined ? this.tracing : (this.tracing = await this.deps.app.tracing());
      if (tracing) {
        await tracedRun(
          tracing,
          () => runTask(req, d.info, config.hostname, this.deps.broker.kind),
          () => this.runAndSettle(j, run, ctl, late, ignore),
        );
      } else await this.runAndSettle(j, run, ctl, late, ignore); // without the span's closures
    } catch (err) {
      j.log.error({ err }, 'task bookkeeping failed (message kept unacknowledged until the connection drops)');
    } finally {
      this.active.delete(j);
      this.freeSlot(j);
      if (j.note) {
        // A note left behind would fail this task at the next start, unless its outcome is stored by then.
        await this.ledger!.remove(j.note).catch((err: unknown) =>
          j.log.error({ err, note: j.note }, 'removing the note of a finished task from stateDir failed'),
        );
      }
      if (ran) this.processed++;
      if (this.active.size === 0) for (const w of this.idleWaiters.splice(0)) w();
      this.startNext(j);
    }
  }

  /** Runs the job in the pool (noted by the watchdog meanwhile), then settles its outcome. */
  private async runAndSettle(j: Job, run: Task, ctl: TaskControl, late: boolean, ignore: boolean): Promise<TaskOutcome> {
    const { watchdog, pool } = this.deps;
    const input = new JobRun(j, run, this.deps.config.hostname, ctl, this.deps.app.signals, this);
    // In flight while it runs, so a block can be blamed on it (see watchdog.ts and inFlight).
    if (watchdog) {
      watchdog.taskStarting();
      j.running = run;
      j.late = late;
      j.ignore = ignore;
    }
    let outcome: TaskOutcome;
    try {
      outcome = await (watchdog?.exact ? watchdog.runAs(j.req.id, () => pool.run(input)) : pool.run(input));
    } finally {
      j.running = null;
      if (this.cutOffRunning.size > 0) this.cutOffRunning.delete(j);
    }
    j.metrics.ran(outcome.runtimeMs / 1000);
    this.freeSlot(j);
    this.startNext(j); // a failure there must not keep this outcome from being stored
    if (!this.active.has(j)) return outcome; // a cut-off (shutdown) took it over
    await (j.settling = this.settle(j, outcome, late, ignore));
    return outcome;
  }

  /** The tasks the pool runs now, as the watchdog reads them when it inspects a block (built then). */
  private *inFlight(): Iterable<Tracked> {
    for (const jobs of [this.active, this.cutOffRunning]) {
      for (const j of jobs) {
        const run = j.running;
        if (run) yield { task: this.blameAs(j, run, j.late, j.ignore), fn: run.fn };
      }
    }
  }

  /**
   * The job as the watchdog names it. An early-acked task with a hard limit and a stored result,
   * run on this loop, carries the FAILURE(TimeLimitExceeded) the watchdog thread stores if it
   * still blocks the loop past that limit (built only if the thread reads it).
   */
  private blameAs(j: Job, task: Task, late: boolean, ignore: boolean): BlockingTask {
    const { req } = j;
    const named = { id: req.id, name: req.displayName };
    const { hardMs } = timeLimitsOf(task, req);
    if (late || ignore || hardMs === null || this.deps.pool.kind !== 'event-loop') return named;
    const storedMeta = () => this.storedMeta(j, this.failureMeta(j, new TimeLimitExceeded(hardMs)));
    return {
      ...named,
      hardLimit: {
        atMs: j.startedAtMs! + hardMs,
        limitMs: hardMs,
        get failure() {
          return storedMeta();
        },
      },
    };
  }

  /**
   * Runs `step`, which sends or stores a value of the task's. A value no serializer can write (a
   * function, a symbol, a cycle) settles the task as FAILURE(EncodeError) instead, as Celery's
   * tracer does: its errbacks and chord are told, and nobody waits on PENDING. False then.
   */
  private async failsUnencodable(j: Job, o: TaskOutcome, late: boolean, ignore: boolean, step: () => Promise<void>): Promise<boolean> {
    try {
      await step();
      return true;
    } catch (err) {
      if (!(err instanceof EncodeError)) throw err;
      await this.settle(j, { state: 'FAILURE', error: err, runtimeMs: o.runtimeMs }, late, ignore);
      return false;
    }
  }

  private async settle(j: Job, o: TaskOutcome, late: boolean, ignore: boolean): Promise<void> {
    const { req, d } = j;
    switch (o.state) {
      case 'SUCCESS': {
        const { callbacks, chain } = req.embed;
        if (callbacks || chain) {
          const success = (children: unknown[]) => buildMeta(req.id, States.SUCCESS, o.value, { children, groupId: req.group, parentId: req.parentId });
          const sent = await this.failsUnencodable(j, o, late, ignore, async () => {
            // Next chain step and links first, so a client that sees SUCCESS finds them sent (as Celery).
            // Celery's order: what the task applied itself, then its links, then its chain's next step.
            const children = [...j.children, ...(await this.applyCallbacks(j, o.value))];
            if (!ignore) await this.store(j, success(children));
          });
          if (!sent) return;
        } else if (!ignore) {
          // store()'s work written out: without the step's closure and store()'s own promise (most tasks).
          const stored = this.storedMeta(j, buildMeta(req.id, States.SUCCESS, o.value, { children: j.children, groupId: req.group, parentId: req.parentId }));
          try {
            await this.deps.backend.store(stored, j.req);
          } catch (err) {
            if (err instanceof EncodeError) return this.settle(j, { state: 'FAILURE', error: err, runtimeMs: o.runtimeMs }, late, ignore);
            j.log.error({ err, state: stored.status }, 'storing the task state failed');
          }
        }
        if (req.embed.chord) await this.chordPart(j, States.SUCCESS, o.value);
        if (this.deps.log.isLevelEnabled('debug')) j.log.debug({ runtimeMs: o.runtimeMs }, `task succeeded in ${seconds(o)}s`);
        if (this.taskEventsOn()) this.taskEvent('task-succeeded', req.id, () => ({ result: pyReprLimited(o.value), runtime: o.runtimeMs / 1000 }));
        this.count(j, 'succeeded');
        if (late) await d.ack();
        return;
      }
      case 'FAILURE': {
        if (late && o.error instanceof WorkerLostError && j.task.options.rejectOnWorkerLost) {
          // Celery's task_reject_on_worker_lost: the message goes back to the queue instead.
          j.log.warn({ err: o.error }, 'the runner of the task died under it: message given back to the queue (rejectOnWorkerLost)');
          this.count(j, 'rejected');
          return d.requeue();
        }
        const exc = exceptionToDict(o.error);
        j.log.error({ err: o.error, runtimeMs: o.runtimeMs }, `task failed in ${seconds(o)}s: ${exc.exc_type}: ${String(exc.exc_message)}`);
        const traceback = tracebackOf(o.error);
        await this.store(j, this.failureMeta(j, o.error));
        this.taskEvent('task-failed', req.id, () => ({ exception: exceptionRepr(exc), traceback }));
        await this.chordPart(j, States.FAILURE, exc);
        await this.canvasStep(j, 'failing the rest of the chain', () => chainFailed(this.deps.app, this.finished(j), States.FAILURE, exc, traceback, j.log));
        for (const sig of req.embed.errbacks ?? []) await this.publishSignature(j, sig, [req.id]);
        this.count(j, 'failed');
        if (late) await d.ack(); // Celery's acks_on_failure_or_timeout default
        return;
      }
      case 'RETRY': {
        const r = o.retry;
        const eta = r.eta ?? new Date(Date.now() + r.countdownMs);
        const exc = exceptionToDict(r.exc ?? r);
        const traceback = tracebackOf(r.exc ?? r);
        // RETRY is stored before the retry exists (Celery publishes first): a retry that ran and
        // stored its FAILURE before this store was overwritten by RETRY, and get() waited forever.
        await this.store(j, buildMeta(req.id, States.RETRY, exc, { traceback, groupId: req.group, parentId: req.parentId }));
        // Published before the original is acked, so a crash in between duplicates, never loses.
        try {
          await this.sendRetry(j, eta);
        } catch (err) {
          // As Celery, where retry()'s apply_async raises out of the task: it fails with that error.
          // Left at RETRY, its caller would wait for a retry that does not exist.
          j.log.error({ err }, 'the retry could not be published: the task fails with that error');
          return this.settle(j, { state: 'FAILURE', error: err, runtimeMs: o.runtimeMs }, late, ignore);
        }
        j.log.info({ retries: req.retries + 1, eta }, `task retry in ${Math.round(r.countdownMs)}ms: ${exc.exc_type}: ${String(exc.exc_message)}`);
        // Celery sends the Retry's repr: Retry(<itself>, <exc>, <when>).
        const when = r.eta ? pyStr(isoUtc(r.eta)) : String(r.countdownMs / 1000);
        this.taskEvent('task-retried', req.id, () => ({ exception: `Retry(Retry(...), ${r.exc ? exceptionRepr(exc) : 'None'}, ${when})`, traceback }));
        this.count(j, 'retried');
        if (late) await d.ack();
        return;
      }
      case 'REJECTED': {
        j.log.warn({ requeue: o.requeue }, `task rejected itself: ${o.reason}`);
        // As Celery: only a message not yet acknowledged (late ack) is rejected, and only then announced.
        if (late) this.taskEvent('task-rejected', req.id, () => ({ requeue: o.requeue }));
        this.count(j, 'rejected');
        if (late) await (o.requeue ? d.requeue() : this.deadLetter(d, o.reason, 'E_REJECT'));
        return;
      }
      case 'IGNORED':
        if (late) await d.ack();
        return;
      case 'REPLACED': {
        j.log.debug({ signature: o.signature.task }, 'task replaced itself');
        const sent = await this.failsUnencodable(j, o, late, ignore, () =>
          this.canvasStep(
            j,
            `replacing the task with ${o.signature.task}`,
            () => applySignature(this.deps.app, replacement(req, o.signature), { options: this.replacementOptions(j) }),
            o.signature,
          ),
        );
        if (!sent) return;
        this.count(j, 'succeeded');
        if (late) await d.ack();
        return;
      }
      case 'REVOKED': {
        // Revoke with terminate sends SIGTERM in Celery; a cold shutdown is no revoke.
        if (o.reason === 'terminated') {
          this.taskEvent('task-revoked', req.id, () => ({ terminated: true, signum: 15, expired: false }));
          await this.signal('taskRevoked', () => ({ sender: req.name, request: req, terminated: true, signum: 15, expired: false }));
        }
        await this.store(j, revokedMeta(req.id, o.reason));
        await this.chordPart(j, States.REVOKED, revokedMeta(req.id, o.reason).result);
        this.count(j, 'revoked');
        if (late) await d.ack();
        return;
      }
    }
  }

  /** Messages derived from a request (retries, chain steps) keep the sender's serializer. */
  private serializerOf(j: Job): TaskSerializerName {
    if (j.d.message.contentType === AUTH_CONTENT_TYPE) return 'auth';
    return serializerForContentType(j.d.message.contentType) ?? this.deps.config.taskSerializer;
  }

  /**
   * Sends the task again with retries + 1, to the queue it came from (an explicit queue, so
   * routes do not move it), as Celery's Task.retry with signature_from_request.
   */
  private async sendRetry(j: Job, eta: Date): Promise<void> {
    const { req, d } = j;
    const [hard, soft] = req.timelimit;
    await this.deps.app.sendTask(req.name, req.args, req.kwargs, {
      taskId: req.id,
      queue: d.info.routingKey || d.info.queue,
      eta,
      expires: req.expires ?? undefined,
      retries: req.retries + 1,
      timeLimit: hard === null ? undefined : hard * 1000,
      softTimeLimit: soft === null ? undefined : soft * 1000,
      rootId: req.rootId,
      parentId: req.id,
      group: req.group ?? undefined,
      groupIndex: req.groupIndex ?? undefined,
      shadow: req.displayName !== req.name ? req.displayName : undefined,
      ignoreResult: req.ignoreResult,
      replyTo: req.replyTo,
      priority: req.priority ?? undefined,
      link: req.embed.callbacks ?? undefined,
      linkError: req.embed.errbacks ?? undefined,
      chain: req.embed.chain,
      chord: req.embed.chord,
      serializer: this.serializerOf(j),
    });
  }

  /** Links after success, then the next step of a chain (spec §1.5); their result tuples, Celery's `children`. */
  private async applyCallbacks(j: Job, value: unknown): Promise<unknown[]> {
    const children: unknown[] = [];
    for (const sig of j.req.embed.callbacks ?? []) children.push(await this.publishSignature(j, sig, [value]));
    const chain = j.req.embed.chain;
    if (chain && chain.length > 0) {
      const rest = chain.slice(0, -1);
      children.push(await this.publishSignature(j, chain[chain.length - 1]!, [value], rest.length > 0 ? rest : null));
    }
    return children.filter((c) => c !== null);
  }

  /**
   * Applies a signature dict (a plain task or a canvas) with `front` prepended to its args unless
   * immutable, through App.sendTask: routed exactly as a client applying the same signature. A
   * canvas that cannot be applied stores FAILURE under its result ids (canvas/chord.ts).
   */
  private async publishSignature(j: Job, sig: SignatureDict, front: unknown[], chain: SignatureDict[] | null = null): Promise<unknown[] | null> {
    const options = { rootId: j.req.rootId, parentId: j.req.id, chain: chain ?? undefined, serializer: this.serializerOf(j) };
    let applied: unknown[] | null = null;
    await this.canvasStep(
      j,
      `applying ${sig.task}`,
      async () => (applied = resultTuple(await applySignature(this.deps.app, sig, { args: front, options }))),
      sig,
    );
    return applied;
  }

  /** Where a replacement stands: the task's id, group and chord, under the task (Celery's Task.replace freeze). */
  private replacementOptions(j: Job): SendOptions {
    const { req } = j;
    return {
      taskId: req.id,
      rootId: req.rootId,
      parentId: req.parentId ?? undefined,
      group: req.group ?? undefined,
      groupIndex: req.groupIndex ?? undefined,
      chord: req.embed.chord ?? undefined,
      serializer: this.serializerOf(j),
    };
  }

  /** ctx.updateState of the job's task (JobRun): its error reaches the task. */
  storeTaskState(j: Job, meta: TaskMeta): Promise<void> {
    return this.deps.backend.store(this.storedMeta(j, meta), j.req);
  }

  /** ctx.addToChord and ctx.applyChild of the job's task (JobRun, on use). */
  taskCanvas(j: Job): TaskCanvas {
    return {
      addToChord: (sig) => addToChord(this.deps.app, this.finished(j), sig),
      applyChild: async (sig, call = {}) => {
        const options = { rootId: j.req.rootId, parentId: j.req.id, serializer: this.serializerOf(j), ...call.options };
        const r = await applySignature(this.deps.app, sig, { ...call, options });
        j.children.push(resultTuple(r));
        return r;
      },
    };
  }

  /** The finished job as the canvas sees it. */
  private finished(j: Job): FinishedTask {
    const { req } = j;
    return {
      id: req.id,
      group: req.group,
      groupIndex: req.groupIndex,
      rootId: req.rootId,
      chord: req.embed.chord,
      chain: req.embed.chain,
      send: { serializer: this.serializerOf(j) },
    };
  }

  /** Reports a finished chord header task to its chord's join (Celery calls this whatever the state). */
  private async chordPart(j: Job, state: TaskState, result: unknown): Promise<void> {
    if (!j.req.embed.chord || !j.req.group) return;
    await this.canvasStep(j, 'joining its chord', () => chordPartReturned(this.deps.app, this.finished(j), state, result, j.log));
  }

  /**
   * Runs one workflow step on a task's behalf. A canvas it cannot apply is logged with the task
   * and, when `sig` is given, stored as FAILURE under that canvas's result ids, so nobody waits on
   * it forever; it does not undo the task's own outcome. Other errors (broker, backend) propagate:
   * the message stays unacknowledged when acks are late, as for any bookkeeping failure.
   */
  private async canvasStep(j: Job, what: string, step: () => Promise<unknown>, sig?: SignatureDict): Promise<void> {
    try {
      await step();
    } catch (err) {
      if (!(err instanceof CanvasError)) throw err;
      j.log.error({ err }, `workflow step failed: ${what}: ${err.message}`);
      if (sig) await failCanvas(this.deps.app, sig, err, this.finished(j), j.log);
    }
  }

  /** The FAILURE meta of the job's task failed by `error`. */
  private failureMeta(j: Job, error: unknown): TaskMeta {
    const { req } = j;
    return buildMeta(req.id, States.FAILURE, exceptionToDict(error), {
      traceback: tracebackOf(error),
      children: j.children,
      groupId: req.group,
      parentId: req.parentId,
    });
  }

  /** Stores a state of the job's own task (see storedMeta). */
  private async store(j: Job, meta: TaskMeta): Promise<void> {
    // storeSafe's work without its closure and context object: the request carries replyTo and correlationId.
    const stored = this.storedMeta(j, meta);
    try {
      await this.deps.backend.store(stored, j.req);
    } catch (err) {
      if (err instanceof EncodeError) throw err;
      j.log.error({ err, state: stored.status }, 'storing the task state failed');
    }
  }

  /**
   * A state of the job's own task as stored: with Celery's result_extended fields when configured
   * (rpc:// leaves them out, as Celery's RPC backend).
   */
  private storedMeta(j: Job, meta: TaskMeta): TaskMeta {
    const { req, d } = j;
    const { config } = this.deps;
    return config.resultExtended ? withExtendedMeta(meta, extendedMetaOf(req, config.hostname, d.info.routingKey || d.info.queue)) : meta;
  }

  /**
   * Stores a result; a backend failure is logged, not fatal: the task itself already ran. A value
   * the serializer refuses (EncodeError) is thrown: it is the task's outcome, not the backend's.
   */
  private async storeSafe(logOf: () => Logger, req: Pick<TaskRequest, 'replyTo' | 'correlationId'>, meta: TaskMeta): Promise<void> {
    try {
      await this.deps.backend.store(meta, { replyTo: req.replyTo, correlationId: req.correlationId });
    } catch (err) {
      if (err instanceof EncodeError) throw err;
      logOf().error({ err, state: meta.status }, 'storing the task state failed');
    }
  }
}

/** A run's time in seconds as the log gives it. */
function seconds(o: TaskOutcome): string {
  return (o.runtimeMs / 1000).toFixed(3);
}

/** Why decodeTask refused a message: its ProtocolErrors as they are; anything else is still the message's fault, not the worker's. */
function decodeRefusal(err: unknown): CeleriacError {
  return err instanceof CeleriacError ? err : new ProtocolError(`Cannot decode task message: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}
