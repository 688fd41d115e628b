/**
 * A real single-node Kubernetes cluster for the cluster tier, started inside the test and stopped
 * after it (see ../../../shared/spec/real-cluster.md for why each setting is what it is):
 * a private containerd (own config, root, state and socket; never podman's storage), a CA and
 * certificates made with openssl, etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
 * kubelet and kube-proxy. Binaries come from CELERIAC_K8S_BIN_DIR and the pause image from
 * CELERIAC_PAUSE_IMAGE(_ARCHIVE), both printed by test/support/setup-cluster.sh.
 *
 * stop() leaves the host as it was found: every pod is deleted and its sandbox stopped (so the
 * CNI plugin tears down its network), each process group this module started is ended, mounts
 * under the cluster's folder are unmounted, the bridge is removed, iptables chains the cluster
 * added (KUBE-*, CNI-*) are deleted and the sysctls the kubelet and CNI rewrite are restored.
 *
 *   const c = await startCluster({ images: [archive] });
 *   await c.kubectl(['get', 'nodes']); await c.stop();
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { hostname, networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { AppsV1Api, CoreV1Api, KubeConfig, type V1Pod } from '@kubernetes/client-node';
import type { Redis } from 'ioredis';
import { eventually } from './eventually.js';
import { repoRoot } from './processes.js';
import { freePort, startRedis, type TestServer } from './servers.js';

/** What the cluster tier needs from setup-cluster.sh, or why it cannot run. */
export function clusterSkipReason(): string | false {
  const bin = process.env.CELERIAC_K8S_BIN_DIR;
  const missing = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubelet', 'kube-proxy', 'kubectl', 'helm'].filter(
    (b) => !bin || !existsSync(join(bin, b)),
  );
  const why: string[] = [];
  if (missing.length > 0) why.push(`CELERIAC_K8S_BIN_DIR=${bin ?? '(unset)'} lacks ${missing.join(', ')}`);
  if (!process.env.CELERIAC_PAUSE_IMAGE_ARCHIVE || !existsSync(process.env.CELERIAC_PAUSE_IMAGE_ARCHIVE)) why.push('CELERIAC_PAUSE_IMAGE_ARCHIVE is not set');
  if (process.getuid?.() !== 0) why.push('a kubelet and containerd need root');
  for (const tool of ['containerd', 'ctr', 'runc', 'openssl', 'iptables-save']) {
    if (spawnSync('sh', ['-c', `command -v ${tool} || test -x /usr/sbin/${tool}`]).status !== 0) why.push(`${tool} is not installed`);
  }
  if (why.length === 0) return false;
  return `${why.join('; ')} (run \`bash test/support/setup-cluster.sh\` and export what it prints)`;
}

export interface Cluster {
  /** The node's name and IP (pods reach host services there; the host reaches pod IPs). */
  readonly nodeName: string;
  readonly nodeIP: string;
  readonly kubeconfigPath: string;
  readonly dir: string;
  /** The apiserver's audit log (JSON lines, level Metadata: who did which verb on what). */
  readonly auditLogPath: string;
  /** Runs kubectl as the admin; rejects with its output on a non-zero exit. */
  kubectl(args: readonly string[], input?: string): Promise<string>;
  /** Runs helm with the admin kubeconfig; rejects with its output on a non-zero exit. */
  helm(args: readonly string[]): Promise<string>;
  /** Imports a docker-archive into containerd's k8s.io namespace. */
  importImage(archive: string): Promise<void>;
  /**
   * Sends `signal` to a container's init process through containerd (`ctr task kill`), as the
   * kernel's OOM killer or a node problem would: no preStop, no grace. `containerId` is the pod
   * status' `containerID` with or without its `containerd://` prefix.
   */
  killContainer(containerId: string, signal: 'SIGKILL' | 'SIGTERM'): Promise<void>;
  /** The last lines of one component's log (for failure messages). */
  logTail(component: string, lines?: number): string;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  /** docker-archives to import into containerd before the node is used (the pause image is added). */
  images?: readonly string[];
}

const podSubnet = '10.244.0.0/24';
const serviceRange = '10.96.0.0/16';
const bridgeName = 'celeriac0';
/** Sysctls the kubelet (setupKernelTunables) and the CNI bridge plugin rewrite; restored at stop. */
const sysctls = [
  'kernel/panic',
  'kernel/panic_on_oops',
  'vm/overcommit_memory',
  'vm/panic_on_oom',
  'kernel/keys/root_maxkeys',
  'kernel/keys/root_maxbytes',
  'net/ipv4/ip_forward',
  'net/ipv4/conf/all/route_localnet',
];

function sh(cmd: string, args: readonly string[], input?: string): { code: number; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input, maxBuffer: 64 << 20 });
  return { code: r.status ?? -1, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

function must(cmd: string, args: readonly string[], input?: string): string {
  const r = sh(cmd, args, input);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${r.code}: ${r.out}`);
  return r.out;
}

function runAsync(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv, input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}\n--- stdout\n${out}\n--- stderr\n${err}`)),
    );
    child.stdin.end(input ?? '');
  });
}

/** The host's first non-loopback IPv4 address: the node IP, where host services listen for pods. */
function primaryIPv4(): string {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  throw new Error('no non-loopback IPv4 address: the node needs one that pods can reach');
}

// ---- PKI (openssl) ----

interface Pki {
  dir: string;
  ca: string;
  caKey: string;
  /** Issues a client or serving certificate signed by the CA; returns [cert, key]. */
  issue(name: string, subject: string, sans?: string[]): [string, string];
}

