/**
 * No broker password leaves the operator: with real brokers whose credentials come from Secrets
 * (right and wrong ones, Redis and RabbitMQ, the RabbitMQ management API), every surface a user or
 * a log pipeline can read is searched for the passwords: the operator's log lines (the production
 * logger, at debug), Events, TaskQueue and WorkerPool objects with their status, the Deployments
 * (env values must reference the Secret, never carry its value) and the operator's /metrics.
 */
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import amqp from 'amqplib';
import { Redis } from 'ioredis';
import { createAutoscaler, type Autoscaler } from '../../operator/src/autoscaler/autoscaler.js';
import { createKubeClient, resources, type KubeClient } from '../../operator/src/k8s/kube-client.js';
import { createOperatorMetrics, type OperatorMetrics } from '../../operator/src/metrics.js';
import { createOperator, type Operator } from '../../operator/src/operator.js';
import { createLogger } from '../../runtime/src/logging/logger.js';
import { conditionOf, taskQueueFixture, workerPoolFixture, type Obj } from '../support/operator-fixtures.js';
import { envtestSkipReason, startControlPlane, type ControlPlane } from '../support/envtest.js';
import { eventually } from '../support/eventually.js';
import { uniqueName, useRabbit, useRedis } from '../support/servers.js';

const envSkip = envtestSkipReason();
const redisUse = envSkip ? null : await useRedis({ managed: true });
const rabbitUse = envSkip ? null : await useRabbit({ managed: true, management: true });
const skip = envSkip || redisUse?.skip || rabbitUse?.skip || false;

// Each with characters that URL-encode, so the encoded form is searched too.
const secrets = {
  redisRight: `right-${uniqueName('pw')}+/`,
  redisWrong: `wrong-${uniqueName('pw')}&`,
  amqpWrong: `wrong-${uniqueName('pw')}=`,
  managementWrong: `wrong-${uniqueName('pw')}#`,
};

const autoscaling = { minReplicas: 1, maxReplicas: 3, pollingIntervalSeconds: 1 };

