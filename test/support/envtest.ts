/**
 * envtest for TypeScript: a real etcd + kube-apiserver on free loopback ports (no controller-manager,
 * no kubelet, as controller-runtime's envtest), with celeriac's CRDs applied.
 *
 * Binaries come from CELERIAC_K8S_BIN_DIR (printed by test/support/setup-k8s.sh). Flags follow
 * envtest's defaults: RBAC authorization, the ServiceAccount admission plugin off, a generated
 * service-account key pair. Authentication is by static tokens (--token-auth-file): an admin in
 * system:masters plus any `users` you pass, so a test can act as a user with limited RBAC
 * (`kubeconfigFor`); `serviceAccountKubeconfig` mints a real token for a ServiceAccount
 * through the TokenRequest API, as a pod would get.
 *
 *   const cp = await startControlPlane({ users: [{ name: 'alice', groups: ['dev'] }] });
 *   // cp.kubeconfigPath (admin), cp.kube (admin KubeClient), cp.kubeconfigFor('alice'), await cp.stop()
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import http from 'node:http';
import https from 'node:https';
import { KubeConfig } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { createKubeClient, resources, type KubeClient, type ResourceType } from '../../operator/src/k8s/kube-client.js';
import type { KubeObject } from '../../operator/src/types.js';
import { createOperatorMetrics } from '../../operator/src/metrics.js';
import { createOperator, type Operator, type OperatorOptions } from '../../operator/src/operator.js';
import { pino } from 'pino';
import { killOnExit } from './exit-cleanup.js';
import { freePort } from './servers.js';

export { freePort };

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** The repository's crds/ folder (tests run from dist/test/support). */
export const CRD_DIR = join(repoRoot, 'crds');

export interface EnvtestUser {
  name: string;
  groups?: string[];
  /** Bearer token; generated when absent. */
  token?: string;
}

export interface ControlPlane {
  /** https://127.0.0.1:<port> */
  readonly server: string;
  /** A kubeconfig file for the admin (group system:masters). */
  readonly kubeconfigPath: string;
  /** Admin KubeConfig and KubeClient. */
  readonly kubeConfig: KubeConfig;
  readonly kube: KubeClient;
  /** The CA bundle that verifies the API server's certificate (PEM). */
  readonly caPem: string;
  /** Scratch folder for this control plane (removed by stop). */
  readonly dir: string;
  /** A kubeconfig file authenticating as a token user given to startControlPlane. */
  kubeconfigFor(user: string): string;
  /** Creates the ServiceAccount if needed and returns a kubeconfig with a token minted for it. */
  serviceAccountKubeconfig(namespace: string, name: string): Promise<string>;
  /** Creates a namespace with a unique name (namespaces never finish deleting without a controller-manager). */
  createNamespace(prefix: string): Promise<string>;
  /** Applies every YAML document of the files (server-side apply, field manager envtest; kinds found by discovery). */
  applyFiles(files: readonly string[]): Promise<void>;
  /** A raw GET as the admin (e.g. the Table a `kubectl get` shows: Accept `application/json;as=Table;g=meta.k8s.io;v=v1`). */
  getRaw(path: string, headers?: Record<string, string>): Promise<{ status: number; body: string }>;
  /** The REST resource of a kind, by API discovery. */
  resourceFor(apiVersion: string, kind: string): Promise<ResourceType>;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Folder with kube-apiserver and etcd; default CELERIAC_K8S_BIN_DIR. */
  binDir?: string;
  users?: EnvtestUser[];
  /** CRD folder to apply and wait for; false for none. Default: the repo's crds/. */
  crdDir?: string | false;
  /** Startup timeout per process. */
  timeoutMs?: number;
}

/**
 * Why envtest cannot run here, or false when it can. With CELERIAC_REQUIRE_SERVICES=1 a missing
 * control plane throws instead (CI must not silently skip). Prints the reason loudly on skip.
 */
