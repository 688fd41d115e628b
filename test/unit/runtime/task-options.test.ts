// Retry and backoff maths, rate-limit parsing, the ETA heap and config validation.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backoffDelay, isAutoretry, parseRateLimit, retryDelay } from '../../../runtime/src/app/task.js';
import { loadConfig } from '../../../runtime/src/app/config.js';
import { TimerHeap } from '../../../runtime/src/worker/timer-heap.js';
import { ConfigError } from '../../../runtime/src/errors.js';

describe('retry maths (Celery get_exponential_backoff_interval)', () => {
  it('doubles from the factor and caps at the max, without jitter', () => {
    assert.deepEqual([0, 1, 2, 3, 10].map((r) => backoffDelay(r, 1000, 600_000, false)), [1000, 2000, 4000, 8000, 600_000]);
  });
  it('full jitter stays within [0, countdown]', () => {
    assert.equal(backoffDelay(3, 1000, 600_000, true, () => 0), 0);
    assert.equal(backoffDelay(3, 1000, 600_000, true, () => 0.999999), 8000);
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
  it('parses rate limits', () => {
    assert.equal(parseRateLimit('10/s'), 10);
    assert.equal(parseRateLimit('120/m'), 2);
    assert.equal(parseRateLimit('3600/h'), 1);
    assert.equal(parseRateLimit('5'), 5);
    assert.throws(() => parseRateLimit('fast'), /Invalid rateLimit "fast"/);
  });
});

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
    const heap = new TimerHeap<number>((items) => fired.push(...items));
    heap.push(Date.now() + 10, 1);
    heap.push(Date.now() + 20, 2);
    assert.deepEqual(heap.drain().sort(), [1, 2]);
    await new Promise((r) => setTimeout(r, 40));
    assert.deepEqual(fired, []);
  });
});

describe('config', () => {
  it('takes flags over env over options over defaults, with Celery env fallbacks', () => {
    const c = loadConfig({ env: { CELERY_BROKER_URL: 'memory://a', CELERIAC_CONCURRENCY: '7' }, options: { concurrency: 3, defaultQueue: 'q' }, flags: { logLevel: 'debug' } });
    assert.equal(c.brokerUrl, 'memory://a');
    assert.equal(c.resultBackend, 'memory://a');
    assert.equal(c.concurrency, 7);
    assert.deepEqual(c.queues, ['q']);
    assert.equal(c.logLevel, 'debug');
    assert.ok(Object.isFrozen(c));
    assert.equal(loadConfig({ env: { CELERIAC_BROKER_URL: 'amqp://h' } }).resultBackend, 'rpc://');
  });
  it('lists every problem at once, saying what is accepted', () => {
    try {
      loadConfig({ env: { CELERIAC_CONCURRENCY: 'four', CELERIAC_ACCEPT_CONTENT: 'json,pickle' }, options: { logLevel: 'loud', colour: 1 } as never });
      assert.fail('expected a ConfigError');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.problems.length, 4);
      assert.match(err.message, /CELERIAC_CONCURRENCY: expected an integer from 1 to 10000, got "four"/);
      assert.match(err.message, /pickle is never accepted/);
      assert.match(err.message, /"logLevel": expected one of trace, debug/);
      assert.match(err.message, /option "colour" is unknown/);
    }
  });
});

describe('README', () => {
  it('shows the configuration table exactly as the config table makes it', async () => {
    const { readFileSync } = await import('node:fs');
    const { configTable } = await import('../../../runtime/src/app/config.js');
    const readme = readFileSync(new URL('../../../../README.md', import.meta.url), 'utf8');
    assert.ok(readme.includes(configTable()), 'README.md is out of date: paste configTable() output into "Configuration"');
  });
});