describe('broker passwords on every operator surface (real API server, Redis, RabbitMQ)', { skip }, () => {
  let cp: ControlPlane;
  let kube: KubeClient;
  let op: Operator;
  let autoscaler: Autoscaler;
  let metrics: OperatorMetrics;
  let logged = '';
  let ns: string;

  before(async () => {
    const admin = new Redis(redisUse!.server!.url);
    await admin.config('SET', 'requirepass', secrets.redisRight);
    admin.disconnect();
    cp = await startControlPlane();
    kube = cp.kube;
    const out = new PassThrough();
    out.on('data', (b: Buffer) => (logged += b.toString()));
    // The operator's production logger (createLogger, as main.ts), at debug so every line counts.
    const log = createLogger({ level: 'debug', name: 'celeriac-operator', destination: out });
    const client = createKubeClient(cp.kubeConfig);
    metrics = createOperatorMetrics();
    autoscaler = createAutoscaler({ kube: client, log, timeoutMs: 1000 });
    op = createOperator({ kube: client, log, metrics, decideReplicas: autoscaler.decideReplicas, brokerCheckTimeoutMs: 1000 });
    await op.start();
    ns = await cp.createNamespace('creds');
  });

  after(async () => {
    await op?.stop();
    await autoscaler?.close();
    await cp?.stop();
    await Promise.all([redisUse?.server?.stop(), rabbitUse?.server?.stop()]);
  });

  it('no password in logs, Events, objects, Deployments or metrics', async () => {
    const redisPort = new URL(redisUse!.server!.url).port;
    const rabbit = new URL(rabbitUse!.server!.url);
    const mgmt = new URL(rabbitUse!.server!.managementUrl!);
    const secret = (name: string, data: Record<string, string>) =>
      kube.create(resources.secrets, { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: ns }, stringData: data } as Obj);
    await secret('redis-creds', { username: 'default', password: secrets.redisRight });
    await secret('redis-wrong-url', { url: `redis://:${encodeURIComponent(secrets.redisWrong)}@127.0.0.1:${redisPort}/0` });
    await secret('amqp-wrong-url', { url: `amqp://guest:${encodeURIComponent(secrets.amqpWrong)}@127.0.0.1:${rabbit.port}/` });
    await secret('amqp-url', { url: rabbitUse!.server!.url });
    await secret('mgmt-wrong-url', { url: `http://guest:${encodeURIComponent(secrets.managementWrong)}@127.0.0.1:${mgmt.port}/` });

    const queues = {
      // Host and port in the spec, credentials from a Secret: the worker URL is built with $(VAR)s.
      good: { type: 'redis', host: '127.0.0.1', port: Number(redisPort), credentialsSecretRef: { name: 'redis-creds' } },
      'bad-redis': { type: 'redis', urlSecretRef: { name: 'redis-wrong-url' } },
      'bad-amqp': { type: 'amqp', urlSecretRef: { name: 'amqp-wrong-url' } },
      'bad-mgmt': { type: 'amqp', urlSecretRef: { name: 'amqp-url' }, management: { urlSecretRef: { name: 'mgmt-wrong-url' } } },
    };
    // The management API is read for a declared queue only.
    const mgmtQueue = uniqueName('bad-mgmt');
    const conn = await amqp.connect(rabbitUse!.server!.url);
    await (await conn.createChannel()).assertQueue(mgmtQueue, { durable: true });
    await conn.close();
    for (const [name, broker] of Object.entries(queues)) {
      const queue = name === 'bad-mgmt' ? mgmtQueue : uniqueName(name);
      await kube.create(resources.taskQueues, taskQueueFixture(ns, name, { queue, broker, checkIntervalSeconds: 1 }));
      await kube.create(resources.workerPools, workerPoolFixture(ns, `pool-${name}`, { queues: [name], autoscaling }));
    }

    // Every path that handles a credential has run: a good check, refused ones, a management API refusal.
    const tq = (name: string) => kube.get<Obj>(resources.taskQueues, ns, name);
    await eventually(
      async () => {
        assert.equal(conditionOf(await tq('good'), 'Ready')?.status, 'True', JSON.stringify((await tq('good'))?.status));
        assert.equal(conditionOf(await tq('bad-redis'), 'BrokerReachable')?.reason, 'AuthenticationFailed');
        assert.equal(conditionOf(await tq('bad-amqp'), 'BrokerReachable')?.reason, 'AuthenticationFailed');
        assert.match(conditionOf(await tq('bad-mgmt'), 'Ready')?.message ?? '', /management API not readable/);
        for (const name of Object.keys(queues)) assert.ok(await kube.get(resources.deployments, ns, `pool-${name}`), `Deployment pool-${name}`);
        assert.match(logged, /WRONGPASS/, 'the refused Redis password was logged about');
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    // A few more autoscaler and broker-check rounds on the failing brokers.
    const rounds = logged.length;
    await eventually(() => assert.ok(logged.length > rounds + 2_000, 'more rounds'), { timeoutMs: 30_000 });

    const surfaces: Record<string, string> = {
      'operator log': logged,
      Events: JSON.stringify((await kube.list(resources.events, { namespace: ns })).items),
      TaskQueues: JSON.stringify((await kube.list(resources.taskQueues, { namespace: ns })).items),
      WorkerPools: JSON.stringify((await kube.list(resources.workerPools, { namespace: ns })).items),
      Deployments: JSON.stringify((await kube.list(resources.deployments, { namespace: ns })).items),
      metrics: await metrics.registry.metrics(),
    };
    assert.ok(surfaces.Events!.includes('AuthenticationFailed'), 'the refusals were recorded as Events');
    for (const [where, text] of Object.entries(surfaces)) {
      for (const [which, value] of Object.entries(secrets)) {
        for (const form of new Set([value, encodeURIComponent(value), JSON.stringify(value).slice(1, -1)])) {
          const at = text.indexOf(form);
          assert.equal(at, -1, `${where} carries the ${which} password: ...${text.slice(Math.max(0, at - 200), at + 50)}...`);
        }
      }
    }
  });
});
