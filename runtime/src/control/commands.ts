/**
 * The built-in remote-control commands a worker answers, with Celery's names, arguments and reply
 * shapes (Celery `worker/control.py`, spec §7.4), so that Python's `celery inspect`/`celery
 * control`, `app.control` and Flower read them. Commands an app adds with `app.controlCommand`
 * join (and may replace) these. Commands not here and not added reply Celery's unknown-method
 * error: `enable_events`, `disable_events`, `heartbeat` (events), `pool_restart`, `election`,
 * `memdump`, `memsample`, `objgraph`.
 */
import { arch, cpus, platform, release } from 'node:os';
import type { Logger } from 'pino';
import type { App } from '../app/app.js';
import type { ControlCommandSpec, ControlContext } from '../app/control.js';
import { parseRateLimit, type Task } from '../app/task.js';
import { redactUrl } from '../errors.js';
import type { Pool } from '../pools/pool.js';
import type { QueueInfo, RequestInfo, ScheduledInfo } from '../protocol/control.js';
import type { LamportClock } from '../protocol/lamport-clock.js';

/** What the built-in commands read and change in a running worker (its consumer, pool, lifecycle). */
export interface WorkerControl {
  readonly app: App;
  readonly hostname: string;
  readonly log: Logger;
  readonly pool: Pool;
  /** Set when the worker autoscales its pool (`--autoscale max,min`). */
  readonly autoscaler: {
    readonly max: number;
    readonly min: number;
    update(max: number | null, min: number | null): [number, number];
    info(): Record<string, number>;
  } | null;
  readonly clock: LamportClock;
  /** Epoch ms the worker started. */
  readonly startedAt: number;
  readonly consumer: {
    requests(safe?: boolean): { active: RequestInfo[]; reserved: RequestInfo[]; scheduled: ScheduledInfo[] };
    findRequests(ids: readonly string[]): Record<string, [string, RequestInfo]>;
    revoke(ids: readonly string[], terminate: boolean): string[];
    revokedIds(): string[];
    totalsByTask(): Record<string, number>;
    rateLimitOf(task: Task): string | null;
    setRateLimit(name: string, rateLimit: string | null): void;
    setTimeLimits(name: string, softMs: number | null, hardMs: number | null): void;
    consumedQueues(): readonly string[];
    setQueues(queues: readonly string[]): Promise<void>;
    activeQueues(): QueueInfo[];
    poolResized(): void;
  };
  /** Task events on and off (Celery's event dispatcher groups), and a heartbeat on demand. */
  readonly events: {
    enable(): string;
    disable(): string;
    heartbeat(): void;
  };
  /** Starts a warm shutdown (as SIGTERM); the reply is never sent (Celery's neither). */
  shutdown(reason: string): void;
}

/** A built-in command: a spec whose handler sees the whole worker. */
export interface BuiltinCommand extends Omit<ControlCommandSpec, 'handler'> {
  readonly handler: (w: WorkerControl, args: Record<string, unknown>) => unknown;
}

