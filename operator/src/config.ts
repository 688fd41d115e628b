/**
 * The operator's configuration: one table (key, flag, env, type, default, doc) from which parsing,
 * `--help` and the README table come. Precedence: flag > env > default. `loadConfig` returns a
 * frozen Config or throws one ConfigError listing every problem.
 */
import { ConfigError } from './errors.js';

type Kind = 'string' | 'int' | 'bool' | 'level';

interface Entry {
  readonly key: string;
  /** Long flag name without dashes; absent = env only. */
  readonly flag?: string;
  readonly env: readonly string[];
  readonly kind: Kind;
  readonly default: string | number | boolean | undefined;
  readonly doc: string;
  readonly min?: number;
  readonly max?: number;
}

export const CONFIG_TABLE = [
  {
    key: 'kubeconfig',
    flag: 'kubeconfig',
    env: ['KUBECONFIG'],
    kind: 'string',
    default: undefined,
    doc: 'kubeconfig file; default: in-cluster service account, else ~/.kube/config',
  },
  {
    key: 'namespace',
    flag: 'namespace',
    env: ['CELERIAC_OPERATOR_WATCH_NAMESPACE'],
    kind: 'string',
    default: undefined,
    doc: 'watch only this namespace (default: all namespaces)',
  },
  {
    key: 'leaderElect',
    flag: 'leader-elect',
    env: ['CELERIAC_OPERATOR_LEADER_ELECT'],
    kind: 'bool',
    default: false,
    doc: 'run controllers only while holding the Lease "celeriac-operator" (for more than one replica)',
  },
  {
    key: 'leaseNamespace',
    flag: 'lease-namespace',
    env: ['POD_NAMESPACE'],
    kind: 'string',
    default: 'default',
    doc: "namespace of the leader-election Lease (the pod's own namespace in a cluster)",
  },
  {
    key: 'leaseDurationSeconds',
    flag: 'lease-duration-seconds',
    env: ['CELERIAC_OPERATOR_LEASE_DURATION_SECONDS'],
    kind: 'int',
    default: 15,
    min: 2,
    max: 600,
    doc: 'how long a Lease holds without renewal',
  },
  {
    key: 'renewDeadlineSeconds',
    flag: 'renew-deadline-seconds',
    env: ['CELERIAC_OPERATOR_RENEW_DEADLINE_SECONDS'],
    kind: 'int',
    default: 10,
    min: 1,
    max: 600,
    doc: 'a leader that cannot renew for this long steps down',
  },
  {
    key: 'retryPeriodSeconds',
    flag: 'retry-period-seconds',
    env: ['CELERIAC_OPERATOR_RETRY_PERIOD_SECONDS'],
    kind: 'int',
    default: 2,
    min: 1,
    max: 60,
    doc: 'interval between Lease acquire/renew attempts',
  },
  { key: 'identity', flag: 'identity', env: ['POD_NAME'], kind: 'string', default: undefined, doc: 'leader-election identity (default: hostname_pid)' },
  {
    key: 'metricsPort',
    flag: 'metrics-port',
    env: ['CELERIAC_OPERATOR_METRICS_PORT'],
    kind: 'int',
    default: 8080,
    min: 0,
    max: 65535,
    doc: 'port of /metrics, /healthz and /readyz (0 = any free port)',
  },
  {
    key: 'metricsHost',
    flag: 'metrics-host',
    env: ['CELERIAC_OPERATOR_METRICS_HOST'],
    kind: 'string',
    default: '0.0.0.0',
    doc: 'address the metrics/health server listens on',
  },
  {
    key: 'workers',
    flag: 'workers',
    env: ['CELERIAC_OPERATOR_WORKERS'],
    kind: 'int',
    default: 2,
    min: 1,
    max: 64,
    doc: 'concurrent reconciles per controller',
  },
  {
    key: 'resyncSeconds',
    flag: 'resync-seconds',
    env: ['CELERIAC_OPERATOR_RESYNC_SECONDS'],
    kind: 'int',
    default: 300,
    min: 5,
    max: 86400,
    doc: 'every object is reconciled at least this often',
  },
  {
    key: 'brokerCheckTimeoutMs',
    flag: 'broker-check-timeout-ms',
    env: ['CELERIAC_OPERATOR_BROKER_CHECK_TIMEOUT_MS'],
    kind: 'int',
    default: 5000,
    min: 100,
    max: 120000,
    doc: 'timeout of a TaskQueue broker check',
  },
  {
    key: 'logLevel',
    flag: 'log-level',
    env: ['CELERIAC_OPERATOR_LOG_LEVEL', 'CELERIAC_LOG_LEVEL'],
    kind: 'level',
    default: 'info',
    doc: 'trace, debug, info, warn, error or fatal',
  },
] as const satisfies readonly Entry[];