function makePki(dir: string): Pki {
  mkdirSync(dir, { recursive: true });
  const ca = join(dir, 'ca.crt');
  const caKey = join(dir, 'ca.key');
  must('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=celeriac-test-ca',
    '-keyout',
    caKey,
    '-out',
    ca,
  ]);
  return {
    dir,
    ca,
    caKey,
    issue(name, subject, sans = []) {
      const [crt, key, csr, ext] = ['crt', 'key', 'csr', 'ext'].map((e) => join(dir, `${name}.${e}`)) as [string, string, string, string];
      must('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', subject, '-keyout', key, '-out', csr]);
      const lines = [
        sans.length > 0 ? 'extendedKeyUsage=serverAuth,clientAuth' : 'extendedKeyUsage=clientAuth',
        'keyUsage=critical,digitalSignature,keyEncipherment',
      ];
      if (sans.length > 0) lines.push(`subjectAltName=${sans.join(',')}`);
      writeFileSync(ext, lines.join('\n') + '\n');
      must('openssl', ['x509', '-req', '-in', csr, '-CA', ca, '-CAkey', caKey, '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', crt]);
      return [crt, key];
    },
  };
}

function kubeconfig(path: string, server: string, ca: string, cert: string, key: string): string {
  writeFileSync(
    path,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'celeriac', cluster: { server, 'certificate-authority': ca } }],
      users: [{ name: 'user', user: { 'client-certificate': cert, 'client-key': key } }],
      contexts: [{ name: 'celeriac', context: { cluster: 'celeriac', user: 'user', namespace: 'default' } }],
      'current-context': 'celeriac',
    }),
  );
  return path;
}

// ---- processes: each in its own process group, stopped by group ----

interface Proc {
  name: string;
  child: ChildProcess;
  log: string;
}

function launch(dir: string, name: string, bin: string, args: readonly string[]): Proc {
  const log = join(dir, 'logs', `${name}.log`);
  const out = createWriteStream(log);
  const child = spawn(bin, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  return { name, child, log };
}

function alive(pid: number): boolean {
  try {
    // PID 1 of this VM reaps slowly: a zombie counts as stopped.
    return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Ends the process group led by `pid` (TERM, then KILL after `graceMs`); nothing when undefined. */
async function stopGroup(pid: number | undefined, graceMs = 10_000): Promise<void> {
  if (pid === undefined) return;
  const signal = (s: NodeJS.Signals) => {
    try {
      process.kill(-pid, s);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  };
  signal('SIGTERM');
  const deadline = Date.now() + graceMs;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  signal('SIGKILL');
}

function tailOf(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join('\n');
  } catch (err) {
    return `(no log: ${(err as Error).message})`;
  }
}

// ---- host state: recorded before start, restored at stop ----

/**
 * Host folders the kubelet, the CNI library and containerd's shims write to whatever their
 * configured roots (device-plugin socket, pod logs, CNI result cache, shim sockets). At stop, a
 * folder that was absent is removed, and in one that existed only the entries the cluster added go.
 */
const fixedHostDirs = [
  '/var/lib/kubelet',
  '/var/log/pods',
  '/var/log/containers',
  '/var/lib/cni/results',
  '/var/lib/cni',
  '/run/containerd/s',
  '/run/containerd',
];

function hostDirEntries(): Map<string, Set<string> | null> {
  return new Map(fixedHostDirs.map((d) => [d, existsSync(d) ? new Set(readdirSync(d)) : null]));
}

function removeAddedHostEntries(before: Map<string, Set<string> | null>): void {
  for (const [d, entries] of before) {
    if (!existsSync(d)) continue;
    if (entries === null) rmSync(d, { recursive: true, force: true });
    else for (const e of readdirSync(d)) if (!entries.has(e)) rmSync(join(d, e), { recursive: true, force: true });
  }
}

function readSysctls(): Map<string, string> {
  const m = new Map<string, string>();
  for (const k of sysctls) {
    const f = `/proc/sys/${k}`;
    if (existsSync(f)) m.set(k, readFileSync(f, 'utf8').trim());
  }
  return m;
}

/** Chains per table, from iptables-save (iptables or ip6tables). */
function chains(save: 'iptables-save' | 'ip6tables-save'): Map<string, Set<string>> {
  const r = sh(save, []);
  const m = new Map<string, Set<string>>();
  let table = '';
  for (const line of r.out.split('\n')) {
    if (line.startsWith('*')) m.set((table = line.slice(1)), new Set());
    else if (line.startsWith(':')) m.get(table)?.add(line.slice(1).split(' ')[0]!);
  }
  return m;
}

/** Deletes chains named KUBE-* or CNI-* that were not there before, with the rules jumping to them. */
function removeNewChains(family: 'iptables' | 'ip6tables', before: Map<string, Set<string>>): string[] {
  const left: string[] = [];
  const now = chains(`${family}-save`);
  const save = sh(`${family}-save`, []).out;
  for (const [table, names] of now) {
    const added = [...names].filter((c) => /^(KUBE|CNI)-/.test(c) && !before.get(table)?.has(c));
    if (added.length === 0) continue;
    const rules = save
      .split(/^\*/m)
      .find((s) => s.startsWith(`${table}\n`))
      ?.split('\n')
      .filter((l) => l.startsWith('-A ') && added.some((c) => l.includes(` -j ${c}`) || l.includes(` -g ${c}`)));
    for (const rule of rules ?? []) {
      const args = rule
        .replace(/^-A /, '-D ')
        .match(/"[^"]*"|\S+/g)!
        .map((a) => a.replace(/^"(.*)"$/, '$1'));
      sh(family, ['-w', '-t', table, ...args]);
    }
    for (const c of added) sh(family, ['-w', '-t', table, '-F', c]);
    for (const c of added) {
      const r = sh(family, ['-w', '-t', table, '-X', c]);
      if (r.code !== 0) left.push(`${family} ${table} ${c}: ${r.out.trim()}`);
    }
  }
  return left;
}

function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

/** Removes the kubelet's cgroups (cgroupfs driver: `kubepods` under each v1 controller), deepest first. */
function removeKubepodsCgroups(): string[] {
  const left: string[] = [];
  const root = '/sys/fs/cgroup';
  if (!existsSync(root)) return left;
  for (const ctrl of readdirSync(root)) {
    const top = join(root, ctrl, 'kubepods');
    if (!existsSync(top)) continue;
    const dirs: string[] = [];
    const walk = (d: string) => {
      dirs.push(d);
      for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name));
    };
    walk(top);
    for (const d of dirs.sort((a, b) => b.length - a.length)) {
      try {
        rmdirSync(d);
      } catch (err) {
        left.push(`${d}: ${(err as Error).message}`);
      }
    }
  }
  return left;
}

/** Processes whose command line names `needle` (e.g. containerd shims of our socket). */
function pidsMentioning(needle: string): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(needle)) pids.push(Number(e));
    } catch {
      // the process ended between readdir and read: nothing to stop
    }
  }
  return pids.filter((p) => p !== process.pid);
}

