/**
 * OpenTelemetry tracing, off unless `tracing` is configured (CELERIAC_TRACING=1). When on, every sent
 * task gets a PRODUCER span and every run a CONSUMER span, named and attributed as Python's
 * opentelemetry-instrumentation-celery does, so one trace crosses Python and TypeScript both ways:
 *
 * - names `apply_async/<task>` and `run/<task>`; `celery.action`, `celery.task_name`,
 *   `messaging.message.id` (the task id), `messaging.destination` (routing key), `celery.retries`
 *   (when not 0), `celery.state` and `celery.hostname` on runs, `celery.retry.reason` on retries;
 * - plus the messaging semantic conventions the Python instrumentation leaves out:
 *   `messaging.system` (the broker: `redis`, `rabbitmq`), `messaging.destination.name` (the queue),
 *   `messaging.operation.type` (`send`, `process`);
 * - the context travels in the task message headers (Celery protocol v2 `headers`, i.e. AMQP
 *   application headers or the Redis envelope's `headers`): the instrumentation injects into the
 *   headers dict of `before_task_publish` and extracts from `task.request`, whose attributes are
 *   those headers. What is written is up to the global propagator (W3C `traceparent`/`tracestate`
 *   with the OpenTelemetry Node SDK's defaults, as Python's).
 *
 * A task's run (and what the worker sends on its behalf: retries, links, chain steps) happens in
 * the run span's context, so spans of tasks it sends are its children when a context manager is
 * registered (the Node SDK registers one).
 *
 * `@opentelemetry/api` is an optional peer dependency, imported on first use only when tracing is
 * on: users without it pay nothing.
 */
import { CeleriacError } from '../errors.js';
import type { TaskRequest } from '../protocol/task-message.js';

type Api = typeof import('@opentelemetry/api');
type Attributes = Record<string, string | number | boolean>;

/** What the producer span of one sent task records. */
export interface SentTask {
  readonly name: string;
  readonly id: string;
  readonly queue: string;
  readonly retries: number;
  /** Broker driver kind (`redis`, `amqp`, `memory`, `file`). */
  readonly broker: string;
}

/** What the consumer span of one run records. */
export interface RunTask extends SentTask {
  /** The message headers, where the sender's context is read from. */
  readonly headers: Readonly<Record<string, unknown>>;
  readonly routingKey: string;
  readonly hostname: string;
  readonly correlationId: string | null;
}

/** The consumer span's view of a delivered request. */
export function runTask(req: TaskRequest, info: { readonly queue: string; readonly routingKey: string }, hostname: string, broker: string): RunTask {
  return {
    name: req.name,
    id: req.id,
    retries: req.retries,
    queue: info.queue,
    routingKey: info.routingKey,
    headers: req.headers,
    hostname,
    broker,
    correlationId: req.correlationId,
  };
}

/** How a run ended, as the pool reports it (pools/trace.ts TaskOutcome, structurally). */
export interface RunOutcome {
  readonly state: string;
  readonly error?: unknown;
  readonly retry?: { readonly exc: unknown; readonly message: string };
}

export interface Tracing {
  /**
   * Runs `publish` inside a PRODUCER span; `publish` receives the headers that carry the span's
   * context and must add them to the message.
   */
  send<T>(task: SentTask, publish: (headers: Record<string, string>) => Promise<T>): Promise<T>;
  /**
   * Runs `fn` inside a CONSUMER span whose parent is the context in the message headers; the
   * outcome it returns sets the span's status (undefined: not run, e.g. revoked before start).
   */
  run(task: RunTask, fn: () => Promise<RunOutcome | undefined>): Promise<void>;
}

/** Tracing was configured but @opentelemetry/api cannot be loaded. */
export class TracingUnavailableError extends CeleriacError {
  constructor(cause: unknown) {
    super(
      'E_TRACING_UNAVAILABLE',
      'Tracing is on (tracing / CELERIAC_TRACING) but @opentelemetry/api cannot be imported: install it next to celeriac ' +
        '(npm install @opentelemetry/api) and register a tracer provider, e.g. with @opentelemetry/sdk-node.',
      { cause },
    );
  }
}

