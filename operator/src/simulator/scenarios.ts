/**
 * Load scenarios of spec autoscaling.md §5.2 (S1..S6) and JSON scenario files of the same shape.
 * A scenario describes arrivals and service times; `generateTasks` turns it into one seeded task
 * list that every policy then replays (common random numbers: differences between policies are
 * not sampling noise of the workload).
 */
import { readFileSync } from 'node:fs';
import { CeleriacError } from '../../../runtime/src/errors.js';
import { Rng } from './rng.js';

/** Arrival process pieces; a scenario's arrivals are the superposition of its pieces. */
export type ArrivalPiece =
  /** Poisson with a rate profile: points [tSeconds, ratePerSecond], linear or step between them. */
  | { readonly type: 'rate'; readonly points: readonly (readonly [number, number])[]; readonly interpolate?: 'linear' | 'step' }
  /** Poisson with rate base + amplitude * sin(2 pi t / periodSeconds). */
  | { readonly type: 'sine'; readonly base: number; readonly amplitude: number; readonly periodSeconds: number }
  /**
   * `count` tasks spread uniformly within `withinSeconds`, at fixed times. `known`: the runs of a
   * schedule the operator knows (TaskSchedule/beat), so their time and size can be counted ahead.
   */
  | { readonly type: 'bursts'; readonly atSeconds: readonly number[]; readonly count: number; readonly withinSeconds: number; readonly known?: boolean }
  /** Bursts whose starts form a Poisson process with mean gap `meanGapSeconds` (MMPP-like). */
  | { readonly type: 'poissonBursts'; readonly meanGapSeconds: number; readonly count: number; readonly withinSeconds: number };

export type ServiceTime =
  | { readonly type: 'exponential'; readonly mean: number }
  /** Lognormal given by mean and coefficient of variation. */
  | { readonly type: 'lognormal'; readonly mean: number; readonly cv: number }
  /** Lognormal given by median and log-sd. */
  | { readonly type: 'lognormalMedian'; readonly median: number; readonly sigma: number }
  | { readonly type: 'gamma'; readonly shape: number; readonly mean: number };

export type BrokerKind = 'redis' | 'amqp';

export interface Scenario {
  readonly id: string;
  readonly description: string;
  readonly durationSeconds: number;
  readonly arrivals: readonly ArrivalPiece[];
  readonly service: ServiceTime;
  /** Share of tasks sent with an ETA `etaSeconds` ahead (held by workers as scheduled). */
  readonly etaFraction?: number | undefined;
  readonly etaSeconds?: number | undefined;
  /** Share of tasks at a non-zero priority (kombu keeps them in `queue\x06\x16<p>` lists). */
  readonly priorityFraction?: number | undefined;
  readonly minReplicas: number;
  readonly maxReplicas: number;
  /** Pool size of the fixed policy P0. */
  readonly fixedReplicas: number;
  readonly concurrency?: number | undefined;
  readonly prefetchMultiplier?: number | undefined;
  readonly broker?: BrokerKind | undefined;
  readonly terminationGracePeriodSeconds?: number | undefined;
  /** A broker-metrics outage [start, end) in seconds (exercises fallback). */
  readonly metricOutage?: readonly [number, number] | undefined;
}

