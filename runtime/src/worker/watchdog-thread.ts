/**
 * The watchdog's thread (see ./watchdog.ts): watches the worker's event-loop heartbeat, and past
 * the threshold names the task blocking the loop and logs it. Everything here runs off the blocked
 * loop: the log goes straight to stdout with synchronous writes (a worker thread's process.stdout
 * is relayed by the main loop, which may never come back), and the task is read by pausing the
 * main thread through the inspector (a V8 interrupt reaches even `while (true) {}`).
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { ResultBackend } from '../backends/result-backend.js';
import type { BlockingTask, BlockReport, Location, Registry, WatchdogThreadData } from './watchdog.js';

const { beats, beatMs, thresholdMs, logLevel, logBindings, results } = workerData as WatchdogThreadData;
const slots = new BigInt64Array(beats);

/**
 * What handling a block needs (the logger, the inspector, JSON, blame), imported at the first
 * block only: until then the thread runs nothing but the heartbeat check, and holds little more
 * than an empty worker thread (measured alone, the thread took 18.0 MB of RSS with them loaded at
 * start, 10.5 MB without; a worker that never blocks held that all the time). The import runs on
 * this thread's own loop, so a blocked main loop does not hold it up.
 */
interface Tools {
  readonly log: Logger;
  readonly Session: typeof import('node:inspector').Session;
  readonly parseJson: typeof import('../protocol/json.js').parseJson;
  readonly isoUtc: typeof import('../protocol/task-message.js').isoUtc;
  readonly blame: typeof import('./watchdog.js').blame;
  readonly locationKey: typeof import('./watchdog.js').locationKey;
}
let tools: Promise<Tools> | null = null;
const loadTools = (): Promise<Tools> =>
  (tools ??= Promise.all([
    import('pino'),
    import('../logging/logger.js'),
    import('node:inspector'),
    import('../protocol/json.js'),
    import('../protocol/task-message.js'),
    import('./watchdog.js'),
  ]).then(([{ pino }, { createLogger }, { Session }, { parseJson }, { isoUtc }, { blame, locationKey }]) => ({
    log: createLogger({ level: logLevel, destination: pino.destination({ fd: 1, sync: true }) }).child(logBindings),
    Session,
    parseJson,
    isoUtc,
    blame,
    locationKey,
  })));
const now = () => performance.timeOrigin + performance.now();
const seconds = (ms: number) => (ms / 1000).toFixed(1);
/** Checks often enough to see a block soon after the threshold, and never busier than every 10 ms. */
const CHECK_MS = Math.max(10, Math.min(beatMs, thresholdMs / 2));

interface Frame {
  readonly callFrameId: string;
  readonly functionName: string;
  readonly url: string;
  readonly location: Location;
  /** Where the frame's function starts (the inspector's [[FunctionLocation]] of that function). */
  readonly functionLocation?: Location;
}
interface RemoteObject {
  readonly value?: unknown;
  readonly objectId?: string;
}
/** One property of Runtime.getProperties, internal ones included. */
interface Property {
  readonly name: string;
  readonly value?: RemoteObject & { readonly value?: unknown };
}

/** What inspecting the paused loop found: the blocking task if certain, else the candidates. */
interface Found {
  readonly task: BlockingTask | null;
  readonly candidates: readonly BlockingTask[];
  readonly at: string | null;
}
const NOTHING: Found = { task: null, candidates: [], at: null };

/** The block being watched: the heartbeat it froze at, and what inspection found. */
interface Block {
  readonly beat: bigint;
  task: BlockingTask | null;
  at: string | null;
  /** Its task's FAILURE(TimeLimitExceeded) is stored, or being stored. */
  failed: boolean;
}
let block: Block | null = null;

/** The thread's own connection to the result backend, made (and its driver imported) when first needed. */
let backend: Promise<ResultBackend | null> | null = null;

/**
 * Stores the FAILURE(TimeLimitExceeded) the worker would store if its loop came back: the
 * task's message was acknowledged, so nothing else would record it if the worker is killed.
 */
async function storeHardLimitFailure(task: BlockingTask & Required<Pick<BlockingTask, 'hardLimit'>>, { log, isoUtc }: Tools): Promise<void> {
  const { limitMs, failure } = task.hardLimit;
  const fields = { taskId: task.id, taskName: task.name, timeLimitMs: limitMs };
  const detached =
    results && (await (backend ??= import('../backends/index.js').then((m) => m.createDetachedResultBackend(results.url, { ...results, logger: log }))));
  if (!detached) {
    log.error(
      fields,
      `task ${task.name}[${task.id}] blocks the event loop past its hard time limit; its result backend cannot be reached from the watchdog thread (rpc:// or memory://), so nothing records it if the worker is killed`,
    );
    return;
  }
  try {
    await detached.store({ ...failure, date_done: isoUtc(new Date()) });
    log.error(
      fields,
      `task ${task.name}[${task.id}] blocks the event loop past its hard time limit (${seconds(limitMs)}s): the watchdog stored FAILURE(TimeLimitExceeded) for it, as the worker may be killed before it can`,
    );
  } catch (err) {
    log.error(
      { ...fields, err },
      `task ${task.name}[${task.id}] blocks the event loop past its hard time limit, and the watchdog could not store its FAILURE: it stays PENDING if the worker is killed`,
    );
  }
}

/**
 * Pauses the main thread, reads the tasks in flight (see watchdog.ts) and the call stack, and
 * resumes it. A pause that lands after the block ended finds someone else running: then no task
 * is named rather than the wrong one.
 */
