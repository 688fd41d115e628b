/**
 * Discrete-event model of a Celery-style worker pool under an autoscaler (spec autoscaling.md §5.1).
 *
 * - Broker: ready messages in a FIFO (plus a lower-priority sub-queue, as kombu's
 *   `queue\x06\x16<p>` lists, served after the main list). Returned messages go to the front.
 *   A killed task comes back after the visibility timeout on Redis (from its delivery), at once
 *   on RabbitMQ (the connection closes).
 * - Workers: C slots; a worker holds at most prefetchMultiplier * C started-or-reserved tasks;
 *   ETA tasks are held as "scheduled" outside that limit until their time.
 * - Pods: start latency = (schedule + image pull + boot) * U(1 - jitter, 1 + jitter); the pull
 *   is cold unless the image is cached (a pod exists, or the pool had one within imageCacheSeconds).
 *   SIGTERM = warm shutdown (stop consuming, finish running tasks, give back reservations at exit);
 *   SIGKILL at the grace period kills what still runs.
 * - ReplicaSet: on scale-down it deletes, in order: pods still starting, NotReady pods (lowest
 *   pod-deletion-cost first), then ready pods newest first (kubernetes ActivePods ranking).
 * - Drain (celeriac, P4): a pod told to drain stops consuming and gives back reservations at once
 *   (a Python Celery worker told `cancel_consumer` keeps them and runs them: drainKeepsReservations);
 *   once idle it gets pod-deletion-cost -1000 and replicas drop by one, so the ReplicaSet removes
 *   exactly that pod.
 * Time is in seconds here (the simulator's own unit); decision code gets ms.
 */
import { Rng } from './rng.js';
import { EventQueue } from './event-queue.js';
import type { BrokerKind, Scenario, TaskSet } from './scenarios.js';

export interface ModelParams {
  readonly concurrency: number;
  readonly prefetchMultiplier: number;
  readonly broker: BrokerKind;
  readonly visibilityTimeoutSeconds: number;
  readonly terminationGracePeriodSeconds: number;
  readonly scheduleSeconds: number;
  readonly coldPullSeconds: number;
  readonly bootSeconds: number;
  readonly startJitter: number;
  readonly imageCacheSeconds: number;
  /**
   * Python Celery workers: a drain (cancel_consumer) leaves prefetched tasks with the worker, which
   * runs them before it counts as idle (celeriac's /drain gives them back at once).
   */
  readonly drainKeepsReservations: boolean;
  /** Time an idle worker needs to exit after SIGTERM. */
  readonly shutdownSeconds: number;
  readonly sloSeconds: number;
  readonly flapWindowSeconds: number;
  /** Chart resolution: samples per run. */
  readonly chartPoints: number;
}

export const DEFAULT_MODEL: ModelParams = Object.freeze({
  concurrency: 4,
  prefetchMultiplier: 1,
  broker: 'amqp',
  visibilityTimeoutSeconds: 3600,
  terminationGracePeriodSeconds: 30,
  scheduleSeconds: 1,
  coldPullSeconds: 15,
  bootSeconds: 5,
  startJitter: 0.2,
  imageCacheSeconds: 600,
  drainKeepsReservations: false,
  shutdownSeconds: 1,
  sloSeconds: 30,
  flapWindowSeconds: 300,
  chartPoints: 400,
});

/** Model parameters for a scenario: its own settings over the defaults. */
export function modelFor(sc: Scenario, overrides: Partial<ModelParams> = {}): ModelParams {
  return {
    ...DEFAULT_MODEL,
    ...(sc.concurrency !== undefined ? { concurrency: sc.concurrency } : {}),
    ...(sc.prefetchMultiplier !== undefined ? { prefetchMultiplier: sc.prefetchMultiplier } : {}),
    ...(sc.broker !== undefined ? { broker: sc.broker } : {}),
    ...(sc.terminationGracePeriodSeconds !== undefined ? { terminationGracePeriodSeconds: sc.terminationGracePeriodSeconds } : {}),
    ...overrides,
  };
}

