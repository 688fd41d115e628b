/**
 * Issue 14: a Redis broker and a Redis result store on the same server share one command
 * connection, so that a worker's result writes and acks of a batch go out together; the late ack
 * still reaches Redis after the result it follows, on that one connection.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { createApp } from '../../runtime/src/app/app.js';
import { createRedisStore } from '../../runtime/src/backends/redis.js';
import { createRedisBroker } from '../../runtime/src/brokers/redis.js';
import { createWorker } from '../../runtime/src/worker/worker.js';
import { message } from '../contract/broker-contract.js';
import { eventually } from '../support/eventually.js';
import { uniqueName, useRedis } from '../support/servers.js';

const redis = await useRedis();
after(() => redis.server?.stop());
const url = redis.server?.url ?? 'redis://127.0.0.1:1/0';

describe('Redis: one command connection per server', { skip: redis.skip }, () => {
  const raw = new Redis(url);
  after(() => raw.disconnect());
  /** Client connections Redis holds now (this test's own included). */
  const connections = async () =>
    String(await raw.call('CLIENT', 'LIST'))
      .trim()
      .split('\n').length;

  it('a broker and a result store on one URL open one command connection, closed with the last of them', async () => {
    const before = await connections();
    const broker = createRedisBroker(url);
    const store = createRedisStore(url);
    const key = uniqueName('shared');
    await broker.connect();
    await store.set(key, 'v');
    await broker.publish(uniqueName('q'), message('one'));
    assert.equal(await connections(), before + 1);
    // Closing one leaves the other working on the connection.
    await broker.close();
    assert.equal(await store.get(key), 'v');
    await store.close();
    await eventually(async () => assert.equal(await connections(), before));
  });

  it('a late ack goes out after its result is stored, on the same connection', async () => {
    const queue = uniqueName('late');
    const app = createApp({ name: 'late', broker: url, backend: url, queues: [queue], defaultQueue: queue, logLevel: 'silent', metricsPort: null });
    app.task('late.answer', () => 42, { acksLate: true });
    const worker = createWorker(app);
    await worker.start();
    // MONITOR on a plain socket: each command as Redis ran it, in order, with the client that sent it.
    const { hostname, port } = new URL(url);
    const monitor = connect(Number(port), hostname);
    let log = '';
    monitor.setEncoding('utf8').on('data', (chunk: string) => (log += chunk));
    monitor.write('MONITOR\r\n');
    await eventually(() => assert.match(log, /^\+OK/));
    /** Commands seen: `[client] "command" "arg" ...` lines. */
    const seen = () =>
      log
        .split('\r\n')
        .map((l) => /\[\d+ ([^\]]+)\] (.*)$/.exec(l))
        .flatMap((m) => (m ? [{ source: m[1]!, line: m[2]! }] : []));
    try {
      const r = await app.sendTask('late.answer', [], {}, { queue });
      assert.equal(await r.get({ timeout: 10_000 }), 42);
      const meta = `celery-task-meta-${r.id}`;
      const isStore = (c: { line: string }) => /^"eval(sha)?"/i.test(c.line) && c.line.includes(`"${meta}"`) && c.line.includes('SUCCESS');
      const isAck = (c: { line: string }) => /^"hdel" "unacked"/i.test(c.line);
      await eventually(() => assert.ok(seen().some(isAck), 'the message was acknowledged'));
      const cmds = seen();
      const stored = cmds.findIndex(isStore);
      const acked = cmds.findIndex(isAck);
      assert.ok(stored >= 0, 'the result was written by the worker');
      assert.ok(stored < acked, 'the result is stored before the message is acknowledged');
      assert.equal(cmds[stored]!.source, cmds[acked]!.source, 'result write and ack share one connection');
    } finally {
      monitor.destroy();
      await worker.stop();
      await app.close();
    }
  });
});
