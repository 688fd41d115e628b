// The one capped exponential backoff, shared by the broker drivers and the operator's retries.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backoffDelay } from '../../../../runtime/src/transport/backoff.js';

describe('backoffDelay', () => {
  it('doubles from the base per failure and stops at the cap', () => {
    assert.deepEqual(
      [0, 1, 2, 3, 4].map((n) => backoffDelay(n, 5, 1000)),
      [5, 10, 20, 40, 80],
    );
    assert.equal(backoffDelay(20, 5, 1000), 1000);
    assert.equal(backoffDelay(5000, 5, 1_000_000), 1_000_000, 'huge failure counts do not overflow');
  });
});