export function envtestSkipReason(): string | false {
  const dir = process.env.CELERIAC_K8S_BIN_DIR;
  if (dir && existsSync(join(dir, 'kube-apiserver')) && existsSync(join(dir, 'etcd'))) return false;
  const why = dir
    ? `CELERIAC_K8S_BIN_DIR=${dir} has no kube-apiserver/etcd`
    : 'CELERIAC_K8S_BIN_DIR is not set (run `npm run test:all`, or `bash test/support/setup-k8s.sh` and export what it prints)';
  if (process.env.CELERIAC_REQUIRE_SERVICES === '1') {
    throw new Error(`envtest is required (CELERIAC_REQUIRE_SERVICES=1) but unavailable: ${why}`);
  }
  console.error(`\n!!! SKIPPING envtest tests: ${why}\n`);
  return `envtest unavailable: ${why}`;
}

function launch(bin: string, args: string[], logFile: string): ChildProcess {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = createWriteStream(logFile);
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  killOnExit(child);
  return child;
}

async function stopProcess(child: ChildProcess, timeoutMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(timer);
}

function tail(file: string, lines = 25): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs: number, child?: ChildProcess, logFile?: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) {
      throw new Error(`${what}: process exited with ${child.exitCode}\n${logFile ? tail(logFile) : ''}`);
    }
    try {
      if (await check()) return;
    } catch (err) {
      lastErr = err;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what}: not ready after ${timeoutMs} ms (${String(lastErr ?? 'no error')})\n${logFile ? tail(logFile) : ''}`);
}

function httpGet(url: string, o: { ca?: string; token?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const lib = url.startsWith('https:') ? https : http;
    const req = lib.get(
      url,
      { ca: o.ca, headers: { ...(o.headers ?? {}), ...(o.token ? { Authorization: `Bearer ${o.token}` } : {}) }, rejectUnauthorized: o.ca !== undefined },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
  });
}

function kubeconfigYaml(server: string, caPem: string, user: string, token: string): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'envtest', cluster: { server, 'certificate-authority-data': Buffer.from(caPem).toString('base64') } }],
    users: [{ name: user, user: { token } }],
    contexts: [{ name: 'envtest', context: { cluster: 'envtest', user, namespace: 'default' } }],
    'current-context': 'envtest',
  });
}

/**
 * Starts etcd and kube-apiserver, applies the CRDs, and returns handles to use and stop them.
 * A port freePort() picked can be taken before the server binds it (by the ephemeral port of an
 * outgoing connection elsewhere on the machine): then it starts again on new ports, up to 3 times.
 */
export async function startControlPlane(o: StartOptions = {}): Promise<ControlPlane> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startControlPlaneOnce(o);
    } catch (err) {
      if (attempt >= 3 || !String((err as Error)?.message).includes('address already in use')) throw err;
      console.error(`[envtest] a port was taken before its server bound it; starting again on new ports (attempt ${attempt + 1} of 3)`);
    }
  }
}

async function startControlPlaneOnce(o: StartOptions): Promise<ControlPlane> {
  const binDir = o.binDir ?? process.env.CELERIAC_K8S_BIN_DIR;
  if (!binDir) throw new Error('startControlPlane: no binDir and CELERIAC_K8S_BIN_DIR is not set');
  const timeoutMs = o.timeoutMs ?? 60_000;
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-envtest-'));
  const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()];

  const etcdLog = join(dir, 'etcd.log');
  const etcd = launch(
    join(binDir, 'etcd'),
    [
      `--data-dir=${join(dir, 'etcd')}`,
      `--name=envtest`,
      `--listen-client-urls=http://127.0.0.1:${etcdPort}`,
      `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
      `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-cluster=envtest=http://127.0.0.1:${peerPort}`,
      '--unsafe-no-fsync=true',
      '--log-level=warn',
    ],
    etcdLog,
  );
  let apiserver: ChildProcess | undefined;
  const stopAll = async () => {
    if (apiserver) await stopProcess(apiserver);
    await stopProcess(etcd);
  };
  try {
    await waitUntil('etcd', async () => (await httpGet(`http://127.0.0.1:${etcdPort}/health`)).body.includes('"health":"true"'), timeoutMs, etcd, etcdLog);

    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const saKey = join(dir, 'sa.key');
    writeFileSync(saKey, privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const adminToken = randomBytes(24).toString('hex');
    const users = [
      { name: 'admin', groups: ['system:masters'], token: adminToken },
      ...(o.users ?? []).map((u) => ({ ...u, token: u.token ?? randomBytes(24).toString('hex') })),
    ];
    writeFileSync(join(dir, 'tokens.csv'), users.map((u) => `${u.token},${u.name},${u.name},"${(u.groups ?? []).join(',')}"`).join('\n') + '\n');

    const apiLog = join(dir, 'kube-apiserver.log');
    const server = `https://127.0.0.1:${apiPort}`;
    apiserver = launch(
      join(binDir, 'kube-apiserver'),
      [
        `--etcd-servers=http://127.0.0.1:${etcdPort}`,
        `--cert-dir=${join(dir, 'certs')}`,
        `--secure-port=${apiPort}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        '--service-cluster-ip-range=10.0.0.0/24',
        '--allow-privileged=true',
        '--authorization-mode=RBAC',
        '--disable-admission-plugins=ServiceAccount',
        `--service-account-issuer=${server}/`,
        `--service-account-key-file=${saKey}`,
        `--service-account-signing-key-file=${saKey}`,
        `--token-auth-file=${join(dir, 'tokens.csv')}`,
        '--enable-priority-and-fairness=false',
        '--v=1',
      ],
      apiLog,
    );
    await waitUntil('kube-apiserver', async () => (await httpGet(`${server}/readyz`, { token: adminToken })).status === 200, timeoutMs * 2, apiserver, apiLog);
    const certDir = join(dir, 'certs');
    const crt = readdirSync(certDir).find((f) => f.endsWith('.crt'));
    if (!crt) throw new Error(`kube-apiserver wrote no certificate into ${certDir}`);
    const caPem = readFileSync(join(certDir, crt), 'utf8');

    const kubeconfigPath = join(dir, 'admin.kubeconfig');
    writeFileSync(kubeconfigPath, kubeconfigYaml(server, caPem, 'admin', adminToken));
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromFile(kubeconfigPath);
    const kube = createKubeClient(kubeConfig, { userAgent: 'celeriac-envtest' });

    // Kinds are mapped to their REST resource by discovery, so any built-in or CRD kind applies.
    const discovered = new Map<string, ResourceType>();
    const resourceFor = async (apiVersion: string, kind: string): Promise<ResourceType> => {
      const key = `${apiVersion}/${kind}`;
      const hit = discovered.get(key);
      if (hit) return hit;
      const [group, version] = apiVersion.includes('/') ? (apiVersion.split('/') as [string, string]) : ['', apiVersion];
      const r = await httpGet(`${server}${group ? `/apis/${apiVersion}` : `/api/${version}`}`, { ca: caPem, token: adminToken });
      if (r.status !== 200) throw new Error(`discovery of ${apiVersion} failed: ${r.status} ${r.body.slice(0, 200)}`);
      const list = JSON.parse(r.body) as { resources: { name: string; kind: string; namespaced: boolean }[] };
      const found = list.resources.find((x) => x.kind === kind && !x.name.includes('/'));
      if (!found) throw new Error(`kind ${kind} is not served in ${apiVersion}`);
      const rt = { group, version, kind, plural: found.name, namespaced: found.namespaced };
      discovered.set(key, rt);
      return rt;
    };
    const applyFiles = async (files: readonly string[]) => {
      for (const f of files) {
        for (const doc of parseAllDocuments(readFileSync(f, 'utf8'))) {
          const obj = doc.toJSON() as (KubeObject & { apiVersion: string; kind: string }) | null;
          if (!obj) continue;
          await kube.apply(await resourceFor(obj.apiVersion, obj.kind), obj, { fieldManager: 'envtest', force: true });
        }
      }
    };

    if (o.crdDir !== false) {
      const crdDir = o.crdDir ?? CRD_DIR;
      const files = readdirSync(crdDir)
        .filter((f) => f.endsWith('.yaml'))
        .map((f) => join(crdDir, f));
      await applyFiles(files);
      for (const f of files) {
        const name = (parseAllDocuments(readFileSync(f, 'utf8'))[0]?.toJSON() as KubeObject).metadata.name;
        await waitUntil(
          `CRD ${name} established`,
          async () => {
            const crd = await kube.get<KubeObject & { status?: { conditions?: { type: string; status: string }[] } }>(
              resources.customResourceDefinitions,
              undefined,
              name,
            );
            return crd?.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True') ?? false;
          },
          timeoutMs,
        );
      }
      // Established can precede the discovery/handler being ready; a list proves the resource is served.
      await waitUntil(
        'CRD resources served',
        async () => {
          await kube.list(resources.workerPools);
          await kube.list(resources.taskQueues);
          return true;
        },
        timeoutMs,
      );
    }

    const tokens = new Map(users.map((u) => [u.name, u.token]));
    return {
      server,
      kubeconfigPath,
      kubeConfig,
      kube,
      caPem,
      dir,
      applyFiles,
      resourceFor,
      getRaw: (path, headers) => httpGet(`${server}${path}`, { ca: caPem, token: adminToken, headers }),
      kubeconfigFor(user) {
        const token = tokens.get(user);
        if (!token) throw new Error(`kubeconfigFor: unknown user "${user}" (known: ${[...tokens.keys()].join(', ')})`);
        const path = join(dir, `${user.replace(/[^a-zA-Z0-9_.-]/g, '_')}.kubeconfig`);
        writeFileSync(path, kubeconfigYaml(server, caPem, user, token));
        return path;
      },
      async serviceAccountKubeconfig(namespace, name) {
        if (!(await kube.get(resources.serviceAccounts, namespace, name))) {
          await kube.create(resources.serviceAccounts, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace } });
        }
        // TokenRequest is a POST to the serviceaccounts/<name>/token subresource.
        const tr = await kube.create<KubeObject & { status?: { token?: string } }>(
          { ...resources.serviceAccounts, plural: `serviceaccounts/${encodeURIComponent(name)}/token` },
          { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', metadata: { name, namespace }, spec: { expirationSeconds: 3600 } } as KubeObject,
        );
        const token = tr.status?.token;
        if (!token) throw new Error(`TokenRequest for ${namespace}/${name} returned no token`);
        const path = join(dir, `sa-${namespace}-${name}.kubeconfig`);
        writeFileSync(path, kubeconfigYaml(server, caPem, `system:serviceaccount:${namespace}:${name}`, token));
        return path;
      },
      async createNamespace(prefix) {
        const name = `${prefix}-${randomBytes(3).toString('hex')}`;
        await kube.create(resources.namespaces, { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
        return name;
      },
      async stop() {
        await stopAll();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Runs the operator in-process against a control plane and waits for its caches. Admin credentials
 * unless `kubeconfigPath` says otherwise (e.g. cp.kubeconfigFor(user) to test RBAC); logs are
 * silent unless CELERIAC_TEST_LOG_LEVEL is set. Stop it with `await op.stop()`.
 */
export async function startTestOperator(cp: ControlPlane, o: Partial<OperatorOptions> & { kubeconfigPath?: string } = {}): Promise<Operator> {
  const { kubeconfigPath, ...rest } = o;
  let kubeConfig = cp.kubeConfig;
  if (kubeconfigPath) {
    kubeConfig = new KubeConfig();
    kubeConfig.loadFromFile(kubeconfigPath);
  }
  const op = createOperator({
    kube: createKubeClient(kubeConfig),
    log: pino({ level: process.env.CELERIAC_TEST_LOG_LEVEL ?? 'silent' }),
    metrics: createOperatorMetrics(),
    brokerCheckTimeoutMs: 1000,
    ...rest,
  });
  await op.start();
  return op;
}
