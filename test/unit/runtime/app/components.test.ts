// User components (issue 20): started in dependency order with the worker, stopped in reverse,
// a failing start stops the worker with a message naming the component.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { orderComponents, type Component } from '../../../../runtime/src/app/components.js';
import { ComponentStartError, ConfigError } from '../../../../runtime/src/errors.js';
import { createTestApp, startTestWorker } from '../../../../runtime/src/testing/index.js';

const named = (name: string, o: Partial<Component> = {}): Component => ({ name, start() {}, ...o });

describe('components', () => {
  it('orders by requires and before, otherwise as declared', () => {
    const order = orderComponents([
      named('cache', { requires: ['db', 'backend'] }),
      named('db'),
      named('audit', { before: ['db'] }),
      named('web', { before: ['consumer'] }),
    ]).map((c) => c.name);
    assert.deepEqual(order, ['audit', 'db', 'cache', 'web']);
  });

  it('refuses unknown names, impossible orders and cycles, all at once', () => {
    assert.throws(
      () =>
        orderComponents([
          named('a', { requires: ['nope'] }),
          named('b', { before: ['broker'] }),
          named('c', { requires: ['consumer'] }),
          named('x', { requires: ['y'] }),
          named('y', { requires: ['x'] }),
        ]),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.problems.length === 4 &&
        /"a" requires "nope": no such component/.test(err.message) &&
        /"b" cannot start before "broker"/.test(err.message) &&
        /"c" requires "consumer", which the worker starts after its components/.test(err.message) &&
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
});
