// Worker behaviour end to end in one process, on the memory:// broker and backend.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, startTestWorker } from '../../../../runtime/src/testing/index.js';
import { TaskFailedError, TaskRevokedError } from '../../../../runtime/src/errors.js';
import { encodeTask } from '../../../../runtime/src/protocol/task-message.js';
import type { TaskContext } from '../../../../runtime/src/app/task.js';
import type { Worker } from '../../../../runtime/src/worker/worker.js';
import { createApp } from '../../../../runtime/src/app/app.js';
import { eventually } from '../../../support/eventually.js';
import { pino } from 'pino';

const app = createTestApp({ concurrency: 4 });
const calls = new Map<string, number>();
const seen = (k: string) => calls.set(k, (calls.get(k) ?? 0) + 1);

const add = app.task('t.add', (a: number, b: number) => a + b);
const fail = app.task('t.fail', (msg: string) => {
  throw Object.assign(new Error(msg), { name: 'ValueError' });
});
const flaky = app.task(
  't.flaky',
  function (this: TaskContext, key: string) {
    seen(key);
    if (this.retries < 2) this.retry({ countdown: 10, exc: new Error('not yet') });
    return { key, retries: this.retries };
  },
  { maxRetries: 3 },
);
const alwaysRetry = app.task(
  't.always',
  function (this: TaskContext) {
    this.retry({ countdown: 1, exc: Object.assign(new Error('still broken'), { name: 'RuntimeError' }) });
  },
  { maxRetries: 2 },
);
const when = app.task('t.when', function (this: TaskContext, key: string) {
  seen(key);
  return { ran: Date.now(), eta: this.eta?.getTime() ?? null };
});
const waitAbort = app.task('t.waitabort', function (this: TaskContext) {
  return new Promise((resolve) => this.signal.addEventListener('abort', () => resolve('aborted')));
});
class Flaky extends Error {}
let autoCount = 0;
const auto = app.task(
  't.auto',
  () => {
    autoCount++;
    if (autoCount < 3) throw new Flaky('transient');
    return autoCount;
  },
  { autoretryFor: [Flaky], retryBackoff: 5, retryJitter: false },
);
const noResult = app.task('t.noresult', () => 1, { ignoreResult: true });
let releaseStarted!: () => void;
const started = app.task('t.started', () => new Promise((r) => (releaseStarted = () => r('done'))), { trackStarted: true });
const limited = app.task('t.limited', (i: number) => i, { rateLimit: '50/s' });
const hard = app.task('t.hard', () => new Promise(() => undefined), { timeLimit: 50 });
const join = app.task('t.join', (parts: string[], sep: string = ',') => parts.join(sep), { params: ['parts', 'sep'] });
const kwargsReader = app.task(
  't.kwargs',
  function (this: TaskContext) {
    return this.kwargs;
  },
  { readsKwargs: true },
);
const ctxInfo = app.task('t.ctx', function (this: TaskContext) {
  return { id: this.id, queue: this.deliveryInfo.queue, hostname: this.hostname, root: this.rootId, parent: this.parentId };
});

let worker: Worker;
before(async () => {
  worker = await startTestWorker(app);
});
after(async () => {
  await worker.stop();
});

