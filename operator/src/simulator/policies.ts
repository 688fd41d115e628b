/**
 * The autoscaling policies the simulator compares (spec autoscaling.md §5.1). Every policy calls
 * the real decision code: P1-P3 go through the HPA port (`hpaStep`) with KEDA's 0 <-> 1 scale
 * loop on top, P4 through celeriac's `decide` and the drain-first scale-down.
 */
import { decide, reactionMs, type AutoscalerState } from '../autoscaler/decide.js';
import { resolveBehavior, type HpaBehavior, type HpaState, type ResolvedBehavior } from '../autoscaler/hpa.js';
import { hpaStep } from './hpa-baseline.js';
import { resolvePolicy, type AutoscalerPolicy, type AutoscalingSpec } from '../autoscaler/policy.js';
import { PodState, Simulation, type Controller, type Pod } from './model.js';
import { dueBucketSeconds } from '../metric-sources/worker-metrics.js';
import type { Scenario } from './scenarios.js';
import { shouldWake, type DecidedLevel } from '../autoscaler/work-trigger.js';

export interface PolicyInfo {
  readonly id: string;
  readonly description: string;
  make(sc: Scenario, concurrency: number): Controller;
}

/** P0: a fixed pool of `scenario.fixedReplicas`. */
class FixedController implements Controller {
  constructor(private readonly replicas: number) {}
  start(sim: Simulation): void {
    sim.setReplicas(this.replicas);
    sim.noteTarget(this.replicas);
  }
  onTimer(): void {}
}

export interface HpaPolicyConfig {
  /** KEDA's scale loop (0 <-> 1 and cooldown), or null for a plain HPA. */
  readonly keda: { readonly pollingSeconds: number; readonly cooldownSeconds: number } | null;
  readonly hpaSyncSeconds: number;
  /** `ready`: LLEN / AMQP passive-declare count; `readyUnacked`: management API `messages`. */
  readonly metric: 'ready' | 'readyUnacked';
  /** Refresh period of the metric pipeline (stats or scrape); 0 = read live. */
  readonly sampleSeconds: number;
  /** External metric AverageValue target per replica. */
  readonly target: number;
  /** null: legacy normalization. */
  readonly behavior: HpaBehavior | null;
}

const enum HpaTimer {
  KedaPoll,
  HpaSync,
  Sample,
}

/** KEDA (optional) + HPA on an external queue metric. */
export class HpaController implements Controller {
  private hpa: HpaState | null = null;
  private lastActive: number | null = null;
  private sampled = 0;
  private readonly behavior: ResolvedBehavior | null;

  constructor(
    private readonly sc: Scenario,
    private readonly cfg: HpaPolicyConfig,
  ) {
    this.behavior = cfg.behavior ? resolveBehavior(cfg.behavior) : null;
  }

  private get hpaMin(): number {
    return Math.max(1, this.sc.minReplicas);
  }

  start(sim: Simulation): void {
    const initial = this.cfg.keda ? this.sc.minReplicas : this.hpaMin;
    this.set(sim, initial);
    this.sampled = this.live(sim);
    if (this.cfg.keda) sim.schedule(sim.rng.uniform(0, this.cfg.keda.pollingSeconds), HpaTimer.KedaPoll);
    sim.schedule(sim.rng.uniform(0, this.cfg.hpaSyncSeconds), HpaTimer.HpaSync);
    if (this.cfg.sampleSeconds > 0) sim.schedule(sim.rng.uniform(0, this.cfg.sampleSeconds), HpaTimer.Sample);
  }

  private set(sim: Simulation, n: number): void {
    sim.setReplicas(n);
    sim.noteTarget(n);
  }

  private live(sim: Simulation): number {
    // kombu on Redis keeps priorities in other lists; LLEN of the queue name misses them.
    const ready = sim.params.broker === 'redis' ? sim.backlogMainList : sim.backlog;
    return this.cfg.metric === 'ready' ? ready : sim.backlog + sim.unacked;
  }