/**
 * Event kinds. `Timer` is a controller's (a = its timer id); `MetricOutage` starts (a = 1) or ends
 * (a = 0) the scenario's metric outage; `BurstWatch` marks a burst's start (a = 0) or checks
 * whether its backlog is back down (a = 1).
 */
const enum Ev {
  TaskDone,
  EtaDue,
  PodReady,
  PodKill,
  PodExit,
  Redeliver,
  Timer,
  Chart,
  MetricOutage,
  BurstWatch,
}
const enum BurstMark {
  Start,
  Check,
}
export const enum PodState {
  Starting,
  Running,
  Draining,
  Terminating,
  Gone,
}

export interface Pod {
  readonly id: number;
  state: PodState;
  readonly createdAt: number;
  readyAt: number;
  running: number[];
  reserved: number[];
  scheduled: number[];
  deletionCost: number;
  inHungry: boolean;
}

/** What an autoscaler policy plugs into the model. */
export interface Controller {
  /** Called once at t = 0; sets the initial replicas and schedules timers. */
  start(sim: Simulation): void;
  /** A timer the controller scheduled with `sim.schedule` fired. */
  onTimer(sim: Simulation, timer: number): void;
  /**
   * The work changed (a task arrived or finished): what an event-driven autoscaler subscribes
   * to. Called synchronously; it models its own delay by scheduling a timer.
   */
  onWorkChange?(sim: Simulation): void;
}

/** One run's figures (times in seconds). */
export interface RunMetrics {
  tasks: number;
  waitP50: number;
  waitP95: number;
  waitP99: number;
  waitMean: number;
  sloViolationShare: number;
  /** 60 s windows whose p95 wait exceeds the SLO */
  sloBadWindows: number;
  replicaSeconds: number;
  replicaSecondsPer1000Tasks: number;
  utilization: number;
  scaleUps: number;
  scaleDowns: number;
  flaps: number;
  killed: number;
  wastedSeconds: number;
  delayedByVisibility: number;
  prematureZero: number;
  /** Mean seconds from a burst's start until ready + reserved is back at its level before the burst; NaN without bursts. */
  backlogDrainSeconds: number;
  /** Seconds at the lowest replica count (max(min, 1) or below) while messages wait. */
  secondsAtMinWithBacklog: number;
  /** Mean wait of the first task of each burst after 300 s of quiet, NaN if none. */
  coldStartWait: number;
  unfinished: number;
}

export interface Trace {
  readonly t: Float64Array;
  readonly arrivals: Float64Array;
  readonly backlog: Float64Array;
  readonly pods: Float64Array;
}

/** Deque of task ids over a growable ring. */
class Deque {
  private buf = new Int32Array(1024);
  private head = 0;
  length = 0;
  pushBack(x: number): void {
    if (this.length === this.buf.length) this.grow();
    this.buf[(this.head + this.length++) & (this.buf.length - 1)] = x;
  }
  pushFront(x: number): void {
    if (this.length === this.buf.length) this.grow();
    this.head = (this.head - 1) & (this.buf.length - 1);
    this.buf[this.head] = x;
    this.length++;
  }
  popFront(): number {
    const x = this.buf[this.head]!;
    this.head = (this.head + 1) & (this.buf.length - 1);
    this.length--;
    return x;
  }
  private grow(): void {
    const next = new Int32Array(this.buf.length * 2);
    for (let i = 0; i < this.length; i++) next[i] = this.buf[(this.head + i) & (this.buf.length - 1)]!;
    this.buf = next;
    this.head = 0;
  }
}

export class Simulation {
  readonly q = new EventQueue();
  readonly rng: Rng;
  now = 0;
  readonly pods: Pod[] = [];
  /** Pods that are not Gone, in creation order (rebuilt lazily). */
  private alive: Pod[] = [];
  private hungry: Pod[] = [];
  private hungryHead = 0;
  private readonly mainQ = new Deque();
  private readonly prioQ = new Deque();
  private readonly holdLimit: number;

