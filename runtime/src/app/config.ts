/**
 * The runtime's one configuration table (as Celery's app/defaults.py): each key with its env
 * vars, CLI flag, type, default and a one-line doc. Parsing, validation, `--help` and the README
 * table all come from it. Precedence: flag > env > createApp options > default.
 */
import { hostname } from 'node:os';
import { ConfigError } from '../errors.js';
import { COMPRESSION_NAMES, type CompressionName } from '../protocol/compression.js';
import { SERIALIZER_NAMES, TASK_SERIALIZER_NAMES, type TaskSerializerName } from '../protocol/serializers.js';
import { SIGNATURE_FORMATS, type SignatureFormat } from '../protocol/signing.js';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Pool names: celeriac's, and Celery's with the closest meaning (solo = event-loop, prefork = processes). */
export const POOL_NAMES = ['event-loop', 'threads', 'processes', 'solo', 'prefork'] as const;
export type PoolName = (typeof POOL_NAMES)[number];

/** The validated, frozen configuration of an app and its worker. */
export interface Config {
  readonly name: string;
  readonly brokerUrl: string;
  readonly resultBackend: string;
  readonly defaultQueue: string;
  readonly taskSerializer: TaskSerializerName;
  readonly acceptContent: readonly string[];
  readonly taskCompression: CompressionName | null;
  readonly securityKey: string | null;
  readonly securityKeyPassword: string | null;
  readonly securityCertificate: string | null;
  readonly securityCertStore: string | null;
  readonly securityDigest: string;
  readonly securityFormat: SignatureFormat;
  readonly jsonDateTags: boolean;
  readonly resultExpiresMs: number | null;
  readonly maxMessageBytes: number;
  readonly maxNestingDepth: number;
  readonly resultExtended: boolean;
  readonly resultChordOrdered: boolean;
  readonly acksLate: boolean;
  readonly trackStarted: boolean;
  readonly queues: readonly string[];
  readonly concurrency: number;
  readonly pool: PoolName;
  readonly maxTasksPerChild: number | null;
  readonly maxMemoryPerChildKib: number | null;
  /** `MAX,MIN`, as Celery's --autoscale; null = a fixed pool of `concurrency`. */
  readonly autoscale: string | null;
  readonly watch: boolean;
  readonly prefetchMultiplier: number;
  readonly hostname: string;
  readonly metricsPort: number | null;
  readonly logLevel: LogLevel;
  readonly logFormat: 'auto' | 'json' | 'pretty';
  readonly logStream: 'stdout' | 'stderr';
  readonly shutdownTimeoutMs: number;
  readonly stateDir: string | null;
  readonly tracing: boolean;
  readonly eventLoopBlockedMs: number | null;
  readonly eventLoopBlockedExact: boolean;
  readonly workerSendTaskEvents: boolean;
  readonly taskSendSentEvent: boolean;
  readonly workerHeartbeatIntervalMs: number;
}

/** How a config value is parsed and checked (the `kind` of a ConfigKey). */
export type ConfigValueKind =
  | { type: 'string'; pattern?: RegExp; expected?: string; nullable?: boolean }
  | { type: 'int'; min: number; max?: number; nullable?: boolean }
  | { type: 'bool' }
  | { type: 'enum'; values: readonly string[]; nullable?: boolean }
  | { type: 'list'; values?: readonly string[] };

export interface ConfigKey {
  readonly key: keyof Config;
  /** Env vars, first found wins (celeriac's, then Celery's fallback). */
  readonly env: readonly string[];
  /** Long CLI flag (without --), when the CLI offers one. */
  readonly flag?: string;
  readonly kind: ConfigValueKind;
  /** Default, or a function of the other values (derived defaults). */
  readonly default: string | number | boolean | null | readonly string[] | ((c: Partial<Record<keyof Config, unknown>>) => unknown);
  readonly doc: string;
}

const defaultBackendFor = (broker: string): string => {
  if (broker.startsWith('memory:')) return broker;
  if (broker.startsWith('file:')) return broker;
  if (broker.startsWith('redis:') || broker.startsWith('rediss:')) return broker;
  if (broker.startsWith('amqp:') || broker.startsWith('amqps:')) return 'rpc://';
  return 'memory://';
};

