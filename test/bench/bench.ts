/**
 * `npm run bench [-- --broker redis|amqp|file|all --tasks N --concurrency N --results on|off]`
 *
 * A no-op task (adds two numbers) through ONE worker process, on servers the bench starts itself
 * (test/support/servers.ts). For each system it reports:
 *   enqueue/s   N tasks published with no worker running (500 publishes in flight)
 *   drain/s     the worker emptying that queue (first to last completion)
 *   e2e/s       producer and worker together: first enqueue to last completion
 *   p50/p99 ms  round trip of 1,000 sequential calls (send, then wait for the result)
 *   RSS MB      the worker's peak resident memory (VmHWM)
 *   CPU us/task CPU of worker + producer + server during the e2e phase, per task
 * Completions are counted in the worker and reported to the bench over IPC at most every 20 ms,
 * for celeriac (completion-counter.ts, preloaded) as for BullMQ (bullmq-worker.ts), so neither
 * worker's CPU includes the bench's observation; the Python Celery row polls Redis instead (the
 * queue length, then the stored results), not the worker.
 * Rows: celeriac; on Redis BullMQ (concurrency 50, addBulk) and Python Celery (solo pool, when the
 * interop virtualenv exists: CELERIAC_PYTHON or the pinned cache path); on AMQP a raw amqplib
 * publish + consume with the same durability, confirms, manual acks and prefetch 1000.
 * On Redis a canvas row too (`--chord N`, default 1000): a chord of N no-op tasks, ms from the
 * call to the body's result, on a celeriac worker and on a Python Celery worker.
 *
 * `--pools` (Redis) measures the pools instead: a no-op task and a task that spins the CPU for
 * 5 ms, c = cores, on the event-loop, threads and processes pools and on Python Celery prefork:
 * tasks/s from the first send to the last stored result (worker already warm), and CPU per task
 * of the worker with its children and threads, and of redis-server.
 * `--events on|off|both` (default both): workers with task events (`-E`) too, on Redis, for
 * celeriac and Python Celery: what monitoring costs per task (no monitor subscribed, so the
 * events are published and dropped by Redis, as with no Flower running).
 * `--python off` leaves the Python Celery rows out (they take the longest).
 * `--worker-node-flags="--max-semi-space-size=2"` starts every celeriac worker (the idle one too) with
 * these node flags: heap settings compared as users set them (NODE_OPTIONS), with their CPU per task.
 *
 * `--soak N` (Redis, results on) instead sends N tasks (500 in flight) through one celeriac worker
 * and reports, from a module preloaded into the worker (loop-monitor.ts), its RSS every second and
 * the longest event-loop stall (perf_hooks monitorEventLoopDelay); RSS growth is the peak of the
 * run's last tenth over the peak once warm (the run's second fifth); every task is accounted for: the
 * worker's succeeded count, each result stored as SUCCESS with the right value, the queue and
 * kombu's unacked hash empty.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { availableParallelism, homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import type * as AmqplibModule from 'amqplib';
import { applySignature, chord, createApp, signature, type AsyncResult } from '../../runtime/src/index.js';
import { pythonWorkerArgs } from '../support/processes.js';
import { idleWorkerRssMb } from './idle-rss.js';
import { freePort, startRabbit, startRedis, uniqueName, type TestServer } from '../support/servers.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const USAGE =
  'usage: bench [--broker redis|amqp|file|all] [--tasks N] [--concurrency N] [--results on|off] [--latency N] [--profile DIR]\n' +
  '             [--worker-node-flags="FLAGS"] [--chord N] [--events on|off|both] [--python on|off] [--pools] [--soak N] [--commandstats] [--help]\n' +
  '(what each row measures: the comment at the top of test/bench/bench.ts)';
const options = {
  /** Prints the usage and exits. */
  help: { type: 'boolean', short: 'h', default: false },
  broker: { type: 'string', default: 'redis' },
  tasks: { type: 'string', default: '10000' },
  concurrency: { type: 'string', default: '50' },
  results: { type: 'string', default: 'on' },
  latency: { type: 'string', default: '1000' },
  /** A folder: the celeriac worker writes a V8 CPU profile there (open it in Chrome DevTools). */
  profile: { type: 'string' },
  /** Node flags for every celeriac worker the bench starts (e.g. "--max-semi-space-size=2"): heap settings A/B'd as users would set them. */
  'worker-node-flags': { type: 'string', default: '' },
  /** Header size of the canvas row (a chord of no-op tasks, Redis only; 0 skips it). */
  chord: { type: 'string', default: '1000' },
  /** Pool rows instead of the system comparison (Redis). */
  pools: { type: 'boolean', default: false },
  /** Worker task events (-E), Redis only: off, on, or both (a row each). */
  events: { type: 'string', default: 'both' },
  /** Python Celery rows: on (when the virtualenv exists) or off. */
  python: { type: 'string', default: 'on' },
  /** A soak of N tasks through one worker instead of the comparison (Redis, results on). */
  soak: { type: 'string' },
  /** Redis rows: print the server's INFO commandstats of the e2e phase, calls and usec per task per command. */
  commandstats: { type: 'boolean', default: false },
} as const;
let parsed: ReturnType<typeof parseArgs<{ options: typeof options }>>;
try {
  parsed = parseArgs({ options });
} catch (err) {
  // An unknown or malformed option: say which, then how to call the bench.
  console.error(`${(err as Error).message}\n${USAGE}`);
  process.exit(2);
}
const flags = parsed.values;
if (flags.help) {
  console.log(USAGE);
  process.exit(0);
}
type BrokerKind = 'redis' | 'amqp' | 'file';
/** `--broker all`: the three in turn, one table (the issue's). */
const BROKERS = (flags.broker === 'all' ? ['redis', 'amqp', 'file'] : [flags.broker]) as BrokerKind[];
/** The broker measured now. */
let brokerKind: BrokerKind = BROKERS[0]!;
const N = Number(flags.tasks);
const C = Number(flags.concurrency);
const RESULTS = flags.results === 'on';
const LAT_N = Number(flags.latency);
const CHORD_N = Number(flags.chord);
const EVENTS = flags.events === 'both' ? [false, true] : [flags.events === 'on'];
const SOAK_N = flags.soak === undefined ? 0 : Number(flags.soak);
const WORKER_NODE_FLAGS = flags['worker-node-flags']!.split(' ').filter(Boolean);
if (
  !BROKERS.every((b) => ['redis', 'amqp', 'file'].includes(b)) ||
  !(SOAK_N >= 0) ||
  !['on', 'off'].includes(flags.python!) ||
  !(N > 0) ||
  !(C > 0) ||
  !['on', 'off'].includes(flags.results!) ||
  !['on', 'off', 'both'].includes(flags.events!)
) {
  console.error(USAGE);
  process.exit(2);
}