  // task state
  private readonly attempt: Int32Array;
  private readonly startAt: Float64Array;
  private readonly deliveredAt: Float64Array;
  private readonly podOf: Int32Array;
  private readonly doneFlag: Uint8Array;

  // gauges and counters the controllers read
  specReplicas = 0;
  active = 0;
  reservedCount = 0;
  scheduledCount = 0;
  /** Killed on Redis, waiting for the visibility timeout: unacked but on no worker. */
  awaitingRedelivery = 0;
  receivedTotal = 0;
  completedTotal = 0;
  serviceSecondsTotal = 0;
  arrivedTotal = 0;
  /** Broker metric outage in progress (scenario modifier). */
  metricsDown = false;

  // accounting
  private alivePods = 0;
  private runningPods = 0;
  private lastAccount = 0;
  private podSeconds = 0;
  private provisionedSlotSeconds = 0;
  private busySlotSeconds = 0;
  private killed = 0;
  private wasted = 0;
  private delayedByVisibility = 0;
  private prematureZero = 0;
  private scaleUps = 0;
  private scaleDowns = 0;
  private flaps = 0;
  private lastChangeDir = 0;
  private lastChangeAt = -Infinity;
  private committed = 0;
  private imageCachedUntil = -Infinity;
  private pullDoneAt = -Infinity;
  private nextArrival = 0;
  private trace: { t: number[]; arrivals: number[]; backlog: number[]; pods: number[] } = { t: [], arrivals: [], backlog: [], pods: [] };
  private arrivalsSinceSample = 0;
  private atMinWithBacklog = 0;
  /** Burst being watched: start time and the backlog level before it; null when none. */
  private burst: { start: number; baseline: number } | null = null;
  private readonly drainTimes: number[] = [];
  private readonly chartStep: number;

  constructor(
    readonly scenario: Scenario,
    readonly tasks: TaskSet,
    readonly params: ModelParams,
    private readonly controller: Controller,
    seed: number,
  ) {
    this.rng = new Rng(seed, 2);
    const n = tasks.count;
    this.attempt = new Int32Array(n);
    this.startAt = new Float64Array(n).fill(-1);
    this.deliveredAt = new Float64Array(n);
    this.podOf = new Int32Array(n).fill(-1);
    this.doneFlag = new Uint8Array(n);
    this.holdLimit = params.concurrency * params.prefetchMultiplier;
    this.chartStep = scenario.durationSeconds / params.chartPoints;
  }

  get backlog(): number {
    return this.mainQ.length + this.prioQ.length;
  }

  /** Ready messages in the main list only (what LLEN of the queue name sees). */
  get backlogMainList(): number {
    return this.mainQ.length;
  }

  /** Broker-side unacknowledged messages: on workers, or killed and not yet restored (Redis). */
  get unacked(): number {
    return this.active + this.reservedCount + this.scheduledCount + this.awaitingRedelivery;
  }

  /** Tasks arrived and not completed: in the broker, on workers, or killed awaiting redelivery. */
  get inSystem(): number {
    return this.backlog + this.active + this.reservedCount + this.scheduledCount + this.awaitingRedelivery;
  }

  /** Pods not being deleted (scale.status.replicas). */
  get statusReplicas(): number {
    let n = 0;
    for (const p of this.alive) if (p.state !== PodState.Terminating && p.state !== PodState.Gone) n++;
    return n;
  }

  get readyReplicas(): number {
    let n = 0;
    for (const p of this.alive) if (p.state === PodState.Running) n++;
    return n;
  }

  podsIn(state: PodState): Pod[] {
    return this.alive.filter((p) => p.state === state);
  }