export const CONFIG_KEYS: readonly ConfigKey[] = [
  { key: 'name', env: ['CELERIAC_APP_NAME'], kind: { type: 'string' }, default: 'celeriac', doc: 'App name, used in logs.' },
  {
    key: 'brokerUrl',
    env: ['CELERIAC_BROKER_URL', 'CELERY_BROKER_URL'],
    flag: 'broker',
    kind: { type: 'string' },
    default: 'file://',
    doc: 'Broker URL: file:// (embedded, default), memory://, redis://, rediss://, amqp://, amqps://.',
  },
  {
    key: 'resultBackend',
    env: ['CELERIAC_RESULT_BACKEND', 'CELERY_RESULT_BACKEND'],
    flag: 'result-backend',
    kind: { type: 'string' },
    default: (c) => defaultBackendFor(String(c.brokerUrl)),
    doc: 'Result backend URL: file://, memory://, redis://, rpc://. Default: follows the broker (rpc:// for AMQP).',
  },
  {
    key: 'defaultQueue',
    env: ['CELERIAC_DEFAULT_QUEUE'],
    kind: { type: 'string' },
    default: 'celery',
    doc: "Queue for tasks with no route (Celery's task_default_queue).",
  },
  {
    key: 'taskSerializer',
    env: ['CELERIAC_TASK_SERIALIZER'],
    kind: { type: 'enum', values: TASK_SERIALIZER_NAMES },
    default: 'json',
    doc: "Serializer of sent tasks; auth signs them (Celery's auth serializer, json inside; needs the security keys).",
  },
  {
    key: 'acceptContent',
    env: ['CELERIAC_ACCEPT_CONTENT'],
    kind: { type: 'list', values: [...SERIALIZER_NAMES, 'auth', 'application/json', 'application/x-msgpack', 'application/x-yaml', 'application/data'] },
    default: ['json'],
    doc: 'Serializers the worker accepts (comma list). Pickle is never accepted. auth: only signed messages, verified against securityCertStore.',
  },
  {
    key: 'jsonDateTags',
    env: ['CELERIAC_JSON_DATE_TAGS'],
    kind: { type: 'bool' },
    default: false,
    doc: "Write a Date in JSON task bodies and results as kombu 5.3+'s datetime tag, so Python (Celery 5.3+) gets a datetime; off: ISO text, a str to every Celery (5.2 reads a tag as a dict).",
  },
  {
    key: 'securityKey',
    env: ['CELERIAC_SECURITY_KEY'],
    kind: { type: 'string', nullable: true },
    default: null,
    doc: "Path of the PEM RSA private key that signs sent tasks (Celery's security_key; e.g. a mounted Kubernetes Secret).",
  },
  {
    key: 'securityKeyPassword',
    env: ['CELERIAC_SECURITY_KEY_PASSWORD'],
    kind: { type: 'string', nullable: true },
    default: null,
    doc: 'Passphrase of securityKey, when it is encrypted.',
  },
  {
    key: 'securityCertificate',
    env: ['CELERIAC_SECURITY_CERTIFICATE'],
    kind: { type: 'string', nullable: true },
    default: null,
    doc: "Path of the PEM certificate of securityKey; its issuer and serial name the signer (Celery's security_certificate).",
  },
  {
    key: 'securityCertStore',
    env: ['CELERIAC_SECURITY_CERT_STORE'],
    kind: { type: 'string', nullable: true },
    default: null,
    doc: "Path of a PEM certificate, or a folder of them, trusted to sign received tasks (Celery's security_cert_store).",
  },
  {
    key: 'securityDigest',
    env: ['CELERIAC_SECURITY_DIGEST'],
    kind: { type: 'string' },
    default: 'sha256',
    doc: "Digest of signatures (Celery's security_digest).",
  },
  {
    key: 'securityFormat',
    env: ['CELERIAC_SECURITY_FORMAT'],
    kind: { type: 'enum', values: SIGNATURE_FORMATS },
    default: 'celery-5.5',
    doc: 'Packing of signed tasks sent: celery-5.5 (Celery 5.5+) or celery-5.2 (5.2-5.4); the two cannot read each other. Both are read.',
  },
  {
    key: 'taskCompression',
    env: ['CELERIAC_TASK_COMPRESSION'],
    kind: { type: 'enum', values: COMPRESSION_NAMES, nullable: true },
    default: null,
    doc: 'Compression of sent task bodies: zlib, gzip (both zlib streams, as kombu) or brotli.',
  },
  {
    key: 'maxMessageBytes',
    env: ['CELERIAC_MAX_MESSAGE_BYTES'],
    kind: { type: 'int', min: 1024 },
    default: 64 * 1024 * 1024,
    doc: 'Largest task body the worker decodes, before and after decompression; a larger one is stored as FAILURE (DecodeError) and dead-lettered.',
  },
  {
    key: 'maxNestingDepth',
    env: ['CELERIAC_MAX_NESTING_DEPTH'],
    kind: { type: 'int', min: 8, max: 10_000 },
    default: 1000,
    doc: "Deepest nesting of lists and objects the worker decodes (Python's own recursion limit is 1000); checked before any recursive work.",
  },
  {
    key: 'resultExpiresMs',
    env: ['CELERIAC_RESULT_EXPIRES_MS'],
    kind: { type: 'int', min: 0, nullable: true },
    default: 86_400_000,
    doc: 'How long results are kept; 0 or none keeps them forever.',
  },
  {
    key: 'resultChordOrdered',
    env: ['CELERIAC_RESULT_CHORD_ORDERED'],
    kind: { type: 'bool' },
    default: true,
    doc: "A chord body gets its header's results in header order (true), or in the order the header tasks finished (false); Celery's result_backend_transport_options result_chord_ordered. Every worker of a fleet must use the same setting.",
  },
  {
    key: 'resultExtended',
    env: ['CELERIAC_RESULT_EXTENDED'],
    kind: { type: 'bool' },
    default: false,
    doc: "Store name, args, kwargs, worker, retries and queue with every task state, as Celery's result_extended (Python's AsyncResult.name/args/kwargs read them); not over rpc://, as Celery.",
  },
  {
    key: 'acksLate',
    env: ['CELERIAC_ACKS_LATE'],
    kind: { type: 'bool' },
    default: false,
    doc: 'Default for tasks: acknowledge after the task ran instead of when it starts.',
  },
  { key: 'trackStarted', env: ['CELERIAC_TRACK_STARTED'], kind: { type: 'bool' }, default: false, doc: 'Default for tasks: store STARTED when a task starts.' },
  {
    key: 'queues',
    env: ['CELERIAC_QUEUES'],
    flag: 'queues',
    kind: { type: 'list' },
    default: (c) => [c.defaultQueue ?? 'celery'],
    doc: 'Queues the worker consumes (comma list).',
  },
  {
    key: 'concurrency',
    env: ['CELERIAC_CONCURRENCY'],
    flag: 'concurrency',
    kind: { type: 'int', min: 1, max: 10_000 },
    default: 10,
    doc: 'Tasks the worker runs at once: slots (event-loop, threads) or children (processes).',
  },
  {
    key: 'pool',
    env: ['CELERIAC_POOL'],
    flag: 'pool',
    kind: { type: 'enum', values: POOL_NAMES },
    default: 'event-loop',
    doc: 'Where tasks run: event-loop (async calls in the worker; Celery\'s solo), threads (worker_threads), processes (forked children; Celery\'s prefork). See README "Choosing a pool".',
  },
  {
    key: 'maxTasksPerChild',
    env: ['CELERIAC_MAX_TASKS_PER_CHILD'],
    flag: 'max-tasks-per-child',
    kind: { type: 'int', min: 1, nullable: true },
    default: null,
    doc: 'threads/processes: replace a runner after it ran this many tasks (after the task, never during it).',
  },
  {
    key: 'maxMemoryPerChildKib',
    env: ['CELERIAC_MAX_MEMORY_PER_CHILD_KIB'],
    flag: 'max-memory-per-child',
    kind: { type: 'int', min: 1, nullable: true },
    default: null,
    doc: "threads/processes: replace a runner whose memory passed this many KiB after a task (Celery's unit; a child's RSS, a thread's V8 heap).",
  },
  {
    key: 'autoscale',
    env: ['CELERIAC_AUTOSCALE'],
    flag: 'autoscale',
    kind: { type: 'string', pattern: /^\s*\d+\s*(,\s*\d+\s*)?$/, expected: 'MAX,MIN (e.g. 10,3) or none', nullable: true },
    default: null,
    doc: "Grow the pool up to MAX slots or children with load and shrink it to MIN when idle, as Celery's autoscaler; replaces concurrency.",
  },
  {
    key: 'watch',
    env: ['CELERIAC_WATCH'],
    flag: 'watch',
    kind: { type: 'bool' },
    default: false,
    doc: 'Development (CLI): restart the worker when a source file in the tasks module folder changes; running tasks finish first.',
  },
  {
    key: 'prefetchMultiplier',
    env: ['CELERIAC_PREFETCH_MULTIPLIER'],
    flag: 'prefetch-multiplier',
    kind: { type: 'int', min: 0, max: 1000 },
    default: 4,
    doc: 'Messages reserved per slot (prefetch = concurrency x this; 0 = unlimited).',
  },
  {
    key: 'hostname',
    env: ['CELERIAC_HOSTNAME'],
    flag: 'hostname',
    kind: { type: 'string' },
    default: () => `celeriac@${hostname()}`,
    doc: 'Worker node name, name@host.',
  },
  {
    key: 'metricsPort',
    env: ['CELERIAC_METRICS_PORT'],
    flag: 'metrics-port',
    kind: { type: 'int', min: 0, max: 65_535, nullable: true },
    default: 9540,
    doc: 'Port of /metrics, /healthz and /drain; 0 picks a free port; none disables. `celeriac worker` with no port asked for takes a free one when 9540 is taken (a second worker on the machine).',
  },
  { key: 'logLevel', env: ['CELERIAC_LOG_LEVEL'], flag: 'loglevel', kind: { type: 'enum', values: LOG_LEVELS }, default: 'info', doc: 'Log level.' },
  {
    key: 'logFormat',
    env: ['CELERIAC_LOG_FORMAT'],
    kind: { type: 'enum', values: ['auto', 'json', 'pretty'] },
    default: 'auto',
    doc: 'Log lines: json, pretty, or auto (pretty in a terminal, JSON otherwise).',
  },
  {
    key: 'logStream',
    env: ['CELERIAC_LOG_STREAM'],
    kind: { type: 'enum', values: ['stdout', 'stderr'] },
    default: 'stdout',
    doc: 'Where log lines go. `celeriac call`, `result` and `purge` log to stderr, so stdout is their answer alone.',
  },
  {
    key: 'shutdownTimeoutMs',
    env: ['CELERIAC_SHUTDOWN_TIMEOUT_MS'],
    kind: { type: 'int', min: 0 },
    default: 30_000,
    doc: 'Warm shutdown: how long running tasks may finish; then late-ack messages go back to the queue and early-acked tasks are stored FAILURE(WorkerLostError). The operator sets it from the pod grace period.',
  },
  {
    key: 'stateDir',
    env: ['CELERIAC_STATE_DIR'],
    kind: { type: 'string', nullable: true },
    default: null,
    doc: 'Folder where the worker notes the early-acked tasks it runs; a worker started on it after a kill (SIGKILL, out of memory) stores them FAILURE(WorkerLostError) (or publishes them again with republishOnWorkerLost) instead of leaving them PENDING. One worker per folder. The operator sets it in worker pods.',
  },
  {
    key: 'eventLoopBlockedMs',
    env: ['CELERIAC_EVENT_LOOP_BLOCKED_MS'],
    kind: { type: 'int', min: 10, nullable: true },
    default: 10_000,
    doc: 'Watchdog: an event loop blocked this long is logged with the task blocking it, and /healthz answers 503 while that task runs; none disables the watchdog.',
  },
  {
    key: 'eventLoopBlockedExact',
    env: ['CELERIAC_EVENT_LOOP_BLOCKED_EXACT'],
    kind: { type: 'bool' },
    default: false,
    doc: "Watchdog: follow each task through everything it awaits (an AsyncLocalStorage), so a block anywhere in its code is named exactly; on Node 20 that costs about a fifth of the worker's CPU per task. Off: a task is named only when its own function is on the blocked stack, else the tasks in flight are listed as candidates.",
  },
  {
    key: 'tracing',
    env: ['CELERIAC_TRACING'],
    kind: { type: 'bool' },
    default: false,
    doc: 'OpenTelemetry spans per sent task and per run, context in the `traceparent` header (needs @opentelemetry/api and a registered tracer provider).',
  },
  {
    key: 'workerSendTaskEvents',
    env: ['CELERIAC_WORKER_SEND_TASK_EVENTS'],
    flag: 'events',
    kind: { type: 'bool' },
    default: false,
    doc: "Worker sends task events (task-received, -started, -succeeded, ...) for monitors such as Flower and `celeriac events`; Celery's worker_send_task_events, `-E`. The enable_events control command turns them on too.",
  },
  {
    key: 'taskSendSentEvent',
    env: ['CELERIAC_TASK_SEND_SENT_EVENT'],
    kind: { type: 'bool' },
    default: false,
    doc: "Clients send a task-sent event for every task they send (Celery's task_send_sent_event).",
  },
  {
    key: 'workerHeartbeatIntervalMs',
    env: ['CELERIAC_WORKER_HEARTBEAT_INTERVAL_MS'],
    kind: { type: 'int', min: 100 },
    default: 2000,
    doc: 'How often the worker sends worker-heartbeat events; monitors show it offline after two missed ones.',
  },
];

