/** Remote control between Python Celery and celeriac on RabbitMQ (celery.pidbox fanout, reply.celery.pidbox direct). */
import { after } from 'node:test';
import { useRabbit } from '../support/servers.js';
import { controlInteropSuite } from './control-suite.js';

const rabbit = await useRabbit();
after(() => rabbit.server?.stop());
controlInteropSuite({ broker: 'amqp', brokerUrl: rabbit.server?.url ?? 'amqp://127.0.0.1:1', backendUrl: 'rpc://', skip: rabbit.skip });