  /** Schedule a controller timer `delay` seconds from now. */
  schedule(delay: number, timer: number): void {
    this.q.push(this.now + delay, Ev.Timer, timer, 0);
  }

  /** Run to the end of the scenario plus the time needed to finish what is in the system. */
  run(): { metrics: RunMetrics; trace: Trace } {
    const end = this.scenario.durationSeconds;
    const hardEnd = end + this.params.visibilityTimeoutSeconds + 1800;
    const outage = this.scenario.metricOutage;
    this.controller.start(this);
    this.q.push(0, Ev.Chart, 0, 0);
    // Just before the burst's first arrival, so the baseline is the level before it.
    for (const b of this.tasks.burstStarts) this.q.push(Math.max(0, b - 1e-6), Ev.BurstWatch, BurstMark.Start, 0);
    if (outage) {
      this.q.push(outage[0], Ev.MetricOutage, 1, 0);
      this.q.push(outage[1], Ev.MetricOutage, 0, 0);
    }
    const { arrival } = this.tasks;
    const count = this.tasks.count;
    const ev = this.q.popped;
    for (;;) {
      const nextEv = this.q.peekTime();
      const nextArr = this.nextArrival < count ? arrival[this.nextArrival]! : Infinity;
      const t = Math.min(nextEv, nextArr);
      if (t > hardEnd || (t >= end && this.completedTotal === count && this.nextArrival >= count) || t === Infinity) break;
      this.advance(t);
      if (nextArr <= nextEv) {
        this.arrive(this.nextArrival++);
        continue;
      }
      this.q.pop();
      switch (ev.kind) {
        case Ev.TaskDone:
          this.taskDone(ev.a, ev.b);
          break;
        case Ev.EtaDue:
          this.etaDue(ev.a, ev.b);
          break;
        case Ev.PodReady:
          this.podReady(this.pods[ev.a]!);
          break;
        case Ev.PodKill:
          this.podKill(this.pods[ev.a]!);
          break;
        case Ev.PodExit:
          this.podExit(this.pods[ev.a]!);
          break;
        case Ev.Redeliver:
          this.redeliver(ev.a, ev.b);
          break;
        case Ev.Timer:
          this.controller.onTimer(this, ev.a);
          break;
        case Ev.MetricOutage:
          this.metricsDown = ev.a === 1;
          break;
        case Ev.BurstWatch:
          this.watchBurst(ev.a as BurstMark);
          break;
        case Ev.Chart:
          this.sampleChart();
          break;
      }
    }
    this.advance(Math.max(this.now, end));
    return { metrics: this.metrics(), trace: this.finishTrace() };
  }

  private advance(t: number): void {
    const end = this.scenario.durationSeconds;
    if (this.lastAccount < end) {
      const dt = Math.min(t, end) - this.lastAccount;
      this.podSeconds += this.alivePods * dt;
      this.provisionedSlotSeconds += this.runningPods * this.params.concurrency * dt;
      this.busySlotSeconds += this.active * dt;
      if (this.backlog > 0 && this.specReplicas <= Math.max(1, this.scenario.minReplicas)) this.atMinWithBacklog += dt;
      this.lastAccount = Math.min(t, end);
    }
    this.now = t;
  }

  /** A burst starts, or a check whether its backlog is back at the level before it. */
  private watchBurst(mark: BurstMark): void {
    const level = this.backlog + this.reservedCount;
    if (mark === BurstMark.Start) {
      const watching = this.burst !== null;
      // A new burst ends the watch of the previous one (counted up to now); its check chain goes on.
      if (this.burst) this.drainTimes.push(this.now - this.burst.start);
      this.burst = { start: this.now, baseline: level };
      if (!watching) this.q.push(this.now + 1, Ev.BurstWatch, BurstMark.Check, 0);
      return;
    }
    if (!this.burst) return;
    if (level <= this.burst.baseline) {
      this.drainTimes.push(this.now - this.burst.start);
      this.burst = null;
      return;
    }
    this.q.push(this.now + 1, Ev.BurstWatch, BurstMark.Check, 0);
  }