const S: readonly Scenario[] = [
  {
    id: 'S1',
    description: 'Step burst: 2/s, 40/s from 300 s for 600 s, then 2/s; lognormal mean 2 s CV 0.5',
    durationSeconds: 1800,
    arrivals: [
      {
        type: 'rate',
        interpolate: 'step',
        points: [
          [0, 2],
          [300, 40],
          [900, 2],
        ],
      },
    ],
    service: { type: 'lognormal', mean: 2, cv: 0.5 },
    minReplicas: 1,
    maxReplicas: 100,
    fixedReplicas: 25,
  },
  {
    id: 'S2',
    description: 'Ramp: 0 -> 30/s over 1200 s, hold 600 s, down over 1200 s; exponential mean 1 s',
    durationSeconds: 3000,
    arrivals: [
      {
        type: 'rate',
        interpolate: 'linear',
        points: [
          [0, 0],
          [1200, 30],
          [1800, 30],
          [3000, 0],
        ],
      },
    ],
    service: { type: 'exponential', mean: 1 },
    minReplicas: 1,
    maxReplicas: 100,
    fixedReplicas: 10,
  },
  {
    id: 'S3',
    description: 'Diurnal sine: 10 + 9 sin(2 pi t / 7200) per s, 4 periods; gamma k=2 mean 5 s',
    durationSeconds: 28800,
    arrivals: [{ type: 'sine', base: 10, amplitude: 9, periodSeconds: 7200 }],
    service: { type: 'gamma', shape: 2, mean: 5 },
    minReplicas: 1,
    maxReplicas: 100,
    fixedReplicas: 20,
  },
  {
    id: 'S4',
    description: 'Spiky: Poisson 1/s plus bursts of 500 tasks within 5 s, Poisson every 300 s; exponential mean 0.5 s',
    durationSeconds: 7200,
    arrivals: [
      { type: 'rate', points: [[0, 1]] },
      { type: 'poissonBursts', meanGapSeconds: 300, count: 500, withinSeconds: 5 },
    ],
    service: { type: 'exponential', mean: 0.5 },
    minReplicas: 1,
    maxReplicas: 100,
    fixedReplicas: 4,
  },
  {
    id: 'S5',
    description: 'Long tail: Poisson 0.5/s; lognormal median 30 s sigma 1.75; 2% ETA tasks 600 s ahead; min 0',
    durationSeconds: 14400,
    arrivals: [{ type: 'rate', points: [[0, 0.5]] }],
    service: { type: 'lognormalMedian', median: 30, sigma: 1.75 },
    etaFraction: 0.02,
    etaSeconds: 600,
    minReplicas: 0,
    maxReplicas: 100,
    fixedReplicas: 20,
  },
  {
    id: 'S6',
    description: 'Sparse from zero: idle 3600 s, then 50 tasks at once every 1800 s (6 bursts); lognormal mean 20 s CV 1; min 0',
    durationSeconds: 14400,
    arrivals: [{ type: 'bursts', atSeconds: [3600, 5400, 7200, 9000, 10800, 12600], count: 50, withinSeconds: 0 }],
    service: { type: 'lognormal', mean: 20, cv: 1 },
    minReplicas: 0,
    maxReplicas: 100,
    fixedReplicas: 4,
  },
  {
    id: 'S7',
    description: 'S6 as runs of a known schedule (beat/TaskSchedule runs of 50 tasks every 1800 s); lognormal mean 20 s CV 1; min 0',
    durationSeconds: 14400,
    arrivals: [{ type: 'bursts', atSeconds: [3600, 5400, 7200, 9000, 10800, 12600], count: 50, withinSeconds: 0, known: true }],
    service: { type: 'lognormal', mean: 20, cv: 1 },
    minReplicas: 0,
    maxReplicas: 100,
    fixedReplicas: 4,
  },
];

/** The built-in scenarios by id. */
export const SCENARIOS: ReadonlyMap<string, Scenario> = new Map(S.map((s) => [s.id, s]));

/** A scenario file or id that cannot be used. */
export class ScenarioError extends CeleriacError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_SCENARIO', message, options);
  }
}

/** Looks up S1..S7 or reads a JSON scenario file (same shape as `Scenario`). */
export function loadScenario(idOrFile: string): Scenario {
  const builtIn = SCENARIOS.get(idOrFile.toUpperCase());
  if (builtIn) return builtIn;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(idOrFile, 'utf8'));
  } catch (err) {
    throw new ScenarioError(`"${idOrFile}" is neither a built-in scenario (${[...SCENARIOS.keys()].join(', ')}) nor a readable JSON file`, { cause: err });
  }
  return validateScenario(raw, idOrFile);
}

function validateScenario(raw: unknown, source: string): Scenario {
  const problems: string[] = [];
  const o = (raw ?? {}) as Record<string, unknown>;
  const num = (k: string, min: number, optional = false): void => {
    const v = o[k];
    if (v === undefined && optional) return;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min) problems.push(`${k}: expected a number >= ${min}, got ${JSON.stringify(v)}`);
  };
  if (typeof raw !== 'object' || raw === null) problems.push('expected a JSON object');
  num('durationSeconds', 1);
  num('minReplicas', 0);
  num('maxReplicas', 1);
  num('fixedReplicas', 0);
  num('etaFraction', 0, true);
  num('etaSeconds', 0, true);
  num('priorityFraction', 0, true);
  num('concurrency', 1, true);
  num('prefetchMultiplier', 1, true);
  num('terminationGracePeriodSeconds', 0, true);
  if (!Array.isArray(o.arrivals) || o.arrivals.length === 0)
    problems.push('arrivals: expected a non-empty array of pieces (rate, sine, bursts, poissonBursts)');
  else
    o.arrivals.forEach((p: { type?: unknown }, i: number) => {
      if (!['rate', 'sine', 'bursts', 'poissonBursts'].includes(String(p?.type)))
        problems.push(`arrivals[${i}].type: expected rate, sine, bursts or poissonBursts, got ${JSON.stringify(p?.type)}`);
    });
  const svc = o.service as { type?: unknown } | undefined;
  if (!svc || !['exponential', 'lognormal', 'lognormalMedian', 'gamma'].includes(String(svc.type)))
    problems.push(`service.type: expected exponential, lognormal, lognormalMedian or gamma, got ${JSON.stringify(svc?.type)}`);
  if (o.broker !== undefined && o.broker !== 'redis' && o.broker !== 'amqp')
    problems.push(`broker: expected "redis" or "amqp", got ${JSON.stringify(o.broker)}`);
  if (problems.length > 0) throw new ScenarioError(`Invalid scenario file ${source}:\n  - ${problems.join('\n  - ')}`);
  return {
    id: typeof o.id === 'string' ? o.id : source,
    description: typeof o.description === 'string' ? o.description : source,
    ...(o as object),
  } as Scenario;
}