// ---- the cluster ----

/**
 * What startCluster saves in its folder before it touches the host, so that stop() — or, after a
 * test process was killed before its stop() ran, {@link stopAbandonedClusters} — can put it back.
 */
interface HostBefore {
  sysctls: [string, string][];
  iptables: [string, string[]][];
  ip6tables: [string, string[]][];
  hostDirs: [string, string[] | null][];
}

const HOST_BEFORE_FILE = 'host-before.json';
/** The test process that owns the cluster; a cluster whose owner is gone is abandoned. */
const OWNER_FILE = 'owner.pid';

function recordHostBefore(dir: string): HostBefore {
  const arrays = (m: Map<string, Set<string>>) => [...m].map(([t, c]) => [t, [...c]] as [string, string[]]);
  const before: HostBefore = {
    sysctls: [...readSysctls()],
    iptables: arrays(chains('iptables-save')),
    ip6tables: arrays(chains('ip6tables-save')),
    hostDirs: [...hostDirEntries()].map(([d, e]) => [d, e && [...e]]),
  };
  writeFileSync(join(dir, HOST_BEFORE_FILE), JSON.stringify(before));
  writeFileSync(join(dir, OWNER_FILE), String(process.pid));
  return before;
}

/**
 * Stops a cluster and puts the host back as `before` says: every pod deleted and its sandbox
 * stopped (CNI DEL runs), then each component's process group (`groups`: name -> group id), the
 * shims, mounts, the bridge, added iptables chains, sysctls, cgroups and host folders. Throws
 * with everything that could not be undone (the folder is then kept); removes it otherwise.
 */
async function teardown(dir: string, bin: string, groups: ReadonlyMap<string, number>, before: HostBefore): Promise<void> {
  const kubectlBin = join(bin, 'kubectl');
  const sock = join(dir, 'containerd', 'containerd.sock');
  const runcRoot = join(dir, 'containerd', 'runc');
  const problems: string[] = [];
  const admin = join(dir, 'admin.kubeconfig');
  // No new pods, then every pod deleted; the kubelet stops their sandboxes (CNI DEL runs).
  for (const n of ['kube-controller-manager', 'kube-scheduler']) await stopGroup(groups.get(n));
  if (groups.has('kubelet') && groups.has('kube-apiserver') && existsSync(admin)) {
    const del = sh(kubectlBin, ['--kubeconfig', admin, 'delete', 'pods', '--all', '--all-namespaces', '--grace-period=0', '--force', '--wait=false']);
    if (del.code !== 0) problems.push(`deleting pods: ${del.out}`);
    try {
      await eventually(
        () => {
          const list = JSON.parse(sh('runc', ['--root', join(runcRoot, 'k8s.io'), 'list', '--format', 'json']).out || '[]') as { status: string }[] | null;
          const running = (list ?? []).filter((c) => c.status !== 'stopped').length;
          if (running > 0) throw new Error(`${running} containers still running`);
        },
        { timeoutMs: 60_000, intervalMs: 500 },
      );
    } catch (err) {
      problems.push(`pods did not stop: ${(err as Error).message}`);
    }
  }
  for (const n of ['kubelet', 'kube-proxy']) await stopGroup(groups.get(n));
  if (groups.has('kube-proxy')) {
    const r = sh(join(bin, 'kube-proxy'), ['--cleanup', '--config', join(dir, 'kube-proxy.yaml')]);
    if (r.code !== 0) problems.push(`kube-proxy --cleanup: ${r.out}`);
  }
  for (const n of ['kube-apiserver', 'etcd']) await stopGroup(groups.get(n));
  // Containers left (stopped sandboxes) are deleted, then containerd and its shims end.
  const list = JSON.parse(sh('runc', ['--root', join(runcRoot, 'k8s.io'), 'list', '--format', 'json']).out || '[]') as { id: string }[] | null;
  for (const c of list ?? []) sh('runc', ['--root', join(runcRoot, 'k8s.io'), 'delete', '--force', c.id]);
  await stopGroup(groups.get('containerd'));
  for (const pid of pidsMentioning(sock)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') problems.push(`killing shim ${pid}: ${(err as Error).message}`);
    }
  }
  for (const m of mountsUnder(dir)) {
    const r = sh('umount', [m]);
    if (r.code !== 0 && sh('umount', ['-l', m]).code !== 0) problems.push(`umount ${m}: ${r.out}`);
  }
  if (sh('ip', ['link', 'show', bridgeName]).code === 0) sh('ip', ['link', 'delete', bridgeName]);
  problems.push(
    ...removeNewChains('iptables', new Map(before.iptables.map(([t, c]) => [t, new Set(c)]))),
    ...removeNewChains('ip6tables', new Map(before.ip6tables.map(([t, c]) => [t, new Set(c)]))),
  );
  for (const [k, v] of before.sysctls) {
    const f = `/proc/sys/${k}`;
    if (readFileSync(f, 'utf8').trim() !== v) writeFileSync(f, v);
  }
  problems.push(...removeKubepodsCgroups());
  removeAddedHostEntries(new Map(before.hostDirs.map(([d, e]) => [d, e && new Set(e)])));
  const leftover = [...groups].filter(([, pid]) => alive(pid)).map(([name]) => name);
  if (leftover.length > 0) problems.push(`still running: ${leftover.join(', ')}`);
  if (problems.length === 0) rmSync(dir, { recursive: true, force: true });
  else throw new Error(`the cluster did not stop cleanly (its files are kept in ${dir}):\n${problems.join('\n')}`);
}