describe('worker (memory broker)', () => {
  it('runs a task and stores SUCCESS', async () => {
    const r = await add.delay(2, 3);
    assert.equal(await r.get({ timeout: 5000 }), 5);
    assert.equal(await r.state(), 'SUCCESS');
    assert.equal(await r.successful(), true);
  });

  it('gives the task its context', async () => {
    const r = await ctxInfo.delay();
    const v = (await r.get({ timeout: 5000 })) as Record<string, unknown>;
    assert.deepEqual(v, { id: r.id, queue: 'celery', hostname: app.config.hostname, root: r.id, parent: null });
  });

  it('stores a failure with its type, message and traceback, and get() throws it', async () => {
    const r = await fail.delay('bad value');
    await assert.rejects(
      r.get({ timeout: 5000 }),
      (err: unknown) => err instanceof TaskFailedError && err.excType === 'ValueError' && err.excMessage === 'bad value',
    );
    assert.equal(await r.failed(), true);
    assert.deepEqual(await r.result(), { exc_type: 'ValueError', exc_message: ['bad value'], exc_module: 'builtins' });
    assert.match(String(await r.traceback()), /Traceback[\s\S]*bad value/);
  });

  it('binds keyword arguments to declared parameter names', async () => {
    const r = await app.sendTask('t.join', [['a', 'b', 'c']], { sep: '-' });
    assert.equal(await r.get({ timeout: 5000 }), 'a-b-c');
    const typed = await join.applyAsync([], { parts: ['x', 'y'] });
    assert.equal(await typed.get({ timeout: 5000 }), 'x,y', 'a missing argument is undefined (the default applies)');
    assert.deepEqual(await (await kwargsReader.applyAsync([], { any: 1 })).get({ timeout: 5000 }), { any: 1 });
  });

  it('fails a keyword argument the task cannot bind with TypeError, stored as FAILURE', async () => {
    const r = await app.sendTask('t.join', [['a']], { x: 1 });
    await assert.rejects(r.get({ timeout: 5000 }), (err: unknown) => err instanceof TaskFailedError && err.excType === 'TypeError');
    assert.deepEqual(await r.result(), { exc_type: 'TypeError', exc_message: ["join() got an unexpected keyword argument 'x'"], exc_module: 'builtins' });
    const undeclared = await app.sendTask('t.add', [1], { b: 2 });
    await assert.rejects(
      undeclared.get({ timeout: 5000 }),
      (err: unknown) =>
        err instanceof TaskFailedError && err.excType === 'TypeError' && /add\(\) got an unexpected keyword argument 'b'.*params/.test(err.excMessage),
    );
  });

  it('retries with countdown until it succeeds', async () => {
    const r = await flaky.delay('f1');
    assert.deepEqual(await r.get({ timeout: 5000 }), { key: 'f1', retries: 2 });
    assert.equal(calls.get('f1'), 3);
  });

  it('fails with the original error after maxRetries', async () => {
    const r = await alwaysRetry.delay();
    await assert.rejects(
      r.get({ timeout: 5000 }),
      (err: unknown) => err instanceof TaskFailedError && err.excType === 'RuntimeError' && /still broken/.test(err.excMessage),
    );
  });

  it('a retry that fails at once leaves FAILURE stored, not the RETRY of the run before it', async () => {
    // The retry runs within a millisecond, in this worker, while the run that sent it is still
    // settling: RETRY stored after publishing the retry used to overwrite the retry's FAILURE.
    const own = createTestApp({ concurrency: 4 });
    const runs: number[] = [];
    const again = own.task(
      't.again',
      function (this: TaskContext) {
        runs.push(this.retries);
        this.retry({ countdown: 0, exc: Object.assign(new Error('down'), { name: 'RuntimeError' }) });
      },
      { maxRetries: 2 },
    );
    const w = await startTestWorker(own);
    try {
      const r = await again.delay();
      await assert.rejects(r.get({ timeout: 5000 }), (err: unknown) => err instanceof TaskFailedError && err.excType === 'RuntimeError');
      await eventually(() => assert.equal(w.counts().processed, 3));
      assert.deepEqual(runs, [0, 1, 2]);
      assert.equal(await r.state(), 'FAILURE', "the last run's state stays");
    } finally {
      await w.stop();
    }
  });

  it('a retry that cannot be published fails the task with that error, not RETRY forever', async () => {
    // Celery: an error from retry()'s apply_async propagates and the task fails with it. Here the
    // retry's message cannot be written (an invalid ETA); RETRY was already stored, and get()
    // waited for a retry that did not exist.
    const own = createTestApp({ concurrency: 1 });
    const unsent = own.task('t.unsent', function (this: TaskContext) {
      this.retry({ eta: new Date(Number.NaN), exc: new Error('down') });
    });
    const w = await startTestWorker(own);
    try {
      const r = await unsent.delay();
      await assert.rejects(r.get({ timeout: 5000 }), (err: unknown) => err instanceof TaskFailedError && err.excType === 'RangeError');
      assert.equal(await r.state(), 'FAILURE');
    } finally {
      await w.stop();
    }
  });

  it('autoretries listed errors with backoff', async () => {
    const r = await auto.delay();
    assert.equal(await r.get({ timeout: 5000 }), 3);
  });

  it('holds a countdown task until its ETA', async () => {
    const r = await when.applyAsync(['w1'], {}, { countdown: 150 });
    const v = (await r.get({ timeout: 5000 })) as { ran: number; eta: number };
    assert.ok(v.eta !== null && v.ran >= v.eta, 'ran at or after its eta');
  });

  it('discards an expired task as REVOKED "expired" without running it', async () => {
    const r = await when.applyAsync(['expired'], {}, { expires: new Date(Date.now() - 1000) });
    await assert.rejects(r.get({ timeout: 5000 }), (err: unknown) => err instanceof TaskRevokedError && /expired/.test(err.message));
    assert.equal(calls.get('expired'), undefined);
  });

  it('revokes a scheduled task by id: it never runs', async () => {
    const r = await when.applyAsync(['revoked'], {}, { countdown: 300 });
    await r.revoke();
    await assert.rejects(r.get({ timeout: 5000 }), TaskRevokedError);
    await new Promise((res) => setTimeout(res, 400));
    assert.equal(calls.get('revoked'), undefined);
    assert.equal(await r.state(), 'REVOKED');
  });

  it('revoke with terminate aborts a running task', async () => {
    const r = await waitAbort.delay();
    await new Promise((res) => setTimeout(res, 50));
    await r.revoke({ terminate: true });
    // revoke() stores REVOKED("revoked") itself first (Celery >= 5.6.2); the worker then records "terminated" over it.
    await eventually(() => assert.rejects(r.get({ timeout: 5000 }), (err: unknown) => err instanceof TaskRevokedError && /terminated/.test(err.message)));
  });

  it('fails a task past its hard time limit with TimeLimitExceeded', async () => {
    const r = await hard.delay();
    await assert.rejects(r.get({ timeout: 5000 }), (err: unknown) => err instanceof TaskFailedError && err.excType === 'TimeLimitExceeded');
  });

  it('stores nothing with ignoreResult, STARTED with trackStarted', async () => {
    const r = await noResult.delay();
    const s = await started.delay();
    for (let i = 0; i < 100 && (await s.state()) !== 'STARTED'; i++) await new Promise((res) => setTimeout(res, 10));
    assert.equal(await s.state(), 'STARTED');
    releaseStarted();
    assert.equal(await s.get({ timeout: 5000 }), 'done');
    assert.equal(await r.state(), 'PENDING');
  });

  it('applies rate-limited tasks, all of them', async () => {
    const rs = await Promise.all([1, 2, 3, 4, 5].map((i) => limited.delay(i)));
    assert.deepEqual(await Promise.all(rs.map((r) => r.get({ timeout: 5000 }))), [1, 2, 3, 4, 5]);
  });

  it('sends linked tasks with the result prepended', async () => {
    const linkId = crypto.randomUUID();
    const r = await add.applyAsync([1, 2], {}, { link: app.signature('t.add', [10], {}, { task_id: linkId }) });
    assert.equal(await r.get({ timeout: 5000 }), 3);
    assert.equal(await app.asyncResult(linkId).get({ timeout: 5000 }), 13);
  });

  it('stores FAILURE for an unregistered task and dead-letters its message', async () => {
    const broker = await app.broker();
    const before = await broker.depth('celery.dead');
    const r = await app.sendTask('t.missing', [1]);
    await assert.rejects(r.get({ timeout: 5000 }), (err: unknown) => err instanceof TaskFailedError && err.excType === 'NotRegistered');
    assert.equal(await broker.depth('celery.dead'), before + 1);
  });

  it('dead-letters malformed and disallowed messages with a reason, and keeps working', async () => {
    const broker = await app.broker();
    const before = await broker.depth('celery.dead');
    await broker.publish('celery', {
      body: Buffer.from('{oops'),
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      headers: { task: 't.add', id: 'bad-1' },
      properties: {},
    });
    await broker.publish('celery', encodeTask({ id: 'bad-2', name: 't.add', args: [1, 1], kwargs: {}, origin: 'test', serializer: 'yaml' }));
    await broker.publish('celery', {
      body: Buffer.from([0x80]),
      contentType: 'application/x-python-serialize',
      contentEncoding: 'binary',
      headers: { task: 't.add', id: 'bad-3' },
      properties: {},
    });
    const r = await add.delay(20, 22);
    assert.equal(await r.get({ timeout: 5000 }), 42);
    for (let i = 0; i < 100 && (await broker.depth('celery.dead')) < before + 3; i++) await new Promise((res) => setTimeout(res, 10));
    assert.equal(await broker.depth('celery.dead'), before + 3);
    const reasons: string[] = [];
    const ctl = new AbortController();
    await broker.consume(
      ['celery.dead'],
      async (d) => {
        reasons.push(String(d.message.headers['x-celeriac-dead-reason']));
        await d.ack();
        if ((await broker.depth('celery.dead')) === 0) ctl.abort();
      },
      { prefetch: 100, signal: ctl.signal },
    );
    assert.ok(
      reasons.some((x) => /Cannot decode application\/json/.test(x)),
      reasons.join(' | '),
    );
    assert.ok(reasons.some((x) => /x-yaml" is not accepted/.test(x)));
    assert.ok(reasons.some((x) => /pickle/.test(x)));
  });

  it('exports metrics by outcome', async () => {
    const text = await worker.metrics.registry.metrics();
    assert.match(text, /celeriac_tasks_completed_total\{queue="celery",task="t.add",outcome="succeeded"\} [1-9]/);
    assert.match(text, /celeriac_tasks_completed_total\{queue="celery",task="t.flaky",outcome="retried"\} 2/);
    assert.match(text, /celeriac_messages_dead_lettered_total\{queue="celery",reason="E_CONTENT_DISALLOWED"\} 2/);
    assert.match(text, /celeriac_worker_slots 4/);
  });
});

describe('worker HTTP endpoint', () => {
  it('serves /metrics, /healthz, /readyz and /drain, and is not ready once draining', async () => {
    const a = createTestApp();
    a.configure({ metricsPort: 0 });
    a.task('h.add', (x: number, y: number) => x + y);
    const w = await startTestWorker(a);
    const base = w.metricsUrl!.replace('/metrics', '');
    const get = async (p: string) => {
      const r = await fetch(base + p);
      return { status: r.status, text: await r.text() };
    };
    assert.equal((await get('/healthz')).status, 200);
    assert.equal((await get('/readyz')).status, 200);
    assert.match((await get('/metrics')).text, /celeriac_worker_slots/);
    assert.equal((await get('/nope')).status, 404);
    assert.equal((await get('/drain')).status, 200);
    assert.equal((await get('/readyz')).status, 503);
    assert.equal((await get('/healthz')).status, 200, 'a draining worker is alive');
    assert.match((await get('/metrics')).text, /celeriac_worker_draining 1/);
    const r = await a.sendTask('h.add', [1, 2]);
    await new Promise((res) => setTimeout(res, 100));
    assert.equal(await r.state(), 'PENDING', 'a drained worker takes no new task');
    assert.equal((await get('/resume')).status, 200);
    assert.equal((await get('/readyz')).status, 200, 'ready again after resume');
    assert.equal(await r.get({ timeout: 5000 }), 3, 'the task sent while drained runs after resume');
    await w.stop();
    assert.equal((await get('/healthz').catch(() => ({ status: 0 }))).status, 0, 'the endpoint closes with the worker');
  });
});

describe('worker shutdown and health', () => {
  /** A client of the same memory:// space, to read results once the worker's app is closed. */
  const reader = (a: ReturnType<typeof createTestApp>) =>
    createApp({ logLevel: 'silent', broker: a.config.brokerUrl, backend: a.config.resultBackend, metricsPort: null });

  it('a cold stop stores FAILURE(WorkerLostError) for a running early-ack task, and requeues nothing', async () => {
    const a = createTestApp();
    const wait = a.task('s.wait', function (this: TaskContext) {
      return new Promise((resolve) => this.signal.addEventListener('abort', () => resolve('aborted')));
    });
    const w = await startTestWorker(a);
    const r = await wait.delay();
    await eventually(() => assert.equal(w.counts().active, 1));
    await w.stop({ graceful: false, reason: 'a test' });
    const client = reader(a);
    try {
      const err = await client
        .asyncResult(r.id)
        .get({ timeout: 5000 })
        .then(
          () => null,
          (e: unknown) => e,
        );
      assert.ok(err instanceof TaskFailedError, String(err));
      assert.equal(err.excType, 'WorkerLostError');
      assert.match(err.message, /Worker exited prematurely: a test/);
    } finally {
      await client.close();
    }
  });

  it('stays alive (/healthz 200) but not ready (/readyz 503) during a warm stop', async () => {
    const a = createTestApp();
    a.configure({ metricsPort: 0, shutdownTimeoutMs: 600_000 });
    const wait = a.task('s.wait', function (this: TaskContext) {
      return new Promise((resolve) => this.signal.addEventListener('abort', () => resolve('aborted')));
    });
    const w = await startTestWorker(a);
    const base = w.metricsUrl!.replace('/metrics', '');
    await wait.delay();
    await eventually(() => assert.equal(w.counts().active, 1));
    const stopping = w.stop();
    await eventually(async () => assert.equal((await fetch(base + '/readyz')).status, 503));
    assert.equal((await fetch(base + '/healthz')).status, 200, 'a worker finishing its tasks is alive');
    await w.stop({ graceful: false });
    await stopping;
  });

  it('/healthz answers 503 with the reason when consuming from the broker failed', async () => {
    const a = createTestApp();
    a.configure({ metricsPort: 0 });
    const broker = await a.broker();
    broker.consume = () => Promise.reject(new Error('the broker went away'));
    const w = await startTestWorker(a);
    try {
      const base = w.metricsUrl!.replace('/metrics', '');
      await eventually(async () => {
        const r = await fetch(base + '/healthz');
        assert.equal(r.status, 503);
        assert.match(await r.text(), /the consumer stopped: the broker went away/);
      });
    } finally {
      process.exitCode = undefined; // set by the consumer for the CLI; this test process is fine
      await w.stop();
    }
  });
});

describe('revoke while a task is starting', () => {
  it('a revoke that arrives between the start check and the run (storing STARTED) stops the task: it never runs', async () => {
    const a = createTestApp({ concurrency: 1, trackStarted: true, hostname: 'w3@test' });
    let ran = 0;
    a.task('t.starting', () => {
      ran++;
      return 'ran';
    });
    // Hold the STARTED store: the task has passed its revoked check and is acknowledged, not yet running.
    const backend = await a.backend();
    const store = backend.store.bind(backend);
    let atStarted!: () => void;
    const reached = new Promise<void>((r) => (atStarted = r));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    backend.store = async (meta, ctx) => {
      if (meta.status === 'STARTED') {
        atStarted();
        await gate;
      }
      return store(meta, ctx);
    };
    const w = await startTestWorker(a);
    try {
      const r = await a.sendTask('t.starting', []);
      await reached;
      const replies = await a.control.revoke(r.id, { reply: true, destination: ['w3@test'] });
      assert.equal(replies.length, 1);
      release();
      await assert.rejects(r.get({ timeout: 5000 }), TaskRevokedError);
      assert.equal(ran, 0, 'the revoked task ran');
    } finally {
      release();
      await w.stop();
      await a.close();
    }
  });
});

describe('slots: what holds one', () => {
  /** A backend whose SUCCESS stores wait until released: the worker is storing outcomes meanwhile. */
  const holdSuccessStores = async (a: ReturnType<typeof createTestApp>) => {
    const backend = await a.backend();
    const store = backend.store.bind(backend);
    const held: (() => void)[] = [];
    backend.store = async (meta, ctx) => {
      if (meta.status === 'SUCCESS') await new Promise<void>((r) => held.push(r));
      return store(meta, ctx);
    };
    return { held, releaseAll: () => held.splice(0).forEach((r) => r()) };
  };

  it('a slot runs the next task while the last result is stored, and at most a slot more of outcomes wait', async () => {
    const a = createTestApp({ concurrency: 1 });
    const ran: number[] = [];
    const t = a.task('slots.t', (i: number) => (ran.push(i), i));
    const stores = await holdSuccessStores(a);
    const w = await startTestWorker(a);
    try {
      const rs = await Promise.all([1, 2, 3].map((i) => t.delay(i)));
      // 1 ran and waits for its store; its slot ran 2, which waits too: 3 waits for one of them.
      await eventually(() => assert.deepEqual([ran, stores.held.length], [[1, 2], 2]));
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(ran, [1, 2], 'a third task started while two outcomes of a one-slot pool were being stored');
      assert.equal(w.counts().active, 2);
      const releasing = setInterval(stores.releaseAll, 5);
      try {
        assert.deepEqual(await Promise.all(rs.map((r) => r.get({ timeout: 5000 }))), [1, 2, 3]);
      } finally {
        clearInterval(releasing);
      }
      assert.deepEqual(ran, [1, 2, 3]);
    } finally {
      stores.releaseAll();
      await w.stop();
      await a.close();
    }
  });

  /** The worker's deliveries, with their early ack replaced by `ack` (the real ack is not made). */
  const replaceAcks = async (a: ReturnType<typeof createTestApp>, ack: () => Promise<void>) => {
    const broker = await a.broker();
    const consume = broker.consume.bind(broker);
    broker.consume = (queues, onDelivery, opts) => consume(queues, (d) => onDelivery(Object.assign(Object.create(d) as typeof d, { ack })), opts);
  };

  it('runs an early-ack task while its ack is in flight, and stores its result before the ack lands', async () => {
    const a = createTestApp({ concurrency: 1 });
    a.task('slots.acked', (x: number) => x * 2);
    let landed!: () => void;
    const ackLands = new Promise<void>((r) => (landed = r));
    await replaceAcks(a, () => ackLands);
    const w = await startTestWorker(a);
    try {
      const r = await a.sendTask('slots.acked', [21]);
      assert.equal(await r.get({ timeout: 5000 }), 42);
    } finally {
      landed();
      await w.stop();
      await a.close();
    }
  });

  it('an early ack that fails is logged, the task runs, and a cold stop does not store WorkerLostError for it', async () => {
    const lines: { msg: string; taskId?: string }[] = [];
    const a = createTestApp({ concurrency: 1, logger: pino({ level: 'warn' }, { write: (s: string) => void lines.push(JSON.parse(s)) }) });
    let running = 0;
    a.task('slots.unacked', function (this: TaskContext) {
      running++;
      return new Promise((resolve) => this.signal.addEventListener('abort', () => resolve('aborted')));
    });
    await replaceAcks(a, () => Promise.reject(new Error('the connection dropped')));
    const w = await startTestWorker(a);
    const r = await a.sendTask('slots.unacked', []);
    await eventually(() => assert.equal(running, 1));
    await eventually(() => assert.ok(lines.some((l) => l.taskId === r.id && /acknowledging the message failed; the task runs anyway/.test(l.msg))));
    await w.stop({ graceful: false, reason: 'a test' });
    assert.ok(lines.some((l) => l.taskId === r.id && /its early ack failed, so the broker still has its message/.test(l.msg)));
    const client = createApp({ logLevel: 'silent', broker: a.config.brokerUrl, backend: a.config.resultBackend, metricsPort: null });
    try {
      assert.equal(await client.asyncResult(r.id).state(), 'PENDING', 'a task whose message the broker still has was stored as lost');
    } finally {
      await client.close();
    }
  });
});
