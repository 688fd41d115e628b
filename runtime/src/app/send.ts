/**
 * The one builder of outgoing task messages: a client's call, and what a worker sends on a task's
 * behalf (retry, link, link_error, the next chain step). `App.sendTask` runs it and publishes;
 * the worker calls `App.sendTask` too, so routing (routes.ts), the task's own options and the
 * wire format are applied once, the same way for everybody, as Celery's send_task.
 */
import type { WireMessage } from '../protocol/wire-message.js';
import { encodeTask, type SignatureDict } from '../protocol/task-message.js';
import type { TaskSerializerName } from '../protocol/serializers.js';
import type { MessageSigner } from '../protocol/signing.js';
import type { Config } from './config.js';
import type { RouteOptions } from './routes.js';
import type { ApplyOptions, TaskOptions } from './task.js';

/**
 * ApplyOptions plus what a worker sets when it sends on a task's behalf (Celery's send_task
 * takes these too).
 */
export interface SendOptions extends ApplyOptions {
  /** The `retries` header: a retry is sent with the request's retries + 1. */
  readonly retries?: number;
  /** The rest of a chain, last step first (spec §1.5). */
  readonly chain?: SignatureDict[] | null;
  readonly chord?: SignatureDict | null;
  /** Serializer of the body (default: config taskSerializer); derived messages keep their sender's. */
  readonly serializer?: TaskSerializerName;
  /**
   * Queue the result is sent to (rpc://). Undefined: this process's own reply queue when the
   * backend is rpc://; null: none.
   */
  readonly replyTo?: string | null;
  /**
   * The name the routers are asked about when it is not the task's (Celery's route_name): map,
   * starmap and chunks messages route as their inner task.
   */
  readonly routeName?: string;
}

/** What sendTask knows besides the call itself. */
export interface SendContext {
  readonly config: Config;
  /** Celery's `origin` header: the sending node. */
  readonly origin: string;
  /** Options of the task when it is registered in this process (Celery's task exec options). */
  readonly task: Readonly<TaskOptions> | undefined;
  /** What the routers answered for this call (routes.ts). */
  readonly route: RouteOptions | null;
  /** This process's rpc:// reply queue, used when options.replyTo is undefined. */
  readonly ownReplyTo: string | undefined;
  readonly id: string;
  readonly now: number;
  /** Signs messages sent with the auth serializer (app.signer()). */
  readonly signer?: MessageSigner | null;
}

const toList = (s: SignatureDict | readonly SignatureDict[] | undefined | null): SignatureDict[] | null =>
  s === undefined || s === null ? null : Array.isArray(s) ? [...s] : [s as SignatureDict];

/**
 * The queue and message of one outgoing task. Queue precedence is Celery's: the caller's `queue`,
 * the task's own `queue`, the routers' answer, then config.defaultQueue (see routes.ts).
 */
export function outgoingTask(
  name: string,
  args: readonly unknown[],
  kwargs: Record<string, unknown>,
  o: SendOptions,
  c: SendContext,
): { queue: string; message: WireMessage } {
  const t = c.task;
  const queue = o.queue ?? t?.queue ?? c.route?.queue ?? c.config.defaultQueue;
  const eta = o.eta ?? (o.countdown !== undefined ? new Date(c.now + o.countdown) : null);
  const expires = o.expires === undefined ? null : o.expires instanceof Date ? o.expires : new Date(c.now + o.expires);
  const hard = o.timeLimit ?? t?.timeLimit ?? null;
  const soft = o.softTimeLimit ?? t?.softTimeLimit ?? null;
  const message = encodeTask({
    replyTo: o.replyTo === undefined ? c.ownReplyTo : (o.replyTo ?? undefined),
    id: c.id,
    name,
    args,
    kwargs,
    eta,
    expires,
    retries: o.retries ?? 0,
    timelimit: [hard === null ? null : hard / 1000, soft === null ? null : soft / 1000],
    rootId: o.rootId ?? c.id,
    parentId: o.parentId ?? null,
    group: o.group ?? null,
    groupIndex: o.groupIndex ?? null,
    shadow: o.shadow ?? null,
    origin: c.origin,
    ignoreResult: o.ignoreResult ?? t?.ignoreResult ?? false,
    priority: o.priority ?? c.route?.priority,
    headers: o.headers,
    callbacks: toList(o.link),
    errbacks: toList(o.linkError),
    chain: o.chain ?? null,
    chord: o.chord ?? null,
    serializer: o.serializer ?? c.config.taskSerializer,
    compression: c.config.taskCompression,
    signer: c.signer ?? null,
    dateTags: c.config.jsonDateTags,
  });
  return { queue, message };
}

/**
 * A signature's own options (Celery's snake_case dict) as SendOptions: those the worker honours
 * when it applies a link, errback or chain step. A `queue` there is explicit, as in Celery.
 */
export function signatureSendOptions(sig: SignatureDict): SendOptions {
  const o = sig.options ?? {};
  const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
  const countdown = num(o.countdown);
  return {
    taskId: str(o.task_id),
    queue: str(o.queue),
    priority: num(o.priority),
    replyTo: str(o.reply_to) ?? null,
    countdown: countdown === undefined ? undefined : countdown * 1000,
    link: toList(o.link as SignatureDict | SignatureDict[] | undefined) ?? undefined,
    linkError: toList(o.link_error as SignatureDict | SignatureDict[] | undefined) ?? undefined,
    // Set by Celery's canvas when it freezes chord bodies and header tasks, and chain rests.
    group: str(o.group_id),
    groupIndex: num(o.group_index),
    chord: o.chord && typeof o.chord === 'object' ? (o.chord as SignatureDict) : undefined,
    chain: Array.isArray(o.chain) ? (o.chain as SignatureDict[]) : undefined,
    // Set by Task.replace: the message takes over a task id (worker/duplicates.ts tells them apart).
    headers: typeof o.replaced_task_nesting === 'number' ? { replaced_task_nesting: o.replaced_task_nesting } : undefined,
  };
}