export interface OperatorConfig {
  readonly kubeconfig?: string;
  readonly namespace?: string;
  readonly leaderElect: boolean;
  readonly leaseNamespace: string;
  readonly leaseDurationSeconds: number;
  readonly renewDeadlineSeconds: number;
  readonly retryPeriodSeconds: number;
  readonly identity?: string;
  readonly metricsPort: number;
  readonly metricsHost: string;
  readonly workers: number;
  readonly resyncSeconds: number;
  readonly brokerCheckTimeoutMs: number;
  readonly logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
}

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

function parse(e: Entry, raw: string | boolean, source: string, problems: string[]): unknown {
  if (typeof raw === 'boolean') return raw;
  switch (e.kind) {
    case 'string':
      return raw;
    case 'bool': {
      const v = raw.trim().toLowerCase();
      if (['1', 'true', 'yes', 'on'].includes(v)) return true;
      if (['0', 'false', 'no', 'off', ''].includes(v)) return false;
      problems.push(`${source}: expected true or false, got '${raw}'`);
      return undefined;
    }
    case 'int': {
      const n = Number(raw);
      if (!/^-?\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || (e.min !== undefined && n < e.min) || (e.max !== undefined && n > e.max)) {
        problems.push(`${source}: expected an integer${e.min !== undefined ? ` from ${e.min}` : ''}${e.max !== undefined ? ` to ${e.max}` : ''}, got '${raw}'`);
        return undefined;
      }
      return n;
    }
    case 'level':
      if (!LEVELS.includes(raw)) {
        problems.push(`${source}: expected one of ${LEVELS.join(', ')}, got '${raw}'`);
        return undefined;
      }
      return raw;
  }
}

/**
 * Builds the Config from parsed flags (commander's camelCased options, strings or booleans) and
 * the environment. Throws ConfigError with every problem found.
 */
export function loadConfig(flags: Record<string, string | boolean | undefined> = {}, env: NodeJS.ProcessEnv = process.env): OperatorConfig {
  const problems: string[] = [];
  const out: Record<string, unknown> = {};
  for (const e of CONFIG_TABLE as readonly Entry[]) {
    const flagValue = e.flag ? flags[camel(e.flag)] : undefined;
    let value: unknown = e.default;
    if (flagValue !== undefined) value = parse(e, flagValue, `--${e.flag}`, problems);
    else {
      const envName = e.env.find((n) => env[n] !== undefined && env[n] !== '');
      if (envName) value = parse(e, env[envName] as string, envName, problems);
    }
    if (value !== undefined) out[e.key] = value;
  }
  const c = out as unknown as OperatorConfig;
  if (problems.length === 0 && c.renewDeadlineSeconds >= c.leaseDurationSeconds) {
    problems.push(`renew deadline (${c.renewDeadlineSeconds}s) must be shorter than the lease duration (${c.leaseDurationSeconds}s)`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(c);
}

export function camel(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, ch: string) => ch.toUpperCase());
}

/** One line per setting for --help and the README: flag, env, default, doc. */
export function configHelp(): string {
  return (CONFIG_TABLE as readonly Entry[])
    .map(
      (e) =>
        `  ${e.flag ? `--${e.flag}` : '(env only)'}  [env ${e.env.join(', ')}${e.default !== undefined ? `; default ${String(e.default)}` : ''}]\n      ${e.doc}`,
    )
    .join('\n');
}

/** The settings as a Markdown table (operator/README.md carries it; a unit test keeps them equal). */
export function configMarkdown(): string {
  const rows = (CONFIG_TABLE as readonly Entry[]).map(
    (e) =>
      `| \`${e.flag ? `--${e.flag}` : ''}\` | ${e.env.map((n) => `\`${n}\``).join(', ')} | ${e.default === undefined ? '' : `\`${String(e.default)}\``} | ${e.doc} |`,
  );
  return ['| flag | env | default | meaning |', '|---|---|---|---|', ...rows].join('\n');
}