  private read(sim: Simulation): number | null {
    if (sim.metricsDown) return null;
    return this.cfg.sampleSeconds > 0 ? this.sampled : this.live(sim);
  }

  onTimer(sim: Simulation, timer: number): void {
    switch (timer) {
      case HpaTimer.Sample:
        this.sampled = this.live(sim);
        sim.schedule(this.cfg.sampleSeconds, HpaTimer.Sample);
        return;
      case HpaTimer.KedaPoll:
        this.kedaPoll(sim);
        sim.schedule(this.cfg.keda!.pollingSeconds, HpaTimer.KedaPoll);
        return;
      case HpaTimer.HpaSync:
        this.hpaSync(sim);
        sim.schedule(this.cfg.hpaSyncSeconds, HpaTimer.HpaSync);
        return;
    }
  }

  /** KEDA scale_scaledobjects.go RequestScale (activation value 0, no fallback). */
  private kedaPoll(sim: Simulation): void {
    const value = this.read(sim);
    if (value === null) return; // error without fallback: Ready=False, nothing else
    const min = this.sc.minReplicas;
    const n = sim.specReplicas;
    if (value > 0) {
      if (n === 0) this.set(sim, Math.max(min, 1));
      this.lastActive = sim.now;
      return;
    }
    if (n > 0 && min === 0) {
      const deadline = this.lastActive === null ? 0 : this.lastActive + this.cfg.keda!.cooldownSeconds;
      if (sim.now >= deadline) this.set(sim, 0);
    } else if (n < min) {
      this.set(sim, min);
    }
  }

  private hpaSync(sim: Simulation): void {
    const value = this.read(sim);
    const r = hpaStep(
      this.hpa,
      { minReplicas: this.hpaMin, maxReplicas: this.sc.maxReplicas, behavior: this.behavior },
      { specReplicas: sim.specReplicas, statusReplicas: sim.statusReplicas, readyReplicas: sim.readyReplicas },
      [{ name: 'queue', value, target: { type: 'AverageValue', averageValue: this.cfg.target } }],
      sim.now * 1000,
    );
    this.hpa = r.state;
    if (r.replicas !== sim.specReplicas) this.set(sim, r.replicas);
  }
}

/** How celeriac's controller learns of changes and what it counts ahead (issue 19). */
export interface CeleriacControllerOptions {
  /**
   * Event trigger: the operator sees a change of the work this many seconds after it happens
   * and decides then (at most once per this period); null: at the polling interval only.
   */
  readonly eventDelaySeconds: number | null;
  /** Count known future work (ETA tasks due, known scheduled runs) within the measured pod start as work now. */
  readonly leadKnownWork: boolean;
  /** A drained idle pod stays as a paused consumer this long before it is removed (standby). */
  readonly standbySeconds: number;
  /**
   * Only backlog growth wakes a decision, as the operator's watch (`shouldWake`: growth since the
   * last decision by the scale-up tolerance of the pool's slots, or work at zero); false: every
   * arrival and completion does (within `eventDelaySeconds`).
   */
  readonly wakeOnGrowthOnly?: boolean;
}

const POLL_ONLY: CeleriacControllerOptions = { eventDelaySeconds: null, leadKnownWork: false, standbySeconds: 0 };

const enum CeleriacTimer {
  Poll,
  Event,
  Lead,
  Standby,
}

/** Pods whose start is averaged into the measured pod start. */
const POD_START_SAMPLES = 5;

/**
 * P4/P5: celeriac's `decide` every poll (and, event-driven, within `eventDelaySeconds` of a
 * change), executed drain-first: pods still starting go first, then idle or least-loaded ready
 * pods drain; a drained pod leaves by deletion cost and replicas - 1 (after its standby time).
 */
export class CeleriacController implements Controller {
  private state: AutoscalerState | null = null;
  private eventPending = false;
  private lastDecisionAt = -Infinity;
  /** Pods seen ready, for the measured pod start. */
  private readonly measured = new Set<number>();
  private readonly starts: number[] = [];
  /** When each draining pod became idle. */
  private readonly idleSince = new Map<number, number>();
  private leadAt: number | null = null;
  /** What the last decision saw and left (the operator's watch measures growth from it). */
  private decided: DecidedLevel | null = null;