function inspectMainThread(beat: bigint, { log, Session, parseJson, blame, locationKey }: Tools): Promise<Found> {
  return new Promise((resolve) => {
    const session = new Session();
    session.connectToMainThread();
    const post = <T>(method: string, params?: object) => new Promise<T>((ok, fail) => session.post(method, params, (err, r) => (err ? fail(err) : ok(r as T))));
    const finish = (found: Found) => {
      session.post('Debugger.resume', () => session.post('Debugger.disable', () => session.disconnect()));
      resolve(found);
    };
    session.once('Debugger.paused', (m) => {
      const frames = (m.params as { callFrames: Frame[] }).callFrames;
      const frame = frames[0];
      if (!frame || Atomics.load(slots, 0) !== beat) return finish(NOTHING);
      const at = `${frame.functionName || '(anonymous)'} (${frame.url}:${frame.location.lineNumber + 1})`;
      const expression = `globalThis[Symbol.for('celeriac.watchdog.inFlight')]?.() ?? ['{"inFlight":[]}']`;
      const functionLocation = async (fn: RemoteObject | undefined) => {
        if (!fn?.objectId) return null;
        const { internalProperties } = await post<{ internalProperties?: Property[] }>('Runtime.getProperties', { objectId: fn.objectId, ownProperties: true });
        const loc = internalProperties?.find((p) => p.name === '[[FunctionLocation]]')?.value?.value as Location | undefined;
        return loc ? locationKey(loc) : null;
      };
      void (async () => {
        const { result } = await post<{ result: RemoteObject }>('Debugger.evaluateOnCallFrame', { callFrameId: frame.callFrameId, expression, silent: true });
        if (!result.objectId) return { ...NOTHING, at };
        const { result: items } = await post<{ result: Property[] }>('Runtime.getProperties', { objectId: result.objectId, ownProperties: true });
        const item = (i: number) => items.find((p) => p.name === String(i))?.value;
        const json = item(0)?.value;
        const registry = typeof json === 'string' ? (parseJson(json) as Registry) : { inFlight: [] };
        const { inFlight } = registry;
        // eventLoopBlockedExact: the task whose async context runs is known (or none is).
        if (registry.running !== undefined) return { task: inFlight.find((t) => t.task.id === registry.running)?.task ?? null, candidates: [], at };
        const fns = inFlight.length === 0 ? 0 : Math.max(...inFlight.map((t) => t.fn)) + 1;
        const locations = await Promise.all(Array.from({ length: fns }, (_, i) => functionLocation(item(i + 1))));
        return { ...blame(inFlight, locations, frames), at };
      })().then(finish, (err: unknown) => {
        // The block is still logged, without its task: naming none beats naming a wrong one.
        log.warn({ err }, 'could not read the tasks in flight from the blocked event loop');
        finish({ ...NOTHING, at });
      });
    });
    session.post('Debugger.enable', (err) => {
      if (err) {
        // Another debugger may hold the main thread: the block is still logged, without its task.
        log.warn({ err }, 'could not inspect the blocked event loop');
        session.disconnect();
        return resolve(NOTHING);
      }
      session.post('Debugger.pause');
    });
  });
}

function check(): void {
  const beat = Atomics.load(slots, 0);
  const blockedMs = Math.max(0, now() - Number(beat));
  const lagMs = Math.max(0, blockedMs - beatMs);
  if (lagMs > Number(Atomics.load(slots, 1))) Atomics.store(slots, 1, BigInt(Math.round(lagMs)));
  if (block && block.beat !== beat) {
    const b = block;
    block = null;
    const blockedFor = Number(beat) - Number(b.beat) - beatMs;
    void loadTools().then(({ log }) =>
      log.warn({ taskId: b.task?.id, taskName: b.task?.name, blockedMs: Math.round(blockedFor) }, `event loop unblocked after ${seconds(blockedFor)}s`),
    );
  }
  const hardLimit = block?.task?.hardLimit;
  if (block && hardLimit && !block.failed && now() >= hardLimit.atMs) {
    block.failed = true;
    const task = { ...block.task!, hardLimit };
    void loadTools().then((t) => storeHardLimitFailure(task, t));
  }
  if (block || blockedMs < thresholdMs) return;
  const current: Block = { beat, task: null, at: null, failed: false };
  block = current;
  void loadTools().then(async (tk) => {
    const { task, candidates, at } = await inspectMainThread(beat, tk);
    // The pause landed after the block: the "unblocked" line says it all.
    if (!task && !at && block !== current) return;
    current.task = task;
    current.at = at;
    const named = (t: BlockingTask) => `${t.name}[${t.id}]`;
    const by = task
      ? `task ${named(task)}`
      : candidates.length > 0
        ? `code that cannot be told apart among the tasks in flight (${candidates.map(named).join(', ')}: one of them, or code outside any task)`
        : 'code outside any task';
    tk.log.warn(
      {
        taskId: task?.id,
        taskName: task?.name,
        candidates: task ? undefined : candidates.map((t) => ({ taskId: t.id, taskName: t.name })),
        blockedMs: Math.round(now() - Number(beat)),
        at,
      },
      `event loop blocked for ${seconds(thresholdMs)}s or more by ${by}${at ? ` at ${at}` : ''}: no other task runs and /healthz cannot answer; use the threads or processes pool for CPU-bound work`,
    );
    const report: BlockReport = { blockedMs: thresholdMs, task, candidates };
    parentPort?.postMessage(report);
  });
}

setInterval(check, CHECK_MS);