/** `messaging.system` values of the semantic conventions for our broker kinds. */
const MESSAGING_SYSTEM: Record<string, string> = { amqp: 'rabbitmq', redis: 'redis' };
/** The instrumentation's tracer name, so that backends group both languages' spans alike. */
const TRACER = 'celeriac';

const common = (t: SentTask, action: 'apply_async' | 'run'): Attributes => {
  const a: Attributes = {
    'celery.action': action,
    'celery.task_name': t.name,
    'messaging.message.id': t.id,
    'messaging.system': MESSAGING_SYSTEM[t.broker] ?? t.broker,
    'messaging.destination.name': t.queue,
    'messaging.operation.type': action === 'run' ? 'process' : 'send',
  };
  if (t.retries !== 0) a['celery.retries'] = t.retries;
  return a;
};

/** Message headers as a propagator carrier: only string values (the instrumentation coerces too). */
function carrierOf(headers: Readonly<Record<string, unknown>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (typeof v === 'string') out[k] = v;
  return out;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Tracing over a loaded @opentelemetry/api (whatever tracer provider and propagator are registered). */
function createTracing(api: Api): Tracing {
  const tracer = api.trace.getTracer(TRACER);
  const { SpanKind, SpanStatusCode } = api;
  const fail = (span: ReturnType<typeof tracer.startSpan>, err: unknown) => {
    if (err instanceof Error) span.recordException(err);
    span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(err) });
  };
  return {
    async send(t, publish) {
      const attributes = { ...common(t, 'apply_async'), 'messaging.destination': t.queue };
      const span = tracer.startSpan(`apply_async/${t.name}`, { kind: SpanKind.PRODUCER, attributes });
      const ctx = api.trace.setSpan(api.context.active(), span);
      const headers: Record<string, string> = {};
      api.propagation.inject(ctx, headers);
      try {
        return await api.context.with(ctx, () => publish(headers));
      } catch (err) {
        fail(span, err);
        throw err;
      } finally {
        span.end();
      }
    },
    async run(t, fn) {
      const parent = api.propagation.extract(api.context.active(), carrierOf(t.headers));
      const attributes: Attributes = { ...common(t, 'run'), 'messaging.destination': t.routingKey || t.queue, 'celery.hostname': t.hostname };
      if (t.correlationId) attributes['messaging.conversation_id'] = t.correlationId;
      const span = tracer.startSpan(`run/${t.name}`, { kind: SpanKind.CONSUMER, attributes }, parent);
      try {
        const outcome = await api.context.with(api.trace.setSpan(parent, span), fn);
        if (outcome) {
          span.setAttribute('celery.state', outcome.state);
          if (outcome.state === 'FAILURE') fail(span, outcome.error);
          if (outcome.state === 'RETRY' && outcome.retry) span.setAttribute('celery.retry.reason', errorMessage(outcome.retry.exc ?? outcome.retry.message));
        }
      } catch (err) {
        fail(span, err);
        throw err;
      } finally {
        span.end();
      }
    },
  };
}

/** Imports @opentelemetry/api (only called when tracing is configured) and returns Tracing over it. */
export async function loadTracing(): Promise<Tracing> {
  let api: Api;
  try {
    api = await import('@opentelemetry/api');
  } catch (err) {
    throw new TracingUnavailableError(err);
  }
  return createTracing(api);
}

/** Runs `publish` in a producer span when `tracing` is set, else with no extra headers. */
export function tracedSend<T>(tracing: Tracing | null, task: SentTask, publish: (headers: Record<string, string> | undefined) => Promise<T>): Promise<T> {
  return tracing ? tracing.send(task, publish) : publish(undefined);
}

/** Runs `fn` in a consumer span when `tracing` is set, else just runs it (its promise as it is: no step added). */
export function tracedRun(tracing: Tracing | null, task: () => RunTask, fn: () => Promise<RunOutcome | undefined>): Promise<unknown> {
  return tracing ? tracing.run(task(), fn) : fn();
}
