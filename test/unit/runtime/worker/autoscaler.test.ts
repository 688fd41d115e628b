// worker/autoscaler.ts: Celery's autoscale rules, with a fake clock and a fake pool (pure logic).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { Autoscaler } from '../../../../runtime/src/worker/autoscaler.js';
import { createEventLoopPool } from '../../../../runtime/src/pools/pool.js';

function setup(max: number, min: number) {
  const pool = createEventLoopPool(min);
  let held = 0;
  let now = 0;
  let resized = 0;
  const a = new Autoscaler(
    { pool, held: () => held, onResize: () => resized++, log: pino({ level: 'silent' }), now: () => now, keepaliveMs: 30_000 },
    max,
    min,
  );
  return {
    a,
    pool,
    set held(n: number) {
      held = n;
    },
    advance: (ms: number) => (now += ms),
    resized: () => resized,
  };
}

describe('Autoscaler', () => {
  it('grows at once to the tasks held, never past max', () => {
    const s = setup(5, 1);
    s.held = 3;
    s.a.step();
    assert.equal(s.pool.size, 3);
    s.held = 9;
    s.a.step();
    assert.equal(s.pool.size, 5);
    assert.equal(s.resized(), 2);
  });

  it('shrinks to the work held (not below min) only after the keepalive without activity', () => {
    const s = setup(5, 2);
    s.held = 5;
    s.a.step();
    s.held = 0;
    s.advance(29_000);
    s.a.step();
    assert.equal(s.pool.size, 5, 'not yet: scaled up 29 s ago');
    s.advance(2_000);
    s.a.taskReceived();
    s.a.step();
    assert.equal(s.pool.size, 5, 'a task just arrived');
    s.advance(31_000);
    s.a.step();
    assert.equal(s.pool.size, 2);
  });

  it('update() moves the range and resizes into it at once, as Celery', () => {
    const s = setup(5, 1);
    s.held = 5;
    s.a.step();
    assert.deepEqual(s.a.update(3, null), [3, 1]);
    assert.equal(s.pool.size, 3);
    assert.deepEqual(s.a.update(null, 4), [3, 4]);
    assert.equal(s.pool.size, 4);
    assert.deepEqual(s.a.info(), { max: 3, min: 4, current: 4, qty: 5 });
  });
});