  constructor(
    private readonly policy: AutoscalerPolicy,
    private readonly opts: CeleriacControllerOptions = POLL_ONLY,
  ) {}

  start(sim: Simulation): void {
    sim.setReplicas(this.policy.minReplicas);
    sim.noteTarget(this.policy.minReplicas);
    sim.schedule(sim.rng.uniform(0, this.policy.pollingIntervalMs / 1000), CeleriacTimer.Poll);
    this.scheduleLead(sim);
  }

  /** Replicas the autoscaler stands by: spec minus pods already draining out. */
  private committed(sim: Simulation): number {
    return sim.specReplicas - sim.podsIn(PodState.Draining).length;
  }

  onWorkChange(sim: Simulation): void {
    const delay = this.opts.eventDelaySeconds;
    if (delay === null || this.eventPending) return;
    if (this.opts.wakeOnGrowthOnly && this.decided && !shouldWake(this.decided, sim.backlog)) return;
    this.eventPending = true;
    // The watch sees the change within `delay`; decisions stay at least `delay` apart.
    sim.schedule(Math.max(delay, this.lastDecisionAt + delay - sim.now), CeleriacTimer.Event);
  }

  onTimer(sim: Simulation, timer: number): void {
    if (timer === CeleriacTimer.Poll) sim.schedule(this.policy.pollingIntervalMs / 1000, CeleriacTimer.Poll);
    if (timer === CeleriacTimer.Event) this.eventPending = false;
    if (timer === CeleriacTimer.Lead) this.leadAt = null;
    if (timer === CeleriacTimer.Standby) {
      this.removeDrained(sim);
      return;
    }
    this.decideNow(sim);
    this.scheduleLead(sim);
  }

  /** Mean start time of the last pods that became ready (s), or null before the first. */
  private podStart(sim: Simulation): number | null {
    for (const p of sim.pods) {
      if (p.readyAt === Infinity || this.measured.has(p.id)) continue;
      this.measured.add(p.id);
      this.starts.push(p.readyAt - p.createdAt);
      if (this.starts.length > POD_START_SAMPLES) this.starts.shift();
    }
    return this.starts.length > 0 ? this.starts.reduce((a, b) => a + b, 0) / this.starts.length : null;
  }

  /** Lead time for known work: decision delay plus the measured (else assumed) pod start, s. */
  private leadSeconds(sim: Simulation): number {
    return reactionMs(this.policy, this.podStartMs(sim)) / 1000;
  }

  private podStartMs(sim: Simulation): number {
    const s = this.podStart(sim);
    return s === null ? this.policy.podStartMs : s * 1000;
  }

  /** Wake when the lead window of the next known run opens (a quiet pool sees no change before). */
  private scheduleLead(sim: Simulation): void {
    if (!this.opts.leadKnownWork || this.leadAt !== null) return;
    const next = sim.nextKnownArrival();
    if (next === null) return;
    this.leadAt = Math.max(sim.now, next - this.leadSeconds(sim));
    if (this.leadAt > sim.now) sim.schedule(this.leadAt - sim.now, CeleriacTimer.Lead);
    else this.leadAt = null;
  }

