/**
 * migrateMessages over the memory broker, where a settle can be made to fail: the real-server
 * behaviour (order, bytes, limits) is tested in test/integration/migrate.test.ts.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { migrateMessages } from '../../../../runtime/src/app/migrate.js';
import type { Broker } from '../../../../runtime/src/brokers/broker.js';
import { createMemoryBroker } from '../../../../runtime/src/brokers/memory.js';
import { BrokerError } from '../../../../runtime/src/errors.js';
import { encodeTask } from '../../../../runtime/src/protocol/task-message.js';

/** `b`, whose deliveries' ack() rejects from the `failAt`-th on (a connection lost mid-migrate). */
function failingAcks(b: Broker, failAt: number): Broker {
  let acks = 0;
  return {
    ...b,
    consume: (queues, onDelivery, opts) =>
      b.consume(
        queues,
        (d) =>
          onDelivery({
            message: d.message,
            info: d.info,
            requeue: () => d.requeue(),
            ack: async () => {
              if (++acks >= failAt) throw new Error('channel closed');
              await d.ack();
            },
          }),
        opts,
      ),
  };
}

describe('migrateMessages', () => {
  it('rejects with a BrokerError when an ack on the source fails, and reports no message moved that was not acknowledged', async () => {
    const from = createMemoryBroker(`memory://${randomUUID()}`);
    const to = createMemoryBroker(`memory://${randomUUID()}`);
    const queue = 'q';
    for (let i = 0; i < 5; i++)
      await from.publish(queue, encodeTask({ id: randomUUID(), name: 'mig.t', args: [i], kwargs: {}, origin: 'gen1@test', serializer: 'json' }));
    const progress: number[] = [];
    await assert.rejects(
      migrateMessages(failingAcks(from, 2), to, { queues: [queue], onProgress: (p) => progress.push(p.moved) }),
      (err: unknown) => err instanceof BrokerError && /acknowledg/.test(err.message) && (err.cause as Error).message === 'channel closed',
    );
    // Only the first message was published and acknowledged: progress never counted the second.
    assert.deepEqual(progress, [1]);
  });
});