interface Row {
  name: string;
  enqueue?: number;
  drain?: number;
  e2e?: number;
  p50?: number;
  p99?: number;
  rssMb?: number;
  cpuUs?: number;
  note?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const TICK_MS = 1000 / 100; // /proc clock ticks (USER_HZ = 100 on Linux)

/** CPU ms used so far by a process (user + system), from /proc. */
function cpuMs(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
  } catch {
    return 0;
  }
}
/** CPU ms of a process, its threads and its descendants, alive now (/proc/<pid>/task/<tid>/children). */
function treeCpuMs(pid: number | undefined): number {
  if (!pid) return 0;
  let total = cpuMs(pid);
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const kids = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      for (const kid of kids ? kids.split(' ') : []) total += treeCpuMs(Number(kid));
    }
  } catch {
    // The process ended meanwhile: its CPU so far is counted.
  }
  return total;
}

function peakRssMb(pid: number | undefined): number | undefined {
  if (!pid) return undefined;
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}
const selfCpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** CPU per task over the e2e phase; the split (worker/producer/server) goes into the note. */
function cpuSplit(row: Row, n: number, workerMs: number, producerMs: number, serverMs: number): number {
  const us = (ms: number) => Math.round((ms * 1000) / n);
  const split = `CPU us/task worker ${us(workerMs)}, producer ${us(producerMs)}, server ${us(serverMs)}`;
  row.note = row.note ? `${row.note}; ${split}` : split;
  return us(workerMs + producerMs + serverMs);
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** p50 and p99 of `n` sequential calls. */
async function roundTrips(row: Row, n: number, call: () => Promise<unknown>): Promise<void> {
  const lat: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    await call();
    lat.push(performance.now() - s);
  }
  lat.sort((a, b) => a - b);
  row.p50 = percentile(lat, 50);
  row.p99 = percentile(lat, 99);
}

/**
 * `--commandstats`: resets the Redis server's command statistics now; the returned function prints
 * what the commands since cost per task (calls, usec inside Redis), most expensive first, 2.5 s
 * later (with the idle commands of that wait).
 */
async function commandStats(url: string | undefined, label: string, n: number, pids: Record<string, number | undefined>): Promise<() => Promise<void>> {
  if (!flags.commandstats || !url?.startsWith('redis')) return async () => {};
  const raw = new Redis(url);
  await raw.config('RESETSTAT');
  /** read and write system calls of each process so far (/proc/<pid>/io). */
  const io = () =>
    Object.fromEntries(
      Object.entries(pids).map(([name, pid]) => {
        const text = pid ? readFileSync(`/proc/${pid}/io`, 'utf8') : '';
        return [name, { r: Number(/syscr: (\d+)/.exec(text)?.[1] ?? 0), w: Number(/syscw: (\d+)/.exec(text)?.[1] ?? 0) }];
      }),
    );
  const io0 = io();
  return async () => {
    const io1 = io();
    for (const name of Object.keys(pids)) {
      const r = (io1[name]!.r - io0[name]!.r) / n;
      const w = (io1[name]!.w - io0[name]!.w) / n;
      console.log(`syscalls ${label} ${name}: ${r.toFixed(3)} reads, ${w.toFixed(3)} writes per task`);
    }
    // The result store unsubscribes idle keys after 2 s: counted with the tasks that subscribed them.
    await sleep(2_500);
    const info = await raw.info('commandstats');
    raw.disconnect();
    const rows: { cmd: string; calls: number; usec: number }[] = [];
    for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) rows.push({ cmd: m[1]!, calls: Number(m[2]), usec: Number(m[3]) });
    rows.sort((a, b) => b.usec - a.usec);
    const total = rows.reduce((t, r) => t + r.usec, 0);
    console.log(`commandstats ${label} (${n} tasks): total ${(total / n).toFixed(2)} usec/task in commands`);
    for (const r of rows)
      console.log(`  ${r.cmd.padEnd(16)} ${(r.calls / n).toFixed(3).padStart(8)} calls/task ${(r.usec / n).toFixed(3).padStart(8)} usec/task`);
  };
}

/** Runs `count` async jobs with at most `window` in flight. */
async function windowed(count: number, window: number, job: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(window, count) }, async () => {
      while (next < count) await job(next++);
    }),
  );
}

