/**
 * The chart's Grafana dashboard against real series: Debian's Prometheus scrapes a real
 * `celeriac worker` (running, failing and refusing tasks on a real Redis) and the real
 * `celeriac-operator` bin (autoscaling a WorkerPool over a Redis backlog on a real kube-apiserver),
 * labelled as the chart's PodMonitor and ServiceMonitor label them. Then every query of every panel
 * and template variable is evaluated through Prometheus' HTTP API: each must parse and return data.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../runtime/src/index.js';
import { resources } from '../../operator/src/k8s/kube-client.js';
import { envtestSkipReason, freePort, startControlPlane, type ControlPlane } from '../support/envtest.js';
import { eventually } from '../support/eventually.js';
import { repoRoot, startProcess, startWorker, stopProcess, withOutputOf, type Started } from '../support/processes.js';
import { uniqueName, useRedis } from '../support/servers.js';
import type { Obj } from '../support/operator-fixtures.js';

const prometheusBin = process.env.CELERIAC_PROMETHEUS;
const envSkip = envtestSkipReason();
const redis = envSkip ? undefined : await useRedis();
function skipReason(): string | false {
  if (envSkip) return envSkip;
  if (redis?.skip) return redis.skip;
  if (prometheusBin) return false;
  const why = 'CELERIAC_PROMETHEUS is not set (test/support/setup-services.sh installs Debian prometheus)';
  if (process.env.CELERIAC_REQUIRE_SERVICES === '1') throw new Error(why);
  console.error(`\n!!! SKIPPING the Grafana dashboard test: ${why}\n`);
  return why;
}
const skip = skipReason();

interface Panel {
  type: string;
  title: string;
  targets?: { expr: string; refId: string }[];
}
interface Dashboard {
  panels: Panel[];
  templating: { list: { name: string; type: string; query: string | { query: string } }[] };
}
const dashboard = JSON.parse(readFileSync(join(repoRoot, 'charts/celeriac/dashboards/celeriac.json'), 'utf8')) as Dashboard;

/** A dashboard query with Grafana's variables filled in as Grafana would for this pool. */
function resolve(expr: string, vars: { namespace: string; workerpool: string }): string {
  return expr.replaceAll('$__rate_interval', '1m').replaceAll('$namespace', vars.namespace).replaceAll('$workerpool', vars.workerpool);
}

