// Python Celery worker pools (spec.celery) against a real kube-apiserver, real Redis and RabbitMQ,
// and real Python Celery workers (5.7 from the interop virtualenv, Debian's 5.2) standing in for
// pods: each runs the command line the operator builds for the Deployment, with the pod's name as
// its nodename (celery@<pod>), and the Pod objects say Ready. The autoscaler reads their in-flight
// work over Celery's remote control, drains the idle pods first (cancel_consumer), never the one
// running a task, undoes a drain when work returns (add_consumer), and removes only drained pods
// that hold nothing (pod-deletion-cost). A second case shows what a Celery worker does with a
// prefetched message when it cancels its consumer, on each broker.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { createApp, type App } from '../../runtime/src/index.js';
import { resources, type KubeClient } from '../../operator/src/k8s/kube-client.js';
import type { ReconcileContext } from '../../operator/src/k8s/reconciler.js';
import { createAutoscaler, type Autoscaler } from '../../operator/src/autoscaler/autoscaler.js';
import { connectCeleryPool } from '../../operator/src/autoscaler/celery-pool.js';
import { celeryWorkerArgs } from '../../operator/src/reconcilers/celery-worker.js';
import { createRedisListSource } from '../../operator/src/metric-sources/redis-list.js';
import { createAmqpQueueSource } from '../../operator/src/metric-sources/amqp-queue.js';
import type { CelerySpec, KubeObject, TaskQueue, WorkerPool } from '../../operator/src/types.js';
import { envtestSkipReason, startControlPlane, startTestOperator, type ControlPlane } from '../support/envtest.js';
import { taskQueueFixture, workerPoolFixture } from '../support/operator-fixtures.js';
import { eventually } from '../support/eventually.js';
import { repoRoot, startProcess, stopProcess, withOutputOf, type Started } from '../support/processes.js';
import { uniqueName, useRabbit, useRedis, type ServiceResult } from '../support/servers.js';

type Obj = KubeObject & { spec?: any; status?: any };

const pythons = [
  { label: 'Celery 5.7', exe: process.env.CELERIAC_PYTHON },
  { label: 'Celery 5.2', exe: process.env.CELERIAC_PYTHON_CELERY52 },
];
const envSkip = envtestSkipReason();
const pySkip = pythons[0]!.exe ? false : 'CELERIAC_PYTHON is not set (test/support/setup-python.sh makes the virtualenv)';
const redis: ServiceResult | undefined = envSkip || pySkip ? undefined : await useRedis();
const rabbit: ServiceResult | undefined = envSkip || pySkip ? undefined : await useRabbit();
const skip = envSkip || pySkip || redis?.skip || rabbit?.skip || false;
const fixtures = join(repoRoot, 'test/operator/fixtures');
const quiet = pino({ level: 'silent' });

