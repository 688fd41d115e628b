// celeriac/testing as users' tests use it: eager mode (Celery's task_always_eager and
// task_eager_propagates) and the send recorder.
import assert, { AssertionError } from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { createApp, TaskFailedError, type TaskContext } from '../../../../runtime/src/index.js';
import { createTestApp, recordSends, startTestWorker, useEagerMode } from '../../../../runtime/src/testing/index.js';

/** A user's app module: a real broker URL that tests must never reach. */
function shopApp() {
  const app = createApp({ name: 'shop', broker: 'redis://127.0.0.1:1/0', backend: 'redis://127.0.0.1:1/0', logLevel: 'silent' });
  const add = app.task('shop.add', (a: number, b: number) => a + b);
  const greet = app.task('shop.greet', (name: string, greeting = 'hello') => `${greeting} ${name}`, { params: ['name', 'greeting'] });
  const thrown = Object.assign(new Error('division by zero'), { name: 'ZeroDivisionError' });
  const fail = app.task('shop.fail', () => {
    throw thrown;
  });
  const flaky = app.task(
    'shop.flaky',
    function (this: TaskContext) {
      if (this.retries < 2) this.retry({ countdown: 1 });
      return this.retries;
    },
    { maxRetries: 5 },
  );
  return { app, add, greet, fail, thrown, flaky };
}

describe('celeriac/testing eager mode', () => {
  it('delay() runs the task in this process and resolves with a ready result; no broker is reached', async () => {
    const { app, add, greet } = shopApp();
    const eager = await useEagerMode(app);
    try {
      const r = await add.delay(2, 3);
      assert.equal(await r.ready(), true, 'ready as soon as delay() resolves');
      assert.equal(await r.get(), 5);
      const g = await greet.applyAsync(['ada'], { greeting: 'hi' });
      assert.equal(await g.get(), 'hi ada');
    } finally {
      await eager.stop();
    }
  });

  it('a failing task rejects delay() with the very error it threw (propagate, the default), as task_eager_propagates', async () => {
    const { app, fail, thrown } = shopApp();
    const eager = await useEagerMode(app);
    try {
      await assert.rejects(fail.delay(), (err: unknown) => err === thrown);
    } finally {
      await eager.stop();
    }
  });

  it('with propagate: false the result holds the failure', async () => {
    const { app, fail } = shopApp();
    const eager = await useEagerMode(app, { propagate: false });
    try {
      const r = await fail.delay();
      assert.equal(await r.state(), 'FAILURE');
      assert.match(String(await r.traceback()), /ZeroDivisionError: division by zero/);
      // As a remote worker's failure: the stored type and message, not the thrown object.
      await assert.rejects(r.get(), (err: unknown) => err instanceof TaskFailedError && err.excType === 'ZeroDivisionError');
    } finally {
      await eager.stop();
    }
  });

  it('retries run to the end before delay() resolves', async () => {
    const { app, flaky } = shopApp();
    const eager = await useEagerMode(app);
    try {
      assert.equal(await (await flaky.delay()).get(), 2);
    } finally {
      await eager.stop();
    }
  });

  it('refuses an app that already connected, saying when to call it', async () => {
    const app = createTestApp();
    await app.broker();
    await assert.rejects(useEagerMode(app), /before the app sends its first task/);
    await app.close();
  });
});

describe('celeriac/testing startTestWorker', () => {
  it("starts when the app's metrics port is taken (a dev worker or another test process on 9540)", async () => {
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '0.0.0.0', resolve));
    const port = (holder.address() as AddressInfo).port;
    const app = createApp({ name: 'shop', broker: 'memory://held-port', backend: 'memory://held-port', metricsPort: port, logLevel: 'silent' });
    const add = app.task('shop.add', (a: number, b: number) => a + b);
    try {
      const worker = await startTestWorker(app);
      try {
        assert.equal(await (await add.delay(2, 3)).get({ timeout: 5000 }), 5);
      } finally {
        await worker.stop();
      }
    } finally {
      holder.close();
    }
  });
});

describe('celeriac/testing send recorder', () => {
  it('records calls without publishing them, and asserts on name, args, kwargs and options', async () => {
    const { app, add, greet } = shopApp();
    const sent = recordSends(app, { publish: false });
    const r = await add.applyAsync([1, 2], {}, { countdown: 5000, queue: 'math' });
    await greet.delay('bob');
    await app.sendTask('billing.report', [42], { lang: 'en' });
    assert.equal(sent.sent.length, 3);
    assert.equal(sent.assertSent('shop.add', { args: [1, 2], options: { queue: 'math' } }).id, r.id);
    sent.assertSent('billing.report', { kwargs: { lang: 'en' } });
    sent.assertNotSent('shop.fail');
    assert.throws(
      () => sent.assertSent('shop.add', { args: [9, 9] }),
      (err: unknown) => err instanceof AssertionError && /shop\.add args=\[1,2\]/.test(err.message),
    );
    assert.throws(() => sent.assertNotSent('shop.greet'), AssertionError);
    sent.clear();
    assert.deepEqual(sent.sent, []);
    sent.stop();
  });

  it('records what an eager app runs, as it runs it', async () => {
    const { app, add } = shopApp();
    const sent = recordSends(app);
    const eager = await useEagerMode(app);
    try {
      assert.equal(await (await add.delay(4, 4)).get(), 8);
      assert.deepEqual(
        sent.of('shop.add').map((s) => s.args),
        [[4, 4]],
      );
    } finally {
      sent.stop();
      await eager.stop();
    }
  });
});