/** The task list one seed of a scenario produces; arrays are sorted by arrival time. */
export interface TaskSet {
  readonly count: number;
  /** seconds */
  readonly arrival: Float64Array;
  readonly service: Float64Array;
  /** absolute ETA in seconds, or 0 for none */
  readonly eta: Float64Array;
  /** 1 when the task has a non-zero priority */
  readonly priority: Uint8Array;
  /** 1 when the task belongs to a known scheduled run (a `bursts` piece with `known`) */
  readonly known: Uint8Array;
  /** Burst starts in seconds (burst pieces, and steps of a step profile that at least double the rate). */
  readonly burstStarts: readonly number[];
}

function sampler(s: ServiceTime, rng: Rng): () => number {
  switch (s.type) {
    case 'exponential':
      return () => rng.exponential(s.mean);
    case 'lognormal': {
      const sigma2 = Math.log(1 + s.cv * s.cv);
      const mu = Math.log(s.mean) - sigma2 / 2;
      const sigma = Math.sqrt(sigma2);
      return () => rng.lognormal(mu, sigma);
    }
    case 'lognormalMedian': {
      const mu = Math.log(s.median);
      return () => rng.lognormal(mu, s.sigma);
    }
    case 'gamma':
      return () => rng.gamma(s.shape, s.mean / s.shape);
  }
}

function rateAt(points: readonly (readonly [number, number])[], t: number, linear: boolean): number {
  let prev = points[0]!;
  if (t <= prev[0]) return prev[1];
  for (let i = 1; i < points.length; i++) {
    const p = points[i]!;
    if (t < p[0]) return linear ? prev[1] + ((p[1] - prev[1]) * (t - prev[0])) / (p[0] - prev[0]) : prev[1];
    prev = p;
  }
  return prev[1];
}

/** Non-homogeneous Poisson arrivals in [0, end) by thinning a rate-`max` process. */
function thinned(rate: (t: number) => number, max: number, end: number, rng: Rng, out: number[]): void {
  if (max <= 0) return;
  let t = 0;
  for (;;) {
    t += rng.exponential(1 / max);
    if (t >= end) return;
    if (rng.next() * max < rate(t)) out.push(t);
  }
}

/** Draws one seed's tasks. Deterministic in (scenario, seed). */
export function generateTasks(sc: Scenario, seed: number): TaskSet {
  const rng = new Rng(seed, 1);
  const end = sc.durationSeconds;
  const times: number[] = [];
  /** Arrival times of tasks of known runs (exact values pushed into `times` too). */
  const knownTimes = new Set<number>();
  const burstStarts: number[] = [];
  for (const p of sc.arrivals) {
    switch (p.type) {
      case 'rate': {
        const linear = p.interpolate === 'linear';
        const max = Math.max(...p.points.map((x) => x[1]));
        thinned((t) => rateAt(p.points, t, linear), max, end, rng, times);
        if (!linear) p.points.forEach((pt, i) => i > 0 && pt[1] >= 2 * p.points[i - 1]![1] && pt[1] > 0 && burstStarts.push(pt[0]));
        break;
      }
      case 'sine':
        thinned((t) => Math.max(0, p.base + p.amplitude * Math.sin((2 * Math.PI * t) / p.periodSeconds)), p.base + Math.abs(p.amplitude), end, rng, times);
        break;
      case 'bursts':
        for (const at of p.atSeconds) {
          if (at >= end) continue;
          burstStarts.push(at);
          for (let i = 0; i < p.count; i++) {
            const t = at + rng.next() * p.withinSeconds;
            times.push(t);
            if (p.known) knownTimes.add(t);
          }
        }
        break;
      case 'poissonBursts':
        for (let at = rng.exponential(p.meanGapSeconds); at < end; at += rng.exponential(p.meanGapSeconds)) {
          burstStarts.push(at);
          for (let i = 0; i < p.count; i++) times.push(at + rng.next() * p.withinSeconds);
        }
        break;
    }
  }
  times.sort((a, b) => a - b);
  const n = times.length;
  const arrival = Float64Array.from(times);
  const service = new Float64Array(n);
  const eta = new Float64Array(n);
  const priority = new Uint8Array(n);
  const known = new Uint8Array(n);
  for (let i = 0; i < n; i++) if (knownTimes.has(arrival[i]!)) known[i] = 1;
  const draw = sampler(sc.service, rng);
  const etaFraction = sc.etaFraction ?? 0;
  const etaSeconds = sc.etaSeconds ?? 0;
  const prioFraction = sc.priorityFraction ?? 0;
  for (let i = 0; i < n; i++) {
    service[i] = draw();
    if (etaFraction > 0 && rng.next() < etaFraction) eta[i] = arrival[i]! + etaSeconds;
    if (prioFraction > 0 && rng.next() < prioFraction) priority[i] = 1;
  }
  return { count: n, arrival, service, eta, priority, known, burstStarts: burstStarts.sort((a, b) => a - b) };
}
