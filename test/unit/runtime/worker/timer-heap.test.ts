// worker/timer-heap.ts: ETA-held items fire in due order from one timer.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TimerHeap } from '../../../../runtime/src/worker/timer-heap.js';

describe('ETA ordering', () => {
  it('fires items in due order, equal times in insertion order, with one timer', async () => {
    const fired: string[] = [];
    let done!: () => void;
    const all = new Promise<void>((r) => (done = r));
    const heap = new TimerHeap<string>((items) => {
      fired.push(...items);
      if (fired.length === 5) done();
    });
    const now = Date.now();
    heap.push(now + 60, 'c');
    heap.push(now + 20, 'a');
    heap.push(now + 40, 'b1');
    heap.push(now + 40, 'b2');
    heap.push(now - 5, 'overdue');
    assert.deepEqual(heap.items(), ['overdue', 'a', 'b1', 'b2', 'c']);
    await all;
    assert.deepEqual(fired, ['overdue', 'a', 'b1', 'b2', 'c']);
    assert.equal(heap.size, 0);
  });
  it('drain() returns everything held and fires nothing after', async () => {
    const fired: number[] = [];
    let thirdFired!: () => void;
    const third = new Promise<void>((r) => (thirdFired = r));
    const heap = new TimerHeap<number>((items) => {
      fired.push(...items);
      if (items.includes(3)) thirdFired();
    });
    heap.push(Date.now() + 10, 1);
    heap.push(Date.now() + 20, 2);
    assert.deepEqual(heap.drain().sort(), [1, 2]);
    // An item due after both drained ones: once it fires, theirs would have fired first.
    heap.push(Date.now() + 30, 3);
    await third;
    assert.deepEqual(fired, [3]);
  });
});

describe('due counts', () => {
  it('counts the items due at or before each of several times in one pass, cumulative', () => {
    const heap = new TimerHeap<string>(() => {});
    const now = Date.now();
    // far enough ahead that no timer fires during the test; drained below so none is left armed
    for (const [i, at] of [now + 3_600_000, now + 7_200_000, now + 3_600_000, now + 10_800_000].entries()) heap.push(at, `t${i}`);
    // every threshold at once (cumulative): none by now, an item due exactly at a threshold counts
    assert.deepEqual(heap.countDueBy([now, now + 3_600_000, now + 5_000_000, now + 7_200_000, now + 20_000_000]), [0, 2, 2, 3, 4]);
    assert.deepEqual(heap.countDueBy([now + 10_800_000]), [4]);
    assert.deepEqual(heap.countDueBy([]), []);
    heap.drain();
    assert.deepEqual(heap.countDueBy([now, now + 10_800_000]), [0, 0]);
  });
});