/** Stops a bench's worker and closes its client connections. */
async function stopBench(worker: ChildProcess, app: { close(): Promise<void> }, raw: Redis): Promise<void> {
  worker.kill('SIGTERM');
  await waitExit(worker);
  raw.disconnect();
  await app.close();
}

async function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const t = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await new Promise((r) => child.once('exit', r));
  clearTimeout(t);
}

// ---------------------------------------------------------------- celeriac

/**
 * Counts a worker's completions from its IPC reports: the BullMQ worker (bullmq-worker.ts) and the
 * celeriac worker (completion-counter.ts, preloaded) send `{ completed, at }` at most every 20 ms,
 * `at` the epoch time of the last completion counted; times here are on this process's
 * performance.now() clock (both processes read the same system clock at their time origin).
 */
function trackCompletions(worker: ChildProcess): {
  readonly done: number;
  /** When the first reported completion happened, and the count its report carried. */
  readonly first: { at: number; count: number };
  /** Resolves when `target` tasks completed, with the time the last counted one completed. */
  until(target: number): Promise<number>;
} {
  let done = 0;
  const first = { at: 0, count: 0 };
  const waiters: { target: number; resolve: (at: number) => void }[] = [];
  let last = 0;
  worker.on('message', (m: { completed: number; at: number }) => {
    done = m.completed;
    last = m.at - performance.timeOrigin;
    if (!first.at && done > 0) {
      first.at = last;
      first.count = done;
    }
    for (const w of waiters.filter((x) => done >= x.target)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(last);
    }
  });
  return {
    get done() {
      return done;
    },
    first,
    until: (target) => (done >= target ? Promise.resolve(last) : new Promise<number>((resolve) => waiters.push({ target, resolve }))),
  };
}

async function benchCeleriac(brokerUrl: string, backendUrl: string, server: TestServer | null, events = false): Promise<Row> {
  const queue = uniqueName('bench');
  const app = createApp({ name: 'bench-client', broker: brokerUrl, backend: backendUrl, defaultQueue: queue, logLevel: 'warn' });
  const send = (ignoreResult: boolean) => app.sendTask('bench.add', [1, 2], {}, { queue, ignoreResult });
  const row: Row = { name: `celeriac ${brokerKind} (c${C})${events ? ' -E' : ''}` };

  // 1. enqueue, no worker running
  await send(true); // connect and declare first
  let t = performance.now();
  await windowed(N, 500, () => send(!RESULTS));
  row.enqueue = (N / (performance.now() - t)) * 1000;

  // 2. drain
  const port = await freePort();
  const profile = flags.profile ? ['--cpu-prof', `--cpu-prof-dir=${flags.profile}`] : [];
  const worker = spawnCeleriacWorker(queue, brokerUrl, backendUrl, port, profile, events ? ['-E'] : [], true);
  const completions = trackCompletions(worker);
  try {
    const last = await completions.until(N + 1);
    row.drain = ((N + 1 - completions.first.count) / (last - completions.first.at)) * 1000;

    // 3. end to end
    const stats = await commandStats(brokerUrl, row.name, N, { worker: worker.pid, producer: process.pid, server: server?.pid() });
    const cpu0 = { w: cpuMs(worker.pid), s: cpuMs(server?.pid()), p: selfCpuMs() };
    t = performance.now();
    const results: Promise<AsyncResult>[] = [];
    const waiting = completions.until(2 * N + 1);
    await windowed(N, 500, (i) => (results[i] = send(!RESULTS)));
    // On rpc:// the results come to this process: the run ends when the last one is here too.
    const gotAll =
      RESULTS && backendUrl === 'rpc://' ? Promise.all(results.map(async (r) => (await r).get({ timeout: 60_000 }))).then(() => performance.now()) : 0;
    const [doneAt, gotAt] = await Promise.all([waiting, gotAll]);
    const e2eMs = Math.max(doneAt, gotAt) - t;
    row.e2e = (N / e2eMs) * 1000;
    row.cpuUs = cpuSplit(row, N, cpuMs(worker.pid) - cpu0.w, selfCpuMs() - cpu0.p, cpuMs(server?.pid()) - cpu0.s);
    await stats();
    if (RESULTS) {
      const sample = await (await results[N - 1]!).get({ timeout: 60_000 });
      if (sample !== 3) throw new Error(`bench.add returned ${String(sample)}`);
    }

    // 4. sequential round trips
    const latencyStats = await commandStats(brokerUrl, `${row.name} round trips`, LAT_N, { worker: worker.pid, producer: process.pid, server: server?.pid() });
    await roundTrips(row, LAT_N, async () => (await send(false)).get({ timeout: 30_000 }));
    await latencyStats();
    row.rssMb = peakRssMb(worker.pid);
  } finally {
    worker.kill('SIGTERM');
    await waitExit(worker);
    await app.close();
  }
  return row;
}

/**
 * A celeriac worker process on `queue` running bench-tasks.ts, with /metrics on `port`. With
 * `countCompletions`, completion-counter.ts is preloaded and reports its completions on a Unix
 * socket, emitted here as the child's 'message' events as BullMQ's worker sends them over IPC
 * (trackCompletions), which costs the worker next to nothing, unlike polling /metrics. Not over
 * IPC: `celeriac worker` re-executes node with its heap flags (worker-node-flags.ts), and node
 * closes the IPC channel and inherited descriptors on exec.
 */
