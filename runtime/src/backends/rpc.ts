/**
 * rpc:// — Celery's RPC result backend over AMQP (spec §4.6): results travel as messages, not
 * stored anywhere.
 *
 * - Worker side: every state (STARTED, RETRY, SUCCESS, FAILURE, REVOKED) is published to the
 *   default exchange with routing key = the task's `reply_to` and `correlation_id` = the task id;
 *   body `{task_id, status, result, traceback, children}` (no date_done), delivery_mode 1, without
 *   publisher confirms (Celery does not wait either). A task without reply_to gets no result.
 * - Client side: the process has one reply queue named by its oid (non-durable, auto-delete,
 *   `x-expires` = result expiry), declared before its first task is sent (`replyTo()`), consumed
 *   without acks; the latest state per task id is kept in memory, so a result can be read by this
 *   process only, and only while it runs. Chords are not supported (Celery raises too).
 *
 * Needs an amqp:// broker. URL: `rpc://` (the broker's connection is used).
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { AmqpBroker } from '../brokers/amqp.js';
import type { Broker } from '../brokers/broker.js';
import { ConfigError, ResultTimeoutError } from '../errors.js';
import { stringifyJson } from '../protocol/json.js';
import type { WireMessage } from '../protocol/wire-message.js';
import { READY_STATES, type TaskMeta } from '../protocol/result-meta.js';
import { acceptedContentTypes, deserialize } from '../protocol/serializers.js';
import type { ResultBackend } from './result-backend.js';

export interface RpcBackendOptions {
  readonly broker: Broker;
  /** Reply queue `x-expires` (Celery: result_expires); default one day. */
  readonly expiresMs?: number | null;
  readonly logger?: Logger;
  /** JSON results: Dates as kombu 5.3+'s datetime tag (config jsonDateTags). */
  readonly dateTags?: boolean;
}

/** Results kept per process: the latest states of at least the last MAX_KEPT / 2 tasks, at most MAX_KEPT. */
const MAX_KEPT = 100_000;

/**
 * The latest state per task id, in two generations: a full newer one becomes the older, and the
 * older is dropped whole. Dropping the oldest entry one by one (`keys().next()`) walks over every
 * entry deleted since V8 last compacted the Map: tens of thousands per result once a producer has
 * had 100,000.
 */
export class KeptStates {
  private newer = new Map<string, TaskMeta>();
  private older = new Map<string, TaskMeta>();

  constructor(private readonly generation = MAX_KEPT / 2) {}

  get(id: string): TaskMeta | undefined {
    return this.newer.get(id) ?? this.older.get(id);
  }

  /** A state already in the older generation stays there, shadowed by this one until it is dropped. */
  set(id: string, meta: TaskMeta): void {
    this.newer.set(id, meta);
    if (this.newer.size >= this.generation) {
      this.older = this.newer;
      this.newer = new Map();
    }
  }

  delete(id: string): void {
    this.newer.delete(id);
    this.older.delete(id);
  }
}
const ACCEPTED = acceptedContentTypes(['json', 'msgpack', 'yaml']);

export function createRpcBackend(_url: string, opts: RpcBackendOptions): ResultBackend & { replyTo(): Promise<string> } {
  if (opts.broker.kind !== 'amqp') {
    throw new ConfigError([`resultBackend: rpc:// needs an amqp:// broker (the broker is ${opts.broker.kind}://); use redis:// or file:// results instead`]);
  }
  const broker = opts.broker as AmqpBroker;
  const log = opts.logger?.child({ component: 'rpc-backend' });
  const oid = randomUUID();
  const kept = new KeptStates();
  const waiters = new Map<string, Set<() => void>>();
  const stop = new AbortController();
  let listening: Promise<void> | null = null;

  function onReply(m: WireMessage): void {
    let meta: TaskMeta;
    try {
      meta = deserialize(m.body, m.contentType, ACCEPTED) as TaskMeta;
    } catch (err) {
      log?.warn({ err, correlationId: m.properties.correlation_id }, 'undecodable result message ignored');
      return;
    }
    const id = typeof meta?.task_id === 'string' ? meta.task_id : String(m.properties.correlation_id ?? '');
    if (!id) return;
    kept.set(id, meta);
    const w = waiters.get(id);
    if (w) for (const wake of [...w]) wake();
  }

  /** Declares and consumes the reply queue; resolves once it is live. */
  function listen(): Promise<void> {
    listening ??= new Promise<void>((resolve) => {
      const spec = {
        queue: oid,
        options: { durable: false, autoDelete: true, exclusive: false, arguments: { 'x-expires': opts.expiresMs ?? 86_400_000 } },
      };
      void broker.listen(spec, onReply, stop.signal, resolve);
    });
    return listening;
  }

  return {
    kind: 'rpc',

    async replyTo() {
      await listen();
      return oid;
    },

    async store(meta, ctx) {
      const replyTo = ctx?.replyTo;
      if (!replyTo) return;
      const body = { task_id: meta.task_id, status: meta.status, result: meta.result, traceback: meta.traceback, children: meta.children ?? [] };
      await broker.publishTo(
        '',
        replyTo,
        {
          body: Buffer.from(stringifyJson(body, opts.dateTags)),
          contentType: 'application/json',
          contentEncoding: 'utf-8',
          headers: {},
          properties: { correlation_id: ctx?.correlationId ?? meta.task_id, delivery_mode: 1 },
        },
        { confirm: false },
      );
    },

    async get(taskId) {
      await listen();
      return kept.get(taskId) ?? null;
    },

    async waitReady(taskId, w) {
      await listen();
      const ready = () => {
        const m = kept.get(taskId);
        return m && READY_STATES.has(m.status) ? m : null;
      };
      const now = ready();
      if (now) return now;
      return new Promise<TaskMeta>((resolve, reject) => {
        const set = waiters.get(taskId) ?? new Set();
        waiters.set(taskId, set);
        const finish = () => {
          clearTimeout(timer);
          set.delete(wake);
          if (set.size === 0) waiters.delete(taskId);
          w.signal?.removeEventListener('abort', onAbort);
        };
        const wake = () => {
          const m = ready();
          if (!m) return;
          finish();
          resolve(m);
        };
        const onAbort = () => {
          finish();
          reject(new ResultTimeoutError(taskId, w.timeoutMs, kept.get(taskId)?.status ?? 'PENDING'));
        };
        const timer = setTimeout(onAbort, w.timeoutMs);
        set.add(wake);
        w.signal?.addEventListener('abort', onAbort, { once: true });
      });
    },

    async forget(taskId) {
      kept.delete(taskId);
    },

    async close() {
      stop.abort();
    },
  };
}