describe('Python Celery worker pools', { skip }, () => {
  let cp: ControlPlane;
  let kube: KubeClient;
  let autoscaler: Autoscaler;
  let gates: string;
  const procs: Record<string, Started> = {};
  const apps: App[] = [];
  const opened: string[] = [];
  /** A gate file path; `gated` tasks given it run until it exists. */
  const newGate = () => {
    const g = join(gates, uniqueName('gate'));
    opened.push(g);
    return g;
  };
  /** Opens every gate and stops the workers a test started, so none waits on a task while it shuts down. */
  async function finish(pods: string[]): Promise<void> {
    for (const g of opened) writeFileSync(g, '');
    await Promise.all(pods.map((p) => stopProcess(procs[p])));
  }

  before(async () => {
    cp = await startControlPlane();
    kube = cp.kube;
    autoscaler = createAutoscaler({ kube, log: quiet, timeoutMs: 5000 });
    gates = mkdtempSync(join(tmpdir(), 'celery-gates-'));
  });

  after(async () => {
    await finish(Object.keys(procs));
    await Promise.all(apps.map((a) => a.close()));
    await autoscaler?.close();
    await cp?.stop();
    rmSync(gates, { recursive: true, force: true });
    await redis?.server?.stop();
    await rabbit?.server?.stop();
  });

  const brokers = () => [
    { name: 'redis' as const, url: redis!.server!.url },
    { name: 'amqp' as const, url: rabbit!.server!.url },
  ];

  function fixturesFor(ns: string, queue: string, broker: 'redis' | 'amqp', url: string, celery: CelerySpec, concurrency: number, prefetch: number) {
    const tq = {
      apiVersion: 'celeriac.io/v1alpha1',
      kind: 'TaskQueue',
      metadata: { name: 'work', namespace: ns },
      spec: { broker: { type: broker, url }, queue: { name: queue } },
    } as TaskQueue;
    const pool = {
      apiVersion: 'celeriac.io/v1alpha1',
      kind: 'WorkerPool',
      metadata: { name: 'py', namespace: ns },
      spec: {
        queues: ['work'],
        template: { image: 'example.com/shop-py:1', logLevel: 'warn' },
        celery,
        concurrency,
        prefetchMultiplier: prefetch,
        autoscaling: {
          minReplicas: 1,
          maxReplicas: 10,
          pollingIntervalSeconds: 1,
          behavior: { scaleDown: { stabilizationWindowSeconds: 0, policies: [{ type: 'Percent', value: 100, periodSeconds: 1 }] } },
        },
      },
    } as WorkerPool;
    return { tq, pool };
  }

  /** A Python worker running exactly the command line the operator puts in the Deployment (threads pool: it answers inspect while busy). */
  function startPod(exe: string, pool: WorkerPool, tq: TaskQueue, pod: string, url: string, extra: string[] = []): Started {
    const args = celeryWorkerArgs(pool, [tq], pool.spec.celery!, {
      concurrency: pool.spec.concurrency!,
      prefetchMultiplier: pool.spec.prefetchMultiplier!,
    }).map((a) => a.replace('$(POD_NAME)', pod));
    const p = startProcess(exe, ['-m', 'celery', ...args, ...extra], {
      env: { ...process.env, CELERY_BROKER_URL: url, PYTHONPATH: fixtures, PYTHONDONTWRITEBYTECODE: '1' },
    });
    procs[pod] = p;
    return p;
  }

  async function createPod(ns: string, name: string, ip: string): Promise<void> {
    await kube.create(resources.pods, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: ns, labels: { 'celeriac.io/worker-pool': 'py' } },
      spec: { containers: [{ name: 'worker', image: 'example.com/shop-py:1' }] },
    } as Obj);
    await kube.patch(
      resources.pods,
      ns,
      name,
      { status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], conditions: [{ type: 'Ready', status: 'True' }] } },
      { subresource: 'status' },
    );
  }

  function clientApp(url: string): App {
    const app = createApp({ broker: url, logger: quiet });
    apps.push(app);
    return app;
  }

  /** The queues each node consumes, from its own answer to `inspect active_queues`. */
  async function consuming(app: App, nodes: string[]): Promise<Record<string, string[]>> {
    const r = await app.control.activeQueues({ destination: nodes, timeoutMs: 5000, limit: nodes.length });
    assert.deepEqual(Object.keys(r).sort(), [...nodes].sort(), 'every node answered active_queues');
    return Object.fromEntries(Object.entries(r).map(([n, qs]) => [n, qs.map((q) => q.name)]));
  }

  async function activeOn(app: App, nodes: string[]): Promise<Record<string, number>> {
    const r = await app.control.active({ destination: nodes, timeoutMs: 5000, limit: nodes.length });
    return Object.fromEntries(nodes.map((n) => [n, r[n]?.length ?? 0]));
  }

  it('the API server checks spec.celery, and the operator runs `celery worker` in the Deployment', async () => {
    const ns = await cp.createNamespace('py-crd');
    const create = (name: string, spec: Record<string, unknown>) => kube.create<Obj>(resources.workerPools, workerPoolFixture(ns, name, spec));
    const image = { image: 'example.com/shop-py:1' };
    await assert.rejects(create('neither', { template: image }), /spec.template.tasksModule is required for celeriac workers/);
    await assert.rejects(
      create('both', { template: { ...image, tasksModule: '/app/tasks.js' }, celery: { app: 'shop' } }),
      /a Celery pool names its app in spec.celery.app: remove one/,
    );
    await assert.rejects(create('badpool', { template: image, celery: { app: 'shop', pool: 'forkserver' } }), /spec.celery.pool/);
    await assert.rejects(create('badapp', { template: image, celery: { app: 'shop; rm -rf /' } }), /spec.celery.app/);

    await kube.create(resources.taskQueues, taskQueueFixture(ns, 'default', { broker: { type: 'redis', url: redis!.server!.url }, queue: 'orders' }));
    const created = await create('py', { template: image, celery: { app: 'shop.celery:app' }, concurrency: 8 });
    assert.deepEqual(
      created.spec.celery,
      { app: 'shop.celery:app', pool: 'prefork', withoutMingle: true, withoutGossip: true, events: 'Enable' },
      'CRD defaults',
    );
    const op = await startTestOperator(cp);
    try {
      const dep = await eventually(async () => {
        const d = await kube.get<Obj>(resources.deployments, ns, 'py');
        assert.ok(d, 'Deployment not created yet');
        return d;
      });
      const c = dep.spec.template.spec.containers[0];
      assert.deepEqual(c.command, ['celery']);
      assert.deepEqual(c.args, [
        '-A',
        'shop.celery:app',
        'worker',
        '-Q',
        'orders',
        '-c',
        '8',
        '--prefetch-multiplier',
        '1',
        '-P',
        'prefork',
        '-n',
        'celery@$(POD_NAME)',
        '--without-mingle',
        '--without-gossip',
      ]);
      assert.equal(c.env.find((e: { name: string }) => e.name === 'CELERY_BROKER_URL').value, '$(CELERIAC_BROKER_URL)');
      assert.deepEqual(c.lifecycle.preStop.exec.command.slice(0, 2), ['sh', '-c']);
    } finally {
      await op.stop();
    }
  });

  for (const py of pythons) {
    for (const b of ['redis', 'amqp'] as const) {
      it(
        `${py.label} on ${b}: reads in-flight work, drains idle pods first, never a busy one, undoes a drain`,
        { skip: py.exe ? false : `${py.label}: not installed` },
        async () => {
          const broker = brokers().find((x) => x.name === b)!;
          const ns = await cp.createNamespace(`py-${b}`);
          const queue = uniqueName('pyq');
          const { tq, pool } = fixturesFor(ns, queue, b, broker.url, { app: 'celery_pool', pool: 'threads' }, 4, 1);
          const tag = `${py.label.slice(-3).replace('.', '')}${b}`;
          const pods = ['w0', 'w1', 'w2'].map((w) => `${tag}-${w}-${uniqueName('p').slice(-6)}`.toLowerCase());
          const nodes = pods.map((p) => `celery@${p}`);
          const gateA = newGate();
          const gateB = newGate();
          const app = clientApp(broker.url);
          for (const [i, p] of pods.entries()) {
            startPod(py.exe!, pool, tq, p, broker.url);
            await createPod(ns, p, `127.0.1.${i + 1}`);
          }
          try {
            await withOutputOf(Object.fromEntries(pods.map((p) => [p, procs[p]])), async () => {
              await eventually(async () => assert.deepEqual(Object.values(await consuming(app, nodes)), [[queue], [queue], [queue]]), {
                timeoutMs: 60_000,
                intervalMs: 500,
              });

              // One task held running; whichever pod took it is the busy one.
              await app.sendTask('pool.gated', [gateA], {}, { queue });
              const busyNode = await eventually(async () => {
                const a = await activeOn(app, nodes);
                const n = nodes.find((x) => a[x] === 1);
                assert.ok(n, `no worker runs the task yet: ${JSON.stringify(a)}`);
                return n;
              });
              const busy = busyNode.slice('celery@'.length);
              const idle = pods.filter((p) => p !== busy).sort();

              let t = Date.now();
              const ctx = { kube, log: quiet, reconcileId: 'test', attempt: 0, now: () => new Date(t) } as unknown as ReconcileContext;
              const poll = (replicas: number) =>
                autoscaler.decideReplicas({ pool, queues: [tq], deployment: { metadata: { name: 'py' }, spec: { replicas } }, ctx });
              const cost = async (name: string) =>
                (await kube.get<Obj>(resources.pods, ns, name))?.metadata.annotations?.['controller.kubernetes.io/pod-deletion-cost'];

              // 1 running task wants 1 pod: the two idle pods are told to stop consuming; the busy one is not.
              const first = await poll(3);
              assert.equal(first.replicas, 3, 'replicas stay until the drained pods hold nothing');
              assert.deepEqual(first.autoscalingStatus?.draining, idle);
              assert.equal(first.autoscalingStatus?.celeryEvents, 'EnabledByOperator', 'the workers sent no task events, so the operator enabled them');
              assert.equal(first.autoscalingStatus?.metrics?.find((m) => m.name === 'inFlight')?.value, 1, 'the running task, read from the workers');
              // Celery replies to cancel_consumer and add_consumer before its event loop carries them out.
              await eventually(async () => {
                const afterDrain = await consuming(app, nodes);
                for (const p of idle) assert.deepEqual(afterDrain[`celery@${p}`], [], `${p} no longer consumes`);
                assert.deepEqual(afterDrain[busyNode], [queue], 'the busy pod was never drained');
              });

              // Work returns before the drained pods are removed: the drains are undone (add_consumer), no new pod.
              for (let i = 0; i < 12; i++) await app.sendTask('pool.gated', [gateB], {}, { queue });
              t += 1500;
              const back = await poll(3);
              assert.ok(back.replicas >= 3, `scaled back up (${back.replicas})`);
              assert.deepEqual(back.autoscalingStatus?.draining, []);
              for (const p of idle) assert.equal(await cost(p), undefined);
              // add_consumer took effect: every pod consumes the queue again (and the returned work spreads over them).
              await eventually(async () => assert.deepEqual(Object.values(await consuming(app, nodes)), [[queue], [queue], [queue]]));
              await eventually(async () => {
                const a = await activeOn(app, nodes);
                assert.ok(
                  idle.some((p) => a[`celery@${p}`]! > 0),
                  `a resumed pod runs tasks: ${JSON.stringify(a)}`,
                );
              });

              // The returned work finishes; the busy pod's task still runs. Scale-down drains and then
              // removes only the idle pods (the virtual clock steps past the flap backoff the scale-up started).
              writeFileSync(gateB, '');
              await eventually(async () => {
                const r = await app.control.reserved({ destination: nodes, timeoutMs: 5000, limit: 3 });
                const a = await activeOn(app, nodes);
                for (const p of idle) assert.equal(a[`celery@${p}`]! + (r[`celery@${p}`]?.length ?? 0), 0, `${p} finished its tasks`);
                assert.equal(a[busyNode], 1 + 0, 'the busy pod still runs the held task');
              });
              let replicas = 3;
              for (let i = 0; i < 40 && replicas > 1; i++) {
                t += 60_000;
                const d = await poll(replicas);
                replicas = d.replicas;
                assert.notEqual(await cost(busy), '-1000', 'the pod running a task is never marked for removal');
                assert.ok(!(d.autoscalingStatus?.draining ?? []).includes(busy), 'the pod running a task is never drained');
              }
              assert.equal(replicas, 1);
              for (const p of idle) assert.equal(await cost(p), '-1000', `${p} removed by deletion cost`);
              assert.equal(await cost(busy), undefined);
              assert.deepEqual((await activeOn(app, [busyNode]))[busyNode], 1, 'the held task still runs on the pod that stays');
            });
          } finally {
            await finish(pods);
          }
        },
      );
    }
  }

  for (const py of pythons) {
    for (const b of ['redis', 'amqp'] as const) {
      it(
        `${py.label} on ${b}: a prefetched message stays with the worker that cancels its consumer, and runs there`,
        { skip: py.exe ? false : `${py.label}: not installed` },
        async () => {
          const broker = brokers().find((x) => x.name === b)!;
          const ns = await cp.createNamespace(`pf-${b}`);
          const queue = uniqueName('pfq');
          // One slot, two messages held: one running, one prefetched (reserved).
          const { tq, pool } = fixturesFor(ns, queue, b, broker.url, { app: 'celery_pool', pool: 'threads', events: 'Enable' }, 1, 2);
          const pod = `pf-${py.label.slice(-3).replace('.', '')}${b}-${uniqueName('p').slice(-6)}`.toLowerCase();
          const node = `celery@${pod}`;
          const gate = newGate();
          const app = clientApp(broker.url);
          // -E: this worker sends task events itself, so the source reports them as Enabled.
          const proc = startPod(py.exe!, pool, tq, pod, broker.url, ['-E']);
          const conn = connectCeleryPool({
            brokerUrl: broker.url,
            queues: [queue],
            celery: pool.spec.celery!,
            targets: async () => [{ pod }],
            isDraining: () => true,
            log: quiet,
            timeoutMs: 5000,
          });
          const backlog =
            b === 'redis' ? createRedisListSource({ url: broker.url, queues: [queue] }) : createAmqpQueueSource({ url: broker.url, queues: [queue] });
          try {
            await withOutputOf({ [pod]: proc }, async () => {
              await eventually(async () => assert.deepEqual((await consuming(app, [node]))[node], [queue]), { timeoutMs: 60_000, intervalMs: 500 });
              await app.sendTask('pool.gated', [gate], {}, { queue });
              await app.sendTask('pool.gated', [gate], {}, { queue });
              await eventually(async () => {
                const s = (await conn.workers.read(AbortSignal.timeout(10_000))).byPod.get(pod)!;
                assert.deepEqual([s.active, s.reserved], [1, 1], 'one running, one prefetched');
              });

              await conn.client.drain({ name: pod, ip: '127.0.1.9' });
              await eventually(async () => assert.deepEqual((await consuming(app, [node]))[node], [], 'cancel_consumer took effect'));
              // The prefetched message did not go back to the broker: the worker still holds it.
              const held = await conn.workers.read(AbortSignal.timeout(10_000));
              assert.deepEqual([held.active, held.reserved, held.drainingActive], [1, 1, 1]);
              const q = await backlog.read(AbortSignal.timeout(10_000));
              assert.equal(q.value, 0, `nothing ready in the broker: ${JSON.stringify(q)}`);
              // The running one was acked as it started (Celery acks early by default); the prefetched
              // one stays in kombu's unacked hash, owned by the draining worker.
              if (b === 'redis') assert.equal(q.detail?.unacked, 1, JSON.stringify(q));

              // Released, both run on this worker, though it consumes nothing any more.
              writeFileSync(gate, '');
              const done = await eventually(async () => {
                const r = await conn.workers.read(AbortSignal.timeout(10_000));
                const s = r.byPod.get(pod)!;
                assert.deepEqual([s.active, s.reserved, s.scheduled, s.completed], [0, 0, 0, 2], JSON.stringify(s));
                return r;
              });
              assert.equal(conn.workers.eventsState(), 'Enabled');
              assert.ok((done.serviceSeconds ?? 0) > 0, 'service time from task-succeeded events');
              assert.equal((await backlog.read(AbortSignal.timeout(10_000))).value, 0);

              // A resume makes it consume again.
              await conn.client.resume({ name: pod, ip: '127.0.1.9' });
              await eventually(async () => assert.deepEqual((await consuming(app, [node]))[node], [queue]));
            });
          } finally {
            await conn.close();
            await backlog.close();
            await finish([pod]);
          }
        },
      );
    }
  }
});
