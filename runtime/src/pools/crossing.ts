/**
 * What crosses between the worker and a runner (thread or child process), and how. Values follow
 * the wire's rules, not structured clone's: arguments travel as the message body's own bytes
 * (decoded by the same serializer in the runner), and a result, a replacement signature or an
 * error field is encoded with the request's serializer, so a Map, a class instance or a `toJSON`
 * behaves in a runner exactly as it would on its way to the broker or the result store. Errors
 * keep name, message, stack and their own fields (excType, excModule, code...), which is what
 * exceptionToDict and tracebackOf read.
 */
import { Retry } from '../errors.js';
import type { DeliveryInfo } from '../brokers/broker.js';
import { serializerByName, serializerForContentType, type Serializer } from '../protocol/serializers.js';
import type { SignatureDict, TaskRequest } from '../protocol/task-message.js';
import type { ChildCall } from '../app/task.js';
import type { CanvasOp, TaskOutcome } from './trace.js';

/**
 * The request without its values; `payload` carries `[args, kwargs]` as bytes. The canvas
 * (`embed`) and raw headers stay with the worker, which applies them: a task's context shows neither.
 */
export interface CrossedRequest {
  readonly req: Omit<TaskRequest, 'args' | 'kwargs' | 'embed' | 'headers'>;
  readonly payload: Uint8Array;
  readonly serializer: string;
}

/** An error as it crosses: rebuilt on the other side as an Error with the same fields. */
export type CrossedError =
  | { readonly kind: 'error'; readonly name: string; readonly message: string; readonly stack: string | undefined; readonly fields: Uint8Array }
  /** A thrown non-Error: only its text survives, as exceptionToDict reads only that. */
  | { readonly kind: 'value'; readonly text: string };

export type CrossedOutcome =
  | { readonly state: 'SUCCESS'; readonly value: Uint8Array; readonly runtimeMs: number }
  | { readonly state: 'FAILURE'; readonly error: CrossedError; readonly runtimeMs: number }
  | {
      readonly state: 'RETRY';
      readonly countdownMs: number;
      readonly eta: Date | null;
      readonly exc: CrossedError | null;
      readonly error: CrossedError;
      readonly runtimeMs: number;
    }
  | { readonly state: 'REJECTED'; readonly requeue: boolean; readonly reason: string; readonly runtimeMs: number }
  | { readonly state: 'IGNORED'; readonly runtimeMs: number }
  | { readonly state: 'REPLACED'; readonly signature: Uint8Array; readonly runtimeMs: number }
  | { readonly state: 'REVOKED'; readonly reason: string; readonly runtimeMs: number };

/** Worker -> runner. */
export type ToRunner =
  /** `measureMemory`: report memory after each task (maxMemoryPerChildKib is set; reading RSS costs ~15 us). */
  | { readonly type: 'init'; readonly tasksModule: string; readonly config: Record<string, unknown>; readonly measureMemory: boolean }
  | { readonly type: 'run'; readonly job: number; readonly request: CrossedRequest; readonly info: DeliveryInfo; readonly hostname: string }
  /** The answer to a canvas call: Celery's result tuple of what was applied (see resultTuple), or the error. */
  | { readonly type: 'canvas-done'; readonly call: number; readonly tuple: unknown[] }
  | { readonly type: 'canvas-failed'; readonly call: number; readonly error: CrossedError };

/** Runner -> worker. */
export type FromRunner =
  | { readonly type: 'ready' }
  /** The runner could not start (its tasks module failed to import). */
  | { readonly type: 'fatal'; readonly error: CrossedError }
  /** `memoryKib`: the runner's memory after the task, for maxMemoryPerChildKib (0 when not measured). */
  | { readonly type: 'done'; readonly job: number; readonly outcome: CrossedOutcome; readonly memoryKib: number }
  /**
   * The running task calls this.addToChord() or this.applyChild(): the worker does it (it keeps
   * the task's chord and children) and answers `call`. The signature and call cross by structured
   * clone; the worker's send encodes them by the wire's rules, as for a task on its own loop.
   */
  | {
      readonly type: 'canvas';
      readonly call: number;
      readonly op: CanvasOp;
      readonly sig: SignatureDict;
      readonly childCall?: ChildCall;
    };

function serializerOf(name: string): Serializer {
  return serializerByName(name);
}

