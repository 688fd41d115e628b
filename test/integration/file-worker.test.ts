// Real worker processes (the `celeriac` bin) on the embedded file:// broker: the main job of the
// project, several processes on one machine, no server.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createApp } from '../../runtime/src/index.js';
import { TaskFailedError, TaskRevokedError } from '../../runtime/src/errors.js';
import { eventually } from '../support/eventually.js';

const root = fileURLToPath(new URL('../..', import.meta.url)); // dist/
const bin = join(root, 'runtime/src/cli/main.js');
const tasks = join(root, 'test/integration/fixtures/file-tasks.js');
const dir = mkdtempSync(join(tmpdir(), 'celeriac-it-'));
const brokerUrl = `file://${dir}/broker?visibility_timeout=2`;
const backendUrl = `file://${dir}/results`;
const ledger = join(dir, 'ledger.txt');
// Child node processes must not think they are test files (node --test sets NODE_TEST_CONTEXT).
const { NODE_TEST_CONTEXT: _ctx, ...baseEnv } = process.env;
const run = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...baseEnv, ...env } });
const client = createApp({ broker: brokerUrl, backend: backendUrl, logLevel: 'silent' });

interface Proc {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function startWorker(extra: string[] = [], env: Record<string, string> = {}, nodeFlags: string[] = []): Proc {
  const child = spawn(
    process.execPath,
    [...nodeFlags, bin, 'worker', '-A', tasks, '--broker', brokerUrl, '--result-backend', backendUrl, '--metrics-port', 'none', '-l', 'info', ...extra],
    {
      env: { ...baseEnv, LEDGER: ledger, CELERIAC_SHUTDOWN_TIMEOUT_MS: '20000', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, output: () => out, exited };
}

/** Waits until `cond` holds. */
async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  await eventually(
    async () => {
      if (!(await cond())) throw new Error(`timed out waiting for ${what}`);
    },
    { timeoutMs: ms, intervalMs: 25 },
  );
}

/** Whether a worker has claimed the message of task `id` (it sits in the queue's unacked/ folder). */
function claimed(queue: string, id: string): boolean {
  const unacked = join(dir, 'broker/queues', queue, 'unacked');
  return existsSync(unacked) && readdirSync(unacked).some((n) => readFileSync(join(unacked, n), 'utf8').includes(id));
}

const runs = () => (existsSync(ledger) ? readFileSync(ledger, 'utf8').trim().split('\n').filter(Boolean) : []);
const runsOf = (id: string) => runs().filter((l) => l.startsWith(`${id} `)).length;

describe('worker processes on the file broker', () => {
  let w: Proc;
  before(async () => {
    w = startWorker(['-c', '8']);
    await until('worker ready', () => /worker ready/.test(w.output()));
  });
  after(async () => {
    w.child.kill('SIGTERM');
    await w.exited;
  });

  it('runs tasks sent from another process and returns results', async () => {
    const rs = await Promise.all([1, 2, 3].map((i) => client.sendTask('it.add', [i, 10])));
    assert.deepEqual(await Promise.all(rs.map((r) => r.get({ timeout: 10_000 }))), [11, 12, 13]);
  });

  it('stores a failure with its remote type, message and traceback', async () => {
    const r = await client.sendTask('it.fail');
    await assert.rejects(
      r.get({ timeout: 10_000 }),
      (err: unknown) =>
        err instanceof TaskFailedError && err.excType === 'KeyError' && err.excMessage === 'it broke' && /it broke/.test(String(err.remoteTraceback)),
    );
  });

  it('retries across deliveries', async () => {
    const r = await client.sendTask('it.retry');
    assert.equal(await r.get({ timeout: 10_000 }), 2);
    assert.equal(runsOf(r.id), 3);
  });

  it('holds a countdown task, expires an old one, revokes by id', async () => {
    const sent = Date.now();
    const later = await client.sendTask('it.add', [1, 1], {}, { countdown: 400 });
    const expired = await client.sendTask('it.add', [2, 2], {}, { expires: new Date(Date.now() - 1) });
    const revoked = await client.sendTask('it.add', [3, 3], {}, { countdown: 1500 });
    await until('the worker to hold the countdown task', () => claimed('celery', revoked.id));
    await revoked.revoke();
    assert.equal(await later.get({ timeout: 10_000 }), 2);
    assert.ok(Date.now() - sent >= 400, 'not before its countdown');
    await assert.rejects(expired.get({ timeout: 10_000 }), /expired/);
    await assert.rejects(revoked.get({ timeout: 10_000 }), TaskRevokedError);
    // At the end of its countdown the worker discards the task (and acks it) instead of running it.
    await until('the worker to discard the revoked task', () =>
      w
        .output()
        .split('\n')
        .some((l) => l.includes(revoked.id) && l.includes('task revoked: discarded')),
    );
    assert.equal(runsOf(revoked.id), 0, 'a revoked task never runs');
    assert.equal(runsOf(expired.id), 0, 'an expired task never runs');
  });

  it('moves a malformed message and an unknown task to <queue>.dead and keeps working', async () => {
    const ready = join(dir, 'broker/queues/celery/ready');
    writeFileSync(join(ready, '0-00000000000001-000001-1-aaaaaa.json'), 'this is not an envelope');
    const unknown = await client.sendTask('it.nope', [1]);
    await assert.rejects(unknown.get({ timeout: 10_000 }), /NotRegistered/);
    const r = await client.sendTask('it.add', [5, 5]);
    assert.equal(await r.get({ timeout: 10_000 }), 10);
    const broker = await client.broker();
    await until('two dead letters', async () => (await broker.depth('celery.dead')) >= 2);
    assert.match(w.output(), /unreadable task message \(no task id\) moved to celery\.dead/);
    assert.match(w.output(), /task message refused, stored as FAILURE \(NotRegistered\) and moved to celery\.dead/);
    assert.equal(w.child.exitCode, null, 'the worker is still running');
  });
});

after(async () => {
  await client.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('warm shutdown and crashes lose nothing', () => {
  it('200 tasks, SIGTERM mid-way, restart: every task completes exactly once', async () => {
    rmSync(ledger, { force: true });
    const ids: string[] = [];
    for (let i = 0; i < 200; i++) ids.push((await client.sendTask('it.sleepEarly', [20, i], {}, { queue: 'shutdown' })).id);
    const w1 = startWorker(['-c', '4', '-Q', 'shutdown']);
    await until('some tasks done', () => runs().length >= 40);
    w1.child.kill('SIGTERM');
    assert.equal(await w1.exited, 0);
    const done1 = runs().length;
    assert.ok(done1 < 200, `the first worker stopped early (${done1} done)`);
    assert.match(w1.output(), /gave back prefetched and scheduled messages/);
    const w2 = startWorker(['-c', '8', '-Q', 'shutdown']);
    await until('all 200 done', () => runs().length >= 200, 30_000);
    w2.child.kill('SIGTERM');
    await w2.exited; // from here the ledger is final: a late duplicate would be in it
    const counts = new Map<string, number>();
    for (const l of runs()) counts.set(l.split(' ')[0]!, (counts.get(l.split(' ')[0]!) ?? 0) + 1);
    assert.equal(counts.size, 200);
    assert.deepEqual([...new Set(counts.values())], [1], 'each task ran exactly once');
    const values = await Promise.all(ids.map((id) => client.asyncResult(id).get({ timeout: 10_000 })));
    assert.deepEqual(values, [...Array(200).keys()]);
  });

  it('a SIGKILLed worker loses no late-ack task: it comes back after the visibility timeout', async () => {
    rmSync(ledger, { force: true });
    const r = await client.sendTask('it.sleep', [3000, 7], {}, { queue: 'crash' });
    const w1 = startWorker(['-Q', 'crash']);
    await until('task started', () => runsOf(r.id) === 1);
    w1.child.kill('SIGKILL');
    await w1.exited;
    const unacked = readdirSync(join(dir, 'broker/queues/crash/unacked'));
    assert.equal(unacked.length, 1, 'the claim is still held by the dead worker');
    const w2 = startWorker(['-Q', 'crash']);
    assert.equal(await r.get({ timeout: 20_000 }), 7);
    assert.equal(runsOf(r.id), 2, 'ran again after the crash');
    w2.child.kill('SIGTERM');
    await w2.exited;
  });
});

describe('an idle worker loads only what its URLs and config use', () => {
  /** npm packages a process loaded, from the lines ./fixtures/record-loads.ts wrote. */
  const packagesIn = (file: string): Set<string> => {
    const names = new Set<string>();
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(line) ?? /^((?:@[^/.][^/]*\/)?[^/.:][^/:]*)/.exec(line);
      if (m)
        names.add(
          m[1]!
            .split('/')
            .slice(0, m[1]!.startsWith('@') ? 2 : 1)
            .join('/'),
        );
    }
    return names;
  };

  it('a worker on file:// loads no other driver, serializer, pretty printer or Kubernetes client', async () => {
    const loads = join(dir, 'loads.txt');
    writeFileSync(loads, '');
    const w = startWorker(['-l', 'info'], { CELERIAC_TEST_LOADS: loads }, ['--import', join(root, 'test/integration/fixtures/record-loads.js')]);
    try {
      await until('worker ready', () => /worker ready/.test(w.output()));
      const loaded = packagesIn(loads);
      assert.ok(loaded.has('pino'), `the recorder sees packages (got ${[...loaded].join(', ')})`);
      for (const heavy of ['ioredis', 'amqplib', '@msgpack/msgpack', 'yaml', 'seek-bzip', 'pino-pretty', '@kubernetes/client-node']) {
        assert.ok(!loaded.has(heavy), `an idle file:// worker loaded ${heavy}`);
      }
    } finally {
      w.child.kill('SIGTERM');
      await w.exited;
    }
  });
});

describe('the celeriac CLI', () => {
  it('has --help on every command', () => {
    for (const cmd of [[], ['worker'], ['call'], ['result'], ['purge']]) {
      const r = run([...cmd, '--help']);
      assert.equal(r.status, 0, `${cmd.join(' ')} --help`);
      assert.match(r.stdout, /Usage: celeriac/);
    }
  });

  it('call --wait, result and purge work against a worker', async () => {
    const w = startWorker(['-Q', 'cli']);
    await until('worker ready', () => /worker ready/.test(w.output()));
    const common = ['--broker', brokerUrl, '--result-backend', backendUrl];
    const call = run(['call', 'it.add', '--args', '[20, 22]', '-Q', 'cli', '--wait', ...common]);
    assert.equal(call.status, 0, call.stderr);
    assert.equal(call.stdout.trim(), '42');
    const id = run(['call', 'it.add', '--args', '[1, 2]', '-Q', 'cli', ...common]).stdout.trim();
    await client.asyncResult(id).get({ timeout: 10_000 });
    const res = run(['result', id, ...common]);
    assert.equal(JSON.parse(res.stdout).result, 3);
    w.child.kill('SIGTERM');
    await w.exited;
    run(['call', 'it.add', '--args', '[1, 2]', '-Q', 'cli', ...common]);
    const purge = run(['purge', '-Q', 'cli', ...common]);
    assert.match(purge.stdout, /cli: purged 1 message/);
  });

  it('explains bad input instead of crashing', () => {
    const bad = run(['call', 'it.add', '--args', '{"a":1}', '--broker', brokerUrl]);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--args: expected a JSON array/);
    const noApp = run(['worker', '--broker', brokerUrl], { CELERIAC_APP: '' });
    assert.equal(noApp.status, 2);
    assert.match(noApp.stderr, /a worker needs the module that defines its tasks/);
    const badConf = run(['worker', '-A', tasks, '-c', 'four', '--broker', 'nats://x']);
    assert.equal(badConf.status, 2);
    assert.match(badConf.stderr, /--concurrency: expected an integer from 1 to 10000, got "four"/);
  });
});
