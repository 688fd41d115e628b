/** Remote control between Python Celery and celeriac on Redis (pidbox over PUB/SUB, replies through kombu's bindings). */
import { after } from 'node:test';
import { useRedis } from '../support/servers.js';
import { controlInteropSuite } from './control-suite.js';

const redis = await useRedis();
after(() => redis.server?.stop());
const url = redis.server?.url ?? 'redis://127.0.0.1:1/0';
controlInteropSuite({ broker: 'redis', brokerUrl: url, backendUrl: url, skip: redis.skip });