describe('Grafana dashboard over real worker and operator metrics', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-dashboard-'));
  const queue = uniqueName('dash');
  const backlogQueue = uniqueName('dash-backlog');
  const pool = 'shop';
  let cp: ControlPlane;
  let ns: string;
  let operator: Started;
  let worker: Started;
  let prometheus: Started;
  let client: App;
  let promUrl: string;
  let trickle: NodeJS.Timeout | undefined;

  before(async () => {
    const url = redis!.server!.url;
    cp = await startControlPlane();
    ns = await cp.createNamespace('dash');
    const kube = cp.kube;
    await kube.create(resources.secrets, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'broker', namespace: ns }, stringData: { url } } as Obj);
    await kube.create(resources.taskQueues, {
      apiVersion: 'celeriac.io/v1alpha1',
      kind: 'TaskQueue',
      metadata: { name: 'backlog', namespace: ns },
      spec: { broker: { type: 'redis', urlSecretRef: { name: 'broker' } }, queue: { name: backlogQueue }, checkIntervalSeconds: 600 },
    } as Obj);
    await kube.create(resources.workerPools, {
      apiVersion: 'celeriac.io/v1alpha1',
      kind: 'WorkerPool',
      metadata: { name: pool, namespace: ns },
      spec: {
        queues: ['backlog'],
        template: { image: 'example.com/shop:1', tasksModule: '/app/tasks.js' },
        concurrency: 4,
        autoscaling: { minReplicas: 1, maxReplicas: 5, pollingIntervalSeconds: 1 },
      },
    } as Obj);

    const [operatorPort, workerPort, promPort] = await Promise.all([freePort(), freePort(), freePort()]);
    operator = startProcess(
      process.execPath,
      [join(repoRoot, 'dist/operator/src/main.js'), '--kubeconfig', cp.kubeconfigPath, '--metrics-port', String(operatorPort), '--metrics-host', '127.0.0.1'],
      { env: { ...process.env, CELERIAC_OPERATOR_LOG_LEVEL: 'warn' } },
    );
    worker = startWorker(
      'dist/test/operator/fixtures/dashboard-tasks.js',
      queue,
      { CELERIAC_BROKER_URL: url, CELERIAC_RESULT_BACKEND: url, CELERIAC_LOG_LEVEL: 'error' },
      ['--metrics-port', String(workerPort)],
    );

    // The labels the chart's PodMonitor (pod namespace, workerpool from the pod label) and
    // ServiceMonitor (operator namespace, honorLabels) give the series in a cluster.
    const config = {
      global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
      scrape_configs: [
        { job_name: 'celeriac-workers', static_configs: [{ targets: [`127.0.0.1:${workerPort}`], labels: { namespace: ns, workerpool: pool } }] },
        {
          job_name: 'celeriac-operator',
          honor_labels: true,
          static_configs: [{ targets: [`127.0.0.1:${operatorPort}`], labels: { namespace: 'celeriac-system' } }],
        },
      ],
    };
    writeFileSync(join(dir, 'prometheus.yml'), JSON.stringify(config));
    promUrl = `http://127.0.0.1:${promPort}`;
    prometheus = startProcess(
      prometheusBin!,
      [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`],
      { env: process.env, cwd: dir },
    );

    client = createApp({ broker: url, backend: url, logLevel: 'warn', metricsPort: null });
    // A backlog for the autoscaler (nobody consumes it), and steady work for the worker while the
    // queries run: rates and quantiles need samples on both sides of each scrape.
    for (let i = 0; i < 30; i++) await client.sendTask('dash.work', [1], {}, { queue: backlogQueue });
    const send = async () => {
      await client.sendTask('dash.work', [5 + Math.floor(Math.random() * 40)], {}, { queue });
      await client.sendTask('dash.fail', [], {}, { queue });
      await client.sendTask('dash.unregistered', [], {}, { queue }); // dead-lettered
    };
    await send();
    trickle = setInterval(() => send().catch((err: unknown) => console.error('dashboard test: sending work failed', err)), 250);
  });

  after(async () => {
    clearInterval(trickle);
    await client?.close();
    await Promise.all([stopProcess(prometheus), stopProcess(worker), stopProcess(operator)]);
    await cp?.stop();
    await redis?.server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function query(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
    const res = await fetch(`${promUrl}/api/v1/query?${new URLSearchParams({ query: expr })}`);
    const body = (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: never[] } };
    assert.equal(body.status, 'success', `${expr}: ${body.error ?? res.status}`);
    assert.equal(body.data!.resultType, 'vector', expr);
    return body.data!.result;
  }

  const panels = dashboard.panels.filter((p) => p.type !== 'row');

  it('has a query in every panel', () => {
    for (const p of panels) assert.ok((p.targets ?? []).length > 0 && p.targets!.every((t) => t.expr.trim() !== ''), `panel "${p.title}" has no query`);
  });

  it('returns data for every query of every panel', () =>
    withOutputOf({ operator, worker, prometheus }, async () => {
      const vars = { namespace: ns, workerpool: pool };
      for (const p of panels) {
        for (const t of p.targets!) {
          const expr = resolve(t.expr, vars);
          await eventually(
            async () => {
              const result = await query(expr);
              assert.ok(result.length > 0, `panel "${p.title}" ${t.refId}: no series for ${expr}`);
              assert.ok(
                result.some((r) => Number.isFinite(Number(r.value[1]))),
                `panel "${p.title}" ${t.refId}: no finite value for ${expr}: ${JSON.stringify(result)}`,
              );
            },
            { timeoutMs: 90_000, intervalMs: 1000 },
          );
        }
      }
    }));

  it('lists this namespace and pool in the template variables', () =>
    withOutputOf({ operator, prometheus }, async () => {
      const vars = { namespace: ns, workerpool: pool };
      for (const v of dashboard.templating.list.filter((x) => x.type === 'query')) {
        const text = typeof v.query === 'string' ? v.query : v.query.query;
        const m = /^label_values\((.+),\s*(\w+)\)$/.exec(text);
        assert.ok(m, `variable ${v.name}: expected label_values(<selector>, <label>), got ${text}`);
        const [, selector, label] = m;
        const values = await eventually(async () => {
          const r = await query(`count by (${label}) (${resolve(selector!, vars)})`);
          assert.ok(r.length > 0, `variable ${v.name}: no values`);
          return r.map((x) => x.metric[label!]);
        });
        assert.ok(values.includes(vars[v.name as keyof typeof vars]), `variable ${v.name} offers ${values.join(', ')}`);
      }
    }));
});
