/**
 * What a monitor knows from events (a small take on Celery's `events/state.py`): workers with
 * their last heartbeat and counters, and the most recent tasks with their state, args, result and
 * runtime. Pure: the clock is passed in.
 */
import type { ReceivedEvent } from './receiver.js';

/** A worker as the events seen so far describe it (online, heartbeat, counts). */
export interface WorkerView {
  readonly hostname: string;
  /** False after worker-offline. */
  online: boolean;
  /** Heartbeat interval in seconds. */
  freq: number;
  active: number;
  processed: number;
  loadavg: readonly number[];
  swIdent: string;
  swVer: string;
  /** When its last event arrived here (epoch seconds). */
  lastSeen: number;
}

/** A task as the events seen so far describe it (state, args, result, runtime). */
export interface TaskView {
  readonly uuid: string;
  name: string | null;
  state: string;
  args: string | null;
  kwargs: string | null;
  result: string | null;
  exception: string | null;
  /** Seconds, from task-succeeded. */
  runtime: number | null;
  worker: string | null;
  /** When its last event was sent (epoch seconds). */
  timestamp: number;
}

/** Task event type -> the state monitors show (Flower's mapping). */
const TASK_STATES: Record<string, string> = {
  'task-sent': 'PENDING',
  'task-received': 'RECEIVED',
  'task-started': 'STARTED',
  'task-succeeded': 'SUCCESS',
  'task-failed': 'FAILURE',
  'task-retried': 'RETRY',
  'task-rejected': 'REJECTED',
  'task-revoked': 'REVOKED',
};
const READY = new Set(['SUCCESS', 'FAILURE', 'REVOKED', 'REJECTED']);

const str = (v: unknown): string | null => (typeof v === 'string' ? v : v === undefined || v === null ? null : String(v));
const num = (v: unknown, fallback: number): number => (typeof v === 'number' && Number.isFinite(v) ? v : fallback);

/** Workers and recent tasks built from received events, as Celery's `events.state.State` (for `celeriac events`). */
export class EventState {
  readonly workers = new Map<string, WorkerView>();
  /** Most recent tasks, oldest first (a Map keeps insertion order). */
  readonly tasks = new Map<string, TaskView>();

  constructor(private readonly maxTasks = 1000) {}

  /** Folds one received event into the view. */
  apply(e: ReceivedEvent): void {
    if (e.type.startsWith('worker-')) return this.applyWorker(e);
    if (e.type.startsWith('task-')) this.applyTask(e);
  }

  /** A worker is alive while its heartbeats arrive: within 2 x freq of the last (Celery's rule). */
  alive(w: WorkerView, nowSec: number): boolean {
    return w.online && nowSec < w.lastSeen + w.freq * 2;
  }

  private applyWorker(e: ReceivedEvent): void {
    const prev = this.workers.get(e.hostname);
    this.workers.set(e.hostname, {
      hostname: e.hostname,
      online: e.type !== 'worker-offline',
      freq: num(e.freq, prev?.freq ?? 2),
      active: num(e.active, prev?.active ?? 0),
      processed: num(e.processed, prev?.processed ?? 0),
      loadavg: Array.isArray(e.loadavg) ? (e.loadavg as number[]) : (prev?.loadavg ?? []),
      swIdent: str(e.sw_ident) ?? prev?.swIdent ?? '',
      swVer: str(e.sw_ver) ?? prev?.swVer ?? '',
      lastSeen: e.local_received,
    });
  }

  private applyTask(e: ReceivedEvent): void {
    const uuid = str(e.uuid);
    if (!uuid) return;
    let t = this.tasks.get(uuid);
    if (!t) {
      t = { uuid, name: null, state: 'PENDING', args: null, kwargs: null, result: null, exception: null, runtime: null, worker: null, timestamp: e.timestamp };
      this.tasks.set(uuid, t);
      if (this.tasks.size > this.maxTasks) this.tasks.delete(this.tasks.keys().next().value!);
    }
    const state = TASK_STATES[e.type];
    // Events can arrive out of order (batches, several senders): a finished task stays finished,
    // unless it runs again (a retry is received anew, later). An equal timestamp is no later: a task
    // of under a millisecond has its started and succeeded events in the same millisecond.
    if (state && !(READY.has(t.state) && !READY.has(state) && e.timestamp <= t.timestamp)) t.state = state;
    t.timestamp = Math.max(t.timestamp, e.timestamp);
    if (e.type !== 'task-sent') t.worker = e.hostname;
    t.name = str(e.name) ?? t.name;
    t.args = str(e.args) ?? t.args;
    t.kwargs = str(e.kwargs) ?? t.kwargs;
    if (e.type === 'task-succeeded') {
      t.result = str(e.result);
      t.runtime = typeof e.runtime === 'number' ? e.runtime : null;
    }
    if (e.type === 'task-failed' || e.type === 'task-retried') t.exception = str(e.exception);
  }
}
