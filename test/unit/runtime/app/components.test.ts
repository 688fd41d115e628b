// User components (issue 20): started in dependency order with the worker, stopped in reverse,
// a failing start stops the worker with a message naming the component.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { orderComponents, type Component } from '../../../../runtime/src/app/components.js';
import { ComponentStartError, ConfigError } from '../../../../runtime/src/errors.js';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { createTestApp, startTestWorker } from '../../../../runtime/src/testing/index.js';
import { createWorker } from '../../../../runtime/src/worker/worker.js';
import { createPoolFromConfig } from '../../../../runtime/src/pools/pool.js';

const named = (name: string, o: Partial<Component> = {}): Component => ({ name, start() {}, ...o });

describe('components', () => {
  it('orders by requires and before, otherwise as declared', () => {
    const order = orderComponents([
      named('broker'),
      named('cache', { requires: ['db', 'broker'] }),
      named('db'),
      named('audit', { before: ['db'] }),
      named('web', { before: ['consumer'] }),
      named('consumer'),
    ]).map((c) => c.name);
    assert.deepEqual(order, ['broker', 'audit', 'db', 'cache', 'web', 'consumer']);
  });

  it('refuses unknown names and cycles, all at once', () => {
    assert.throws(
      () =>
        orderComponents([
          named('a', { requires: ['nope'] }),
          named('b', { before: ['gone'] }),
          named('x', { requires: ['y'] }),
          named('y', { requires: ['x'] }),
        ]),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.problems.length === 3 &&
        /"a" requires "nope": no such component \(known: a, b, x, y\)/.test(err.message) &&
        /"b" starts before "gone": no such component/.test(err.message) &&
        /a cycle x -> y -> x/.test(err.message),
    );
  });

  it('the worker starts them in order before consuming, a task finds them started, and stops them in reverse after its tasks', async () => {
    const app = createTestApp();
    const log: string[] = [];
    const component = (name: string, requires: string[] = []): Component => ({
      name,
      requires,
      start: async () => void log.push(`start ${name}`),
      stop: async () => void log.push(`stop ${name}`),
    });
    // Declared before what it requires: the order comes from `requires`.
    app.component(component('cache', ['pg']));
    app.component(component('pg', ['backend']));
    app.task('t.uses', () => void log.push('task'));
    const worker = await startTestWorker(app);
    await (await app.sendTask('t.uses')).get({ timeout: 5000 });
    await worker.stop();
    assert.deepEqual(log, ['start pg', 'start cache', 'task', 'stop cache', 'stop pg']);
  });

  it('a failing start stops the worker with the component named, after stopping those already started', async () => {
    const app = createTestApp();
    const log: string[] = [];
    app.component({ name: 'pg', start: () => void log.push('start pg'), stop: () => void log.push('stop pg') });
    app.component({
      name: 'cache',
      requires: ['pg'],
      start: () => {
        throw new Error('connection refused');
      },
    });
    await assert.rejects(
      startTestWorker(app),
      (err: unknown) =>
        err instanceof ComponentStartError && err.component === 'cache' && err.message === 'component "cache" failed to start: connection refused',
    );
    assert.deepEqual(log, ['start pg', 'stop pg']);
  });

  /** An app whose debug log lines are kept: the worker logs each component started and stopped. */
  const loggedApp = () => {
    const lines: { component?: string; msg: string }[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as { component?: string; msg: string });
        done();
      },
    });
    const app = createTestApp({ logger: pino({ level: 'debug' }, stream) });
    /** The components started and stopped so far, in order: "start x", "stop x". */
    const seen = () =>
      lines
        .filter((l) => l.msg === 'component started' || l.msg === 'component stopped')
        .map((l) => `${l.msg === 'component started' ? 'start' : 'stop'} ${l.component}`);
    return { app, seen };
  };

  it("the worker's own services are components: one declared before the consumer and requiring the backend starts after the backend and before consuming, and stops after the consumer and before the backend", async () => {
    const { app, seen } = loggedApp();
    const order: string[] = [];
    app.component({
      name: 'cache',
      requires: ['backend'],
      before: ['consumer'],
      start: () => void order.push('cache started'),
      stop: () => void order.push('cache stopped'),
    });
    app.task('t.uses', () => void order.push('task'));
    // Sent before the worker starts: it runs only once consuming begins, after the component.
    const r = await app.sendTask('t.uses');
    const worker = await startTestWorker(app);
    await r.get({ timeout: 5000 });
    await worker.stop();
    const log = seen();
    const at = (s: string) => log.indexOf(s);
    assert.ok(at('start backend') < at('start cache') && at('start cache') < at('start consumer'), log.join(', '));
    assert.ok(at('stop consumer') < at('stop cache') && at('stop cache') < at('stop backend'), log.join(', '));
    assert.deepEqual(order, ['cache started', 'task', 'cache stopped']);
    // The own services' default order, for the record (README "Extending the worker").
    assert.deepEqual(
      log.filter((s) => s.startsWith('start')),
      ['broker', 'backend', 'tracing', 'metrics', 'watchdog', 'pool', 'cache', 'events', 'heartbeat', 'control', 'consumer', 'autoscaler'].map(
        (n) => `start ${n}`,
      ),
    );
  });

  it('a cycle through a service of the worker is refused, naming both', async () => {
    const app = createTestApp();
    app.component(named('early', { requires: ['consumer'], before: ['pool'] }));
    await assert.rejects(startTestWorker(app), (err: unknown) => err instanceof ConfigError && /a cycle pool -> early -> consumer -> pool/.test(err.message));
  });

  it("a failing start of the worker's own service names it and stops what started, in reverse", async () => {
    const { app, seen } = loggedApp();
    const pool = createPoolFromConfig(app.config, { name: 'event-loop', log: app.log, autoscale: null });
    const failing = {
      ...pool,
      kind: pool.kind,
      size: pool.size,
      run: pool.run.bind(pool),
      stop: pool.stop.bind(pool),
      start: () => Promise.reject(new Error('no runner')),
    };
    app.component(named('pg', { before: ['pool'] }));
    await assert.rejects(
      createWorker(app, { pool: failing }).start(),
      (err: unknown) => err instanceof ComponentStartError && err.component === 'pool' && err.message === 'component "pool" failed to start: no runner',
    );
    const log = seen();
    assert.deepEqual(log.slice(log.indexOf('start pg')), [
      'start pg',
      'stop pg',
      ...log
        .slice(0, log.indexOf('start pg'))
        .reverse()
        .map((s) => s.replace('start', 'stop')),
    ]);
  });
});
