/**
 * The client side of remote control (Celery's `app.control`, spec §7): broadcast a command to
 * workers (Python or celeriac) on the pidbox exchange and collect their `{nodename: value}`
 * replies until the timeout or the limit; and the shape of a command a worker runs, for
 * `app.controlCommand` (Celery's `@control_command` / `@inspect_command`). The worker side is
 * ../control/.
 */
import { LamportClock } from '../protocol/lamport-clock.js';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Broker } from '../brokers/broker.js';
import type { App } from './app.js';
import {
  CONTROL_EXCHANGE,
  decodeReply,
  encodeControl,
  REPLY_EXCHANGE,
  replyQueueName,
  type OkReply,
  type QueueInfo,
  type RequestInfo,
  type ScheduledInfo,
} from '../protocol/control.js';
import { acceptedContentTypes } from '../protocol/serializers.js';

/** What a command's handler gets: the worker's app, its nodename and a logger. */
export interface ControlContext {
  readonly app: App;
  readonly hostname: string;
  readonly log: Logger;
}

/**
 * A remote-control command a worker answers (Celery's Panel entry). Register one with
 * `app.controlCommand(name, spec)`; `celeriac inspect|control <name>` and any Celery client
 * (`app.control.broadcast(name, reply=True)`) can then call it.
 */
export interface ControlCommandSpec {
  /** `inspect`: read-only (Celery's `inspect_command`); `control`: has effects (`control_command`). */
  readonly type: 'inspect' | 'control';
  /** Positional CLI arguments in order, with the type each is converted to (Celery's `args`). */
  readonly args?: readonly (readonly [name: string, type: 'str' | 'int' | 'float' | 'bool' | 'json'])[];
  /** Collects the remaining positional CLI arguments into a list under this name (Celery's `variadic`). */
  readonly variadic?: string;
  /** Usage of the arguments, shown by `--help` (Celery's `signature`), e.g. `<task_name> <rate>`. */
  readonly signature?: string;
  /** One line for `--help`. */
  readonly help?: string;
  /**
   * Runs on the worker with the request's `arguments` (unknown keys must be tolerated). The return
   * value (JSON-safe) is the reply; a thrown error replies `{error: "<Name>('<message>')"}`.
   */
  readonly handler: (ctx: ControlContext, args: Record<string, unknown>) => unknown;
}

/** One worker's reply: `{nodename: value}`. */
export type NodeReply<T = unknown> = Record<string, T>;

/** Who answers a command, how long to wait for replies, and whether to collect them. */
export interface BroadcastOptions {
  /** Only these nodenames answer (default: all workers). */
  readonly destination?: readonly string[];
  /** How long to wait for replies (default 1000 ms, as Celery). */
  readonly timeoutMs?: number;
  /** Stop after this many replies (default: the destination's length, else wait out the timeout). */
  readonly limit?: number;
  /** Collect replies (default false, as Celery's broadcast: fire and forget). */
  readonly reply?: boolean;
  /** Called with each reply as it arrives. */
  readonly onReply?: (reply: NodeReply) => void;
}

/** `stats` (spec §7.4); celeriac workers fill these keys, Python workers more. */
export interface StatsReply {
  total: Record<string, number>;
  pid: number;
  clock: string;
  uptime: number;
  pool: { 'max-concurrency': number; processes: number[]; 'max-tasks-per-child': number | 'N/A'; timeouts: [number, number]; [k: string]: unknown };
  broker: Record<string, unknown>;
  prefetch_count: number;
  rusage: Record<string, number>;
  [k: string]: unknown;
}

/** Options of an inspect command: replies are always collected. */
export type InspectOptions = Omit<BroadcastOptions, 'reply'>;

/**
 * `app.control`: Celery's Control API. Inspect methods return `{nodename: value}` merged over the
 * replies; control methods the list of replies (`[]` unless `reply: true`, as Celery).
 */
export class Control {
  private readonly clock = new LamportClock();

