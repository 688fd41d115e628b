/**
 * `celeriac migrate` on real servers: task messages move Redis -> RabbitMQ and back unchanged
 * (body bytes, headers, Celery's properties) and in order, only waiting messages move, --limit
 * stops at its count, and the CLI prints its progress and counts.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { migrateMessages } from '../../runtime/src/app/migrate.js';
import type { Broker } from '../../runtime/src/brokers/broker.js';
import { createBroker } from '../../runtime/src/brokers/index.js';
import { encodeTask } from '../../runtime/src/protocol/task-message.js';
import type { WireMessage } from '../../runtime/src/protocol/wire-message.js';
import { repoRoot } from '../support/processes.js';
import { uniqueName, useRabbit, useRedis } from '../support/servers.js';

const run = promisify(execFile);
const [redis, rabbit] = await Promise.all([useRedis(), useRabbit()]);
after(async () => {
  await redis.server?.stop();
  await rabbit.server?.stop();
});
const skip = redis.skip || rabbit.skip;

/** A task message with something in every part worth keeping. */
function taskMessage(i: number): WireMessage {
  return encodeTask({
    id: randomUUID(),
    name: 'mig.echo',
    args: [i, `é${i}`],
    kwargs: { n: i },
    origin: 'gen1@test',
    retries: i % 3,
    priority: i % 2 === 0 ? 0 : 5,
    replyTo: `reply-${i}`,
    headers: { custom: `h${i}` },
    serializer: i % 4 === 3 ? 'msgpack' : 'json',
    compression: i % 5 === 4 ? 'zlib' : null,
  });
}

/** Takes every waiting message of `queue` (acknowledged), in delivery order. */
async function drain(b: Broker, queue: string, count: number): Promise<WireMessage[]> {
  const got: WireMessage[] = [];
  const ctl = new AbortController();
  const done = b.consume(
    [queue],
    async (d) => {
      got.push(d.message);
      await d.ack();
      if (got.length === count) ctl.abort();
    },
    { prefetch: 1, signal: ctl.signal },
  );
  await done;
  return got;
}

/** What must survive a move: the body bytes, the headers, Celery's properties. */
function kept(m: WireMessage) {
  const p = m.properties;
  return {
    body: m.body.toString('base64'),
    contentType: m.contentType,
    contentEncoding: m.contentEncoding,
    headers: m.headers,
    correlationId: p.correlation_id,
    replyTo: p.reply_to,
    priority: p.priority ?? 0,
  };
}

describe('migrate between Redis and RabbitMQ', { skip }, () => {
  const brokers: Broker[] = [];
  const open = async (url: string) => {
    const b = await createBroker(url);
    await b.connect();
    brokers.push(b);
    return b;
  };
  after(async () => {
    for (const b of brokers) await b.close();
  });

  it('moves every waiting message Redis -> RabbitMQ -> Redis unchanged, counting each queue', async () => {
    const [r, a] = [await open(redis.server!.url), await open(rabbit.server!.url)];
    const [q1, q2] = [uniqueName('mig'), uniqueName('mig')];
    // Priority 0 only in q1, so delivery order is publish order on both brokers.
    const sent1 = Array.from({ length: 20 }, (_, i) => ({ ...taskMessage(i * 2), properties: { ...taskMessage(i * 2).properties, priority: 0 } }));
    const sent2 = Array.from({ length: 7 }, (_, i) => taskMessage(i));
    for (const m of sent1) await r.publish(q1, m);
    for (const m of sent2) await r.publish(q2, m);

    const progress: string[] = [];
    const there = await migrateMessages(r, a, { queues: [q1, q2], onProgress: (p) => progress.push(`${p.queue} ${p.moved}/${p.total} ${p.id}`) });
    assert.deepEqual(there, [
      { queue: q1, moved: 20 },
      { queue: q2, moved: 7 },
    ]);
    assert.deepEqual([await r.depth(q1), await r.depth(q2), await a.depth(q1), await a.depth(q2)], [0, 0, 20, 7]);
    assert.equal(progress.length, 27);
    assert.equal(progress[19], `${q1} 20/20 ${sent1[19]!.headers.id}`);

    const back = await migrateMessages(a, r, { queues: [q1, q2] });
    assert.deepEqual(back, there);
    assert.deepEqual([await a.depth(q1), await a.depth(q2)], [0, 0]);
    const got1 = await drain(r, q1, 20);
    assert.deepEqual(got1.map(kept), sent1.map(kept), 'q1 unchanged and in order');
    const got2 = await drain(r, q2, 7);
    const byId = (ms: WireMessage[]) => ms.map(kept).sort((x, y) => String(x.headers.id).localeCompare(String(y.headers.id)));
    assert.deepEqual(byId(got2), byId(sent2), 'q2 unchanged (priorities reorder it)');
  });

  it('stops at --limit over all queues and leaves the rest waiting on the source', async () => {
    const [r, a] = [await open(redis.server!.url), await open(rabbit.server!.url)];
    const [q1, q2] = [uniqueName('lim'), uniqueName('lim')];
    for (let i = 0; i < 6; i++) await r.publish(q1, taskMessage(i));
    for (let i = 0; i < 6; i++) await r.publish(q2, taskMessage(i));
    const moved = await migrateMessages(r, a, { queues: [q1, q2], limit: 8 });
    assert.deepEqual(moved, [
      { queue: q1, moved: 6 },
      { queue: q2, moved: 2 },
    ]);
    assert.deepEqual([await r.depth(q1), await r.depth(q2), await a.depth(q1), await a.depth(q2)], [0, 4, 6, 2]);
  });

  it('celeriac migrate prints progress and counts, and refuses a bad --limit', async () => {
    const r = await open(redis.server!.url);
    const a = await open(rabbit.server!.url);
    const q = uniqueName('cli');
    for (let i = 0; i < 5; i++) await r.publish(q, taskMessage(i));
    const bin = join(repoRoot, 'dist/runtime/src/cli/main.js');
    const { stdout, stderr } = await run(process.execPath, [bin, 'migrate', redis.server!.url, rabbit.server!.url, '--queues', q, '--limit', '3']);
    assert.equal(stdout, `${q}: migrated 3 message(s)\ntotal: 3\n`);
    assert.match(stderr, new RegExp(`migrating ${q}: 3/3 mig\\.echo\\[[0-9a-f-]{36}\\]\\n`));
    assert.deepEqual([await r.depth(q), await a.depth(q)], [2, 3]);
    await assert.rejects(run(process.execPath, [bin, 'migrate', redis.server!.url, rabbit.server!.url, '--limit', 'many']), (err: { stderr: string }) => {
      assert.match(err.stderr, /--limit.*expected an integer >= 1/);
      return true;
    });
  });
});