const NONE = new Set(['', 'none', 'null', 'off']);

function parseValue(k: ConfigKey, raw: unknown, where: string, problems: string[]): unknown {
  const bad = (what: string) => {
    problems.push(`${where}: expected ${what}, got ${JSON.stringify(raw)}`);
    return undefined;
  };
  const kind = k.kind;
  switch (kind.type) {
    case 'string':
      if (kind.nullable && (raw === null || raw === undefined || (typeof raw === 'string' && NONE.has(raw.toLowerCase())))) return null;
      if (kind.pattern) return typeof raw === 'string' && kind.pattern.test(raw) ? raw : bad(kind.expected ?? String(kind.pattern));
      return typeof raw === 'string' && raw !== '' ? raw : bad('a non-empty string');
    case 'bool':
      if (typeof raw === 'boolean') return raw;
      if (typeof raw === 'string' && /^(1|true|yes|on)$/i.test(raw)) return true;
      if (typeof raw === 'string' && /^(0|false|no|off)$/i.test(raw)) return false;
      return bad('true or false');
    case 'int': {
      if (kind.nullable && (raw === null || (typeof raw === 'string' && NONE.has(raw.toLowerCase())))) return null;
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw) : NaN;
      const range = kind.max !== undefined ? `an integer from ${kind.min} to ${kind.max}` : `an integer >= ${kind.min}`;
      if (!Number.isInteger(n) || n < kind.min || (kind.max !== undefined && n > kind.max)) return bad(range + (kind.nullable ? ' or none' : ''));
      return n;
    }
    case 'enum': {
      if (kind.nullable && (raw === null || (typeof raw === 'string' && NONE.has(raw.toLowerCase())))) return null;
      return typeof raw === 'string' && kind.values.includes(raw) ? raw : bad(`one of ${kind.values.join(', ')}${kind.nullable ? ', none' : ''}`);
    }
    case 'list': {
      const items = Array.isArray(raw)
        ? raw.map(String)
        : typeof raw === 'string'
          ? raw
              .split(',')
              .map((s) => s.trim())
              .filter(Boolean)
          : null;
      if (!items || items.length === 0) return bad('a non-empty comma-separated list');
      const unknown = kind.values ? items.filter((i) => !kind.values!.includes(i)) : [];
      if (unknown.length > 0) {
        const pickle = unknown.some((u) => u === 'pickle' || u === 'application/x-python-serialize');
        return bad(`items from ${kind.values!.join(', ')}${pickle ? ' (pickle is never accepted: it runs arbitrary code)' : ''}`);
      }
      return items;
    }
  }
}

