/**
 * The AMQP broker against a private rabbitmq-server: the contract suite (queues declared with
 * x-max-priority so priorities apply), then Celery's layout read back from RabbitMQ.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { createAmqpBroker } from '../../runtime/src/brokers/amqp.js';
import { amqplib } from '../../runtime/src/brokers/amqp-codec.js';
import { deadLetterQueue } from '../../runtime/src/protocol/dead-letter.js';
import { brokerContract, message, Recorder, textOf } from '../contract/broker-contract.js';
import { uniqueName, useRabbit } from '../support/servers.js';

const rabbit = await useRabbit();
after(() => rabbit.server?.stop());
const url = rabbit.server?.url ?? 'amqp://127.0.0.1:1';

brokerContract('amqp', () => createAmqpBroker(url, { maxPriority: 10 }), {
  priorityOrder: 'higher-first',
  restoresOnClose: true,
  skip: rabbit.skip,
});

describe('AMQP broker: Celery layout', { skip: rabbit.skip }, () => {
  const broker = createAmqpBroker(url);
  after(() => broker.close());

  it('declares a durable direct exchange and durable queue, and publishes persistent messages', async () => {
    await broker.connect();
    const q = uniqueName('layout');
    await broker.publish(q, message('persist me'));
    const conn = await amqplib.connect(url);
    try {
      const ch = await conn.createChannel();
      const ok = await ch.checkQueue(q);
      assert.equal(ok.messageCount, 1);
      await ch.checkExchange(q);
      const got = await ch.get(q, { noAck: true });
      assert.ok(got);
      assert.equal(got.properties.deliveryMode, 2);
      assert.equal(got.properties.contentType, 'application/json');
      assert.equal(got.fields.exchange, '');
      assert.equal(got.fields.routingKey, q);
      assert.equal(got.properties.headers?.task, 'contract.echo');
      await ch.close();
    } finally {
      await conn.close();
    }
  });

  it('declares a dead-letter queue as a plain durable queue: no exchange, no priority argument', async () => {
    const b = createAmqpBroker(url, { maxPriority: 10 });
    const q = uniqueName('plain');
    const conn = await amqplib.connect(url);
    try {
      await b.connect();
      await b.publish(deadLetterQueue(q), message('dead'));
      const ch = await conn.createChannel();
      ch.on('error', () => undefined); // the expected 404 closes this channel; asserted through the rejection below
      assert.equal((await ch.checkQueue(deadLetterQueue(q))).messageCount, 1);
      // Redeclaring with the arguments of a plain queue succeeds only if it has none (else 406).
      await ch.assertQueue(deadLetterQueue(q), { durable: true, autoDelete: false });
      await assert.rejects(ch.checkExchange(deadLetterQueue(q)), /404/);
    } finally {
      await conn.close().catch(() => undefined); // the 404 closed the channel, not the connection
      await b.close();
    }
  });

  it('uses a queue someone declared with other arguments instead of failing with 406', async () => {
    const q = uniqueName('preexisting');
    const conn = await amqplib.connect(url);
    try {
      const ch = await conn.createChannel();
      await ch.assertQueue(q, { durable: true, arguments: { 'x-max-priority': 5 } });
      await ch.close();
    } finally {
      await conn.close();
    }
    const b = createAmqpBroker(url);
    await b.connect();
    await b.publish(q, message('fits'));
    const r = new Recorder(b, [q], 1, (d) => d.ack());
    const [d] = await r.waitFor(1);
    await r.stop();
    await b.close();
    assert.equal(textOf(d!.message), 'fits');
  });
});