  private sampleChart(): void {
    const t = this.now;
    if (t > this.scenario.durationSeconds) return;
    this.trace.t.push(t);
    this.trace.arrivals.push(this.arrivalsSinceSample / this.chartStep);
    this.trace.backlog.push(this.backlog + this.reservedCount);
    this.trace.pods.push(this.alivePods);
    this.arrivalsSinceSample = 0;
    this.q.push(t + this.chartStep, Ev.Chart, 0, 0);
  }

  private finishTrace(): Trace {
    const t = this.trace;
    return { t: Float64Array.from(t.t), arrivals: Float64Array.from(t.arrivals), backlog: Float64Array.from(t.backlog), pods: Float64Array.from(t.pods) };
  }

  // ---------------------------------------------------------------- broker and workers

  private enqueue(task: number, front: boolean): void {
    const q = this.tasks.priority[task] === 1 ? this.prioQ : this.mainQ;
    if (front) q.pushFront(task);
    else q.pushBack(task);
  }

  private takeFromBroker(): number {
    return this.mainQ.length > 0 ? this.mainQ.popFront() : this.prioQ.popFront();
  }

  private arrive(task: number): void {
    this.arrivedTotal++;
    this.arrivalsSinceSample++;
    this.enqueue(task, false);
    this.dispatch();
    this.controller.onWorkChange?.(this);
  }

  /** ETA-held tasks on workers due within `seconds` from now (known future work). */
  scheduledDueWithin(seconds: number): number {
    let n = 0;
    for (const p of this.alive) for (const t of p.scheduled) if (this.tasks.eta[t]! - this.now <= seconds) n++;
    return n;
  }

  /** Tasks of known (scheduled) runs arriving within `seconds` from now. */
  knownArrivalsWithin(seconds: number): number {
    const { arrival, known, count } = this.tasks;
    let n = 0;
    for (let i = this.nextArrival; i < count && arrival[i]! <= this.now + seconds; i++) if (known[i]) n++;
    return n;
  }

  /** Arrival time of the next task of a known (scheduled) run, or null. */
  nextKnownArrival(): number | null {
    const { arrival, known, count } = this.tasks;
    for (let i = this.nextArrival; i < count; i++) if (known[i]) return arrival[i]!;
    return null;
  }

  private isHungry(p: Pod): boolean {
    return p.state === PodState.Running && p.running.length + p.reserved.length < this.holdLimit;
  }

  /** Hand ready messages to waiting consumers, first come first served (BRPOP / basic.consume). */
  private dispatch(): void {
    while (this.backlog > 0 && this.hungryHead < this.hungry.length) {
      const p = this.hungry[this.hungryHead]!;
      if (!this.isHungry(p)) {
        p.inHungry = false;
        this.hungryHead++;
        continue;
      }
      this.deliver(p, this.takeFromBroker());
      if (!this.isHungry(p)) {
        p.inHungry = false;
        this.hungryHead++;
      }
    }
    if (this.hungryHead > 1024 && this.hungryHead * 2 > this.hungry.length) {
      this.hungry = this.hungry.slice(this.hungryHead);
      this.hungryHead = 0;
    }
  }

  /** A pod with room fetches from the broker, then waits in line for more. */
  private pull(p: Pod): void {
    while (this.isHungry(p) && this.backlog > 0) this.deliver(p, this.takeFromBroker());
    if (this.isHungry(p) && !p.inHungry) {
      p.inHungry = true;
      this.hungry.push(p);
    }
  }

  private deliver(p: Pod, task: number): void {
    this.receivedTotal++;
    const a = ++this.attempt[task]!;
    this.deliveredAt[task] = this.now;
    this.podOf[task] = p.id;
    const eta = this.tasks.eta[task]!;
    if (eta > this.now) {
      p.scheduled.push(task);
      this.scheduledCount++;
      this.q.push(eta, Ev.EtaDue, task, a);
    } else if (p.running.length < this.params.concurrency) {
      this.startTask(p, task);
    } else {
      p.reserved.push(task);
      this.reservedCount++;
    }
  }

