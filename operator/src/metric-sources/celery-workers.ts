/**
 * In-flight work of Python Celery workers, from Celery itself (the pods of a `spec.celery` pool,
 * each named `celery@<pod name>`):
 * - tasks running, prefetched and ETA-held: `inspect active`, `reserved` and `scheduled` over the
 *   pidbox, addressed to the pool's pods. Inspect, not heartbeats, is the authority: a heartbeat's
 *   `active` leaves out prefetched tasks (which a worker still runs after cancel_consumer) and is
 *   up to 2 s old. A pod that does not answer fails the read: in-flight work is never silently
 *   missed (a solo-pool worker cannot answer while it runs a task; hence prefork or threads);
 * - the counters of the rate model (received, completed, service seconds): task events
 *   (`task-received`, `task-succeeded` with its `runtime`, `task-failed`), received for as long
 *   as the source lives. With `events: 'Enable'` each new pod is sent `enable_events` once (as
 *   Flower does); its reply says whether task events were on already. Without task events the
 *   counters are null and decide() sizes from in-flight work and backlog alone.
 * Same reading as worker-metrics.ts (`WorkerReading`), so the autoscaler does not care which.
 */
import type { Logger } from 'pino';
import type { NodeReply, Control } from '../../../runtime/src/app/control.js';
import type { ReceivedEvent } from '../../../runtime/src/events/receiver.js';
import { abortable, MetricSourceError } from './source.js';
import { readingOf, scheduledDueOf, type WorkerMetricsSource, type WorkerReading, type WorkerSample } from './worker-metrics.js';

/** Where the pool's task rates come from (status.autoscaling.celeryEvents). */
export type CeleryEventsState = 'Enabled' | 'EnabledByOperator' | 'InspectOnly';

export interface CeleryWorkersOptions {
  /** Remote control over the pool's broker (runtime `app.control`). */
  control: Pick<Control, 'inspect' | 'broadcast'>;
  /** Receives Celery events until the signal aborts (runtime `receiveEvents` on the broker). */
  receiveEvents: (onEvent: (e: ReceivedEvent) => void, signal: AbortSignal) => Promise<void>;
  /** The pods to read; pod `p` runs the worker `nodeName(p)`. */
  targets: () => Promise<readonly { readonly pod: string }[]>;
  nodeName: (pod: string) => string;
  /** Pods the autoscaler is draining (a Celery worker does not say it is). */
  isDraining: (pod: string) => boolean;
  /** `Enable`: send enable_events to each new pod; `Inspect`: leave event settings alone. */
  events: 'Enable' | 'Inspect';
  log: Logger;
  /** How long to wait for the pods' replies. */
  timeoutMs?: number;
}

export interface CeleryWorkersSource extends WorkerMetricsSource {
  /** What the rate counters come from at the last read. */
  eventsState(): CeleryEventsState;
}

/** Task-event counters of one worker since the source started listening. */
interface Counters {
  received: number;
  completed: number;
  serviceSeconds: number;
  /** A task event arrived from it. */
  taskEvents: boolean;
}

