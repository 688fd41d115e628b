// app/task.ts: retry maths (Celery's get_exponential_backoff_interval), the max retries default,
// autoretryFor and rate-limit parsing.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backoffDelay, isAutoretry, maxRetriesOf, parseRateLimit, retryDelay } from '../../../../runtime/src/app/task.js';

describe('retry maths (Celery get_exponential_backoff_interval)', () => {
  it('doubles from the factor and caps at the max, without jitter', () => {
    assert.deepEqual(
      [0, 1, 2, 3, 10].map((r) => backoffDelay(r, 1000, 600_000, false)),
      [1000, 2000, 4000, 8000, 600_000],
    );
  });
  it('full jitter stays within [0, countdown]', () => {
    assert.equal(
      backoffDelay(3, 1000, 600_000, true, () => 0),
      0,
    );
    assert.equal(
      backoffDelay(3, 1000, 600_000, true, () => 0.999999),
      8000,
    );
    for (let i = 0; i < 100; i++) {
      const d = backoffDelay(4, 1000, 600_000, true);
      assert.ok(d >= 0 && d <= 16_000);
    }
  });
  it('uses defaultRetryDelay without backoff, and the backoff factor with it', () => {
    assert.equal(retryDelay({}, 0), 180_000);
    assert.equal(retryDelay({ defaultRetryDelay: 50 }, 5), 50);
    assert.equal(retryDelay({ retryBackoff: true, retryJitter: false }, 2), 4000);
    assert.equal(retryDelay({ retryBackoff: 10, retryJitter: false, retryBackoffMax: 30 }, 5), 30);
  });
  it('autoretryFor matches classes and names, never Retry itself', () => {
    class Flaky extends Error {}
    assert.equal(isAutoretry({ autoretryFor: [Flaky] }, new Flaky('x')), true);
    assert.equal(isAutoretry({ autoretryFor: ['TypeError'] }, new TypeError('x')), true);
    assert.equal(isAutoretry({ autoretryFor: ['TypeError'] }, new RangeError('x')), false);
    assert.equal(isAutoretry({}, new Flaky('x')), false);
  });
  it('reads the max retries default in one place: 3, null = forever, a per-call value first', () => {
    assert.equal(maxRetriesOf({}), 3);
    assert.equal(maxRetriesOf({ maxRetries: null }), null);
    assert.equal(maxRetriesOf({ maxRetries: 7 }), 7);
    assert.equal(maxRetriesOf({ maxRetries: 7 }, null), null);
    assert.equal(maxRetriesOf({ maxRetries: null }, 2), 2);
  });
  it('parses rate limits', () => {
    assert.equal(parseRateLimit('10/s'), 10);
    assert.equal(parseRateLimit('120/m'), 2);
    assert.equal(parseRateLimit('3600/h'), 1);
    assert.equal(parseRateLimit('5'), 5);
    assert.throws(() => parseRateLimit('fast'), /Invalid rateLimit "fast"/);
  });
});