  private startTask(p: Pod, task: number): void {
    p.running.push(task);
    this.active++;
    this.startAt[task] = this.now;
    this.q.push(this.now + this.tasks.service[task]!, Ev.TaskDone, task, this.attempt[task]!);
  }

  private taskDone(task: number, a: number): void {
    if (this.attempt[task] !== a) return; // killed meanwhile
    const p = this.pods[this.podOf[task]!]!;
    const i = p.running.indexOf(task);
    p.running[i] = p.running[p.running.length - 1]!;
    p.running.pop();
    this.active--;
    if (this.doneFlag[task]) throw new Error(`simulator invariant broken: task ${task} completed twice`);
    this.completedTotal++;
    this.serviceSecondsTotal += this.tasks.service[task]!;
    this.doneFlag[task] = 1;
    if (p.reserved.length > 0) {
      this.reservedCount--;
      this.startTask(p, p.reserved.shift()!);
    }
    if (p.state === PodState.Running) this.pull(p);
    else if (p.state === PodState.Terminating && p.running.length === 0) this.q.push(this.now + this.params.shutdownSeconds, Ev.PodExit, p.id, 0);
    this.controller.onWorkChange?.(this);
  }

  private etaDue(task: number, a: number): void {
    if (this.attempt[task] !== a) return;
    const p = this.pods[this.podOf[task]!]!;
    const i = p.scheduled.indexOf(task);
    if (i < 0) return;
    p.scheduled.splice(i, 1);
    this.scheduledCount--;
    if (p.running.length < this.params.concurrency && p.state !== PodState.Gone) this.startTask(p, task);
    else {
      p.reserved.unshift(task);
      this.reservedCount++;
    }
  }

  /** Give a pod's reservations and ETA-held tasks back to the broker (front of the queue). */
  private giveBack(p: Pod): void {
    for (let i = p.reserved.length - 1; i >= 0; i--) this.enqueue(p.reserved[i]!, true);
    for (let i = p.scheduled.length - 1; i >= 0; i--) this.enqueue(p.scheduled[i]!, true);
    this.reservedCount -= p.reserved.length;
    this.scheduledCount -= p.scheduled.length;
    for (const t of p.reserved) this.attempt[t]!++;
    for (const t of p.scheduled) this.attempt[t]!++;
    p.reserved = [];
    p.scheduled = [];
    this.dispatch();
  }

  private redeliver(task: number, a: number): void {
    if (this.attempt[task] !== a) return;
    this.awaitingRedelivery--;
    this.delayedByVisibility++;
    this.enqueue(task, true);
    this.dispatch();
  }

  // ---------------------------------------------------------------- pods and the ReplicaSet

  private createPod(): void {
    const prm = this.params;
    let pull = 0;
    if (this.now < this.pullDoneAt) pull = this.pullDoneAt - this.now;
    else if (this.now >= this.imageCachedUntil) {
      pull = prm.coldPullSeconds;
      this.pullDoneAt = this.now + pull;
    }
    this.imageCachedUntil = Infinity;
    const latency = (prm.scheduleSeconds + pull + prm.bootSeconds) * this.rng.uniform(1 - prm.startJitter, 1 + prm.startJitter);
    const p: Pod = {
      id: this.pods.length,
      state: PodState.Starting,
      createdAt: this.now,
      readyAt: Infinity,
      running: [],
      reserved: [],
      scheduled: [],
      deletionCost: 0,
      inHungry: false,
    };
    this.pods.push(p);
    this.alive.push(p);
    this.alivePods++;
    this.q.push(this.now + latency, Ev.PodReady, p.id, 0);
  }

