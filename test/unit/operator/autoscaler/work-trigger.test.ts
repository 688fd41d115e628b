import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { createWorkTrigger, shouldWake, type DecidedLevel } from '../../../../operator/src/autoscaler/work-trigger.js';
import type { MetricSource } from '../../../../operator/src/metric-sources/source.js';
import { eventually } from '../../../support/eventually.js';

const level = (l: Partial<DecidedLevel>): DecidedLevel => ({ backlog: 0, slots: 40, activationThreshold: 0, tolerance: 0.1, ...l });

test('a pool at zero wakes on work above the activation threshold only', () => {
  assert.equal(shouldWake(level({ slots: 0 }), 0), false);
  assert.equal(shouldWake(level({ slots: 0 }), 1), true);
  assert.equal(shouldWake(level({ slots: 0, activationThreshold: 5 }), 5), false);
  assert.equal(shouldWake(level({ slots: 0, activationThreshold: 5 }), 6), true);
});

test('a running pool wakes on growth beyond the tolerance of its slots, never on shrinking', () => {
  // 40 slots, tolerance 0.1: 4 more waiting tasks than the decision saw
  assert.equal(shouldWake(level({ backlog: 10 }), 13), false);
  assert.equal(shouldWake(level({ backlog: 10 }), 14), true);
  assert.equal(shouldWake(level({ backlog: 10 }), 0), false, 'scale-down waits for the poll');
  // at least one task, however small the pool
  assert.equal(shouldWake(level({ backlog: 0, slots: 2 }), 1), true);
  // a failed read at the decision counts from zero
  assert.equal(shouldWake(level({ backlog: null }), 4), true);
});

/** A source whose value the test sets (pure logic at the seam: no broker involved). */
function settable(): MetricSource & { value: number; reads: number } {
  return {
    kind: 'redis-list',
    value: 0,
    reads: 0,
    async read() {
      this.reads++;
      return { value: this.value };
    },
    async close() {},
  };
}

test('the trigger wakes once per change after a decision, not before one and not per read', async () => {
  const source = settable();
  let woken = 0;
  const t = createWorkTrigger({ source, wake: () => woken++, log: pino({ level: 'silent' }), watchIntervalMs: 5, minGapMs: 0 });
  try {
    source.value = 100;
    await eventually(() => assert.ok(source.reads >= 3));
    assert.equal(woken, 0, 'nothing wakes before the first decision');
    t.decided(level({ backlog: 0 }));
    await eventually(() => assert.equal(woken, 1));
    const reads = source.reads;
    await eventually(() => assert.ok(source.reads >= reads + 3));
    assert.equal(woken, 1, 'one wake until the decision reports back');
    t.decided(level({ backlog: 100 }));
    source.value = 200;
    await eventually(() => assert.equal(woken, 2));
    assert.equal(t.wakes, 2);
  } finally {
    await t.close();
  }
});
