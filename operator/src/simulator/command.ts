/**
 * `celeriac-operator simulate`: run the autoscaler policies against the load scenarios in
 * virtual time and print the spec §5.3 metrics side by side (mean ± 95% CI over seeds), or JSON;
 * one SVG chart per scenario goes to --out.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import type { RunMetrics } from './model.js';
import { POLICIES } from './policies.js';
import { runScenario, type CellResult, type Estimate } from './run.js';
import { SCENARIOS, ScenarioError, loadScenario, type Scenario } from './scenarios.js';
import { renderChart } from './chart.js';
import { checkGoal, formatGoal } from './goal.js';

export interface SimulateOptions {
  readonly scenarios: readonly Scenario[];
  readonly policies: readonly string[];
  readonly seeds: number;
  readonly broker?: 'redis' | 'amqp' | undefined;
  readonly prefetch?: number | undefined;
  /** `python`: Python Celery workers (prefetch multiplier 4 unless `prefetch`, a drain keeps reservations). */
  readonly workers?: 'celeriac' | 'python' | undefined;
}

/** Python Celery workers in the model: Celery's default prefetch multiplier, cancel_consumer drains. */
export const PYTHON_WORKERS = Object.freeze({ prefetchMultiplier: 4, drainKeepsReservations: true });

export interface SimulateReport {
  readonly seeds: number;
  readonly policies: readonly string[];
  readonly runtimeSeconds: number;
  readonly results: readonly CellResult[];
}

/** Runs every scenario under every policy. Pure computation; no output. */
export function simulate(opts: SimulateOptions): SimulateReport {
  const started = performance.now();
  const overrides = {
    ...(opts.workers === 'python' ? PYTHON_WORKERS : {}),
    ...(opts.broker ? { broker: opts.broker } : {}),
    ...(opts.prefetch ? { prefetchMultiplier: opts.prefetch } : {}),
  };
  const results = opts.scenarios.flatMap((sc) => runScenario(sc, opts.policies, opts.seeds, overrides));
  return { seeds: opts.seeds, policies: opts.policies, runtimeSeconds: (performance.now() - started) / 1000, results };
}

/** Rows of the table: metric key, label, decimals. */
const ROWS: readonly (readonly [keyof RunMetrics, string, number])[] = [
  ['waitP50', 'wait p50 (s)', 2],
  ['waitP95', 'wait p95 (s)', 2],
  ['waitP99', 'wait p99 (s)', 2],
  ['sloViolationShare', 'wait > SLO 30 s (share)', 4],
  ['sloBadWindows', '60 s windows p95 > SLO', 1],
  ['replicaSeconds', 'replica-seconds', 0],
  ['replicaSecondsPer1000Tasks', 'replica-s / 1000 tasks', 0],
  ['utilization', 'slot utilization', 3],
  ['scaleUps', 'scale-ups', 1],
  ['scaleDowns', 'scale-downs', 1],
  ['flaps', 'flaps (reversal < 300 s)', 1],
  ['killed', 'tasks killed', 1],
  ['wastedSeconds', 'wasted compute (s)', 0],
  ['delayedByVisibility', 'redelivered after vis. timeout', 1],
  ['prematureZero', 'premature scale-to-zero', 1],
  ['backlogDrainSeconds', 'backlog drain after burst (s)', 1],
  ['secondsAtMinWithBacklog', 's at min with backlog', 0],
  ['coldStartWait', 'first task of burst wait (s)', 2],
  ['unfinished', 'unfinished at end', 1],
];

function cell(e: Estimate, decimals: number): string {
  if (Number.isNaN(e.mean)) return '-';
  return `${e.mean.toFixed(decimals)} ±${e.ci95.toFixed(decimals)}`;
}

/** The side-by-side text table of a report. */
export function formatTable(report: SimulateReport, scenarios: readonly Scenario[]): string {
  const lines: string[] = [];
  for (const sc of scenarios) {
    const cells = report.results.filter((r) => r.scenario === sc.id);
    const header = ['', ...cells.map((c) => c.policy)];
    const body = ROWS.map(([key, label, d]) => [label, ...cells.map((c) => cell(c.metrics[key], d))]);
    const widths = header.map((_, i) => Math.max(...[header, ...body].map((r) => r[i]!.length)));
    lines.push(`${sc.id}: ${sc.description}  (${report.seeds} seeds, mean ±95% CI)`);
    for (const row of [header, ...body]) lines.push(row.map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join('  '));
    lines.push('');
  }
  const goal = formatGoal(checkGoal(report.results));
  if (goal) lines.push(goal, '');
  lines.push(`policies: ${report.policies.map((p) => `${p} = ${POLICIES.get(p)!.description}`).join('\n          ')}`);
  lines.push(`runtime: ${report.runtimeSeconds.toFixed(1)} s`);
  return lines.join('\n');
}

