// pools/runners.ts with a runner handle faked at its seam (pure pool logic): a task whose hard time
// limit fired is FAILURE(TimeLimitExceeded) even when the runner's "done" beats its exit.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import type { Task } from '../../../../runtime/src/app/task.js';
import { crossOutcome, type FromRunner, type ToRunner } from '../../../../runtime/src/pools/crossing.js';
import { createRunnerPool, type RunnerExit, type RunnerHandle } from '../../../../runtime/src/pools/runners.js';
import { TimeLimitExceeded } from '../../../../runtime/src/pools/trace.js';
import { eventually } from '../../../support/eventually.js';
import { traceInput } from '../../../support/trace-input.js';

/** A runner that answers init at once, and runs nothing until the test says; kill() only records. */
function fakeRunner() {
  let onMessage: (m: FromRunner) => void = () => undefined;
  let onExit: (e: RunnerExit) => void = () => undefined;
  const state = { killed: false, exitOnKill: false, runs: [] as number[] };
  const handle: RunnerHandle = {
    id: 1,
    send(m: ToRunner) {
      if (m.type === 'init') queueMicrotask(() => onMessage({ type: 'ready' }));
      if (m.type === 'run') state.runs.push(m.job);
    },
    onMessage: (fn) => (onMessage = fn),
    onExit: (fn) => (onExit = fn),
    kill: () => {
      state.killed = true;
      if (state.exitOnKill) queueMicrotask(() => onExit({ code: null, signal: 'SIGTERM' }));
    },
  };
  return { handle, state, say: (m: FromRunner) => onMessage(m), exit: (e: RunnerExit) => onExit(e) };
}

describe('runner pool', () => {
  it("a task past its hard limit stays FAILURE(TimeLimitExceeded) when the runner's done arrives before its exit", async () => {
    const runner = fakeRunner();
    // The replacement runners exit as soon as they are killed (at pool.stop).
    const spawned = [runner];
    const spawn = () => {
      if (spawned.length === 1 && !runner.state.killed) return runner.handle;
      const next = fakeRunner();
      next.state.exitOnKill = true;
      spawned.push(next);
      return next.handle;
    };
    const pool = createRunnerPool({
      kind: 'threads',
      size: 1,
      spawn,
      tasksModule: 'file:///tasks.js',
      config: { brokerUrl: 'redis://x' },
      maxTasksPerChild: null,
      maxMemoryPerChildKib: null,
      log: pino({ level: 'silent' }),
    });
    await pool.start();
    const task = { name: 't.slow', options: { timeLimit: 20 }, fn: () => 'late' } as unknown as Task;
    const outcome = pool.run(traceInput(task));
    await eventually(() => assert.ok(runner.state.killed, 'the hard limit ended the runner'));
    // The task finished just as the limit fired: its "done" is read before the runner's exit.
    runner.say({ type: 'done', job: runner.state.runs[0]!, outcome: crossOutcome({ state: 'SUCCESS', value: 'late', runtimeMs: 25 }, 'json'), memoryKib: 0 });
    runner.exit({ code: null, signal: 'SIGTERM' });
    const o = await outcome;
    assert.equal(o.state, 'FAILURE', `outcome ${o.state}`);
    assert.ok((o as { error?: unknown }).error instanceof TimeLimitExceeded, String((o as { error?: unknown }).error));
    await pool.stop({ graceful: false, timeoutMs: 100 });
  });
});