export function createCeleryWorkersSource(o: CeleryWorkersOptions): CeleryWorkersSource {
  const timeoutMs = o.timeoutMs ?? 3000;
  const counters = new Map<string, Counters>();
  /** Nodes sent enable_events, with what they answered (true: they had task events off). */
  const enabled = new Map<string, boolean>();
  const stop = new AbortController();
  let listening: Promise<void> | null = null;
  let state: CeleryEventsState = 'InspectOnly';

  function onEvent(e: ReceivedEvent): void {
    if (!e.type.startsWith('task-')) return;
    let c = counters.get(e.hostname);
    if (!c) counters.set(e.hostname, (c = { received: 0, completed: 0, serviceSeconds: 0, taskEvents: false }));
    c.taskEvents = true;
    if (e.type === 'task-received') c.received++;
    else if (e.type === 'task-succeeded' || e.type === 'task-failed') {
      c.completed++;
      if (typeof e.runtime === 'number' && Number.isFinite(e.runtime)) c.serviceSeconds += e.runtime;
    }
  }

  function listen(): void {
    if (listening) return;
    listening = o.receiveEvents(onEvent, stop.signal).catch((err: unknown) => {
      // The next read starts listening again; until then the counters stand still (rates look
      // lower, never in-flight work, which comes from inspect).
      o.log.warn({ err }, 'Celery event receiver stopped; listening again at the next read');
      listening = null;
    });
  }

  /** inspect `method` on `nodes`; every node must answer. */
  async function inspect<T>(method: string, nodes: readonly string[]): Promise<NodeReply<T>> {
    const replies = await o.control.inspect<T>(method, {}, { destination: nodes, timeoutMs, limit: nodes.length });
    const silent = nodes.filter((n) => !(n in replies));
    if (silent.length > 0) {
      throw new MetricSourceError(
        'celery-workers',
        `no answer to inspect ${method} within ${timeoutMs} ms from ${silent.join(', ')} (is the worker up, named celery@<pod name>, and not a solo pool busy with a task?)`,
      );
    }
    return replies;
  }

  async function enableEvents(nodes: readonly string[]): Promise<void> {
    const fresh = nodes.filter((n) => !enabled.has(n));
    if (fresh.length === 0) return;
    const replies = await o.control.broadcast('enable_events', {}, { destination: fresh, reply: true, timeoutMs, limit: fresh.length });
    for (const r of replies) {
      for (const [node, body] of Object.entries(r)) {
        const ok = (body as { ok?: unknown } | null)?.ok;
        // Celery answers "task events enabled" or "task events already enabled".
        if (typeof ok === 'string') enabled.set(node, !ok.includes('already'));
      }
    }
    const silent = fresh.filter((n) => !enabled.has(n));
    if (silent.length > 0) o.log.warn({ nodes: silent }, 'no answer to enable_events; asking again at the next read');
  }

  async function readOnce(): Promise<WorkerReading> {
    listen();
    const pods = (await o.targets()).map((t) => t.pod);
    const nodes = pods.map(o.nodeName);
    if (nodes.length === 0) {
      return {
        active: 0,
        reserved: 0,
        scheduled: 0,
        drainingActive: 0,
        received: null,
        completed: null,
        serviceSeconds: null,
        scheduledDue: new Map(),
        byPod: new Map(),
      };
    }
    if (o.events === 'Enable') await enableEvents(nodes);
    const [active, reserved, scheduled] = await Promise.all([
      inspect<unknown[]>('active', nodes),
      inspect<unknown[]>('reserved', nodes),
      inspect<unknown[]>('scheduled', nodes),
    ]);
    const byPod = new Map<string, WorkerSample>();
    const now = Date.now(); // Celery ETAs are wall-clock times
    for (const [i, pod] of pods.entries()) {
      const node = nodes[i]!;
      const c = counters.get(node);
      const s: WorkerSample = {
        active: active[node]?.length ?? 0,
        reserved: reserved[node]?.length ?? 0,
        scheduled: scheduled[node]?.length ?? 0,
        draining: o.isDraining(pod),
        received: c?.received ?? 0,
        completed: c?.completed ?? 0,
        serviceSeconds: c?.serviceSeconds ?? 0,
        // Celery lists each held ETA task with its due time (ISO 8601); one without is not counted ahead.
        scheduledDue: scheduledDueOf(etasOf(scheduled[node]), now),
      };
      byPod.set(pod, s);
    }
    const reading = readingOf(byPod);
    const withEvents = nodes.filter((n) => counters.get(n)?.taskEvents || enabled.has(n));
    state = withEvents.length < nodes.length ? 'InspectOnly' : nodes.some((n) => enabled.get(n) === true) ? 'EnabledByOperator' : 'Enabled';
    // Without task events from every pod the counters would understate the rates: none, so
    // decide() sizes from in-flight work and backlog (its formula before enough completions).
    return state === 'InspectOnly' ? { ...reading, received: null, completed: null, serviceSeconds: null } : reading;
  }

  return {
    kind: 'celery-workers',
    read(signal) {
      return abortable(readOnce(), signal, 'celery-workers');
    },
    eventsState: () => state,
    async close() {
      stop.abort();
      await listening;
    },
  };
}

/** Due times (ms) of the entries of `inspect scheduled` for one node; entries without a readable eta are left out. */
function etasOf(entries: readonly unknown[] | undefined): number[] {
  const out: number[] = [];
  for (const e of entries ?? []) {
    const eta = (e as { eta?: unknown } | null)?.eta;
    const t = typeof eta === 'string' ? Date.parse(eta) : NaN;
    if (Number.isFinite(t)) out.push(t);
  }
  return out;
}
