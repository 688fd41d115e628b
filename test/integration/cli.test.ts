// The `celeriac` command as a newcomer meets it (issue 17): what a failed task, a timeout, a bad flag,
// a bad env var and an unreachable broker print and exit with; --version on both bins; a second
// worker on one machine; worker log lines that a strict JSON parser accepts. Real processes on the
// embedded file:// broker.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { EXIT_CODES } from '../../runtime/src/cli/report.js';
import { eventually } from '../support/eventually.js';
import { repoRoot, startProcess, stopProcess, type Started } from '../support/processes.js';

const bin = join(repoRoot, 'dist/runtime/src/cli/main.js');
const operatorBin = join(repoRoot, 'dist/operator/src/main.js');
const tasks = join(repoRoot, 'dist/test/integration/fixtures/cli-tasks.js');
const dir = mkdtempSync(join(tmpdir(), 'celeriac-cli-'));
const conn = ['-A', tasks, '--broker', `file://${dir}/broker`, '--result-backend', `file://${dir}/results`];
// Child node processes must not think they are test files (node --test sets NODE_TEST_CONTEXT).
const { NODE_TEST_CONTEXT: _ctx, ...baseEnv } = process.env;
const version = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;

function celeriac(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...baseEnv, ...env } });
}

/** No stack frame of our own code: a user's mistake is not a crash. */
function assertNoStack(text: string): void {
  assert.doesNotMatch(text, /^\s+at .*(dist|node:internal)/m, `a stack trace was printed:\n${text}`);
}

/** JSON.parse, and also reject a key given twice in one object (JSON.parse keeps the last silently). */
function parseStrictJson(line: string): Record<string, unknown> {
  const value = JSON.parse(line) as Record<string, unknown>;
  // JSON is YAML 1.2; the yaml parser rejects duplicate keys ("Map keys must be unique").
  parseYaml(line, { uniqueKeys: true });
  return value;
}

function startWorker(extra: string[] = [], env: Record<string, string> = {}): Started {
  return startProcess(process.execPath, [bin, 'worker', ...conn, '-l', 'info', ...extra], { env: { ...baseEnv, ...env } });
}

async function until(what: string, cond: () => boolean): Promise<void> {
  await eventually(
    () => {
      if (!cond()) throw new Error(`timed out waiting for ${what}`);
    },
    { timeoutMs: 20_000, intervalMs: 25 },
  );
}

describe('celeriac CLI errors and exit codes', () => {
  let worker: Started;
  before(async () => {
    worker = startWorker();
    await until('worker ready', () => /worker ready/.test(worker.output()));
  });
  after(async () => {
    await stopProcess(worker);
  });

  it('a failed task prints the remote exception and its traceback, no local stack, and exits 3', () => {
    const r = celeriac(['call', ...conn, 'cli.fail', '--wait']);
    assert.equal(r.status, EXIT_CODES.taskFailed, r.stderr);
    assert.match(r.stderr, /failed: ZeroDivisionError: division by zero/);
    assert.match(r.stderr, /Remote traceback:\n[\s\S]*ZeroDivisionError: division by zero/);
    assert.doesNotMatch(r.stderr, /TaskFailedError|throwIfFailed/);
  });

  it('--debug adds the local stack', () => {
    const r = celeriac(['call', ...conn, 'cli.fail', '--wait', '--debug']);
    assert.equal(r.status, EXIT_CODES.taskFailed, r.stderr);
    assert.match(r.stderr, /TaskFailedError[\s\S]*at throwIfFailed/);
  });

  it('`result --wait` that times out says so in one line and exits 4', () => {
    const r = celeriac(['result', ...conn, 'no-such-task-id', '--wait', '--timeout', '500']);
    assert.equal(r.status, EXIT_CODES.timeout, r.stderr);
    assert.match(r.stderr, /^celeriac: Timed out after 500 ms waiting for task no-such-task-id .*--timeout/);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  });

  it('`result` of a failed task exits 3', () => {
    const id = celeriac(['call', ...conn, 'cli.fail']).stdout.trim();
    const r = celeriac(['result', ...conn, id, '--wait', '--timeout', '20000']);
    assert.equal(r.status, EXIT_CODES.taskFailed, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { status: string }).status, 'FAILURE');
  });

  it('a bad flag value names the flag in one line and exits 2, before anything is sent', () => {
    const r = celeriac(['call', ...conn, 'cli.add', '--countdown', 'abc']);
    assert.equal(r.status, EXIT_CODES.usage, r.stderr);
    assert.equal(r.stderr.trim(), 'celeriac: invalid configuration: --countdown: expected a number, got "abc"');
    assert.equal(r.stdout, '', 'no task id: nothing was sent');
  });

  it('an unknown option exits 2', () => {
    const r = celeriac(['call', 'cli.add', '--no-such-flag']);
    assert.equal(r.status, EXIT_CODES.usage, r.stderr);
    assert.match(r.stderr, /unknown option '--no-such-flag'/);
  });

  it('an unreachable broker says which setting to check and exits 5', () => {
    const r = celeriac(['call', '--broker', 'amqp://127.0.0.1:1', 'cli.add']);
    assert.equal(r.status, EXIT_CODES.unavailable, r.stderr);
    assert.match(r.stderr, /cannot connect to amqp:\/\/127\.0\.0\.1:1.*--broker or CELERIAC_BROKER_URL/);
    assertNoStack(r.stderr);
  });

  it('a client command logs to stderr: stdout is its answer alone (here: nothing, the broker is down)', () => {
    // Redis gives up after its 10 s connect timeout; its reconnect warnings are log lines.
    const r = celeriac(['call', '--broker', 'redis://127.0.0.1:1/0', 'cli.add'], { CELERIAC_LOG_LEVEL: 'debug' });
    assert.equal(r.status, EXIT_CODES.unavailable, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /reconnecting with backoff/);
  });

  it('a bad CELERIAC_* variable is reported as that variable, not as a failed import of --app', () => {
    const r = celeriac(['worker', ...conn, '--metrics-port', 'none'], { CELERIAC_CONCURRENCY: 'four' });
    assert.equal(r.status, EXIT_CODES.usage, r.stderr);
    assert.match(r.stderr, /CELERIAC_CONCURRENCY: expected an integer .* got "four"/);
    assert.doesNotMatch(r.stderr, /cannot import|--app/);
  });

  it('`call --wait` on a slow task shows its state while it waits', async () => {
    const release = join(dir, 'release');
    const child = spawn(process.execPath, [bin, 'call', ...conn, 'cli.untilFile', '--args', JSON.stringify([release]), '--wait'], {
      env: baseEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.on('data', (d) => (stdout += d));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      await until('the STARTED state to be shown', () => /state: STARTED/.test(stderr));
      writeFileSync(release, '');
      assert.equal(await exited, 0, stderr);
      assert.equal(stdout.trim(), '"released"');
    } finally {
      await stopProcess(child);
    }
  });
});

