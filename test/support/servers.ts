/**
 * Private redis-server and rabbitmq-server instances for tests and the benchmark, on free loopback
 * ports, each in its own temporary folder (data, logs, Erlang cookie, HOME), so that nothing clashes
 * with a system instance or with another test file running at the same time.
 *
 * ```ts
 * const redis = await useRedis();            // { server, skip }: skip is a reason or false
 * describe('redis', { skip: redis.skip }, () => { ... redis.server!.url ... });
 * after(() => redis.server?.stop());
 * ```
 *
 * URLs may come from the environment instead (CELERIAC_TEST_REDIS_URL, CELERIAC_TEST_AMQP_URL); such
 * external servers cannot be restarted. When a server cannot be had, use*() returns a visible skip
 * reason, or throws when CELERIAC_REQUIRE_SERVICES=1 (CI).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, mkdir, readFile, rm, writeFile, chmod } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { killGroup, killOnExit } from './exit-cleanup.js';

/** A server under test. `restart` and `kill` exist only for servers this module started. */
export interface TestServer {
  readonly kind: 'redis' | 'amqp';
  /** e.g. `redis://127.0.0.1:40123/0`, `amqp://guest:guest@127.0.0.1:40124`. */
  readonly url: string;
  readonly port: number;
  /** RabbitMQ management API base URL (`http://guest:guest@127.0.0.1:P`), when enabled. */
  readonly managementUrl: string | null;
  /** False for servers given by URL in the environment. */
  readonly managed: boolean;
  /** Process id of the running server (for CPU and memory figures), when managed and up. */
  pid(): number | undefined;
  /** Graceful stop (data flushed), then start again on the same port with the same data. */
  restart(opts?: { downMs?: number }): Promise<void>;
  /** Stops gracefully; the server can be started again with start(). */
  stopProcess(): Promise<void>;
  /** Starts a stopped server again on the same port with the same data. */
  start(): Promise<void>;
  /** Stops and removes the temporary folder. Safe to call twice. */
  stop(): Promise<void>;
}

export type ServiceResult = { server: TestServer; skip: false } | { server: undefined; skip: string };

const requireServices = () => process.env.CELERIAC_REQUIRE_SERVICES === '1';

