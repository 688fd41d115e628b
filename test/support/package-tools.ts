/**
 * Helpers for the package tier: running commands, packing the npm tarball once per process,
 * the helm binary built by setup-k8s.sh, and rendering the chart.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { DockerfileParser, type Flag, type From } from 'dockerfile-ast';
import { parseAllDocuments } from 'yaml';

/** Repository root (this file compiles to dist/test/support/). */
export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const chartDir = join(repoRoot, 'charts', 'celeriac');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program without a shell; never rejects on a non-zero exit (the caller asserts). */
export function run(file: string, args: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { cwd: opts.cwd, env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 300_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') {
        reject(new Error(`${file} ${args.join(' ')} could not run: ${err.message}\n${stderr}`, { cause: err }));
        return;
      }
      resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
    });
  });
}

/** Whether a command is on the PATH. */
export async function which(cmd: string): Promise<boolean> {
  return (await run('sh', ['-c', `command -v ${cmd}`])).code === 0;
}

/** Fails with the command's output when it did not exit 0. */
export function expectOk(r: RunResult, what: string): RunResult {
  if (r.code !== 0) throw new Error(`${what} exited with ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
  return r;
}

/**
 * Skips the test with a loud reason, or fails it when CELERIAC_REQUIRE_SERVICES=1 (CI):
 * a missing tool must never pass silently.
 */
export function skipOrFail(t: TestContext, reason: string): void {
  if (process.env.CELERIAC_REQUIRE_SERVICES === '1') {
    throw new Error(`required but missing: ${reason}`);
  }
  console.error(`\n!!! SKIPPED ${t.name}: ${reason}\n`);
  t.skip(reason);
}

export function npmCommand(): string {
  return process.platform === 'win32' ? 'npm.cmd' : 'npm';
}

let tarball: Promise<string> | undefined;

/** `npm pack` of the built repository into a temporary folder, once per process. */
export function packTarball(): Promise<string> {
  tarball ??= (async () => {
    const dest = await mkdtemp(join(tmpdir(), 'celeriac-pack-'));
    const r = expectOk(await run(npmCommand(), ['pack', '--json', '--pack-destination', dest], { cwd: repoRoot }), 'npm pack');
    const [info] = JSON.parse(r.stdout) as { filename: string }[];
    if (!info) throw new Error(`npm pack printed no file: ${r.stdout}`);
    return join(dest, info.filename);
  })();
  return tarball;
}

/**
 * The Kubernetes version helm renders for: the envtest's. A helm built with `go install` has no
 * version stamped in and would assume v1.20, below the chart's kubeVersion.
 */
export const kubeVersion = '1.34.4';

/** The helm built by setup-k8s.sh (CELERIAC_K8S_BIN_DIR), or null when it is not there. */
export function helmBinary(): string | null {
  const dir = process.env.CELERIAC_K8S_BIN_DIR;
  if (!dir) return null;
  const helm = join(dir, 'helm');
  return existsSync(helm) ? helm : null;
}

/** A Kubernetes object as rendered by helm. */
export interface KubeManifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; [k: string]: unknown };
  [k: string]: unknown;
}

/** Writes values to a file for `helm -f` (so nested objects and nulls keep their types). */
export async function valuesFile(values: object): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'celeriac-values-'));
  const file = join(dir, 'values.json');
  await writeFile(file, JSON.stringify(values));
  return file;
}

/** `helm template` of the chart with the given values; returns every rendered object. */
export async function renderChart(helm: string, values: object, opts: { release?: string; namespace?: string } = {}): Promise<KubeManifest[]> {
  const r = expectOk(
    await run(helm, [
      'template',
      opts.release ?? 'celeriac',
      chartDir,
      '--namespace',
      opts.namespace ?? 'celeriac-system',
      '--kube-version',
      kubeVersion,
      '-f',
      await valuesFile(values),
    ]),
    'helm template',
  );
  return parseManifests(r.stdout);
}

export function parseManifests(text: string): KubeManifest[] {
  return parseAllDocuments(text)
    .map((d) => {
      if (d.errors.length > 0) throw new Error(`helm rendered invalid YAML: ${d.errors[0]?.message}`);
      return d.toJS() as KubeManifest | null;
    })
    .filter((m): m is KubeManifest => m !== null);
}

/** The value cases the chart is rendered, linted and applied with. */
export const chartCases: readonly { name: string; values: object }[] = [
  { name: 'defaults', values: {} },
  { name: 'namespaced', values: { watch: { scope: 'namespaced', namespace: 'celeriac-apps' } } },
  { name: 'ha', values: { replicaCount: 2 } },
  {
    name: 'metrics',
    values: {
      metrics: { serviceMonitor: { enabled: true, labels: { release: 'prometheus' } } },
      workers: { podMonitor: { enabled: true } },
    },
  },
  { name: 'examples', values: { examples: { enabled: true } } },
  { name: 'grafana', values: { grafana: { dashboard: { enabled: true } } } },
];

/** One Dockerfile stage: its base, name and instructions (keyword, arguments, flags). */
export interface DockerStage {
  from: string;
  name: string | null;
  instructions: { keyword: string; args: string[]; flags: Record<string, string | null> }[];
}

export function dockerfileStages(text: string): DockerStage[] {
  const stages: DockerStage[] = [];
  for (const i of DockerfileParser.parse(text).getInstructions()) {
    const keyword = i.getKeyword();
    if (keyword === 'FROM') {
      const from = i as From;
      stages.push({ from: from.getImageName() ?? '', name: from.getBuildStage(), instructions: [] });
      continue;
    }
    const flags =
      'getFlags' in i && typeof i.getFlags === 'function' ? Object.fromEntries((i.getFlags() as Flag[]).map((f) => [f.getName(), f.getValue()])) : {};
    stages.at(-1)?.instructions.push({ keyword, args: i.getArguments().map((a) => a.getValue()), flags });
  }
  return stages;
}

/** Node 24, the image's runtime line, pinned; the npm registry ships it as node-<os>-<arch>. */
export const node24Version = '24.21.0';

/**
 * The folder holding Node 24's `node`, installed once from the npm registry into
 * ${XDG_CACHE_HOME:-~/.cache}/celeriac/node-<version>; null when it cannot be installed.
 */
export async function cachedNode24(): Promise<string | null> {
  const cache = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'celeriac', `node-${node24Version}`);
  const pkgName = `node-${process.platform}-${process.arch}`;
  const bin = join(cache, 'node_modules', pkgName, 'bin');
  if (existsSync(join(bin, 'node'))) return bin;
  await mkdir(cache, { recursive: true });
  await writeFile(join(cache, 'package.json'), JSON.stringify({ name: 'celeriac-node-cache', private: true }));
  const r = await run(npmCommand(), ['install', '--no-audit', '--no-fund', `${pkgName}@${node24Version}`], { cwd: cache });
  if (r.code !== 0) {
    console.error(`[package] installing ${pkgName}@${node24Version} failed:\n${r.stderr}`);
    return null;
  }
  return existsSync(join(bin, 'node')) ? bin : null;
}

/**
 * The Prometheus operator's ServiceMonitor and PodMonitor kinds as minimal CRDs, for envtest:
 * their full schemas are not needed to check the chart's objects are served and well formed.
 */
const monitoringCrd = (kind: string, plural: string): string => `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: ${plural}.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: { kind: ${kind}, listKind: ${kind}List, plural: ${plural}, singular: ${kind.toLowerCase()} }
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec: { type: object, x-kubernetes-preserve-unknown-fields: true }
`;

export const monitoringCrdsYaml = [monitoringCrd('ServiceMonitor', 'servicemonitors'), monitoringCrd('PodMonitor', 'podmonitors')].join('---\n');