function spawnCeleriacWorker(
  queue: string,
  brokerUrl: string,
  backendUrl: string,
  port: number,
  nodeFlags: string[] = [],
  workerFlags: string[] = [],
  countCompletions = false,
): ChildProcess {
  const counter = countCompletions ? ['--import', join(root, 'dist/test/bench/completion-counter.js')] : [];
  const socket = countCompletions ? join(mkdtempSync(join(tmpdir(), 'celeriac-bench-')), 'completions.sock') : null;
  const worker = spawn(
    process.execPath,
    [
      ...WORKER_NODE_FLAGS,
      ...counter,
      ...nodeFlags,
      join(root, 'dist/runtime/src/cli/main.js'),
      'worker',
      '-A',
      join(root, 'dist/test/bench/bench-tasks.js'),
      '-Q',
      queue,
      '-c',
      String(C),
      '--metrics-port',
      String(port),
      '-l',
      'warn',
      '-n',
      `${queue}@bench`,
      ...workerFlags,
    ],
    {
      env: { ...process.env, CELERIAC_BROKER_URL: brokerUrl, CELERIAC_RESULT_BACKEND: backendUrl, ...(socket ? { BENCH_COMPLETION_SOCKET: socket } : {}) },
      stdio: ['ignore', 'inherit', 'inherit'],
    },
  );
  if (socket) {
    // One line per report, the count so far; a connection made before the exec just ends.
    const server = createServer((conn) => {
      let rest = '';
      conn.setEncoding('utf8');
      conn.on('data', (chunk: string) => {
        const lines = (rest + chunk).split('\n');
        rest = lines.pop()!;
        if (lines.length === 0) return;
        const [completed, at] = lines.at(-1)!.split(' ').map(Number);
        worker.emit('message', { completed, at });
      });
      conn.on('error', () => {});
    }).listen(socket);
    worker.once('exit', () => server.close(() => rmSync(dirname(socket), { recursive: true, force: true })));
  }
  return worker;
}

// ---------------------------------------------------------------- BullMQ

async function benchBullmq(redisUrl: string, server: TestServer): Promise<Row> {
  const { Queue, QueueEvents } = await import('bullmq');
  const u = new URL(redisUrl);
  const connection = { host: u.hostname, port: Number(u.port) };
  const name = uniqueName('bullmq');
  const queue = new Queue(name, { connection });
  const row: Row = { name: 'BullMQ (c50, addBulk)' };
  const jobOpts = RESULTS ? {} : { removeOnComplete: true };
  const add = async (count: number) => {
    for (let i = 0; i < count; i += 1000) {
      const n = Math.min(1000, count - i);
      await queue.addBulk(Array.from({ length: n }, () => ({ name: 'add', data: { a: 1, b: 2 }, opts: jobOpts })));
    }
  };
  await queue.waitUntilReady();
  let t = performance.now();
  await add(N);
  row.enqueue = (N / (performance.now() - t)) * 1000;

  const worker = fork(join(root, 'dist/test/bench/bullmq-worker.js'), [name, String(connection.port), '50'], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const completions = trackCompletions(worker);
  try {
    const last = await completions.until(N);
    row.drain = ((N - completions.first.count) / (last - completions.first.at)) * 1000;

    const stats = await commandStats(redisUrl, row.name, N, { worker: worker.pid, producer: process.pid, server: server.pid() });
    const cpu0 = { w: cpuMs(worker.pid), s: cpuMs(server.pid()), p: selfCpuMs() };
    t = performance.now();
    const [, doneAt] = await Promise.all([add(N), completions.until(2 * N)]);
    row.e2e = (N / (doneAt - t)) * 1000;
    row.cpuUs = cpuSplit(row, N, cpuMs(worker.pid) - cpu0.w, selfCpuMs() - cpu0.p, cpuMs(server.pid()) - cpu0.s);
    await stats();

    const events = new QueueEvents(name, { connection });
    await events.waitUntilReady();
    const latencyStats = await commandStats(redisUrl, `${row.name} round trips`, LAT_N, { worker: worker.pid, producer: process.pid, server: server.pid() });
    await roundTrips(row, LAT_N, async () => (await queue.add('add', { a: 1, b: 2 })).waitUntilFinished(events, 30_000));
    await latencyStats();
    row.rssMb = peakRssMb(worker.pid);
    await events.close();
  } finally {
    worker.kill('SIGTERM');
    await waitExit(worker);
    await queue.close();
  }
  return row;
}

// ---------------------------------------------------------------- Python Celery

function pythonExe(): string | null {
  if (flags.python === 'off') return null;
  if (process.env.CELERIAC_PYTHON && existsSync(process.env.CELERIAC_PYTHON)) return process.env.CELERIAC_PYTHON;
  // setup-python.sh names the virtualenv venv-celery-<version>-<key of its extra packages>.
  const cache = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'celeriac');
  const venv = existsSync(cache) ? readdirSync(cache).find((name) => name.startsWith('venv-celery-5.7.0-')) : undefined;
  const cached = venv ? join(cache, venv, 'bin/python') : '';
  return venv && existsSync(cached) ? cached : null;
}

