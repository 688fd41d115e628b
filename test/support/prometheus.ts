/**
 * Prometheus on the host for the cluster tier (CELERIAC_PROMETHEUS_BIN, built from its Go module
 * by setup-cluster.sh: Debian's package lacks Kubernetes service discovery): it discovers pods through the cluster's API (kubernetes_sd_configs, role pod) and
 * scrapes those annotated `prometheus.io/scrape: "true"` at their `prometheus.io/port` and
 * `prometheus.io/path`, as an annotation-based Prometheus in a real cluster does. Pod IPs are
 * reachable from the host; it listens on the node IP so the operator's pods can query it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually } from './eventually.js';
import { killOnExit } from './exit-cleanup.js';
import { freePort } from './servers.js';

/** The Prometheus binary setup-cluster.sh printed, if any. */
export const prometheusBin = (): string | undefined => process.env.CELERIAC_PROMETHEUS_BIN;

export interface HostPrometheus {
  /** http://<node IP>:<port> */
  readonly url: string;
  /** The instant vector of `query` as [labels, value] pairs. */
  query(query: string): Promise<{ metric: Record<string, string>; value: number }[]>;
  stop(): Promise<void>;
}

/** Starts Prometheus scraping annotated pods of the cluster whose admin kubeconfig is `kubeconfigPath`. */
export async function startPrometheus(kubeconfigPath: string, nodeIP: string): Promise<HostPrometheus> {
  const kc = JSON.parse(readFileSync(kubeconfigPath, 'utf8')) as {
    clusters: { cluster: { server: string; 'certificate-authority': string } }[];
    users: { user: { 'client-certificate': string; 'client-key': string } }[];
  };
  const { server, 'certificate-authority': ca } = kc.clusters[0]!.cluster;
  const { 'client-certificate': cert, 'client-key': key } = kc.users[0]!.user;
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-prometheus-'));
  const port = await freePort();
  const url = `http://${nodeIP}:${port}`;
  // JSON is YAML: the config written as JSON.
  const config = {
    global: { scrape_interval: '2s', scrape_timeout: '1s', evaluation_interval: '2s' },
    scrape_configs: [
      {
        job_name: 'pods',
        kubernetes_sd_configs: [{ role: 'pod', api_server: server, tls_config: { ca_file: ca, cert_file: cert, key_file: key } }],
        relabel_configs: [
          { source_labels: ['__meta_kubernetes_pod_annotation_prometheus_io_scrape'], action: 'keep', regex: 'true' },
          { source_labels: ['__meta_kubernetes_pod_phase'], action: 'keep', regex: 'Running' },
          {
            source_labels: ['__address__', '__meta_kubernetes_pod_annotation_prometheus_io_port'],
            action: 'replace',
            regex: '([^:]+)(?::\\d+)?;(\\d+)',
            replacement: '$1:$2',
            target_label: '__address__',
          },
          { source_labels: ['__meta_kubernetes_pod_annotation_prometheus_io_path'], action: 'replace', regex: '(.+)', target_label: '__metrics_path__' },
          { source_labels: ['__meta_kubernetes_namespace'], target_label: 'namespace' },
          { source_labels: ['__meta_kubernetes_pod_name'], target_label: 'pod' },
          { source_labels: ['__meta_kubernetes_pod_label_celeriac_io_worker_pool'], target_label: 'workerpool' },
        ],
      },
    ],
  };
  writeFileSync(join(dir, 'prometheus.yml'), JSON.stringify(config));
  const log = createWriteStream(join(dir, 'prometheus.log'));
  const child: ChildProcess = spawn(
    prometheusBin()!,
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=${nodeIP}:${port}`,
      '--storage.tsdb.retention.time=1h',
    ],
    { detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  killOnExit(child, { group: true });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killed = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(killed);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await eventually(
      async () => {
        if (child.exitCode !== null)
          throw new Error(
            `prometheus exited ${child.exitCode}: ${existsSync(join(dir, 'prometheus.log')) ? readFileSync(join(dir, 'prometheus.log'), 'utf8').slice(-2000) : ''}`,
          );
        const r = await fetch(`${url}/-/ready`);
        if (!r.ok) throw new Error(`prometheus not ready: ${r.status}`);
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url,
    async query(q) {
      const r = await fetch(`${url}/api/v1/query?${new URLSearchParams({ query: q })}`);
      const body = (await r.json()) as { status: string; error?: string; data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
      if (body.status !== 'success') throw new Error(`query ${q} failed: ${body.error}`);
      return body.data.result.map((x) => ({ metric: x.metric, value: Number(x.value[1]) }));
    },
    stop,
  };
}