/**
 * Stops the clusters of test processes that were killed before their stop() ran (a file timeout
 * of the test runner does that), from what their folders saved: their process groups are found by
 * the folder on their command line. Runs at the start of startCluster, under the cluster lock.
 */
export async function stopAbandonedClusters(bin = process.env.CELERIAC_K8S_BIN_DIR!): Promise<void> {
  for (const name of readdirSync(tmpdir())) {
    const dir = join(tmpdir(), name);
    if (!name.startsWith('celeriac-cluster-') || !existsSync(join(dir, HOST_BEFORE_FILE))) continue;
    const owner = Number(readFileSync(join(dir, OWNER_FILE), 'utf8'));
    if (alive(owner)) continue;
    const groups = new Map<string, number>();
    for (const pid of pidsMentioning(dir)) {
      let stat: string[];
      let argv0: string;
      try {
        stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
          .replace(/^.*\) /, '')
          .split(' ');
        argv0 = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0]!;
      } catch {
        continue; // it ended since it was listed: nothing to stop
      }
      // Components are group leaders (launched detached); the shims are found by the socket.
      if (Number(stat[2]) === pid) groups.set(argv0.split('/').pop()!, pid);
    }
    console.error(`[cluster] stopping the cluster abandoned in ${dir} by process ${owner}: ${[...groups.keys()].join(', ')}`);
    await teardown(dir, bin, groups, JSON.parse(readFileSync(join(dir, HOST_BEFORE_FILE), 'utf8')) as HostBefore);
  }
}