  private podReady(p: Pod): void {
    if (p.state !== PodState.Starting) return;
    p.state = PodState.Running;
    p.readyAt = this.now;
    this.runningPods++;
    this.pull(p);
  }

  private gone(p: Pod): void {
    if (p.state === PodState.Running || p.state === PodState.Draining || p.state === PodState.Terminating) {
      if (p.readyAt !== Infinity) this.runningPods--;
    }
    p.state = PodState.Gone;
    this.alivePods--;
    this.alive = this.alive.filter((x) => x !== p);
    if (this.alivePods === 0) this.imageCachedUntil = this.now + this.params.imageCacheSeconds;
  }

  /** SIGTERM: warm shutdown. */
  private terminate(p: Pod): void {
    if (p.state === PodState.Starting) {
      this.gone(p);
      return;
    }
    p.state = PodState.Terminating;
    if (p.running.length === 0) this.q.push(this.now + this.params.shutdownSeconds, Ev.PodExit, p.id, 0);
    else this.q.push(this.now + this.params.terminationGracePeriodSeconds, Ev.PodKill, p.id, 0);
  }

  private podExit(p: Pod): void {
    if (p.state === PodState.Gone) return;
    this.giveBack(p);
    this.gone(p);
  }

  /** SIGKILL at the end of the grace period. */
  private podKill(p: Pod): void {
    if (p.state !== PodState.Terminating) return;
    const lost = [...p.running, ...p.reserved, ...p.scheduled];
    this.active -= p.running.length;
    this.reservedCount -= p.reserved.length;
    this.scheduledCount -= p.scheduled.length;
    for (const t of p.running) {
      this.killed++;
      this.wasted += this.now - this.startAt[t]!;
      this.startAt[t] = -1;
    }
    p.running = [];
    p.reserved = [];
    p.scheduled = [];
    for (const t of lost) {
      const a = ++this.attempt[t]!;
      if (this.params.broker === 'amqp') this.enqueue(t, true);
      else {
        this.awaitingRedelivery++;
        this.q.push(Math.max(this.now, this.deliveredAt[t]! + this.params.visibilityTimeoutSeconds), Ev.Redeliver, t, a);
      }
    }
    this.gone(p);
    this.dispatch();
  }

  /** Change scale.spec.replicas; the ReplicaSet creates or deletes pods right away. */
  setReplicas(n: number): void {
    if (n === this.specReplicas) return;
    if (n === 0 && this.active + this.reservedCount + this.scheduledCount > 0) this.prematureZero++;
    this.specReplicas = n;
    let current = this.statusReplicas;
    while (current < n) {
      this.createPod();
      current++;
    }
    if (current > n) {
      const victims = this.alive
        .filter((p) => p.state !== PodState.Terminating && p.state !== PodState.Gone)
        .sort(rankForDeletion)
        .slice(0, current - n);
      for (const v of victims) this.terminate(v);
    }
  }

  /**
   * Record the autoscaler's intended replica count (for scale events and flaps). For the
   * HPA-style policies it is spec.replicas; for drain-first it changes before pods leave.
   */
  noteTarget(n: number): void {
    if (n === this.committed) return;
    const dir = n > this.committed ? 1 : -1;
    if (this.now <= this.scenario.durationSeconds) {
      if (dir > 0) this.scaleUps++;
      else this.scaleDowns++;
      if (this.lastChangeDir !== 0 && dir !== this.lastChangeDir && this.now - this.lastChangeAt <= this.params.flapWindowSeconds) this.flaps++;
    }
    this.lastChangeDir = dir;
    this.lastChangeAt = this.now;
    this.committed = n;
  }

  /** Ready pods told to drain: stop consuming, give back reservations. */
  drain(p: Pod): void {
    if (p.state !== PodState.Running) return;
    p.state = PodState.Draining;
    if (!this.params.drainKeepsReservations) this.giveBack(p);
  }