  /**
   * `acceptContent`: what replies may be serialized as besides JSON (a Python worker replies with
   * its task serializer, e.g. msgpack).
   */
  constructor(private readonly host: { broker(): Promise<Broker>; readonly log: Logger; readonly acceptContent: readonly string[] }) {}

  /**
   * Sends `method` with `args` to the workers; with `reply: true`, collects their replies for
   * `timeoutMs` or until `limit` arrived (replies to another request are ignored by their ticket).
   */
  async broadcast(method: string, args: Record<string, unknown> = {}, o: BroadcastOptions = {}): Promise<NodeReply[]> {
    const broker = await this.host.broker();
    const timeoutMs = o.timeoutMs ?? 1000;
    const destination = o.destination && o.destination.length > 0 ? o.destination : null;
    if (!o.reply) {
      await broker.broadcast(CONTROL_EXCHANGE, encodeControl(method, args, { destination, timeoutMs, clock: this.clock.forward() }));
      return [];
    }
    // A reply queue per request: concurrent requests never read each other's replies.
    const oid = randomUUID();
    const ticket = randomUUID();
    const limit = o.limit ?? destination?.length ?? Infinity;
    const replies: NodeReply[] = [];
    const stop = new AbortController();
    const accepted = acceptedContentTypes(this.host.acceptContent).add('application/json');
    let ready!: () => void;
    const bound = new Promise<void>((r) => (ready = r));
    const listening = broker.listenDirect(
      { exchange: REPLY_EXCHANGE, routingKey: oid, queue: replyQueueName(oid) },
      (m) => {
        let r: ReturnType<typeof decodeReply>;
        try {
          r = decodeReply(m, accepted);
        } catch (err) {
          // One bad reply must not hide the others: logged and skipped.
          this.host.log.warn({ err, method }, 'ignored an undecodable control reply');
          return;
        }
        this.clock.adjust(r.clock);
        if (r.ticket !== null && r.ticket !== ticket) return; // a late reply to an earlier request
        replies.push(r.body);
        o.onReply?.(r.body);
        if (replies.length >= limit) stop.abort();
      },
      stop.signal,
      ready,
    );
    await Promise.race([bound, listening]);
    const timer = setTimeout(() => stop.abort(), timeoutMs);
    try {
      await broker.broadcast(CONTROL_EXCHANGE, encodeControl(method, args, { destination, timeoutMs, replyTo: oid, ticket, clock: this.clock.forward() }));
      await listening;
    } catch (err) {
      // The request failed: that error is the one to report; how listening ended adds nothing.
      listening.catch((e: unknown) => this.host.log.debug({ err: e }, 'reply queue closed with an error after a failed request'));
      throw err;
    } finally {
      clearTimeout(timer);
      stop.abort();
    }
    return replies;
  }

  /** Runs an inspect command and merges the replies into `{nodename: value}` (Celery's inspect()). */
  async inspect<T = unknown>(method: string, args: Record<string, unknown> = {}, o: InspectOptions = {}): Promise<NodeReply<T>> {
    const replies = await this.broadcast(method, args, { ...o, reply: true });
    return Object.assign({}, ...replies) as NodeReply<T>;
  }

