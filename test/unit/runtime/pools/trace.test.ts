// trace(): one task run turned into an outcome: the retry limits (Celery's max_retries) and the hard time limit.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Task, TaskContext, TaskOptions } from '../../../../runtime/src/app/task.js';
import { TimeLimitExceeded, trace } from '../../../../runtime/src/pools/trace.js';
import { traceInput } from '../../../support/trace-input.js';

class Flaky extends Error {}

/** Runs `fn` once as if it were delivered with `retries` and returns the outcome. */
function runAt(retries: number, options: TaskOptions, fn: (this: TaskContext) => unknown) {
  const task = { name: 't.x', options, fn } as unknown as Task;
  return trace(traceInput(task, { retries }));
}

describe('trace: max retries', () => {
  const manual = function (this: TaskContext) {
    this.retry({ countdown: 1, exc: new Flaky('again') });
  };
  const auto = () => {
    throw new Flaky('again');
  };

  it('maxRetries: null retries forever, for this.retry() and for autoretry alike', async () => {
    for (const retries of [0, 3, 5, 50]) {
      assert.equal((await runAt(retries, { maxRetries: null }, manual)).state, 'RETRY', `this.retry() at retries=${retries}`);
      assert.equal((await runAt(retries, { maxRetries: null, autoretryFor: [Flaky] }, auto)).state, 'RETRY', `autoretry at retries=${retries}`);
    }
  });

  it('without maxRetries both stop after Celery default of 3 with the original error', async () => {
    for (const [retries, state] of [
      [2, 'RETRY'],
      [3, 'FAILURE'],
      [5, 'FAILURE'],
    ] as const) {
      const m = await runAt(retries, {}, manual);
      const a = await runAt(retries, { autoretryFor: [Flaky] }, auto);
      assert.equal(m.state, state, `this.retry() at retries=${retries}`);
      assert.equal(a.state, state, `autoretry at retries=${retries}`);
      if (state === 'FAILURE') {
        assert.ok(m.state === 'FAILURE' && m.error instanceof Flaky);
        assert.ok(a.state === 'FAILURE' && a.error instanceof Flaky);
      }
    }
  });

  it('a per-call maxRetries overrides the task option (null = forever here too)', async () => {
    const call = (max: number | null) =>
      function (this: TaskContext) {
        this.retry({ countdown: 1, maxRetries: max });
      };
    assert.equal((await runAt(5, { maxRetries: 2 }, call(null))).state, 'RETRY');
    assert.equal((await runAt(5, { maxRetries: null }, call(5))).state, 'FAILURE');
    const failed = await runAt(1, {}, call(1));
    assert.ok(failed.state === 'FAILURE' && (failed.error as Error).name === 'MaxRetriesExceededError');
  });
});

describe('trace: hard time limit on the event loop', () => {
  it('a task that held the loop past its hard limit and then returned is FAILURE(TimeLimitExceeded), not SUCCESS', async () => {
    // The limit's timer cannot fire while the task computes; what counts is that it ran past the limit.
    const o = await runAt(0, { timeLimit: 5 }, () => {
      const until = performance.now() + 20;
      while (performance.now() < until);
      return 'done';
    });
    assert.equal(o.state, 'FAILURE');
    assert.ok(o.state === 'FAILURE' && o.error instanceof TimeLimitExceeded, String(o.state === 'FAILURE' && o.error));
  });
});

/** A task that rejects with ctx.signal's reason when it is aborted (its own listener, added first). */
const rejectsOnAbort = (name: string): Task =>
  ({
    name,
    options: {},
    fn: function (this: TaskContext) {
      return new Promise((_resolve, reject) => this.signal.addEventListener('abort', () => reject(this.signal.reason)));
    },
  }) as unknown as Task;

describe('trace: the task control (ctx.signal made on first read)', () => {
  it('terminate reaches a task that never reads ctx.signal: trace stops waiting, REVOKED', async () => {
    const task = { name: 't.hang', options: {}, fn: () => new Promise(() => undefined) } as unknown as Task;
    const input = traceInput(task);
    const outcome = trace(input);
    input.ctl.abort('terminated');
    const o = await outcome;
    assert.equal(o.state, 'REVOKED');
    assert.equal(o.state === 'REVOKED' && o.reason, 'terminated');
  });

  it('a task that rejects with the abort reason when terminated (its listener runs before trace stops waiting) is REVOKED, not FAILURE', async () => {
    const task = rejectsOnAbort('t.listens');
    const input = traceInput(task);
    const outcome = trace(input);
    await new Promise((r) => setImmediate(r));
    input.ctl.abort('terminated');
    const o = await outcome;
    assert.equal(o.state, 'REVOKED');
    assert.equal(o.state === 'REVOKED' && o.reason, 'terminated');
  });

  it('a soft time limit is not a kill: the task that rejects with it fails with it', async () => {
    const task = rejectsOnAbort('t.soft');
    const input = traceInput(task);
    const outcome = trace(input);
    input.ctl.abort(new Error('soft limit'));
    const o = await outcome;
    assert.equal(o.state, 'FAILURE');
  });

  it('a task that reads ctx.signal after the abort finds it aborted with the reason', async () => {
    let seen: [boolean, unknown] | null = null;
    let wake!: () => void;
    const woken = new Promise<void>((r) => (wake = r));
    const task = {
      name: 't.late',
      options: {},
      fn: async function (this: TaskContext) {
        await woken;
        seen = [this.signal.aborted, this.signal.reason];
        return 'done';
      },
    } as unknown as Task;
    const input = traceInput(task);
    const outcome = trace(input);
    input.ctl.abort('shutdown');
    assert.equal((await outcome).state, 'REVOKED');
    wake();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(seen, [true, 'shutdown']);
  });

  it('a listener the task added on ctx.signal hears the abort once', async () => {
    const heard: unknown[] = [];
    const task = {
      name: 't.listen',
      options: {},
      fn: function (this: TaskContext) {
        return new Promise((resolve) => this.signal.addEventListener('abort', () => resolve(heard.push(this.signal.reason))));
      },
    } as unknown as Task;
    const input = traceInput(task);
    const outcome = trace(input);
    await new Promise((r) => setImmediate(r));
    input.ctl.abort('terminated');
    input.ctl.abort('shutdown');
    assert.equal((await outcome).state, 'REVOKED');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(heard, ['terminated']);
  });
});

describe('trace: the task context', () => {
  it("gives the request's fields, log and signal on use, and methods a task may destructure", async () => {
    let seen: Record<string, unknown> = {};
    const task = {
      name: 't.ctx',
      options: {},
      fn: function (this: TaskContext) {
        const { retry, replace, updateState } = this;
        seen = {
          id: this.id,
          name: this.name,
          deliveryInfo: this.deliveryInfo,
          log: typeof this.log.info,
          aborted: this.signal.aborted,
          methods: [typeof retry, typeof replace, typeof updateState],
        };
        retry({ countdown: 5 });
      },
    } as unknown as Task;
    const outcome = await trace(traceInput(task, { id: 'ctx-1' }));
    assert.deepEqual(seen, {
      id: 'ctx-1',
      name: 't.ctx',
      deliveryInfo: { queue: 'celery', exchange: '', routingKey: 'celery', redelivered: false },
      log: 'function',
      aborted: false,
      methods: ['function', 'function', 'function'],
    });
    assert.equal(outcome.state, 'RETRY', 'a destructured retry() still retries');
  });
});