  private decideNow(sim: Simulation): void {
    this.lastDecisionAt = sim.now;
    this.removeDrained(sim);
    const down = sim.metricsDown;
    const podStartMs = this.podStartMs(sim);
    const lead = reactionMs(this.policy, podStartMs) / 1000;
    const d = decide(
      this.state,
      {
        specReplicas: this.committed(sim),
        readyReplicas: sim.readyReplicas,
        ...(this.opts.eventDelaySeconds !== null ? { podStartMs } : {}),
        work: {
          backlog: down ? null : sim.backlog,
          reserved: sim.reservedCount,
          active: sim.active,
          scheduled: sim.scheduledCount,
          drainingActive: sim.podsIn(PodState.Draining).reduce((n, p) => n + p.running.length, 0),
          receivedTotal: sim.receivedTotal,
          completedTotal: sim.completedTotal,
          serviceSecondsTotal: sim.serviceSecondsTotal,
          // ETA tasks as the workers export them: due within the smallest bucket at or above the lead.
          ...(this.opts.leadKnownWork ? { dueSoon: sim.scheduledDueWithin(dueBucketSeconds(lead)) + sim.knownArrivalsWithin(lead) } : {}),
        },
      },
      this.policy,
      sim.now * 1000,
    );
    this.state = d.state;
    this.execute(sim, d.replicas);
    this.removeDrained(sim);
    this.decided = {
      backlog: down ? null : sim.backlog,
      slots: Math.max(0, this.committed(sim)) * sim.params.concurrency,
      activationThreshold: this.policy.activationThreshold,
      tolerance: this.policy.behavior.scaleUp.tolerance,
    };
  }

  private execute(sim: Simulation, target: number): void {
    const committed = this.committed(sim);
    if (target === committed) return;
    sim.noteTarget(target);
    if (target > committed) {
      let need = target - committed;
      // Cancelling a drain (or resuming a standby pod) is cheaper than starting a pod.
      for (const p of sim.podsIn(PodState.Draining)) {
        if (need === 0) break;
        sim.undrain(p);
        this.idleSince.delete(p.id);
        need--;
      }
      if (need > 0) sim.setReplicas(sim.specReplicas + need);
      return;
    }
    let excess = committed - target;
    const starting = sim.podsIn(PodState.Starting).length;
    const drop = Math.min(excess, starting);
    if (drop > 0) sim.setReplicas(sim.specReplicas - drop); // the ReplicaSet deletes starting pods first
    excess -= drop;
    if (excess === 0) return;
    const victims = sim.podsIn(PodState.Running).sort((a, b) => Simulation.load(a) - Simulation.load(b) || sim.elapsedOn(a) - sim.elapsedOn(b));
    for (const p of victims.slice(0, excess)) sim.drain(p);
  }

  /** Drained, idle and past its standby time: mark with deletion cost and lower replicas by that many. */
  private removeDrained(sim: Simulation): void {
    if (sim.podsIn(PodState.Starting).length > 0) return; // settle guard: the ReplicaSet would pick those
    const idle: Pod[] = [];
    for (const p of sim.podsIn(PodState.Draining)) {
      if (Simulation.load(p) > 0) continue;
      let since = this.idleSince.get(p.id);
      if (since === undefined) {
        since = sim.now;
        this.idleSince.set(p.id, since);
        // Its removal needs a look when the standby time is up, whatever else happens.
        if (this.opts.standbySeconds > 0) sim.schedule(this.opts.standbySeconds, CeleriacTimer.Standby);
      }
      if (sim.now - since >= this.opts.standbySeconds) idle.push(p);
    }
    if (idle.length === 0) return;
    for (const p of idle) {
      p.deletionCost = -1000;
      this.idleSince.delete(p.id);
    }
    sim.setReplicas(sim.specReplicas - idle.length);
  }
}

function celeriacSpec(sc: Scenario): AutoscalingSpec {
  return { minReplicas: sc.minReplicas, maxReplicas: sc.maxReplicas };
}

/**
 * celeriac as it was before the event trigger (issue 19): polled, backlog drained within 20 s,
 * the flap backoff stretching the scale-down window up to 600 s.
 */
function polledPolicy(spec: AutoscalingSpec, concurrency: number): AutoscalerPolicy {
  return { ...resolvePolicy({ targetDrainSeconds: 20, ...spec, eventDriven: false }, concurrency), maxScaleDownWindowMs: 600_000 };
}

/** P5: the event trigger (decisions within 1 s of a change), measured pod start, known work led. */
export const P5_OPTIONS: CeleriacControllerOptions = { eventDelaySeconds: 1, leadKnownWork: true, standbySeconds: 0 };
/** Standby measured (issue 19): a drained idle pod kept 30 s as a paused consumer. It did not pay. */
const STANDBY_SECONDS = 30;