export interface ConfigSources {
  /** createApp options. */
  readonly options?: Partial<Record<keyof Config, unknown>>;
  /** Usually process.env. */
  readonly env?: Record<string, string | undefined>;
  /** Parsed CLI flags by config key. */
  readonly flags?: Partial<Record<keyof Config, unknown>>;
}

/** Builds the frozen Config, or throws one ConfigError that lists every problem. */
export function loadConfig(sources: ConfigSources = {}): Config {
  const env = sources.env ?? process.env;
  const problems: string[] = [];
  const values: Partial<Record<keyof Config, unknown>> = {};
  const known = new Set(CONFIG_KEYS.map((k) => k.key));
  for (const key of Object.keys(sources.options ?? {})) {
    if (!known.has(key as keyof Config)) problems.push(`createApp option "${key}" is unknown (known: ${[...known].join(', ')})`);
  }
  for (const k of CONFIG_KEYS) {
    const flag = sources.flags?.[k.key];
    const envName = k.env.find((e) => env[e] !== undefined && env[e] !== '');
    const opt = sources.options?.[k.key];
    if (flag !== undefined) values[k.key] = parseValue(k, flag, `--${k.flag ?? k.key}`, problems);
    else if (envName) values[k.key] = parseValue(k, env[envName], envName, problems);
    else if (opt !== undefined) values[k.key] = parseValue(k, opt, `createApp option "${k.key}"`, problems);
    else values[k.key] = typeof k.default === 'function' ? (k.default as (c: typeof values) => unknown)(values) : k.default;
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(values) as unknown as Config;
}

/** The README/--help table: key, env, flag, default, doc. */
export function configTable(): string {
  const rows = CONFIG_KEYS.map((k) => {
    const def = typeof k.default === 'function' ? '(derived)' : JSON.stringify(k.default);
    return `| \`${k.key}\` | ${k.env.map((e) => `\`${e}\``).join(', ')} | ${k.flag ? `\`--${k.flag}\`` : ''} | ${def} | ${k.doc} |`;
  });
  return ['| key | env | flag | default | meaning |', '|---|---|---|---|---|', ...rows].join('\n');
}