  /** Cancel a drain: the pod consumes again. */
  undrain(p: Pod): void {
    if (p.state !== PodState.Draining) return;
    p.state = PodState.Running;
    p.deletionCost = 0;
    this.pull(p);
  }

  /** Tasks a pod holds (running + reserved + ETA-held). */
  static load(p: Pod): number {
    return p.running.length + p.reserved.length + p.scheduled.length;
  }

  /** Elapsed running time of a pod's tasks (a proxy for remaining work on heavy tails). */
  elapsedOn(p: Pod): number {
    let s = 0;
    for (const t of p.running) s += this.now - this.startAt[t]!;
    return s;
  }

  // ---------------------------------------------------------------- metrics

  private metrics(): RunMetrics {
    const { count, arrival, eta } = this.tasks;
    const end = Math.max(this.now, this.scenario.durationSeconds);
    const waits = new Float64Array(count);
    let sum = 0;
    let over = 0;
    let unfinished = 0;
    const slo = this.params.sloSeconds;
    let coldSum = 0;
    let coldN = 0;
    for (let i = 0; i < count; i++) {
      const readyAt = Math.max(arrival[i]!, eta[i]!);
      if (!this.doneFlag[i]) unfinished++;
      const w = this.startAt[i]! >= 0 ? this.startAt[i]! - readyAt : end - readyAt;
      waits[i] = w;
      sum += w;
      if (w > slo) over++;
      if (i === 0 || arrival[i]! - arrival[i - 1]! > 300) {
        coldSum += w;
        coldN++;
      }
    }
    // Tasks are in arrival order, so each 60 s window is one contiguous range.
    let badWindows = 0;
    for (let lo = 0; lo < count;) {
      const windowEnd = (Math.floor(arrival[lo]! / 60) + 1) * 60;
      let hi = lo;
      while (hi < count && arrival[hi]! < windowEnd) hi++;
      if (quantile(waits.slice(lo, hi).sort(), 0.95) > slo) badWindows++;
      lo = hi;
    }
    waits.sort();
    return {
      tasks: count,
      waitP50: quantile(waits, 0.5),
      waitP95: quantile(waits, 0.95),
      waitP99: quantile(waits, 0.99),
      waitMean: count > 0 ? sum / count : 0,
      sloViolationShare: count > 0 ? over / count : 0,
      sloBadWindows: badWindows,
      replicaSeconds: this.podSeconds,
      replicaSecondsPer1000Tasks: count > 0 ? (this.podSeconds * 1000) / count : 0,
      utilization: this.provisionedSlotSeconds > 0 ? this.busySlotSeconds / this.provisionedSlotSeconds : 0,
      scaleUps: this.scaleUps,
      scaleDowns: this.scaleDowns,
      flaps: this.flaps,
      killed: this.killed,
      wastedSeconds: this.wasted,
      delayedByVisibility: this.delayedByVisibility,
      prematureZero: this.prematureZero,
      backlogDrainSeconds: this.drainTimes.length > 0 ? this.drainTimes.reduce((a, b) => a + b, 0) / this.drainTimes.length : NaN,
      secondsAtMinWithBacklog: this.atMinWithBacklog,
      coldStartWait: coldN > 0 ? coldSum / coldN : NaN,
      unfinished,
    };
  }
}

/** kubernetes controller.ActivePods ranking, the pods to delete first sort first. */
function rankForDeletion(a: Pod, b: Pod): number {
  const rank = (p: Pod): number => (p.state === PodState.Starting ? 0 : p.state === PodState.Draining ? 1 : 2);
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra - rb;
  if (a.deletionCost !== b.deletionCost) return a.deletionCost - b.deletionCost;
  if (a.readyAt !== b.readyAt) return b.readyAt - a.readyAt; // ready for less time first
  return b.createdAt - a.createdAt;
}

/** Linear-interpolated quantile of sorted values. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return 0;
  const pos = (n - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(n - 1, lo + 1);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}