export const POLICIES: ReadonlyMap<string, PolicyInfo> = new Map<string, PolicyInfo>([
  ['P0', { id: 'P0', description: 'fixed replicas', make: (sc) => new FixedController(sc.fixedReplicas) }],
  [
    'P1',
    {
      id: 'P1',
      description: 'KEDA defaults: poll 30 s, HPA 15 s, ready-only queue length, target 5/pod, cooldown 300 s, legacy HPA normalization',
      make: (sc) =>
        new HpaController(sc, {
          keda: { pollingSeconds: 30, cooldownSeconds: 300 },
          hpaSyncSeconds: 15,
          metric: 'ready',
          sampleSeconds: 0,
          target: 5,
          behavior: null,
        }),
    },
  ],
  [
    'P2',
    {
      id: 'P2',
      description: 'KEDA tuned: poll 5 s, HPA 15 s, ready + unacked (management API, 5 s stats), target 4/pod (= C), scale-down window 120 s',
      make: (sc) =>
        new HpaController(sc, {
          keda: { pollingSeconds: 5, cooldownSeconds: 300 },
          hpaSyncSeconds: 15,
          metric: 'readyUnacked',
          sampleSeconds: 5,
          target: 4,
          behavior: { scaleDown: { stabilizationWindowSeconds: 120 } },
        }),
    },
  ],
  [
    'P3',
    {
      id: 'P3',
      description: 'HPA + prometheus-adapter on celery_queue_length (ready only): 30 s scrape, 15 s sync, target 5/pod, min >= 1',
      make: (sc) => new HpaController(sc, { keda: null, hpaSyncSeconds: 15, metric: 'ready', sampleSeconds: 30, target: 5, behavior: null }),
    },
  ],
  [
    'P4',
    {
      id: 'P4',
      description: 'celeriac: W = B+R+A+S, rate model with square-root staffing + drain term, in-flight floor, drain-first scale-down',
      make: (sc, c) => new CeleriacController(polledPolicy(celeriacSpec(sc), c)),
    },
  ],
  [
    'P5',
    {
      id: 'P5',
      description:
        "celeriac's defaults, event-driven (issue 19): P4 deciding within 1 s of a change, horizon 1 s + measured pod start, ETA tasks and known runs counted ahead, drain within 8 s, flap backoff up to 120 s",
      make: (sc, c) => new CeleriacController(resolvePolicy(celeriacSpec(sc), c), P5_OPTIONS),
    },
  ],
  [
    'P5o',
    {
      id: 'P5o',
      description:
        "P5 woken as the operator's watch wakes it: only by backlog growth since the last decision (the scale-up tolerance of the pool's slots, at least one task) or work at zero; completions and a flat backlog wait for the poll",
      make: (sc, c) => new CeleriacController(resolvePolicy(celeriacSpec(sc), c), { ...P5_OPTIONS, wakeOnGrowthOnly: true }),
    },
  ],
  [
    'P5s',
    {
      id: 'P5s',
      description: `P5 with standby: a drained idle pod stays ${STANDBY_SECONDS} s as a paused consumer, resumed first on the next scale-up`,
      make: (sc, c) => new CeleriacController(resolvePolicy(celeriacSpec(sc), c), { ...P5_OPTIONS, standbySeconds: STANDBY_SECONDS }),
    },
  ],
  [
    'P4s',
    {
      id: 'P4s',
      description: 'celeriac as first specified (§4): rho 0.8 without square-root staffing, scale-down window 300 s at 50%/60 s',
      make: (sc, c) =>
        new CeleriacController({
          ...polledPolicy(
            {
              ...celeriacSpec(sc),
              behavior: { scaleDown: { stabilizationWindowSeconds: 300, policies: [{ type: 'Percent', value: 50, periodSeconds: 60 }] } },
            },
            c,
          ),
          staffingBeta: Infinity,
        }),
    },
  ],
]);
