/**
 * The event dispatcher (Celery's `events/dispatcher.py`): stamps each event with the common fields
 * of spec §6.2 (hostname, timestamp, utcoffset, pid, a Lamport clock) and broadcasts it on the
 * `celeryev` exchange. Events never slow or fail the work they describe: send() returns at once,
 * and a publish that fails is logged once per outage, not once per event.
 *
 * Groups: `worker` events always go out; `task` events only while enabled (worker `-E`,
 * `workerSendTaskEvents`, or the `enable_events` control command, which calls enable()).
 * Task events are batched, as a Python worker batches them per loop tick (spec §6.5): what
 * gathers within BATCH_MS (or 24 events) goes as one `task.multi` array, a lone event singly
 * (`task.succeeded`); receivers accept both. Monitors see events at most BATCH_MS late.
 */
import type { Logger } from 'pino';
import type { Broker } from '../brokers/broker.js';
import { LamportClock } from '../protocol/lamport-clock.js';
import { encodeEvents, EVENT_EXCHANGE, eventGroup, utcOffsetHours, type CeleryEvent } from '../protocol/events.js';

/** Celery flushes a group buffer at this many events. */
const BATCH_MAX = 24;
/**
 * How long task events gather before they go out. Per event-loop turn (setImmediate) gathered
 * ~1 event per message under load; 10 ms cut the worker's event cost per task (npm run bench).
 */
const BATCH_MS = 10;

export interface EventDispatcherOptions {
  /** The connected broker to broadcast on. */
  readonly broker: Pick<Broker, 'broadcast'>;
  /** Sender node name (`celeriac@host` for a worker, `gen<pid>@host` for a client). */
  readonly hostname: string;
  readonly log: Logger;
  /** Whether task events start enabled (worker `-E`). */
  readonly taskEvents: boolean;
  /** The process's Lamport clock (a worker shares one with remote control); default: a new one. */
  readonly clock?: LamportClock;
}

/** Sends Celery events (worker and task) on the `celeryev` exchange, batched; never throws into the caller. */
export interface EventDispatcher {
  readonly hostname: string;
  /** @internal the Lamport clock stamped on each event */
  readonly clock: LamportClock;
  /** True when events of `group` (`task`, `worker`) go out: check before building costly fields. */
  enabled(group: string): boolean;
  /** Sends an event with the common fields added; returns at once, never throws. */
  send(type: string, fields?: Record<string, unknown>): void;
  /**
   * Turns task events on (the `enable_events` control command); returns Celery's reply text,
   * `task events enabled` or `task events already enabled`.
   */
  enable(): string;
  /** Turns task events off (`disable_events`); returns `task events disabled` or `... already disabled`. */
  disable(): string;
  /**
   * Sends what is buffered and waits for every publish in flight, at most `timeoutMs` (a broker
   * that is down must not hold up a shutdown); false when it gave up waiting.
   */
  flush(timeoutMs?: number): Promise<boolean>;
}

export function createEventDispatcher(o: EventDispatcherOptions): EventDispatcher {
  const { broker, hostname, log } = o;
  const clock = o.clock ?? new LamportClock();
  let taskEvents = o.taskEvents;
  const inFlight = new Set<Promise<void>>();
  let buffer: CeleryEvent[] = [];
  let flushTimer: NodeJS.Timeout | null = null;
  /** Publishes that failed since the last one that worked: the first one logs, the rest count. */
  let failures = 0;

  const publish = (events: CeleryEvent | CeleryEvent[]) => {
    const { message, routingKey } = encodeEvents(events);
    const count = Array.isArray(events) ? events.length : 1;
    const p = broker.broadcast(EVENT_EXCHANGE, message, routingKey).then(
      () => {
        if (failures === 0) return;
        log.info({ lost: failures }, `sending events works again (${failures} event(s) were lost)`);
        failures = 0;
      },
      (err: unknown) => {
        // Events are best effort, as in Celery: the task they describe goes on regardless.
        if (failures === 0) log.warn({ err }, 'sending events failed; tasks go on, events are lost until the broker takes them again (logged once)');
        failures += count;
      },
    );
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  };

  const flushBuffer = () => {
    if (flushTimer) clearTimeout(flushTimer);
    flushTimer = null;
    const batch = buffer;
    buffer = [];
    if (batch.length === 1) publish(batch[0]!);
    else if (batch.length > 1) publish(batch);
  };

  const stamp = (type: string, fields: Record<string, unknown>): CeleryEvent => ({
    hostname,
    utcoffset: utcOffsetHours(),
    pid: process.pid,
    clock: clock.forward(),
    timestamp: Date.now() / 1000,
    ...fields,
    type,
  });

  return {
    hostname,
    clock,
    enabled: (group) => group !== 'task' || taskEvents,
    send(type, fields = {}) {
      const group = eventGroup(type);
      if (group === 'task' && !taskEvents) return;
      const event = stamp(type, fields);
      if (group !== 'task') return publish(event);
      buffer.push(event);
      if (buffer.length >= BATCH_MAX) return flushBuffer();
      flushTimer ??= setTimeout(flushBuffer, BATCH_MS);
    },
    enable() {
      if (taskEvents) return 'task events already enabled';
      taskEvents = true;
      log.info('task events enabled by remote control');
      return 'task events enabled';
    },
    disable() {
      if (!taskEvents) return 'task events already disabled';
      taskEvents = false;
      log.info('task events disabled by remote control');
      return 'task events disabled';
    },
    async flush(timeoutMs = 2000) {
      flushBuffer();
      let timer: NodeJS.Timeout | undefined;
      const gaveUp = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
      const done = await Promise.race([Promise.all([...inFlight]).then(() => true as const), gaveUp]);
      clearTimeout(timer);
      if (!done) log.warn({ pending: inFlight.size }, `events still unsent after ${timeoutMs} ms; not waiting for them`);
      return done;
    },
  };
}