/** Writes `<out>/<scenario>.svg` per scenario; returns the paths. */
export function writeCharts(report: SimulateReport, scenarios: readonly Scenario[], out: string): string[] {
  mkdirSync(out, { recursive: true });
  return scenarios.map((sc) => {
    const cells = report.results.filter((r) => r.scenario === sc.id);
    const svg = renderChart(
      `${sc.id}: ${sc.description} (seed 1)`,
      sc.durationSeconds,
      cells.map((c) => c.policy),
      cells.map((c) => c.trace),
    );
    const file = join(out, `${sc.id.replace(/[^A-Za-z0-9_.-]/g, '_')}.svg`);
    writeFileSync(file, svg);
    return file;
  });
}

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`expected an integer >= 1, got "${v}"`);
  return n;
}

function policyList(v: string): string[] {
  const ids = v
    .split(',')
    .map((s) =>
      s
        .trim()
        .toUpperCase()
        .replace(/^P(\d)([SO])$/, (_, d: string, x: string) => `P${d}${x.toLowerCase()}`),
    )
    .filter(Boolean);
  const bad = ids.filter((id) => !POLICIES.has(id));
  if (bad.length > 0) throw new InvalidArgumentError(`unknown policy ${bad.join(', ')} (known: ${[...POLICIES.keys()].join(', ')})`);
  return ids;
}

/** The `simulate` subcommand, for the operator's commander program. */
export function simulateCommand(): Command {
  return new Command('simulate')
    .description('Run the autoscaler policies against load scenarios in virtual time (see operator/src/autoscaler/README.md) and compare them.')
    .option('--scenario <ids>', `scenarios, comma-separated: ${[...SCENARIOS.keys()].join(', ')} or a JSON scenario file`, [...SCENARIOS.keys()].join(','))
    .option('--policy <ids>', `policies, comma-separated: ${[...POLICIES.keys()].join(', ')}`, policyList, ['P1', 'P2', 'P3', 'P4', 'P5'])
    .option('--seeds <n>', 'seeds per scenario and policy', positiveInt, 10)
    .addOption(new Option('--broker <kind>', "broker semantics (default: amqp, or the scenario's)").choices(['redis', 'amqp']))
    .option('--prefetch <n>', 'worker prefetch multiplier (default 1, as celeriac workers; 4 with --workers python)', positiveInt)
    .addOption(
      new Option(
        '--workers <kind>',
        "celeriac, or python: Celery's prefetch multiplier 4 and drains by cancel_consumer, which keep prefetched tasks on the pod",
      )
        .choices(['celeriac', 'python'])
        .default('celeriac'),
    )
    .option('--json', 'print JSON instead of the table', false)
    .option('--out <dir>', 'folder for the SVG charts', './simulation')
    .option('--no-charts', 'do not write SVG charts')
    .action(function (
      this: Command,
      o: {
        scenario: string;
        policy: string[];
        seeds: number;
        broker?: 'redis' | 'amqp';
        prefetch?: number;
        workers: 'celeriac' | 'python';
        json: boolean;
        out: string;
        charts: boolean;
      },
    ) {
      let scenarios: Scenario[];
      try {
        scenarios = o.scenario
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
          .map(loadScenario);
      } catch (err) {
        if (err instanceof ScenarioError) this.error(err.message, { exitCode: 2, code: err.code });
        throw err;
      }
      const report = simulate({ scenarios, policies: o.policy, seeds: o.seeds, broker: o.broker, prefetch: o.prefetch, workers: o.workers });
      const charts = o.charts ? writeCharts(report, scenarios, resolve(o.out)) : [];
      if (o.json) {
        const results = report.results.map(({ trace: _trace, runs: _runs, ...r }) => r);
        process.stdout.write(`${JSON.stringify({ ...report, results, goal: checkGoal(report.results), charts }, null, 2)}\n`);
      } else {
        process.stdout.write(`${formatTable(report, scenarios)}\n`);
        if (charts.length > 0) process.stdout.write(`charts: ${charts.join(', ')}\n`);
      }
    });
}