/** Starts the whole cluster and resolves once the node is Ready and the default ServiceAccount exists. */
export async function startCluster(o: ClusterOptions = {}): Promise<Cluster> {
  const bin = process.env.CELERIAC_K8S_BIN_DIR!;
  const pauseImage = process.env.CELERIAC_PAUSE_IMAGE!;
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-cluster-'));
  mkdirSync(join(dir, 'logs'));
  const nodeIP = primaryIPv4();
  const nodeName = hostname().toLowerCase();
  await stopAbandonedClusters(bin);
  const hostBefore = recordHostBefore(dir);
  const procs: Proc[] = [];
  const env = { ...process.env };
  const kubectlBin = join(bin, 'kubectl');
  const [etcdPort, etcdPeer, apiPort, kcmPort, schedPort, kubeletPort, kubeletHealthz, proxyHealthz, proxyMetrics] = await Promise.all(
    Array.from({ length: 9 }, () => freePort()),
  );
  const server = `https://${nodeIP}:${apiPort}`;
  const sock = join(dir, 'containerd', 'containerd.sock');
  const runcRoot = join(dir, 'containerd', 'runc');
  const ctr = (args: readonly string[]) => runAsync('ctr', ['-a', sock, '-n', 'k8s.io', ...args], env);

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    const groups = new Map(procs.flatMap((p) => (p.child.pid === undefined ? [] : [[p.name, p.child.pid] as const])));
    await teardown(dir, bin, groups, hostBefore);
  };

  const logTail = (name: string, lines = 40) => tailOf(join(dir, 'logs', `${name}.log`), lines);
  const start = (name: string, args: readonly string[], binary = join(bin, name)) => {
    const p = launch(dir, name, binary, args);
    procs.push(p);
    return p;
  };
  /** Waits for `check`; a component that exits first fails the wait at once, with its log. */
  const waitFor = async (what: string, p: Proc, check: () => Promise<unknown> | unknown, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (p.child.exitCode !== null || p.child.signalCode !== null) {
        throw new Error(`${what}: ${p.name} exited (${p.child.exitCode ?? p.child.signalCode})\n--- ${p.name} log\n${logTail(p.name)}`);
      }
      try {
        return await check();
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`${what}: ${(err as Error).message}\n--- ${p.name} log\n${logTail(p.name)}`, { cause: err });
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  };

  try {
    // --- PKI and kubeconfigs ---
    const pki = makePki(join(dir, 'pki'));
    const [apiCrt, apiKey] = pki.issue('apiserver', '/CN=kube-apiserver', [
      'IP:127.0.0.1',
      'IP:10.96.0.1',
      `IP:${nodeIP}`,
      `DNS:${nodeName}`,
      'DNS:kubernetes',
      'DNS:kubernetes.default',
      'DNS:kubernetes.default.svc',
      'DNS:kubernetes.default.svc.cluster.local',
    ]);
    const [kubeletClientCrt, kubeletClientKey] = pki.issue('apiserver-kubelet-client', '/O=system:masters/CN=kube-apiserver-kubelet-client');
    const kcfg = (name: string, subject: string) => {
      const [c, k] = pki.issue(name, subject);
      return kubeconfig(join(dir, `${name}.kubeconfig`), server, pki.ca, c, k);
    };
    const adminKubeconfig = kcfg('admin', '/O=system:masters/CN=celeriac-admin');
    const kcmKubeconfig = kcfg('kube-controller-manager', '/CN=system:kube-controller-manager');
    const schedKubeconfig = kcfg('kube-scheduler', '/CN=system:kube-scheduler');
    const kubeletKubeconfig = kcfg('kubelet', `/O=system:nodes/CN=system:node:${nodeName}`);
    const proxyKubeconfig = kcfg('kube-proxy', '/CN=system:kube-proxy');
    const saKey = join(pki.dir, 'sa.key');
    const saPub = join(pki.dir, 'sa.pub');
    must('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', saKey]);
    must('openssl', ['pkey', '-in', saKey, '-pubout', '-out', saPub]);

    // --- containerd ---
    const cdir = join(dir, 'containerd');
    mkdirSync(join(cdir, 'cni'), { recursive: true });
    writeFileSync(
      join(cdir, 'cni', '10-celeriac.conflist'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: 'celeriac-cluster',
        plugins: [
          {
            type: 'bridge',
            bridge: bridgeName,
            isGateway: true,
            // No masquerade: pods only talk to the node and each other, and no NAT chains are left.
            ipMasq: false,
            hairpinMode: true,
            ipam: { type: 'host-local', ranges: [[{ subnet: podSubnet }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: join(cdir, 'ipam') },
          },
        ],
      }),
    );
    writeFileSync(
      join(cdir, 'config.toml'),
      [
        'version = 2',
        `root = "${join(cdir, 'root')}"`,
        `state = "${join(cdir, 'state')}"`,
        'disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]',
        '[grpc]',
        `  address = "${sock}"`,
        '[plugins."io.containerd.internal.v1.opt"]',
        `  path = "${join(cdir, 'opt')}"`,
        '[plugins."io.containerd.grpc.v1.cri"]',
        `  sandbox_image = "${pauseImage}"`,
        // The VM lacks CAP_SYS_RESOURCE: without this every sandbox fails to start.
        '  restrict_oom_score_adj = true',
        '  netns_mounts_under_state_dir = true',
        '  [plugins."io.containerd.grpc.v1.cri".containerd]',
        '    default_runtime_name = "runc"',
        '    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
        '      runtime_type = "io.containerd.runc.v2"',
        '      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]',
        '        SystemdCgroup = false',
        `        Root = "${runcRoot}"`,
        '  [plugins."io.containerd.grpc.v1.cri".cni]',
        '    bin_dir = "/usr/lib/cni"',
        `    conf_dir = "${join(cdir, 'cni')}"`,
        '',
      ].join('\n'),
    );
    const containerd = start('containerd', ['--config', join(cdir, 'config.toml')], 'containerd');
    await waitFor('containerd', containerd, () => ctr(['version']));
    for (const archive of [process.env.CELERIAC_PAUSE_IMAGE_ARCHIVE!, ...(o.images ?? [])]) await ctr(['images', 'import', archive]);

    // --- etcd, kube-apiserver ---
    const etcd = start('etcd', [
      `--data-dir=${join(dir, 'etcd')}`,
      '--name=celeriac',
      `--listen-client-urls=http://127.0.0.1:${etcdPort}`,
      `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-cluster=celeriac=http://127.0.0.1:${etcdPeer}`,
      '--unsafe-no-fsync=true',
      '--log-level=warn',
    ]);
    await waitFor('etcd', etcd, async () => {
      const r = await fetch(`http://127.0.0.1:${etcdPort}/health`);
      if (!(await r.text()).includes('"health":"true"')) throw new Error('etcd not healthy');
    });
    writeFileSync(join(dir, 'audit-policy.yaml'), JSON.stringify({ apiVersion: 'audit.k8s.io/v1', kind: 'Policy', rules: [{ level: 'Metadata' }] }));
    const apiserver = start('kube-apiserver', [
      `--etcd-servers=http://127.0.0.1:${etcdPort}`,
      `--secure-port=${apiPort}`,
      '--bind-address=0.0.0.0',
      `--advertise-address=${nodeIP}`,
      `--cert-dir=${join(dir, 'apiserver-certs')}`,
      `--tls-cert-file=${apiCrt}`,
      `--tls-private-key-file=${apiKey}`,
      `--client-ca-file=${pki.ca}`,
      `--service-cluster-ip-range=${serviceRange}`,
      '--authorization-mode=Node,RBAC',
      '--enable-admission-plugins=NodeRestriction',
      '--allow-privileged=true',
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${saPub}`,
      `--service-account-signing-key-file=${saKey}`,
      `--kubelet-client-certificate=${kubeletClientCrt}`,
      `--kubelet-client-key=${kubeletClientKey}`,
      `--audit-policy-file=${join(dir, 'audit-policy.yaml')}`,
      `--audit-log-path=${join(dir, 'logs', 'audit.log')}`,
      '--v=1',
    ]);
    const kubectl = (args: readonly string[], input?: string) => runAsync(kubectlBin, ['--kubeconfig', adminKubeconfig, ...args], env, input);
    await waitFor('kube-apiserver', apiserver, () => kubectl(['get', '--raw', '/readyz']), 120_000);

    // --- controller-manager, scheduler ---
    start('kube-controller-manager', [
      `--kubeconfig=${kcmKubeconfig}`,
      `--authentication-kubeconfig=${kcmKubeconfig}`,
      `--authorization-kubeconfig=${kcmKubeconfig}`,
      `--service-account-private-key-file=${saKey}`,
      `--root-ca-file=${pki.ca}`,
      '--use-service-account-credentials=true',
      `--cluster-signing-cert-file=${pki.ca}`,
      `--cluster-signing-key-file=${pki.caKey}`,
      '--leader-elect=false',
      '--bind-address=127.0.0.1',
      `--secure-port=${kcmPort}`,
      '--v=1',
    ]);
    start('kube-scheduler', [
      `--kubeconfig=${schedKubeconfig}`,
      `--authentication-kubeconfig=${schedKubeconfig}`,
      `--authorization-kubeconfig=${schedKubeconfig}`,
      '--leader-elect=false',
      '--bind-address=127.0.0.1',
      `--secure-port=${schedPort}`,
      '--v=1',
    ]);

    // --- kubelet ---
    const kubeletConfig = join(dir, 'kubelet.yaml');
    const hardNofile = Number(must('sh', ['-c', 'ulimit -Hn']).trim()) || 65536;
    writeFileSync(
      kubeletConfig,
      JSON.stringify({
        apiVersion: 'kubelet.config.k8s.io/v1beta1',
        kind: 'KubeletConfiguration',
        port: kubeletPort,
        readOnlyPort: 0,
        healthzPort: kubeletHealthz,
        healthzBindAddress: '127.0.0.1',
        authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: pki.ca } },
        authorization: { mode: 'Webhook' },
        cgroupDriver: 'cgroupfs',
        failCgroupV1: false,
        failSwapOn: false,
        oomScoreAdj: 0,
        maxOpenFiles: hardNofile,
        makeIPTablesUtilChains: false,
        evictionHard: { 'memory.available': '1Mi', 'nodefs.available': '1%', 'imagefs.available': '1%', 'nodefs.inodesFree': '1%' },
        imageGCHighThresholdPercent: 100,
        imageGCLowThresholdPercent: 99,
        resolvConf: '/etc/resolv.conf',
        containerRuntimeEndpoint: `unix://${sock}`,
        serializeImagePulls: false,
        registerNode: true,
      }),
    );
    const startedAt = Date.now();
    const kubelet = start('kubelet', [
      `--config=${kubeletConfig}`,
      `--kubeconfig=${kubeletKubeconfig}`,
      `--root-dir=${join(dir, 'kubelet')}`,
      `--cert-dir=${join(dir, 'kubelet-pki')}`,
      `--hostname-override=${nodeName}`,
      `--node-ip=${nodeIP}`,
      '--v=1',
    ]);

    // --- kube-proxy (ClusterIP Services: pods reach the API through 10.96.0.1) ---
    writeFileSync(
      join(dir, 'kube-proxy.yaml'),
      JSON.stringify({
        apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
        kind: 'KubeProxyConfiguration',
        clientConnection: { kubeconfig: proxyKubeconfig },
        mode: 'iptables',
        clusterCIDR: podSubnet,
        hostnameOverride: nodeName,
        healthzBindAddress: `127.0.0.1:${proxyHealthz}`,
        metricsBindAddress: `127.0.0.1:${proxyMetrics}`,
        // Zero: leave the host's conntrack settings alone.
        conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
        // false: else it sets route_localnet=1 and leaves a KUBE-FIREWALL chain behind.
        iptables: { localhostNodePorts: false },
      }),
    );
    start('kube-proxy', [`--config=${join(dir, 'kube-proxy.yaml')}`, '--v=1']);

    // After a restart etcd could still hold an old Ready node: the heartbeat must be newer than the start.
    await waitFor(
      'node Ready',
      kubelet,
      async () => {
        const node = JSON.parse(await kubectl(['get', 'node', nodeName, '-o', 'json'])) as {
          status?: { conditions?: { type: string; status: string; lastHeartbeatTime: string }[] };
        };
        const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
        if (ready?.status !== 'True' || Date.parse(ready.lastHeartbeatTime) < startedAt - 1000) throw new Error(`node not Ready: ${JSON.stringify(ready)}`);
      },
      120_000,
    );
    await waitFor('default ServiceAccount', kubelet, () => kubectl(['get', 'serviceaccount', 'default', '-n', 'default']), 120_000);

    return {
      nodeName,
      nodeIP,
      kubeconfigPath: adminKubeconfig,
      dir,
      auditLogPath: join(dir, 'logs', 'audit.log'),
      kubectl,
      helm: (args) => runAsync(join(bin, 'helm'), ['--kubeconfig', adminKubeconfig, ...args], env),
      importImage: async (archive) => {
        await ctr(['images', 'import', archive]);
      },
      killContainer: async (containerId, signal) => {
        await ctr(['tasks', 'kill', '--signal', signal, containerId.replace(/^containerd:\/\//, '')]);
      },
      logTail,
      stop,
    };
  } catch (err) {
    try {
      await stop();
    } catch (stopErr) {
      throw new AggregateError([err, stopErr], `the cluster failed to start (${(err as Error).message}) and to stop (${(stopErr as Error).message})`);
    }
    throw err;
  }
}

/** Lists what stop() restores, for a test that checks the host after a run. */
export function hostSnapshot(): { sysctls: Map<string, string>; chains: string[]; mounts: number; netns: string[] } {
  const all = [...chains('iptables-save')].flatMap(([t, cs]) => [...cs].filter((c) => /^(KUBE|CNI)-/.test(c)).map((c) => `${t}/${c}`));
  return {
    sysctls: readSysctls(),
    chains: all.sort(),
    mounts: readFileSync('/proc/self/mountinfo', 'utf8').split('\n').length,
    netns: existsSync('/var/run/netns') ? readdirSync('/var/run/netns').sort() : [],
  };
}

// ---- the product on the cluster: what every cluster-tier test file sets up the same way ----

/** The chart release and namespace the cluster tier installs the operator as. */
export const operatorRelease = { name: 'celeriac', namespace: 'celeriac-system' } as const;

/** A started cluster with the project's chart to install, Redis on the node IP and API clients. */
export interface ProductCluster {
  readonly cluster: Cluster;
  /** Redis bound to the node IP (its URL names the node IP: give it to pods). */
  readonly redis: TestServer;
  /** The same Redis as the host reaches it (127.0.0.1). */
  readonly hostRedisUrl: string;
  readonly core: CoreV1Api;
  readonly apps: AppsV1Api;
  /** Runs `f`; a failure carries the operator's last log lines, so it says what the operator saw. */
  withOperatorLog<T>(f: () => Promise<T>): Promise<T>;
  /** `helm install` of charts/celeriac with `image` as the operator (pull policy Never); waits for its rollout. */
  installOperator(image: string, extraSets?: readonly string[]): Promise<void>;
}

/**
 * Registers the cluster tier's before/after hooks in the calling test file: the cluster started
 * with `images()` imported (the skip reason instead when it cannot run here), Redis on the node
 * IP, and after the file the cluster stopped and the host checked as found (the sysctls the
 * kubelet and CNI rewrite, no KUBE-* chain left). `skipOrFail(t)` starts each test: it skips
 * loudly, or fails under CELERIAC_REQUIRE_SERVICES=1.
 */
export function useProductCluster(images: () => Promise<readonly string[]>): { get(): ProductCluster; skipOrFail(t: TestContext): boolean } {
  let skip: string | false = false;
  let hostBefore: ReturnType<typeof hostSnapshot> | undefined;
  let cluster: Cluster | undefined;
  let redis: TestServer | undefined;
  let product: ProductCluster | undefined;
  before(async () => {
    skip = clusterSkipReason();
    if (skip) return;
    // A cluster left by a killed run still holds the host (the kubelet's sysctls): it is put back
    // first, so that the snapshot is the host as this file found it, not as the killed run left it.
    await stopAbandonedClusters();
    hostBefore = hostSnapshot();
    let at = Date.now();
    const archives = await images();
    console.error(`[cluster] images built and saved in ${Date.now() - at} ms`);
    at = Date.now();
    const c = (cluster = await startCluster({ images: archives }));
    console.error(`[cluster] cluster up (images imported) in ${Date.now() - at} ms`);
    const r = (redis = await startRedis({ host: c.nodeIP }));
    const kc = new KubeConfig();
    kc.loadFromFile(c.kubeconfigPath);
    const { name: release, namespace } = operatorRelease;
    const withOperatorLog = async <T>(f: () => Promise<T>): Promise<T> => {
      try {
        return await f();
      } catch (err) {
        const logs = await c.kubectl(['-n', namespace, 'logs', `deployment/${release}`, '--tail=40']).catch((e: Error) => `(no operator log: ${e.message})`);
        throw new Error(`${(err as Error).message}\n--- operator log\n${logs}`, { cause: err });
      }
    };
    product = {
      cluster: c,
      redis: r,
      hostRedisUrl: r.url.replace(c.nodeIP, '127.0.0.1'),
      core: kc.makeApiClient(CoreV1Api),
      apps: kc.makeApiClient(AppsV1Api),
      withOperatorLog,
      async installOperator(image, extraSets = []) {
        await c.kubectl(['apply', '--server-side', '-f', join(repoRoot, 'crds')]);
        const [repository, tag] = image.split(':') as [string, string];
        const sets = [`image.repository=${repository}`, `image.tag=${tag}`, 'image.pullPolicy=Never', ...extraSets];
        await c.helm([
          'install',
          release,
          join(repoRoot, 'charts', 'celeriac'),
          '--namespace',
          namespace,
          '--create-namespace',
          ...sets.flatMap((s) => ['--set', s]),
        ]);
        await withOperatorLog(() => c.kubectl(['-n', namespace, 'rollout', 'status', `deployment/${release}`, '--timeout=180s']));
      },
    };
  });
  after(async () => {
    await redis?.stop();
    await cluster?.stop();
    if (hostBefore) {
      const now = hostSnapshot();
      assert.deepEqual([...now.sysctls], [...hostBefore.sysctls], 'sysctls changed by the cluster');
      const kube = (chains: string[]) => chains.filter((c) => c.includes('/KUBE-'));
      assert.deepEqual(kube(now.chains), kube(hostBefore.chains), 'iptables chains left by the cluster');
    }
  });
  return {
    get: () => product!,
    skipOrFail(t) {
      if (!skip) return false;
      if (process.env.CELERIAC_REQUIRE_SERVICES === '1') assert.fail(`the cluster tier is required (CELERIAC_REQUIRE_SERVICES=1) but cannot run: ${skip}`);
      console.error(`\n!!! SKIPPED ${t.name}: ${skip}\n`);
      t.skip(skip);
      return true;
    },
  };
}

/** Whether a pod's Ready condition is True. */
export function isPodReady(p: V1Pod): boolean {
  return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/** One look at a WorkerPool during a burst: its pods and the Deployment's desired replicas. */
export interface PoolSample {
  readonly at: number;
  readonly pods: V1Pod[];
  readonly desired: number;
}

/** One task run as the burst's tasks log it (in Redis). */
export interface BurstRun {
  readonly pod: string;
  readonly sentAt: number;
  readonly startedAt: number;
}

/** The pods of a WorkerPool now (by the operator's pool label). */
export async function listPoolPods(core: CoreV1Api, namespace: string, pool: string): Promise<V1Pod[]> {
  return (await core.listNamespacedPod({ namespace, labelSelector: `celeriac.io/worker-pool=${pool}` })).items;
}

/**
 * Watches a WorkerPool through a burst: a sample of its pods and desired replicas every second
 * until `stop()` (the figures come from `burstFigures`).
 */
export function watchPool(p: ProductCluster, namespace: string, pool: string) {
  const pods = () => listPoolPods(p.core, namespace, pool);
  const samples: PoolSample[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const [now, dep] = await Promise.all([pods(), p.apps.readNamespacedDeployment({ name: pool, namespace })]);
      samples.push({ at: Date.now(), pods: now, desired: dep.spec?.replicas ?? 0 });
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  return {
    samples,
    /** Ends the sampling; rejects if a sample failed. */
    async stop(): Promise<void> {
      sampling = false;
      await sampler;
    },
  };
}

/**
 * The figures of a burst from the pool's samples and the tasks' own log: seconds from the burst
 * to the first new pod Ready (its Ready condition, as seen in the samples) and to the first task
 * on a new pod, the new pods' mean start (creation to Ready), peak replicas (pods and desired),
 * replica-seconds, wait p95, pods that ran tasks.
 */
export function burstFigures(o: {
  samples: readonly PoolSample[];
  podsBefore: ReadonlySet<string>;
  runs: readonly BurstRun[];
  burstAt: number;
  endAt: number;
}) {
  const { samples, runs, burstAt } = o;
  const newPods = new Set<string>();
  for (const s of samples) for (const p of s.pods) if (!o.podsBefore.has(p.metadata!.name!)) newPods.add(p.metadata!.name!);
  const started = [...newPods].flatMap((name) => {
    const seen = samples.flatMap((s) => s.pods).find((q) => q.metadata!.name === name && isPodReady(q));
    const cond = seen?.status?.conditions?.find((c) => c.type === 'Ready');
    const created = seen?.metadata?.creationTimestamp;
    return cond?.lastTransitionTime && created ? [{ createdAt: new Date(created).getTime(), readyAt: new Date(cond.lastTransitionTime).getTime() }] : [];
  });
  const readyAt = started.map((p) => p.readyAt);
  let replicaSeconds = 0;
  for (let i = 1; i < samples.length; i++) replicaSeconds += (samples[i - 1]!.pods.length * (samples[i]!.at - samples[i - 1]!.at)) / 1000;
  const waits = runs.map((l) => (l.startedAt - l.sentAt) / 1000).sort((a, b) => a - b);
  return {
    burstToFirstNewPodReadySeconds: (Math.min(...readyAt) - burstAt) / 1000,
    /** Mean creation to Ready of the new pods (1 s resolution, the API's timestamps). */
    podStartSeconds: Number((started.reduce((a, p) => a + p.readyAt - p.createdAt, 0) / started.length / 1000).toFixed(1)),
    burstToFirstTaskOnNewPodSeconds: (Math.min(...runs.filter((l) => newPods.has(l.pod)).map((l) => l.startedAt)) - burstAt) / 1000,
    peakReplicas: Math.max(...samples.map((s) => s.pods.length)),
    peakDesiredReplicas: Math.max(...samples.map((s) => s.desired)),
    replicaSeconds: Math.round(replicaSeconds),
    waitP95Seconds: Number(waits[Math.floor(waits.length * 0.95)]!.toFixed(2)),
    burstToAllDoneAndBackAtMinSeconds: (o.endAt - burstAt) / 1000,
    podsThatRanTasks: new Set(runs.map((l) => l.pod)).size,
  };
}

/** The autoscaling spec both burst tests give their pool: quick polls and a short scale-down window. */
export function burstAutoscaling(minReplicas: number, maxReplicas: number) {
  return {
    minReplicas,
    maxReplicas,
    pollingIntervalSeconds: 2,
    cooldownPeriodSeconds: 30,
    activationThreshold: 0,
    targetDrainSeconds: 20,
    targetUtilization: 0.8,
    metrics: [{ type: 'queueDepth' as const }, { type: 'inFlight' as const }],
    behavior: { scaleDown: { stabilizationWindowSeconds: 10, policies: [{ type: 'Percent' as const, value: 100, periodSeconds: 10 }] } },
  };
}

/**
 * The two triggers issue 19 compares on the cluster, over `burstAutoscaling`: both poll every 5 s
 * (tuned KEDA's interval, the simulator's P2). `eventDriven` (celeriac's default) also decides
 * within about a second of a backlog change; `kedaLike` decides at its polls only and keeps tuned
 * KEDA's 120 s scale-down stabilization (HPA's 100% per 15 s after it).
 */
export function triggerAutoscaling(trigger: 'eventDriven' | 'kedaLike', minReplicas: number, maxReplicas: number) {
  const base = { ...burstAutoscaling(minReplicas, maxReplicas), pollingIntervalSeconds: 5 };
  if (trigger === 'eventDriven') return { ...base, eventDriven: true };
  return {
    ...base,
    eventDriven: false,
    behavior: { scaleDown: { stabilizationWindowSeconds: 120, policies: [{ type: 'Percent' as const, value: 100, periodSeconds: 15 }] } },
  };
}

/** Waits until a pool's Deployment wants `replicas` and exactly that many pods exist (the operator's log attached on failure). */
export async function waitPoolSize(p: ProductCluster, namespace: string, pool: string, replicas: number, timeoutMs = 300_000): Promise<void> {
  await p.withOperatorLog(() =>
    eventually(
      async () => {
        const pods = await listPoolPods(p.core, namespace, pool);
        const dep = await p.apps.readNamespacedDeployment({ name: pool, namespace });
        assert.equal(dep.spec?.replicas, replicas);
        assert.equal(pods.length, replicas, `pods left: ${pods.map((q) => q.metadata?.name).join(', ')}`);
      },
      { timeoutMs, intervalMs: 1000 },
    ),
  );
}

/**
 * Waits until a pool runs exactly `min` pods, all Ready, and its autoscaler has read the idle pool
 * (`status.autoscaling` wants `min` and its metrics answer), so no scale-up happens without work
 * before a burst starts.
 */
export async function waitIdleAtMin(p: ProductCluster, namespace: string, pool: string, min: number): Promise<void> {
  await p.withOperatorLog(() =>
    eventually(
      async () => {
        const pods = await listPoolPods(p.core, namespace, pool);
        const describe = pods.map((q) => `${q.metadata?.name} ${q.status?.phase} ${JSON.stringify(q.status?.containerStatuses?.[0]?.state)}`);
        assert.equal(pods.filter(isPodReady).length, min, `Ready worker pods: ${describe.join(', ')}`);
        assert.equal(pods.length, min, `worker pods: ${describe.join(', ')}`);
        const wp = JSON.parse(await p.cluster.kubectl(['-n', namespace, 'get', 'workerpool', pool, '-o', 'json'])) as {
          status?: { autoscaling?: { desiredReplicas?: number; reason?: string } };
        };
        assert.equal(wp.status?.autoscaling?.desiredReplicas, min, JSON.stringify(wp.status?.autoscaling));
        assert.notEqual(wp.status?.autoscaling?.reason, 'MetricsUnavailable', JSON.stringify(wp.status?.autoscaling));
      },
      { timeoutMs: 180_000, intervalMs: 1000 },
    ),
  );
}

/**
 * The end of a burst: waits until each of `count` tasks ran exactly once (the tasks count their
 * runs in Redis hash `runsKey`, task id -> runs), then until the pool is back at `min`, and checks
 * that no task ran again meanwhile (a pod removed under a task would run it twice). Returns when
 * the pool was back at min (epoch ms).
 */
export async function waitBurstDone(
  p: ProductCluster,
  o: { counter: Redis; runsKey: string; count: number; namespace: string; pool: string; min: number },
): Promise<number> {
  const runs = async () => {
    const all = await o.counter.hgetall(o.runsKey);
    return { count: Object.keys(all).length, twice: Object.entries(all).filter(([, n]) => n !== '1') };
  };
  await p.withOperatorLog(() =>
    eventually(
      async () => {
        const { count } = await runs();
        assert.equal(count, o.count, `${count} of ${o.count} tasks ran`);
      },
      { timeoutMs: 600_000, intervalMs: 1000 },
    ),
  );
  assert.deepEqual((await runs()).twice, [], 'tasks that ran more than once');
  await waitPoolSize(p, o.namespace, o.pool, o.min);
  const endAt = Date.now();
  const after = await runs();
  assert.equal(after.count, o.count);
  assert.deepEqual(after.twice, [], 'a task ran again during scale-down');
  return endAt;
}
