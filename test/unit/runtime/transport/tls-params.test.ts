// The TLS URL options shared by the Redis and AMQP drivers (runtime/src/transport/tls-params.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { takeTlsParams } from '../../../../runtime/src/transport/tls-params.js';

const take = (url: string, scheme: string) => {
  const u = new URL(url);
  return { tls: takeTlsParams(u, scheme, url), rest: u.toString() };
};

describe('TLS URL options', () => {
  it('map to node:tls options and leave the rest of the URL as it was', () => {
    assert.deepEqual(take('amqps://u:p@mq:5671/shop?heartbeat=30&tlsInsecure=true&tlsServerName=mq.internal', 'amqps:'), {
      tls: { rejectUnauthorized: false, servername: 'mq.internal' },
      rest: 'amqps://u:p@mq:5671/shop?heartbeat=30',
    });
    assert.deepEqual(take('rediss://r:6380/0?tlsServerName=r.internal', 'rediss:'), { tls: { servername: 'r.internal' }, rest: 'rediss://r:6380/0' });
    assert.deepEqual(take('rediss://r:6380/0?tlsInsecure=false', 'rediss:'), { tls: {}, rest: 'rediss://r:6380/0' });
    assert.deepEqual(take('rediss://r:6380/0', 'rediss:'), { tls: undefined, rest: 'rediss://r:6380/0' });
  });

  it('are refused where they would do nothing or mean nothing, with the reason', () => {
    assert.throws(() => take('amqp://mq/?tlsInsecure=true', 'amqps:'), /tlsInsecure and tlsServerName need a amqps:\/\/ URL/);
    assert.throws(() => take('rediss://r/0?tlsInsecure=yes', 'rediss:'), /tlsInsecure must be true or false, got "yes"/);
    assert.throws(() => take('rediss://r/0?tlsServerName=', 'rediss:'), /tlsServerName is empty/);
  });
});