/** Finds a free TCP port on the loopback interface. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function findBinary(name: string, envVar: string, dirs: readonly string[]): string | null {
  const fromEnv = process.env[envVar];
  if (fromEnv && existsSync(fromEnv)) return fromEnv;
  for (const d of dirs) if (existsSync(join(d, name))) return join(d, name);
  return null;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  killGroup(child, 'SIGTERM');
  const timer = setTimeout(() => killGroup(child, 'SIGKILL'), graceMs);
  await exited(child);
  clearTimeout(timer);
}

async function tail(file: string): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).split('\n').slice(-25).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Starts a process in its own group and waits until `port` accepts connections. */
async function launch(
  what: string,
  cmd: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  port: number,
  logFile: string,
  timeoutMs: number,
): Promise<ChildProcess> {
  const fd = openSync(logFile, 'a');
  const child = spawn(cmd, args, { env, stdio: ['ignore', fd, fd], detached: true });
  closeSync(fd);
  killOnExit(child, { group: true });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${what} exited during start-up (code ${child.exitCode}). Log ${logFile}:\n${await tail(logFile)}`);
    }
    if (await canConnect(port)) return child;
    await new Promise((r) => setTimeout(r, 100));
  }
  await stopChild(child, 2_000);
  throw new Error(`${what} did not accept connections on port ${port} within ${timeoutMs} ms. Log ${logFile}:\n${await tail(logFile)}`);
}

const stopGraceMs = { redis: 10_000, amqp: 30_000 };

type Controls = Pick<TestServer, 'managed' | 'start' | 'stopProcess' | 'restart' | 'stop'>;

/** Start, stop and restart of one server process whose data lives in `dir`. */
async function supervise(
  dir: string,
  graceMs: number,
  launchIt: () => Promise<ChildProcess>,
): Promise<{ child: () => ChildProcess | null; controls: Controls }> {
  let child: ChildProcess | null = await launchIt();
  const start = async () => {
    if (!child) child = await launchIt();
  };
  const stopProcess = async () => {
    if (child) await stopChild(child, graceMs);
    child = null;
  };
  return {
    child: () => child,
    controls: {
      managed: true,
      start,
      stopProcess,
      async restart(o = {}) {
        await stopProcess();
        if (o.downMs) await new Promise((r) => setTimeout(r, o.downMs));
        await start();
      },
      async stop() {
        await stopProcess();
        await rm(dir, { recursive: true, force: true });
      },
    },
  };
}

/** Options for a private redis-server. */
export interface RedisOptions {
  /** Append-only file on, so that restart() keeps the data (fault tests). Default false. */
  readonly persist?: boolean;
  /**
   * TLS only (rediss://), with a fresh self-signed certificate for the name "celeriac-test"
   * (openssl), so a client that verifies it fails. Default false.
   */
  readonly tls?: boolean;
  /**
   * Another address to listen on besides the loopback (the cluster tier's node IP, so pods reach
   * it); the URL then names this address.
   */
  readonly host?: string;
}

/** Starts a private redis-server on a free loopback port (and on `host` when given). */
export async function startRedis(opts: RedisOptions = {}): Promise<TestServer> {
  const bin = findBinary('redis-server', 'CELERIAC_REDIS_SERVER', ['/usr/bin', '/usr/local/bin', '/usr/sbin']);
  if (!bin) throw new Error('redis-server is not installed (test/support/setup-services.sh installs it with apt-get)');
  const dir = await mkdtemp(join(tmpdir(), 'celeriac-redis-'));
  const port = await freePort();
  const args = [
    '--port',
    String(port),
    '--bind',
    ...(opts.host ? ['127.0.0.1', opts.host] : ['127.0.0.1']),
    '--dir',
    dir,
    '--daemonize',
    'no',
    '--save',
    '',
    '--appendonly',
    opts.persist ? 'yes' : 'no',
    '--appendfsync',
    'always',
    '--protected-mode',
    'no',
    '--loglevel',
    'warning',
  ];
  if (opts.tls) {
    const [cert, key] = [join(dir, 'cert.pem'), join(dir, 'key.pem')];
    const made = spawnSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=celeriac-test',
        '-addext',
        'subjectAltName=DNS:celeriac-test',
        '-keyout',
        key,
        '-out',
        cert,
      ],
      { encoding: 'utf8' },
    );
    if (made.status !== 0) throw new Error(`openssl could not make a test certificate: ${made.stderr || made.error?.message}`);
    args.splice(0, 2, '--port', '0', '--tls-port', String(port), '--tls-cert-file', cert, '--tls-key-file', key, '--tls-auth-clients', 'no');
  }
  const log = join(dir, 'redis.log');
  const server = await supervise(dir, stopGraceMs.redis, () => launch('redis-server', bin, args, process.env, port, log, 15_000));
  const scheme = opts.tls ? 'rediss' : 'redis';
  return {
    kind: 'redis',
    url: `${scheme}://${opts.host ?? '127.0.0.1'}:${port}/0`,
    port,
    managementUrl: null,
    pid: () => server.child()?.pid,
    ...server.controls,
  };
}

/** Options for a private rabbitmq-server. */
export interface RabbitOptions {
  /** Enables rabbitmq_management on its own free port (adds a few seconds to start-up). */
  readonly management?: boolean;
}

/**
 * Starts a private rabbitmq-server (unique node name, Erlang cookie, HOME, mnesia and log folders,
 * AMQP, distribution and management ports). Start-up takes 10 to 30 s on a busy 2-core machine.
 */