/** Python's repr() of an exception, the `error` text of a failed command (`ValueError('…')`). */
export function errorRepr(err: unknown): string {
  const e = err as { name?: string; message?: string };
  const msg = String(e?.message ?? err)
    .replace(/\\/g, '\\\\')
    .replace(/'/g, "\\'");
  return `${e?.name && e.name !== 'Error' ? e.name : 'Exception'}('${msg}')`;
}

/** Thrown by a handler to reply a Celery-style Python error (`{error: "ValueError('…')"}`). */
export class ControlCommandError extends Error {
  constructor(pythonType: string, message: string) {
    super(message);
    this.name = pythonType;
  }
}

const ok = (text: string) => ({ ok: text });
const nok = (text: string) => ({ error: text });

/** Python's repr of a set of strings: `{'a', 'b'}` (`set()` when empty). */
function pySet(ids: readonly string[]): string {
  return ids.length === 0 ? 'set()' : `{${ids.map((i) => `'${i}'`).join(', ')}}`;
}

/** Python's truth value of a JSON argument (Flower sends `terminate` as 1, not true). */
function pyTruthy(v: unknown): boolean {
  if (Array.isArray(v)) return v.length > 0;
  if (v !== null && typeof v === 'object') return Object.keys(v).length > 0;
  return Boolean(v);
}

function ids(v: unknown): string[] {
  return v === null || v === undefined ? [] : ([] as unknown[]).concat(v).map(String);
}

/** Celery's `maybe_list` of a time limit argument: seconds, null for none. */
function seconds(v: unknown): number | null {
  if (v === null || v === undefined || v === '') return null;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new ControlCommandError('ValueError', `could not convert string to float: '${String(v)}'`);
  return n;
}

/** Task names with their info items (Celery's `registered` format), sorted, without celery.*. */
function registered(w: WorkerControl, items: readonly string[]): string[] {
  const names = [...w.app.tasks.keys()].filter((n) => !n.startsWith('celery.')).sort();
  return names.map((name) => {
    const task = w.app.tasks.get(name)!;
    const fields: string[] = [];
    for (const item of items) {
      // Celery prints task attributes that are not None; exchange and routing_key are None by default.
      if (item === 'rate_limit') {
        const r = w.consumer.rateLimitOf(task);
        if (r) fields.push(`rate_limit=${r}`);
      } else if (item === 'time_limit' && task.options.timeLimit) fields.push(`time_limit=${task.options.timeLimit / 1000}`);
      else if (item === 'soft_time_limit' && task.options.softTimeLimit) fields.push(`soft_time_limit=${task.options.softTimeLimit / 1000}`);
      else if (item === 'queue' && task.options.queue) fields.push(`queue=${task.options.queue}`);
    }
    return fields.length > 0 ? `${name} [${fields.join(' ')}]` : name;
  });
}

function stats(w: WorkerControl): Record<string, unknown> {
  const c = w.app.config;
  const url = new URL(redactUrl(c.brokerUrl));
  const ru = process.resourceUsage();
  return {
    total: w.consumer.totalsByTask(),
    pid: process.pid,
    clock: String(w.clock.now),
    uptime: Math.floor((Date.now() - w.startedAt) / 1000),
    pool: {
      'max-concurrency': w.pool.size,
      processes: [process.pid],
      'max-tasks-per-child': 'N/A',
      'put-guarded-by-semaphore': false,
      timeouts: [0, 0],
      implementation: `celeriac:${w.pool.kind}`,
    },
    broker: {
      hostname: url.hostname || null,
      userid: url.username || null,
      virtual_host: url.pathname.replace(/^\//, '') || '/',
      port: url.port ? Number(url.port) : null,
      insist: false,
      ssl: url.protocol === 'rediss:' || url.protocol === 'amqps:',
      transport: url.protocol
        .replace(/:$/, '')
        .replace(/^rediss$/, 'redis')
        .replace(/^amqps?$/, 'amqp'),
      connect_timeout: 4,
      transport_options: {},
      login_method: null,
      uri_prefix: null,
      heartbeat: 120.0,
      failover_strategy: 'round-robin',
      alternates: [],
    },
    prefetch_count: c.prefetchMultiplier * (w.autoscaler?.max ?? w.pool.size),
    ...(w.autoscaler ? { autoscaler: w.autoscaler.info() } : {}),
    rusage: {
      utime: ru.userCPUTime / 1e6,
      stime: ru.systemCPUTime / 1e6,
      maxrss: ru.maxRSS,
      ixrss: ru.sharedMemorySize,
      idrss: ru.unsharedDataSize,
      isrss: ru.unsharedStackSize,
      minflt: ru.minorPageFault,
      majflt: ru.majorPageFault,
      nswap: ru.swappedOut,
      inblock: ru.fsRead,
      oublock: ru.fsWrite,
      msgsnd: ru.ipcSent,
      msgrcv: ru.ipcReceived,
      nsignals: ru.signalsCount,
      nvcsw: ru.voluntaryContextSwitches,
      nivcsw: ru.involuntaryContextSwitches,
    },
  };
}

/** The settings a worker runs with, by Celery's setting names (broker and backend URLs without passwords). */
function conf(w: WorkerControl): Record<string, unknown> {
  const c = w.app.config;
  return {
    broker_url: redactUrl(c.brokerUrl),
    result_backend: redactUrl(c.resultBackend),
    task_default_queue: c.defaultQueue,
    task_serializer: c.taskSerializer,
    accept_content: [...c.acceptContent],
    task_compression: c.taskCompression,
    result_expires: c.resultExpiresMs === null ? null : c.resultExpiresMs / 1000,
    result_extended: c.resultExtended,
    task_acks_late: c.acksLate,
    task_track_started: c.trackStarted,
    worker_concurrency: w.pool.size,
    worker_prefetch_multiplier: c.prefetchMultiplier,
  };
}

function report(w: WorkerControl): string {
  return [
    `software -> celeriac (Node.js ${process.version})`,
    `platform -> system:${platform()} arch:${arch()} kernel version:${release()} cpus:${cpus().length}`,
    `pool -> ${w.pool.kind} (${w.pool.size} slots)`,
    `broker -> ${redactUrl(w.app.config.brokerUrl)}`,
    `results -> ${redactUrl(w.app.config.resultBackend)}`,
    '',
    ...Object.entries(conf(w)).map(([k, v]) => `${k}: ${JSON.stringify(v)}`),
  ].join('\n');
}

/**
 * Switches the consumer to `queues` after the reply is sent (Celery's `call_soon`); a failure is
 * logged: the reply has promised the change already, as Celery's does.
 */
function changeQueues(w: WorkerControl, queues: readonly string[], what: string): void {
  w.log.info({ queues }, `remote control: ${what}`);
  void w.consumer.setQueues(queues).catch((err: unknown) => w.log.error({ err, queues }, `remote control: ${what} failed`));
}

function resize(w: WorkerControl, size: number): void {
  w.pool.resize(size);
  w.consumer.poolResized();
}

/** Celery's DEFAULT_TASK_INFO_ITEMS. */
const TASK_INFO_ITEMS = ['exchange', 'routing_key', 'rate_limit'];

/** The built-in commands by name (Celery's Panel). */
export const BUILTIN_COMMANDS: ReadonlyMap<string, BuiltinCommand> = new Map<string, BuiltinCommand>([
  ['ping', { type: 'inspect', help: 'Ping worker(s).', handler: () => ok('pong') }],
  ['stats', { type: 'inspect', help: 'Request worker statistics/information.', handler: (w) => stats(w) }],
  ['clock', { type: 'inspect', help: 'Get current logical clock value.', handler: (w) => ({ clock: w.clock.now }) }],
  ['report', { type: 'inspect', help: 'Information about the installation for bug reports.', handler: (w) => ok(report(w)) }],
  ['conf', { type: 'inspect', args: [['with_defaults', 'bool']], signature: '[include_defaults=False]', help: 'List configuration.', handler: (w) => conf(w) }],
  ['active_queues', { type: 'inspect', help: 'List the task queues a worker is currently consuming from.', handler: (w) => w.consumer.activeQueues() }],
  [
    'registered',
    {
      type: 'inspect',
      variadic: 'taskinfoitems',
      signature: '[attr1 [attr2 [... [attrN]]]]',
      help: 'List of registered tasks.',
      handler: (w, a) => registered(w, Array.isArray(a.taskinfoitems) && a.taskinfoitems.length > 0 ? a.taskinfoitems.map(String) : TASK_INFO_ITEMS),
    },
  ],
  ['active', { type: 'inspect', help: 'List of tasks currently being executed.', handler: (w, a) => w.consumer.requests(pyTruthy(a.safe)).active }],
  ['reserved', { type: 'inspect', help: 'List of currently reserved tasks, not including scheduled/active.', handler: (w) => w.consumer.requests().reserved }],
  ['scheduled', { type: 'inspect', help: 'List of currently scheduled ETA/countdown tasks.', handler: (w) => w.consumer.requests().scheduled }],
  ['revoked', { type: 'inspect', help: 'List of revoked task-ids.', handler: (w) => w.consumer.revokedIds() }],
  [
    'query_task',
    {
      type: 'inspect',
      variadic: 'ids',
      signature: '[id1 [id2 [... [idN]]]]',
      help: 'Query for task information by id.',
      handler: (w, a) => w.consumer.findRequests(ids(a.ids)),
    },
  ],
  [
    'hello',
    {
      type: 'inspect',
      args: [
        ['from_node', 'str'],
        ['revoked', 'json'],
      ],
      help: 'Request mingle sync-data.',
      handler: (w, a) => {
        if (a.from_node === w.hostname) return null;
        // Celery's LimitedSet data: {id: [timestamp, id]}. The timestamp must stay a float for
        // Python's LimitedSet.update, which an integral JSON number would not be.
        const revoked = a.revoked && typeof a.revoked === 'object' ? Object.keys(a.revoked) : [];
        if (revoked.length > 0) w.consumer.revoke(revoked, false);
        const stamp = Date.now() / 1000 + 0.000001;
        return { revoked: Object.fromEntries(w.consumer.revokedIds().map((id) => [id, [stamp, id]])), clock: w.clock.forward() };
      },
    },
  ],
  [
    'revoke',
    {
      type: 'control',
      variadic: 'task_id',
      signature: '[id1 [id2 [... [idN]]]]',
      help: 'Revoke task by task id (or list of ids).',
      handler: (w, a) => {
        const list = [...new Set(ids(a.task_id))];
        const terminate = pyTruthy(a.terminate);
        const terminated = w.consumer.revoke(list, terminate);
        if (terminate) return ok(terminated.length === 0 ? 'terminate: tasks unknown' : `terminate: ${terminated.join(', ')}`);
        return ok(`tasks ${pySet(list)} flagged as revoked`);
      },
    },
  ],
  [
    'terminate',
    {
      type: 'control',
      args: [
        ['signal', 'str'],
        ['task_id', 'str'],
      ],
      signature: '<signal> [id1 [id2 [... [idN]]]]',
      help: 'Terminate task by task id (or list of ids).',
      handler: (w, a) => {
        const terminated = w.consumer.revoke([...new Set(ids(a.task_id))], true);
        return ok(terminated.length === 0 ? 'terminate: tasks unknown' : `terminate: ${terminated.join(', ')}`);
      },
    },
  ],
  [
    'rate_limit',
    {
      type: 'control',
      args: [
        ['task_name', 'str'],
        ['rate_limit', 'str'],
      ],
      signature: '<task_name> <rate_limit (e.g., 5/s | 5/m | 5/h)>',
      help: 'Tell worker(s) to modify the rate limit for a task by type.',
      handler: (w, a) => {
        const raw = a.rate_limit;
        const text = raw === null || raw === undefined || raw === '' || raw === 0 || raw === '0' ? null : String(raw);
        if (text !== null) {
          try {
            parseRateLimit(text);
          } catch {
            // Celery's rate(): float() of the part before "/", then a lookup of the unit.
            const [ops, unit = 's'] = text.split('/');
            const exc = Number.isNaN(Number(ops)) ? `ValueError("could not convert string to float: '${ops}'")` : `KeyError('${unit}')`;
            return nok(`Invalid rate limit string: ${exc}`);
          }
        }
        const name = String(a.task_name);
        if (!w.app.tasks.has(name)) {
          w.log.error({ taskName: name }, 'rate limit attempt for unknown task');
          return nok('unknown task');
        }
        w.consumer.setRateLimit(name, text);
        w.log.info({ taskName: name, rateLimit: text }, text ? 'new rate limit' : 'rate limit disabled');
        return ok(text ? 'new rate limit set successfully' : 'rate limit disabled successfully');
      },
    },
  ],
  [
    'time_limit',
    {
      type: 'control',
      args: [
        ['task_name', 'str'],
        ['soft', 'float'],
        ['hard', 'float'],
      ],
      signature: '<task_name> <soft_secs> [hard_secs]',
      help: 'Tell worker(s) to modify the time limit for task by type.',
      handler: (w, a) => {
        const name = String(a.task_name);
        if (!w.app.tasks.has(name)) {
          w.log.error({ taskName: name }, 'time limit attempt for unknown task');
          return nok('unknown task');
        }
        const soft = seconds(a.soft);
        const hard = seconds(a.hard);
        w.consumer.setTimeLimits(name, soft === null ? null : soft * 1000, hard === null ? null : hard * 1000);
        w.log.info({ taskName: name, soft, hard }, 'new time limits');
        return ok('time limits set successfully');
      },
    },
  ],
  [
    'add_consumer',
    {
      type: 'control',
      args: [
        ['queue', 'str'],
        ['exchange', 'str'],
        ['exchange_type', 'str'],
        ['routing_key', 'str'],
      ],
      signature: '<queue> [exchange [type [routing_key]]]',
      help: 'Tell worker(s) to consume from task queue by name.',
      handler: (w, a) => {
        const queue = String(a.queue ?? '');
        if (!queue) throw new ControlCommandError('TypeError', "add_consumer() missing 1 required positional argument: 'queue'");
        // celeriac consumes Celery's default layout only: exchange = routing key = queue, direct.
        const custom = [a.exchange, a.routing_key].some((v) => v !== null && v !== undefined && v !== queue);
        if (custom || (a.exchange_type ?? 'direct') !== 'direct') {
          return nok(`celeriac consumes queue "${queue}" with Celery's default binding only (direct exchange "${queue}", routing key "${queue}")`);
        }
        const queues = w.consumer.consumedQueues();
        if (!queues.includes(queue)) changeQueues(w, [...queues, queue], `consuming from ${queue} too`);
        return ok(`add consumer ${queue}`);
      },
    },
  ],
  [
    'cancel_consumer',
    {
      type: 'control',
      args: [['queue', 'str']],
      signature: '<queue>',
      help: 'Tell worker(s) to stop consuming from task queue by name.',
      handler: (w, a) => {
        const queue = String(a.queue ?? '');
        const queues = w.consumer.consumedQueues();
        if (queues.includes(queue))
          changeQueues(
            w,
            queues.filter((q) => q !== queue),
            `no longer consuming from ${queue}`,
          );
        return ok(`no longer consuming from ${queue}`);
      },
    },
  ],
  [
    'pool_grow',
    {
      type: 'control',
      args: [['n', 'int']],
      signature: '[N=1]',
      help: 'Grow pool by n processes/threads.',
      handler: (w, a) => {
        if (w.autoscaler) return nok('pool_grow is not supported with autoscale. Adjust autoscale range instead.');
        resize(w, w.pool.size + count(a.n));
        return ok('pool will grow');
      },
    },
  ],
  [
    'pool_shrink',
    {
      type: 'control',
      args: [['n', 'int']],
      signature: '[N=1]',
      help: 'Shrink pool by n processes/threads.',
      handler: (w, a) => {
        if (w.autoscaler) return nok('pool_shrink is not supported with autoscale. Adjust autoscale range instead.');
        const size = w.pool.size - count(a.n);
        if (size < 1) throw new ControlCommandError('ValueError', "Can't shrink pool below one slot");
        resize(w, size);
        return ok('pool will shrink');
      },
    },
  ],
  [
    'autoscale',
    {
      type: 'control',
      args: [
        ['max', 'int'],
        ['min', 'int'],
      ],
      signature: '[max [min]]',
      help: 'Modify autoscale settings.',
      handler: (w, a) => {
        if (!w.autoscaler) throw new ControlCommandError('ValueError', 'Autoscale not enabled');
        const bound = (v: unknown) => (v === null || v === undefined ? null : Math.max(1, count(v)));
        const [max, min] = w.autoscaler.update(bound(a.max), bound(a.min));
        return ok(`autoscale now max=${max} min=${min}`);
      },
    },
  ],
  // Flower sends enable_events every 5 s and heartbeat when it connects.
  ['enable_events', { type: 'control', help: 'Tell worker(s) to send task-related events.', handler: (w) => ok(w.events.enable()) }],
  ['disable_events', { type: 'control', help: 'Tell worker(s) to stop sending task-related events.', handler: (w) => ok(w.events.disable()) }],
  [
    'heartbeat',
    {
      type: 'control',
      help: 'Tell worker(s) to send event heartbeat immediately.',
      handler: (w) => {
        w.events.heartbeat();
        return null;
      },
    },
  ],
  [
    'shutdown',
    {
      type: 'control',
      args: [['msg', 'str']],
      signature: '[msg]',
      help: 'Shutdown worker(s).',
      handler: (w, a) => {
        w.shutdown(typeof a.msg === 'string' ? a.msg : 'Got shutdown from remote');
        return NO_REPLY;
      },
    },
  ],
]);

/** Returned by a handler that must not be answered (shutdown). */
export const NO_REPLY: unique symbol = Symbol('no reply');

function count(v: unknown): number {
  const n = v === null || v === undefined ? 1 : Number(v);
  if (!Number.isInteger(n) || n < 0) throw new ControlCommandError('ValueError', `invalid literal for int() with base 10: '${String(v)}'`);
  return n;
}

/** A command by name: the app's own first (they may replace a built-in), then the built-ins. */
export function findCommand(
  app: App,
  name: string,
): { spec: Omit<ControlCommandSpec, 'handler'>; run: (w: WorkerControl, args: Record<string, unknown>) => unknown } | null {
  const own = app.controlCommands.get(name);
  if (own) {
    return { spec: own, run: (w, args) => own.handler({ app: w.app, hostname: w.hostname, log: w.log } satisfies ControlContext, args) };
  }
  const builtin = BUILTIN_COMMANDS.get(name);
  return builtin ? { spec: builtin, run: builtin.handler } : null;
}

/** Every command's spec, built-ins and the app's, by name (for the CLI's help). */
export function allCommands(app: App): Map<string, Omit<ControlCommandSpec, 'handler'>> {
  const out = new Map<string, Omit<ControlCommandSpec, 'handler'>>(BUILTIN_COMMANDS);
  for (const [n, s] of app.controlCommands) out.set(n, s);
  return out;
}
