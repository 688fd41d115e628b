// worker/watchdog.ts: which task the watchdog blames for a block, from the tasks in flight and the
// paused call stack. It names a task only when that is certain; otherwise it lists candidates.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { blame, locationKey, type InFlight } from '../../../../runtime/src/worker/watchdog.js';

const loc = (line: number) => ({ scriptId: '7', lineNumber: line, columnNumber: 4 });
const task = (id: string, name: string) => ({ id, name });
// Two task functions: sd.a starts at line 10, sd.b at line 20.
const fnLocations = [locationKey(loc(10)), locationKey(loc(20))];
const a1: InFlight = { task: task('a1', 'sd.a'), fn: 0 };
const a2: InFlight = { task: task('a2', 'sd.a'), fn: 0 };
const b1: InFlight = { task: task('b1', 'sd.b'), fn: 1 };
/** A stack with a helper on top of the frames of functions starting at `lines`. */
const stack = (...lines: number[]) => [{ functionLocation: loc(99) }, ...lines.map((l) => ({ functionLocation: loc(l) }))];

describe('watchdog blame', () => {
  it('names the one task in flight whose function is on the stack', () => {
    assert.deepEqual(blame([a1, b1], fnLocations, stack(20)), { task: b1.task, candidates: [] });
  });

  it('names none when two runs of the same function are in flight: those two are the candidates', () => {
    assert.deepEqual(blame([a1, a2, b1], fnLocations, stack(10)), { task: null, candidates: [a1.task, a2.task] });
  });

  it('names none when two tasks in flight have functions on the stack (one called the other)', () => {
    assert.deepEqual(blame([a1, b1], fnLocations, stack(10, 20)), { task: null, candidates: [a1.task, b1.task] });
  });

  it('names none when no task function is on the stack: every task in flight is a candidate', () => {
    assert.deepEqual(blame([a1, b1], fnLocations, stack()), { task: null, candidates: [a1.task, b1.task] });
  });

  it('a function whose location could not be read is never matched', () => {
    assert.deepEqual(blame([a1], [null], stack(10)), { task: null, candidates: [a1.task] });
  });

  it('with nothing in flight, no task and no candidates', () => {
    assert.deepEqual(blame([], [], stack(10)), { task: null, candidates: [] });
  });
});
