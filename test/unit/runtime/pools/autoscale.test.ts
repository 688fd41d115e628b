// Celery's autoscaler rules (celery/worker/autoscale.py), pure.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decideAutoscale, parseAutoscale } from '../../../../runtime/src/pools/autoscale.js';
import { ConfigError } from '../../../../runtime/src/errors.js';

const limits = { max: 10, min: 2 };
const at = (size: number, held: number, sinceGrowMs: number) =>
  decideAutoscale({ size, held, limits, now: 100_000, lastGrowAt: 100_000 - sinceGrowMs, keepaliveMs: 30_000 });

describe('autoscale', () => {
  it('grows at once to the tasks held, up to MAX', () => {
    assert.equal(at(2, 5, 0), 5);
    assert.equal(at(2, 50, 0), 10);
    assert.equal(at(10, 50, 0), null);
  });

  it('shrinks towards the tasks held, down to MIN, only after the keepalive since the last growth', () => {
    assert.equal(at(10, 0, 1_000), null);
    assert.equal(at(10, 0, 31_000), 2);
    assert.equal(at(10, 4, 31_000), 4);
    assert.equal(at(2, 0, 31_000), null);
  });

  it('parses MAX,MIN as Celery (MIN at least 1 here)', () => {
    assert.deepEqual(parseAutoscale('10,3'), { max: 10, min: 3 });
    assert.deepEqual(parseAutoscale('4'), { max: 4, min: 1 });
    assert.deepEqual(parseAutoscale('4,0'), { max: 4, min: 1 });
    assert.throws(() => parseAutoscale('3,10'), ConfigError);
  });
});