/**
 * Encodes a value to cross. json writes a Date as kombu's datetime tag, which it reads back as a
 * Date: a datetime argument (what Celery 5.3+ sends) reaches the task as a Date, and a Date result
 * reaches the store as one, as on the event-loop pool; ISO text would arrive as a string.
 */
const dumps = (s: Serializer, value: unknown): Buffer => s.dumps(value, { dateTags: true });

/** Bytes as a Buffer without a copy (a thread receives a Uint8Array). */
const asBuffer = (b: Uint8Array): Buffer => (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/** The request as it crosses to a runner; its values in the serializer of the message they came in. */
export function crossRequest(req: TaskRequest, contentType: string): CrossedRequest {
  const serializer = serializerForContentType(contentType) ?? 'json';
  const { args, kwargs, embed: _embed, headers: _headers, ...rest } = req;
  return { req: rest, payload: dumps(serializerOf(serializer), [args, kwargs]), serializer };
}

const NO_EMBED = Object.freeze({ callbacks: null, errbacks: null, chain: null, chord: null });

export function uncrossRequest(c: CrossedRequest): TaskRequest {
  const [args, kwargs] = serializerOf(c.serializer).loads(asBuffer(c.payload)) as [unknown[], Record<string, unknown>];
  return { ...c.req, args, kwargs, embed: NO_EMBED, headers: {} };
}

export function crossError(err: unknown, serializer: string): CrossedError {
  if (!(err instanceof Error)) return { kind: 'value', text: String(err) };
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(err)) if (typeof v !== 'function') fields[k] = v;
  let bytes: Uint8Array;
  try {
    bytes = dumps(serializerOf(serializer), fields);
  } catch {
    // A field the wire cannot carry (a cycle, a BigInt in msgpack): keep the others, name the bad one.
    const kept: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(fields)) {
      try {
        dumps(serializerOf(serializer), v);
        kept[k] = v;
      } catch (err) {
        kept[k] = `<not serializable: ${(err as Error).message}>`;
      }
    }
    bytes = dumps(serializerOf(serializer), kept);
  }
  return { kind: 'error', name: err.name, message: err.message, stack: err.stack, fields: bytes };
}

export function uncrossError(c: CrossedError, serializer: string): unknown {
  if (c.kind === 'value') return c.text;
  const err = new Error(c.message);
  Object.assign(err, serializerOf(serializer).loads(asBuffer(c.fields)));
  // name may be an own field (CeleriacError sets it) or the prototype's (TypeError): set it last.
  Object.defineProperty(err, 'name', { value: c.name, enumerable: false, writable: true, configurable: true });
  err.stack = c.stack;
  return err;
}

export function crossOutcome(o: TaskOutcome, serializer: string): CrossedOutcome {
  const s = serializerOf(serializer);
  switch (o.state) {
    case 'SUCCESS':
      return { state: 'SUCCESS', value: dumps(s, o.value), runtimeMs: o.runtimeMs };
    case 'FAILURE':
      return { state: 'FAILURE', error: crossError(o.error, serializer), runtimeMs: o.runtimeMs };
    case 'RETRY': {
      const r = o.retry;
      const exc = r.exc === null || r.exc === undefined ? null : crossError(r.exc, serializer);
      return { state: 'RETRY', countdownMs: r.countdownMs, eta: r.eta, exc, error: crossError(r, serializer), runtimeMs: o.runtimeMs };
    }
    case 'REPLACED':
      return { state: 'REPLACED', signature: dumps(s, o.signature), runtimeMs: o.runtimeMs };
    default:
      return o;
  }
}

export function uncrossOutcome(c: CrossedOutcome, serializer: string): TaskOutcome {
  const s = serializerOf(serializer);
  switch (c.state) {
    case 'SUCCESS':
      return { state: 'SUCCESS', value: s.loads(asBuffer(c.value)), runtimeMs: c.runtimeMs };
    case 'FAILURE':
      return { state: 'FAILURE', error: uncrossError(c.error, serializer), runtimeMs: c.runtimeMs };
    case 'RETRY': {
      const retry = new Retry(c.countdownMs, c.exc === null ? null : uncrossError(c.exc, serializer), c.eta);
      if (c.error.kind === 'error') retry.stack = c.error.stack;
      return { state: 'RETRY', retry, runtimeMs: c.runtimeMs };
    }
    case 'REPLACED':
      return { state: 'REPLACED', signature: s.loads(asBuffer(c.signature)) as SignatureDict, runtimeMs: c.runtimeMs };
    default:
      return c;
  }
}