async function benchPython(py: string, redisUrl: string, server: TestServer, events = false): Promise<Row> {
  const queue = uniqueName('bench-py');
  const n = Math.min(N, 3000);
  const latN = Math.min(LAT_N, 300);
  const app = createApp({ name: 'bench-client', broker: redisUrl, backend: redisUrl, defaultQueue: queue, logLevel: 'warn' });
  const raw = new Redis(redisUrl);
  const row: Row = { name: `Python Celery 5.7 (solo)${events ? ' -E' : ''}`, note: `${n} tasks, ${latN} calls, celeriac producer` };
  const ids: string[] = [];
  const send = async (ignoreResult: boolean) => (await app.sendTask('bench.add', [1, 2], {}, { queue, ignoreResult })).id;
  let t = performance.now();
  await windowed(n, 500, async (i) => (ids[i] = await send(!RESULTS)));
  row.enqueue = (n / (performance.now() - t)) * 1000;
  /** Done when the queue is empty and (with results) every result is stored. */
  const finished = async (batch: string[]) => {
    for (;;) {
      if ((await raw.llen(queue)) === 0) {
        if (!RESULTS) {
          await sleep(200); // the last task may still be running
          return;
        }
        const left = await raw.mget(...batch.slice(-200).map((id) => `celery-task-meta-${id}`));
        if (left.every((v) => v !== null)) return;
      }
      await sleep(20);
    }
  };
  const worker = spawnPythonWorker(py, queue, redisUrl, events ? ['-E'] : []);
  try {
    // Drain: from the first task taken off the queue.
    while ((await raw.llen(queue)) === n) await sleep(5);
    t = performance.now();
    const left0 = await raw.llen(queue);
    await finished(ids);
    row.drain = ((left0 + 1) / (performance.now() - t)) * 1000;

    const cpu0 = { w: cpuMs(worker.pid), s: cpuMs(server.pid()), p: selfCpuMs() };
    const ids2: string[] = [];
    t = performance.now();
    await windowed(n, 500, async (i) => (ids2[i] = await send(!RESULTS)));
    await finished(ids2);
    row.e2e = (n / (performance.now() - t)) * 1000;
    row.cpuUs = cpuSplit(row, n, cpuMs(worker.pid) - cpu0.w, selfCpuMs() - cpu0.p, cpuMs(server.pid()) - cpu0.s);

    await roundTrips(row, latN, async () => (await app.sendTask('bench.add', [1, 2], {}, { queue })).get({ timeout: 30_000 }));
    row.rssMb = peakRssMb(worker.pid);
  } finally {
    await stopBench(worker, app, raw);
  }
  return row;
}

