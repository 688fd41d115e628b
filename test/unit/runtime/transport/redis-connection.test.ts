// Redis URL options: kombu's visibility_timeout (seconds) is read, an unknown option is refused by name.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createRedisBroker } from '../../../../runtime/src/brokers/redis.js';
import { BrokerError } from '../../../../runtime/src/errors.js';
import { parseRedisUrl, visibilityTimeoutParam } from '../../../../runtime/src/transport/redis-connection.js';

const visibility = (url: string) => visibilityTimeoutParam(parseRedisUrl(url), 3_600_000, url);

describe('Redis URL options', () => {
  it("reads kombu's visibility_timeout in seconds and celeriac's visibilityTimeoutMs in ms", () => {
    assert.equal(visibility('redis://h/0?visibility_timeout=5'), 5000);
    assert.equal(visibility('redis://h/0?visibility_timeout=0.5'), 500);
    assert.equal(visibility('redis://h/0?visibilityTimeoutMs=750'), 750);
    assert.equal(visibility('redis://h/0'), 3_600_000);
  });

  it('refuses a bad or doubled visibility timeout', () => {
    assert.throws(() => visibility('redis://h/0?visibility_timeout=soon'), /visibility_timeout must be a number of seconds/);
    assert.throws(() => visibility('redis://h/0?visibility_timeout=5&visibilityTimeoutMs=5000'), /not both/);
  });

  it('refuses an unknown option by name, in the broker as in the backend URL parser', () => {
    assert.throws(
      () => createRedisBroker('redis://127.0.0.1:1/0?visibilty_timeout=5'),
      (err: unknown) =>
        err instanceof BrokerError &&
        /unknown option "visibilty_timeout"/.test(err.message) &&
        /known: visibilityTimeoutMs, visibility_timeout/.test(err.message),
    );
    assert.throws(() => parseRedisUrl('redis://h/0?a=1&b=2'), /unknown options "a", "b"/);
  });

  it('keeps the TLS options', () => {
    assert.equal(parseRedisUrl('rediss://h/0?tlsInsecure=true').tls?.rejectUnauthorized, false);
  });
});