  /** `[{node: {ok: 'pong'}}, …]`, as Celery's control.ping(). */
  ping(o: InspectOptions = {}): Promise<NodeReply<{ ok: string }>[]> {
    return this.broadcast('ping', {}, { ...o, reply: true }) as Promise<NodeReply<{ ok: string }>[]>;
  }
  /** Each worker's statistics: totals by task, pid, uptime, pool, broker, prefetch, rusage. */
  stats(o?: InspectOptions) {
    return this.inspect<StatsReply>('stats', {}, o);
  }
  /** The queues each worker consumes, as kombu Queue dicts. */
  activeQueues(o?: InspectOptions) {
    return this.inspect<QueueInfo[]>('active_queues', {}, o);
  }
  /** Task names, with ` [rate_limit=…]` when set (Celery's format). */
  registered(o?: InspectOptions) {
    return this.inspect<string[]>('registered', {}, o);
  }
  /** The tasks each worker is running now (Celery's request info). */
  active(o?: InspectOptions) {
    return this.inspect<RequestInfo[]>('active', {}, o);
  }
  /** Tasks each worker has prefetched and not started, excluding ETA-held ones. */
  reserved(o?: InspectOptions) {
    return this.inspect<RequestInfo[]>('reserved', {}, o);
  }
  /** Tasks each worker holds for an ETA or countdown (or a rate limit). */
  scheduled(o?: InspectOptions) {
    return this.inspect<ScheduledInfo[]>('scheduled', {}, o);
  }
  /** The task ids each worker has revoked. */
  revoked(o?: InspectOptions) {
    return this.inspect<string[]>('revoked', {}, o);
  }
  /** Each worker's configuration under Celery's setting names (URLs without passwords). */
  conf(o?: InspectOptions & { withDefaults?: boolean }) {
    return this.inspect<Record<string, unknown>>('conf', { with_defaults: o?.withDefaults ?? false }, o);
  }
  /** A bug-report text per worker (versions, settings). */
  report(o?: InspectOptions) {
    return this.inspect<{ ok: string }>('report', {}, o);
  }
  /** `{node: {id: [state, info]}}` for the ids each worker knows. */
  queryTask(ids: readonly string[], o?: InspectOptions) {
    return this.inspect<Record<string, [string, RequestInfo]>>('query_task', { ids: [...ids] }, o);
  }

  /** Revokes tasks on every worker; `terminate` also aborts a running one (the pool decides how). */
  revoke(taskId: string | readonly string[], o: BroadcastOptions & { terminate?: boolean; signal?: string } = {}) {
    const { terminate = false, signal = 'SIGTERM', ...b } = o;
    return this.broadcast('revoke', { task_id: typeof taskId === 'string' ? taskId : [...taskId], terminate, signal }, b) as Promise<NodeReply<OkReply>[]>;
  }
  /** Sets a task's rate limit (`"10/m"`, `"5/s"`, a number per second; empty or 0 disables it). */
  rateLimit(taskName: string, rateLimit: string | number, o?: BroadcastOptions) {
    return this.broadcast('rate_limit', { task_name: taskName, rate_limit: rateLimit }, o) as Promise<NodeReply<OkReply>[]>;
  }
  /** Sets a task's time limits, in seconds as Celery sends them. */
  timeLimit(taskName: string, limits: { soft?: number | null; hard?: number | null }, o?: BroadcastOptions) {
    return this.broadcast('time_limit', { task_name: taskName, soft: limits.soft ?? null, hard: limits.hard ?? null }, o) as Promise<NodeReply<OkReply>[]>;
  }
  /** Tells workers to consume `queue` too. */
  addConsumer(queue: string, o?: BroadcastOptions) {
    return this.broadcast('add_consumer', { queue, exchange: null, exchange_type: 'direct', routing_key: null }, o) as Promise<NodeReply<OkReply>[]>;
  }
  /** Tells workers to stop consuming `queue`. */
  cancelConsumer(queue: string, o?: BroadcastOptions) {
    return this.broadcast('cancel_consumer', { queue }, o) as Promise<NodeReply<OkReply>[]>;
  }
  /** Grows each worker's pool by `n` slots (refused while the worker autoscales). */
  poolGrow(n = 1, o?: BroadcastOptions) {
    return this.broadcast('pool_grow', { n }, o) as Promise<NodeReply<OkReply>[]>;
  }
  /** Shrinks each worker's pool by `n` slots (refused while the worker autoscales). */
  poolShrink(n = 1, o?: BroadcastOptions) {
    return this.broadcast('pool_shrink', { n }, o) as Promise<NodeReply<OkReply>[]>;
  }
  /** Changes the autoscale range of workers started with `--autoscale`. */
  autoscale(max: number, min: number, o?: BroadcastOptions) {
    return this.broadcast('autoscale', { max, min }, o) as Promise<NodeReply<OkReply>[]>;
  }
  /** Asks workers to shut down warm. Workers do not reply to this one (Celery's neither). */
  shutdown(o?: Omit<BroadcastOptions, 'reply'>) {
    return this.broadcast('shutdown', {}, o);
  }
}
