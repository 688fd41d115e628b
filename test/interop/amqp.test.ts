/** Python Celery <-> celeriac on RabbitMQ, results over rpc:// (reply_to + correlation_id). */
import { after } from 'node:test';
import { useRabbit } from '../support/servers.js';
import { interopSuite } from './interop-suite.js';

const rabbit = await useRabbit();
after(() => rabbit.server?.stop());
interopSuite({ broker: 'amqp', brokerUrl: rabbit.server?.url ?? 'amqp://127.0.0.1:1', backendUrl: 'rpc://', skip: rabbit.skip });
