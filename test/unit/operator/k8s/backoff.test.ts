import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createRateLimiter, createTokenBucket } from '../../../../operator/src/k8s/backoff.js';

describe('createTokenBucket', () => {
  it('hands out the burst at once, then spaces reservations by 1/qps', () => {
    let now = 0;
    const b = createTokenBucket({ qps: 10, burst: 3, now: () => now });
    assert.deepEqual([b.reserve(), b.reserve(), b.reserve()], [0, 0, 0]);
    assert.equal(b.reserve(), 100);
    assert.equal(b.reserve(), 200, 'later reservations queue behind earlier ones');
    now = 1000; // 10 tokens refilled, minus the 2 owed
    assert.equal(b.reserve(), 0);
  });

  it('tryTake refuses without going into debt', () => {
    let now = 0;
    const b = createTokenBucket({ qps: 1, burst: 2, now: () => now });
    assert.equal(b.tryTake(), true);
    assert.equal(b.tryTake(), true);
    assert.equal(b.tryTake(), false);
    assert.equal(b.tryTake(), false);
    now = 1000;
    assert.equal(b.tryTake(), true, 'one token back after a second, not owed to the refused calls');
  });
});

describe('createRateLimiter', () => {
  it('backs off per key, independently, and starts over after forget', () => {
    const r = createRateLimiter({ baseDelayMs: 5, maxDelayMs: 1000, qps: 1000, burst: 1000, now: () => 0 });
    assert.deepEqual([r.when('a'), r.when('a'), r.when('a')], [5, 10, 20]);
    assert.equal(r.when('b'), 5);
    assert.equal(r.retries('a'), 3);
    r.forget('a');
    assert.equal(r.retries('a'), 0);
    assert.equal(r.when('a'), 5);
  });

  it('takes the larger of the per-key delay and the global bucket', () => {
    const r = createRateLimiter({ baseDelayMs: 1, maxDelayMs: 1000, qps: 2, burst: 1, now: () => 0 });
    assert.equal(r.when('a'), 1);
    assert.equal(r.when('b'), 500, 'the bucket is empty: the global limit wins over the 1 ms key delay');
  });
});