export async function startRabbit(opts: RabbitOptions = {}): Promise<TestServer> {
  const bin = findBinary('rabbitmq-server', 'CELERIAC_RABBITMQ_SERVER_SCRIPT', ['/usr/lib/rabbitmq/bin']);
  if (!bin) throw new Error('rabbitmq-server is not installed (test/support/setup-services.sh installs it with apt-get)');
  const dir = await mkdtemp(join(tmpdir(), 'celeriac-rabbit-'));
  const [port, distPort, mgmtPort] = [await freePort(), await freePort(), opts.management ? await freePort() : 0];
  const home = join(dir, 'home');
  await mkdir(home);
  await mkdir(join(dir, 'mnesia'));
  await mkdir(join(dir, 'log'));
  const cookie = join(home, '.erlang.cookie');
  await writeFile(cookie, randomBytes(16).toString('hex'));
  await chmod(cookie, 0o400);
  const conf = [
    `listeners.tcp.default = 127.0.0.1:${port}`,
    'loopback_users = none',
    // The tests fill queues quickly; the default disk and memory alarms would block publishers.
    'disk_free_limit.absolute = 1MB',
    'vm_memory_high_watermark.relative = 0.9',
    ...(opts.management ? [`management.tcp.port = ${mgmtPort}`, 'management.tcp.ip = 127.0.0.1'] : []),
  ];
  await writeFile(join(dir, 'rabbitmq.conf'), conf.join('\n') + '\n');
  await writeFile(join(dir, 'enabled_plugins'), opts.management ? '[rabbitmq_management].\n' : '[].\n');
  const node = `celeriac-${process.pid}-${randomBytes(3).toString('hex')}@localhost`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: home,
    RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf'), // absent: ignore /etc/rabbitmq
    RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq.conf'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir, 'log'),
    RABBITMQ_PID_FILE: join(dir, 'rabbitmq.pid'),
    RABBITMQ_LOGS: '-',
  };
  const log = join(dir, 'rabbitmq.log');
  const server = await supervise(dir, stopGraceMs.amqp, () => launch('rabbitmq-server', bin, [], env, port, log, 120_000));
  return {
    kind: 'amqp',
    url: `amqp://guest:guest@127.0.0.1:${port}`,
    port,
    managementUrl: opts.management ? `http://guest:guest@127.0.0.1:${mgmtPort}` : null,
    // The Erlang VM is a child of the start script; RabbitMQ writes its pid here.
    pid: () => {
      if (!server.child()) return undefined;
      const text = existsSync(join(dir, 'rabbitmq.pid')) ? readFileSync(join(dir, 'rabbitmq.pid'), 'utf8').trim() : '';
      return Number(text) || undefined;
    },
    ...server.controls,
  };
}

function external(kind: 'redis' | 'amqp', url: string): TestServer {
  const unsupported = async () => {
    throw new Error(`the ${kind} server at ${url} comes from the environment and cannot be stopped or restarted by tests`);
  };
  return {
    kind,
    url,
    port: Number(new URL(url).port) || (kind === 'redis' ? 6379 : 5672),
    managementUrl: null,
    managed: false,
    pid: () => undefined,
    restart: unsupported,
    stopProcess: unsupported,
    start: unsupported,
    async stop() {},
  };
}

async function use(kind: 'redis' | 'amqp', envVar: string, start: () => Promise<TestServer>, needsManaged: boolean): Promise<ServiceResult> {
  const url = process.env[envVar];
  if (url && !needsManaged) return { server: external(kind, url), skip: false };
  try {
    return { server: await start(), skip: false };
  } catch (err) {
    const why = `${kind} server unavailable: ${(err as Error).message}`;
    if (requireServices()) throw new Error(`${why} (CELERIAC_REQUIRE_SERVICES=1 turns this skip into a failure)`);
    console.error(`\n!!! SKIPPING ${kind} tests: ${why}\n`);
    return { server: undefined, skip: why };
  }
}

/**
 * A Redis server for a test file: CELERIAC_TEST_REDIS_URL when set (unless `managed`, needed for
 * restart/kill), else a private one. Returns a skip reason when none can be had.
 */
export function useRedis(opts: RedisOptions & { managed?: boolean } = {}): Promise<ServiceResult> {
  return use('redis', 'CELERIAC_TEST_REDIS_URL', () => startRedis(opts), opts.managed ?? false);
}

/** A RabbitMQ server for a test file: CELERIAC_TEST_AMQP_URL when set (unless `managed`), else a private one. */
export function useRabbit(opts: RabbitOptions & { managed?: boolean } = {}): Promise<ServiceResult> {
  return use('amqp', 'CELERIAC_TEST_AMQP_URL', () => startRabbit(opts), opts.managed ?? false);
}

/** A unique name for queues, exchanges and keys of one test (spec §10: test isolation). */
export function uniqueName(prefix = 't'): string {
  return `${prefix}-${process.pid}-${randomBytes(4).toString('hex')}`;
}