describe('--version', () => {
  it('celeriac and celeriac-operator print the package version', () => {
    for (const b of [bin, operatorBin]) {
      const r = spawnSync(process.execPath, [b, '--version'], { encoding: 'utf8', env: baseEnv });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout.trim(), version);
    }
  });
});

describe('workers on one machine', () => {
  const procs: Started[] = [];
  after(async () => {
    await Promise.all(procs.map((p) => stopProcess(p)));
  });

  it('a second worker with no port asked for serves /metrics on another port; a taken port asked for names the flag', async () => {
    const [a, b] = [startWorker(), startWorker()];
    procs.push(a, b);
    const metricsUrl = (p: Started) => /"metrics":"(http:[^"]+)".*worker ready/.exec(p.output())?.[1];
    await until('both workers ready', () => metricsUrl(a) !== undefined && metricsUrl(b) !== undefined);
    assert.notEqual(metricsUrl(a), metricsUrl(b));
    for (const url of [metricsUrl(a)!, metricsUrl(b)!]) assert.equal((await fetch(url)).status, 200);
    const taken = new URL(metricsUrl(b)!).port;
    const r = celeriac(['worker', ...conn, '--metrics-port', taken]);
    assert.equal(r.status, EXIT_CODES.usage, r.stderr);
    assert.match(r.stderr, new RegExp(`--metrics-port ${taken}: the port is in use .*--metrics-port <port> or CELERIAC_METRICS_PORT`));
    assertNoStack(r.stderr);
  });

  it('every worker log line is JSON without a key given twice; an error is logged under its own name', async () => {
    const w = startWorker(['--metrics-port', 'none']);
    procs.push(w);
    await until('worker ready', () => /worker ready/.test(w.output()));
    const id = celeriac(['call', ...conn, 'cli.fail', '--queue', 'celery']).stdout.trim();
    // Any of the running workers may take it; run enough that this one logs a failure too.
    await until('a task failure logged by this worker', () => {
      if (w.output().includes('"taskName":"cli.fail"')) return true;
      celeriac(['call', ...conn, 'cli.fail']);
      return false;
    });
    const lines = w
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'));
    assert.ok(lines.length >= 2, w.output());
    const parsed = lines.map((l) => parseStrictJson(l));
    const failure = parsed.find((l) => l.taskName === 'cli.fail' && l.err);
    assert.ok(failure, `no failure line (sent ${id}):\n${w.output()}`);
    assert.equal((failure.err as { type: string }).type, 'ZeroDivisionError');
    assert.ok(parsed.every((l) => typeof l.hostname === 'string' && typeof l.node === 'string'));
  });
});
