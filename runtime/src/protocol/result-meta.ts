/**
 * Result meta as Celery stores it (spec §5): states, the meta object and exception dicts.
 */
import { pyRepr } from './py-repr.js';
import { isoUtc, type TaskRequest } from './task-message.js';

/** Celery's task states. Custom states are any other string. */
export const States = {
  PENDING: 'PENDING',
  RECEIVED: 'RECEIVED',
  STARTED: 'STARTED',
  SUCCESS: 'SUCCESS',
  FAILURE: 'FAILURE',
  RETRY: 'RETRY',
  REVOKED: 'REVOKED',
  REJECTED: 'REJECTED',
} as const;
export type TaskState = (typeof States)[keyof typeof States] | (string & {});

/** States after which a task never changes again. */
export const READY_STATES: ReadonlySet<string> = new Set(['SUCCESS', 'FAILURE', 'REVOKED']);

/** `{exc_type, exc_message, exc_module}` as Celery writes exceptions with json/msgpack/yaml. */
export interface ExceptionDict {
  exc_type: string;
  exc_message: unknown[] | string;
  exc_module: string | null;
}

/** The stored meta of one task (`celery-task-meta-<id>`). */
export interface TaskMeta {
  status: TaskState;
  result: unknown;
  traceback: string | null;
  children: unknown[] | null;
  date_done: string | null;
  group_id?: string;
  parent_id?: string;
  name?: string;
  args?: unknown[];
  kwargs?: Record<string, unknown>;
  worker?: string;
  retries?: number;
  queue?: string;
  task_id: string;
}

// Names of Python builtin exceptions: a JS error of that name maps to `builtins` so that Python
// rebuilds the real class; any other name gets the module "celeriac", which Python synthesizes.
const PY_BUILTINS = new Set([
  'Exception',
  'ValueError',
  'TypeError',
  'KeyError',
  'IndexError',
  'RuntimeError',
  'AttributeError',
  'ZeroDivisionError',
  'NotImplementedError',
  'LookupError',
  'ArithmeticError',
  'AssertionError',
  'OSError',
  'IOError',
  'TimeoutError',
  'OverflowError',
  'PermissionError',
  'FileNotFoundError',
  'ConnectionError',
  'MemoryError',
  'RecursionError',
  'UnicodeError',
  'NameError',
  'StopIteration',
]);

/** Encodes a thrown value as Celery's exception dict. */
export function exceptionToDict(err: unknown): ExceptionDict {
  if (err instanceof Error) {
    const excType = (err as { excType?: string }).excType ?? err.name ?? 'Error';
    const excModule = (err as { excModule?: string | null }).excModule ?? (PY_BUILTINS.has(excType) ? 'builtins' : 'celeriac');
    return { exc_type: excType, exc_message: [err.message], exc_module: excModule };
  }
  return { exc_type: 'Exception', exc_message: [String(err)], exc_module: 'builtins' };
}

/** The message text of an exception dict (`exc_message` is a list of constructor args). */
export function exceptionMessage(d: ExceptionDict): string {
  const m = d.exc_message;
  if (Array.isArray(m)) return m.length === 1 ? String(m[0]) : m.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join(', ');
  return String(m);
}

/** True when `v` looks like an exception dict. */
export function isExceptionDict(v: unknown): v is ExceptionDict {
  return v !== null && typeof v === 'object' && typeof (v as ExceptionDict).exc_type === 'string';
}

/** `ValueError('bad value', 7)`: the repr of the exception an exception dict stands for. */
export function exceptionRepr(e: unknown): string {
  if (!isExceptionDict(e)) return pyRepr(e);
  const args = Array.isArray(e.exc_message) ? e.exc_message : [e.exc_message];
  return `${e.exc_type}(${args.map((a) => pyRepr(a)).join(', ')})`;
}

/** A Python-style traceback text for a JS error (Python clients print `result.traceback`). */
export function tracebackOf(err: unknown): string | null {
  if (!(err instanceof Error)) return null;
  return `Traceback (most recent call last):\n${err.stack ?? `${err.name}: ${err.message}`}\n`;
}

/** The millisecond isoNow() last formatted, and its text. */
let nowMs = -1;
let nowIso = '';

/** isoUtc() of the current time; the stores of one millisecond (a batch of results) share one text. */
function isoNow(): string {
  const ms = Date.now();
  if (ms !== nowMs) {
    nowIso = isoUtc(new Date(ms));
    nowMs = ms;
  }
  return nowIso;
}

/** Builds a meta object in Celery's field order. */
export function buildMeta(
  taskId: string,
  status: TaskState,
  result: unknown,
  extra: { traceback?: string | null; children?: unknown[] | null; groupId?: string | null; parentId?: string | null; now?: Date } = {},
): TaskMeta {
  const traceback = extra.traceback ?? null;
  const children = extra.children ?? [];
  const date_done = READY_STATES.has(status) ? (extra.now ? isoUtc(extra.now) : isoNow()) : null;
  const { groupId, parentId } = extra;
  // Written in Celery's order, task_id last, in one literal per shape: adding and deleting keys
  // afterwards would turn the object into a slow dictionary (a store per task encodes one).
  if (groupId && parentId) return { status, result, traceback, children, date_done, group_id: groupId, parent_id: parentId, task_id: taskId };
  if (groupId) return { status, result, traceback, children, date_done, group_id: groupId, task_id: taskId };
  if (parentId) return { status, result, traceback, children, date_done, parent_id: parentId, task_id: taskId };
  return { status, result, traceback, children, date_done, task_id: taskId };
}

/**
 * The request fields Celery adds to every stored state with `result_extended` (backends/base.py
 * `_get_result_meta`), which Python's AsyncResult.name/args/kwargs/worker/retries/queue read.
 */
export interface ExtendedMeta {
  /** The task name (`task` header). */
  name: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  /** The worker's node name. */
  worker: string;
  retries: number;
  /** `delivery_info.routing_key`: the queue on the default exchange. */
  queue: string;
}

/** The extended fields of a request run by `worker`, consumed from `queue` (the routing key). */
export function extendedMetaOf(req: Pick<TaskRequest, 'name' | 'args' | 'kwargs' | 'retries'>, worker: string, queue: string): ExtendedMeta {
  return { name: req.name, args: req.args, kwargs: req.kwargs, worker, retries: req.retries, queue };
}

/** `meta` with the extended fields, in Celery's order: after parent_id, before task_id. */
export function withExtendedMeta(meta: TaskMeta, ext: ExtendedMeta): TaskMeta {
  const { task_id, ...rest } = meta;
  return { ...rest, name: ext.name, args: ext.args, kwargs: ext.kwargs, worker: ext.worker, retries: ext.retries, queue: ext.queue, task_id };
}

/** The REVOKED meta Celery stores: reason "revoked", "expired" or "terminated" (spec §5.3). */
export function revokedMeta(taskId: string, reason: string): TaskMeta {
  return buildMeta(taskId, States.REVOKED, { exc_type: 'TaskRevokedError', exc_message: [reason], exc_module: 'celery.exceptions' });
}