/** A Python Celery worker (solo pool) on `queue` running bench_tasks.py. */
function spawnPythonWorker(py: string, queue: string, redisUrl: string, poolArgs: string[] = []): ChildProcess {
  // Later options win with Celery's click parser: poolArgs replace the solo pool.
  return spawn(py, [...pythonWorkerArgs('bench_tasks', queue, `${queue}@bench`), ...poolArgs], {
    cwd: join(root, 'test/bench'),
    env: {
      ...process.env,
      BENCH_BROKER: redisUrl,
      BENCH_BACKEND: redisUrl,
      BENCH_QUEUE: queue,
      BENCH_RESULTS: RESULTS ? 'on' : 'off',
      PYTHONPATH: join(root, 'test/bench'),
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

// ---------------------------------------------------------------- canvas: a chord of no-op tasks

interface ChordRow {
  workers: string;
  ms?: number;
  note?: string;
}

/**
 * A chord of `CHORD_N` bench.add header tasks and a bench.total body: ms from the call (the
 * celeriac client) to the body's result, with the worker `start` gives already consuming.
 */
async function benchChord(workers: string, redisUrl: string, start: (queue: string) => ChildProcess): Promise<ChordRow> {
  const queue = uniqueName('bench-chord');
  const app = createApp({ name: 'bench-client', broker: redisUrl, backend: redisUrl, defaultQueue: queue, logLevel: 'warn' });
  const worker = start(queue);
  try {
    // Warm-up chord of 2: the worker is consuming and both sides are connected.
    const run = async (n: number) => {
      const header = Array.from({ length: n }, () => signature('bench.add', [1, 2], {}, { queue }));
      const r = (await applySignature(app, chord(header, signature('bench.total', [], {}, { queue })))) as AsyncResult;
      return r.get({ timeout: 600_000 });
    };
    if ((await run(2)) !== 6) throw new Error('chord warm-up gave a wrong sum');
    const t = performance.now();
    const sum = await run(CHORD_N);
    const ms = performance.now() - t;
    if (sum !== 3 * CHORD_N) throw new Error(`chord body summed ${String(sum)}, expected ${3 * CHORD_N}`);
    return { workers, ms };
  } finally {
    worker.kill('SIGTERM');
    await waitExit(worker);
    await app.close();
  }
}

// ---------------------------------------------------------------- raw amqplib

/**
 * amqplib as published, not the copy celeriac's AMQP broker patched (amqp-codec.ts replaces its
 * frame writer, reader and table codec on the module's prototypes): the row measures what a user
 * of plain amqplib gets. Loaded afresh, then the patched modules are put back in the cache.
 */
function stockAmqplib(): typeof AmqplibModule {
  const require = createRequire(import.meta.url);
  const entry = require.resolve('amqplib');
  const dir = entry.slice(0, entry.lastIndexOf('/node_modules/amqplib/') + '/node_modules/amqplib/'.length);
  const kept = Object.entries(require.cache).filter(([k]) => k.startsWith(dir));
  for (const [k] of kept) delete require.cache[k];
  try {
    return require('amqplib') as typeof AmqplibModule;
  } finally {
    for (const k of Object.keys(require.cache)) if (k.startsWith(dir)) delete require.cache[k];
    for (const [k, m] of kept) require.cache[k] = m;
  }
}

async function benchRawAmqp(url: string, server: TestServer): Promise<Row> {
  const amqplib = stockAmqplib();
  const q = uniqueName('raw');
  const pubConn = await amqplib.connect(url, { noDelay: true });
  const subConn = await amqplib.connect(url, { noDelay: true });
  const pub = await pubConn.createConfirmChannel();
  await pub.assertQueue(q, { durable: true });
  const body = Buffer.from('[[1, 2], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]');
  const publish = () =>
    new Promise<void>((resolve, reject) =>
      pub.publish('', q, body, { persistent: true, contentType: 'application/json' }, (err) => (err ? reject(err) : resolve())),
    );
  const row: Row = { name: 'raw amqplib (confirms, acks, prefetch 1000)', note: 'in-process, no results' };
  let t = performance.now();
  await windowed(N, 500, publish);
  row.enqueue = (N / (performance.now() - t)) * 1000;

  const sub = await subConn.createChannel();
  await sub.prefetch(1000);
  let consumed = 0;
  let firstAt = 0;
  const waiters: { target: number; resolve: () => void }[] = [];
  const onSeen: (() => void)[] = [];
  await sub.consume(q, (m) => {
    if (!m) return;
    sub.ack(m);
    consumed++;
    if (!firstAt) firstAt = performance.now();
    onSeen.shift()?.();
    for (const w of waiters.filter((x) => consumed >= x.target)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  });
  const until = (target: number) => (consumed >= target ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ target, resolve })));
  await until(N);
  row.drain = ((N - 1) / (performance.now() - firstAt)) * 1000;
  const cpu0 = { s: cpuMs(server.pid()), p: selfCpuMs() };
  t = performance.now();
  await Promise.all([windowed(N, 500, publish), until(2 * N)]);
  row.e2e = (N / (performance.now() - t)) * 1000;
  row.cpuUs = cpuSplit(row, N, 0, selfCpuMs() - cpu0.p, cpuMs(server.pid()) - cpu0.s);
  await roundTrips(row, LAT_N, async () => {
    const seen = new Promise<void>((r) => onSeen.push(r));
    await publish();
    await seen;
  });
  await pubConn.close();
  await subConn.close();
  return row;
}

// ---------------------------------------------------------------- main

const fmt = (v: number | undefined, digits = 0) => (v === undefined ? '-' : v.toFixed(digits));

/** One table of every broker's rows; ratios compare each broker's celeriac row (its first) with the others. */
function printTable(groups: { broker: BrokerKind; rows: Row[] }[]): void {
  const header = ['system', 'enqueue/s', 'drain/s', 'e2e/s', 'p50 ms', 'p99 ms', 'worker RSS MB', 'CPU us/task', 'note'];
  const rows = groups.flatMap((g) => g.rows);
  const lines = rows.map((r) => [r.name, fmt(r.enqueue), fmt(r.drain), fmt(r.e2e), fmt(r.p50, 2), fmt(r.p99, 2), fmt(r.rssMb, 1), fmt(r.cpuUs), r.note ?? '']);
  const brokers = groups.map((g) => g.broker).join(',');
  console.log(
    `\nbroker=${brokers} tasks=${N} concurrency=${C} results=${RESULTS ? 'on' : 'off'} latency calls=${LAT_N}${WORKER_NODE_FLAGS.length ? ` worker node flags: ${WORKER_NODE_FLAGS.join(' ')}` : ''}\n`,
  );
  console.log(`| ${header.join(' | ')} |\n|${header.map(() => '---').join('|')}|`);
  for (const l of lines) console.log(`| ${l.join(' | ')} |`);
  const ratio = (a: number | undefined, b: number | undefined) => (a && b ? `${(a / b).toFixed(2)}x` : '-');
  for (const { rows: g } of groups) {
    const base = g[0];
    for (const r of g.slice(1)) {
      if (!base?.e2e || !r.e2e) continue;
      const parts = [
        `e2e ${ratio(base.e2e, r.e2e)}`,
        `CPU/task ${ratio(base.cpuUs, r.cpuUs)}`,
        `p50 ${ratio(base.p50, r.p50)}`,
        `p99 ${ratio(base.p99, r.p99)}`,
      ];
      console.log(`${base.name} / ${r.name}: ${parts.join(', ')}, RSS ${ratio(base.rssMb, r.rssMb)}`);
    }
  }
  console.log(JSON.stringify({ broker: brokers, tasks: N, concurrency: C, results: RESULTS, groups }));
}

// ---------------------------------------------------------------- pools

interface PoolRow {
  task: string;
  pool: string;
  perSec?: number;
  cpuUs?: number;
  note?: string;
}

const CORES = availableParallelism();

/** Resolves when every id has a stored result (Celery's meta key), polling Redis. */
async function allStored(raw: Redis, ids: string[]): Promise<void> {
  let left = ids;
  while (left.length > 0) {
    const got = await raw.mget(...left.map((id) => `celery-task-meta-${id}`));
    left = left.filter((_, i) => got[i] === null);
    if (left.length > 0) await sleep(20);
  }
}

/**
 * `n` sends of `task` (500 in flight) to a warm worker started by `start`, until every result is
 * stored: tasks/s and CPU us per task (worker tree, redis-server).
 */
async function benchPool(row: PoolRow, task: string, n: number, redis: TestServer, start: (queue: string) => ChildProcess): Promise<PoolRow> {
  const queue = uniqueName('bench-pool');
  const app = createApp({ name: 'bench-client', broker: redis.url, backend: redis.url, defaultQueue: queue, logLevel: 'warn' });
  const raw = new Redis(redis.url);
  const worker = start(queue);
  const run = async (count: number) => {
    const ids: string[] = [];
    await windowed(count, 500, async (i) => (ids[i] = (await app.sendTask(task, [1, 2], {}, { queue })).id));
    await allStored(raw, ids);
  };
  try {
    await run(CORES * 4); // warm: runners started, connections open
    const cpu0 = { w: treeCpuMs(worker.pid), s: cpuMs(redis.pid()) };
    const t = performance.now();
    await run(n);
    row.perSec = (n / (performance.now() - t)) * 1000;
    const us = (ms: number) => Math.round((ms * 1000) / n);
    const workerUs = us(treeCpuMs(worker.pid) - cpu0.w);
    const serverUs = us(cpuMs(redis.pid()) - cpu0.s);
    row.cpuUs = workerUs + serverUs;
    row.note = `${n} tasks; CPU us/task worker ${workerUs}, redis ${serverUs}`;
  } finally {
    await stopBench(worker, app, raw);
  }
  return row;
}

async function benchPools(): Promise<PoolRow[]> {
  const redis = await startRedis();
  const rows: PoolRow[] = [];
  const py = pythonExe();
  try {
    for (const [task, n] of [
      ['bench.add', N],
      ['bench.cpu5', Math.min(N, 2000)],
    ] as const) {
      for (const pool of ['event-loop', 'threads', 'processes']) {
        const start = (q: string) => spawnCeleriacWorker(q, redis.url, redis.url, 0, [], ['--pool', pool, '-c', String(CORES)]);
        rows.push(await benchPool({ task, pool: `celeriac ${pool} (c${CORES})` }, task, n, redis, start));
      }
      if (py) {
        const start = (q: string) => spawnPythonWorker(py, q, redis.url, ['-P', 'prefork', '-c', String(CORES)]);
        rows.push(await benchPool({ task, pool: `Python Celery 5.7 prefork (c${CORES})` }, task, Math.min(n, 3000), redis, start));
      } else rows.push({ task, pool: 'Python Celery prefork', note: 'skipped: no virtualenv (test/support/setup-python.sh)' });
    }
  } finally {
    await redis.stop();
  }
  console.log(`\npools on redis: c = ${CORES} cores, results on; tasks/s from first send to last stored result, warm worker\n`);
  console.log('| task | pool | tasks/s | CPU us/task | note |\n|---|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.task} | ${r.pool} | ${fmt(r.perSec)} | ${fmt(r.cpuUs)} | ${r.note ?? ''} |`);
  console.log(JSON.stringify({ pools: rows }));
  return rows;
}

// ---------------------------------------------------------------- soak

interface LoopSample {
  t: number;
  rssMb: number;
  maxStallMs: number;
}

/** `SOAK_N` tasks through one worker: RSS over time, the longest loop stall, every task accounted for. */
async function benchSoak(): Promise<void> {
  const redis = await startRedis();
  const queue = uniqueName('soak');
  const loopFile = join(mkdtempSync(join(tmpdir(), 'celeriac-soak-')), 'loop.jsonl');
  const app = createApp({ name: 'bench-client', broker: redis.url, backend: redis.url, defaultQueue: queue, logLevel: 'warn' });
  const raw = new Redis(redis.url);
  const port = await freePort();
  process.env.BENCH_LOOP_FILE = loopFile;
  const worker = spawnCeleriacWorker(queue, redis.url, redis.url, port, ['--import', join(root, 'dist/test/bench/loop-monitor.js')], [], true);
  delete process.env.BENCH_LOOP_FILE;
  const completions = trackCompletions(worker);
  const samples = (): LoopSample[] =>
    existsSync(loopFile)
      ? readFileSync(loopFile, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as LoopSample)
      : [];
  try {
    await (await app.sendTask('bench.add', [1, 2], {}, { queue })).get({ timeout: 30_000 }); // warm: connected, consuming
    const ids: string[] = new Array<string>(SOAK_N);
    const t = performance.now();
    const startedAt = Date.now();
    const cpu0 = { w: cpuMs(worker.pid), s: cpuMs(redis.pid()), p: selfCpuMs() };
    const done = completions.until(SOAK_N + 1);
    await windowed(SOAK_N, 500, async (i) => (ids[i] = (await app.sendTask('bench.add', [1, 2], {}, { queue })).id));
    const doneAt = await done;
    const endedAt = Date.now();
    const ms = doneAt - t;
    const row: Row = { name: `celeriac soak (c${C})`, e2e: (SOAK_N / ms) * 1000 };
    cpuSplit(row, SOAK_N, cpuMs(worker.pid) - cpu0.w, selfCpuMs() - cpu0.p, cpuMs(redis.pid()) - cpu0.s);
    await sleep(1_500); // the monitor's last full second
    const s = samples().filter((x) => x.t > startedAt && x.t <= endedAt + 1_000);

    // Every task accounted for: SUCCESS with the right value under each id, nothing left in Redis.
    let stored = 0;
    for (let i = 0; i < ids.length; i += 1000) {
      const metas = await raw.mget(...ids.slice(i, i + 1000).map((id) => `celery-task-meta-${id}`));
      for (const m of metas) {
        const meta = m ? (JSON.parse(m) as { status: string; result: unknown }) : null;
        if (meta?.status === 'SUCCESS' && meta.result === 3) stored++;
      }
    }
    const left = (await raw.llen(queue)) + (await raw.hlen('unacked'));
    const succeeded = completions.done - 1;

    // RSS: the peak once warm (the second fifth of the run) against the peak of its last tenth.
    const at = (share: number) => startedAt + share * (endedAt - startedAt);
    const peak = (from: number, to: number) => Math.max(0, ...s.filter((x) => x.t >= from && x.t <= to).map((x) => x.rssMb));
    const warm = peak(at(0.2), at(0.4));
    const last = peak(at(0.9), endedAt + 1_000);
    const growth = warm > 0 ? (last / warm - 1) * 100 : NaN;
    const maxStall = Math.max(0, ...s.map((x) => x.maxStallMs));
    const ok = stored === SOAK_N && succeeded === SOAK_N && left === 0;
    console.log(`\nsoak: ${SOAK_N} tasks, concurrency ${C}, results on, one worker on Redis\n`);
    console.log('| tasks/s | RSS warm MB | RSS end MB | RSS growth | max loop stall ms | accounted | note |\n|---|---|---|---|---|---|---|');
    console.log(
      `| ${fmt(row.e2e)} | ${fmt(warm, 1)} | ${fmt(last, 1)} | ${fmt(growth, 1)}% | ${fmt(maxStall, 1)} | ` +
        `${ok ? 'all' : `MISSING: stored ${stored}, succeeded ${succeeded}, left in Redis ${left}`} | ${row.note} |`,
    );
    console.log(
      'RSS MB per 10 s: ' +
        s
          .filter((_, i) => i % 10 === 0)
          .map((x) => x.rssMb.toFixed(0))
          .join(' '),
    );
    console.log(
      JSON.stringify({
        soak: { tasks: SOAK_N, perSec: row.e2e, rssWarmMb: warm, rssEndMb: last, growthPct: growth, maxStallMs: maxStall, stored, succeeded, left, samples: s },
      }),
    );
    if (!ok) throw new Error(`soak: not every task was accounted for (stored ${stored}, succeeded ${succeeded}, left ${left})`);
  } finally {
    await stopBench(worker, app, raw);
    rmSync(dirname(loopFile), { recursive: true, force: true });
    await redis.stop();
  }
}

/** The idle RSS of a fresh celeriac worker on these URLs (the issue's "idle worker" figure). */
async function idleRss(broker: string, backend: string): Promise<number | undefined> {
  const port = await freePort();
  return idleWorkerRssMb(() => spawnCeleriacWorker(uniqueName('idle'), broker, backend, port), port);
}

/** The rows of one broker (and, on Redis, the canvas rows); returns the idle worker's RSS. */
async function benchBroker(kind: BrokerKind, rows: Row[], chordRows: ChordRow[]): Promise<number | undefined> {
  let idleMb: number | undefined;
  if (kind === 'redis') {
    const redis = await startRedis();
    try {
      idleMb = await idleRss(redis.url, redis.url);
      for (const events of EVENTS) rows.push(await benchCeleriac(redis.url, redis.url, redis, events));
      rows.push(await benchBullmq(redis.url, redis));
      const py = pythonExe();
      if (py) for (const events of EVENTS) rows.push(await benchPython(py, redis.url, redis, events));
      else
        rows.push({
          name: 'Python Celery (solo)',
          note: flags.python === 'off' ? 'skipped: --python off' : 'skipped: no virtualenv (test/support/setup-python.sh)',
        });
      if (CHORD_N > 0 && RESULTS) {
        chordRows.push(await benchChord(`celeriac (c${C})`, redis.url, (q) => spawnCeleriacWorker(q, redis.url, redis.url, 0)));
        if (py) chordRows.push(await benchChord('Python Celery 5.7 (solo)', redis.url, (q) => spawnPythonWorker(py, q, redis.url)));
        else chordRows.push({ workers: 'Python Celery (solo)', note: 'skipped: no virtualenv' });
      }
    } finally {
      await redis.stop();
    }
  } else if (kind === 'amqp') {
    const rabbit = await startRabbit();
    try {
      idleMb = await idleRss(rabbit.url, 'rpc://');
      // rpc:// either way: with --results off the tasks are sent with ignoreResult.
      rows.push(await benchCeleriac(rabbit.url, 'rpc://', rabbit));
      rows.push(await benchRawAmqp(rabbit.url, rabbit));
    } finally {
      await rabbit.stop();
    }
  } else {
    const dir = mkdtempSync(join(tmpdir(), 'celeriac-bench-'));
    try {
      const url = `file://${dir}`;
      idleMb = await idleRss(url, url);
      rows.push(await benchCeleriac(url, url, null));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return idleMb;
}

async function main(): Promise<void> {
  if (SOAK_N > 0) {
    await benchSoak();
    return;
  }
  if (flags.pools) {
    await benchPools();
    return;
  }
  const groups: { broker: BrokerKind; rows: Row[] }[] = [];
  const idle: string[] = [];
  const chordRows: ChordRow[] = [];
  for (const kind of BROKERS) {
    brokerKind = kind;
    const rows: Row[] = [];
    groups.push({ broker: kind, rows });
    idle.push(`${kind} ${fmt(await benchBroker(kind, rows, chordRows), 1)}`);
  }
  printTable(groups);
  console.log(`idle celeriac worker RSS MB (5 s after /metrics first answers): ${idle.join(', ')}`);
  if (chordRows.length > 0) {
    console.log(`\ncanvas: chord of ${CHORD_N} no-op header tasks (bench.add) and a sum body, celeriac client, results in Redis\n`);
    console.log('| workers | call -> body result ms | note |\n|---|---|---|');
    for (const r of chordRows) console.log(`| ${r.workers} | ${fmt(r.ms)} | ${r.note ?? ''} |`);
    console.log(JSON.stringify({ canvas: { chord: CHORD_N, rows: chordRows } }));
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
