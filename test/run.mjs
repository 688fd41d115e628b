#!/usr/bin/env node
// The test command. `node test/run.mjs unit` is the fast tier (`npm test`); `node test/run.mjs all`
// (`npm run test:all`, what .ci/run calls) first installs and builds what the other tiers need
// (redis-server, rabbitmq-server and the image tools with apt, a Python virtualenv with Celery,
// kube-apiserver, etcd and helm from Go modules, the cluster tier's kubelet, containerd and pause
// image, all cached outside the checkout) and then runs every tier.
// A tier whose dependency cannot be had is skipped LOUDLY; with CELERIAC_REQUIRE_SERVICES=1 (CI)
// a skipped tier fails the run.
import { spawnSync } from 'node:child_process';
import { readdirSync, existsSync, statSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const requireServices = process.env.CELERIAC_REQUIRE_SERVICES === '1';

/** Each setup script prints `KEY=VALUE` lines on stdout (progress on stderr); exit 0 = ready. */
const setups = {
  services: 'test/support/setup-services.sh', // redis-server, rabbitmq-server (apt)
  python: 'test/support/setup-python.sh', // virtualenv with Celery (pip)
  k8s: 'test/support/setup-k8s.sh', // kube-apiserver, etcd, helm (Go modules)
  image: 'test/support/setup-image.sh', // podman, buildah, runc, debootstrap (apt)
  cluster: 'test/support/setup-cluster.sh', // kubelet & co. (Go modules), containerd, CNI (apt), pause image
};

/** Tiers in the order they run; `dirs` are under dist/test, `needs` names setups. */
const tiers = [
  { name: 'unit', dirs: ['unit', 'contract'], needs: [] },
  { name: 'integration', dirs: ['integration'], needs: ['services'] },
  { name: 'interop', dirs: ['interop'], needs: ['services', 'python'] },
  { name: 'operator', dirs: ['operator'], needs: ['k8s', 'services', 'python'] }, // python: Celery workers stand in for pods
  // The image test builds the base image (debootstrap, Node from npm) on a new machine: over 300 s
  // on a loaded one (CI, 2026-12-02). Cached in podman's storage after that: about 25 s.
  { name: 'package', dirs: ['package'], needs: ['k8s', 'image'], timeoutMs: 900_000 },
  // A real single-node cluster (kubelet, containerd) started by each test file: needs root, and
  // one file at a time (one cluster per host: its bridge, node name and host state are global).
  // One cluster start serves every scenario of a file, so a file runs for minutes (`timeoutMs`).
  { name: 'cluster', dirs: ['cluster'], needs: ['cluster', 'services', 'image'], serial: true, timeoutMs: 1_200_000 },
];

function testFiles(dir) {
  const abs = join(root, 'dist', 'test', dir);
  if (!existsSync(abs)) return [];
  return readdirSync(abs, { recursive: true })
    .map(String)
    .filter((f) => f.endsWith('.test.js'))
    .map((f) => join(abs, f))
    .filter((f) => statSync(f).isFile())
    .sort();
}

function banner(text) {
  const line = '!'.repeat(Math.min(100, text.length + 8));
  console.error(`\n${line}\n!!! ${text}\n${line}\n`);
}

function runSetup(name) {
  const script = join(root, setups[name]);
  if (!existsSync(script)) return { ok: false, why: `${setups[name]} is missing` };
  console.error(`[test] setup ${name}: ${setups[name]}`);
  const r = spawnSync('bash', [script], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  if (r.status !== 0) return { ok: false, why: `${setups[name]} exited with ${r.status}` };
  for (const line of r.stdout.split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) process.env[m[1]] = m[2];
  }
  return { ok: true };
}

const wanted = process.argv[2] ?? 'unit';
const selected = wanted === 'all' ? tiers : tiers.filter((t) => t.name === wanted);
if (selected.length === 0) {
  console.error(`Unknown tier "${wanted}". Tiers: ${tiers.map((t) => t.name).join(', ')}, all.`);
  process.exit(2);
}
// Tests read this to know whether a missing server must fail instead of skip.
process.env.CELERIAC_TEST_TIER = wanted;

const setupResults = new Map();
const summary = [];
let failed = false;
for (const tier of selected) {
  const missing = [];
  for (const need of tier.needs) {
    if (!setupResults.has(need)) setupResults.set(need, runSetup(need));
    const r = setupResults.get(need);
    if (!r.ok) missing.push(`${need} (${r.why})`);
  }
  const files = tier.dirs.flatMap(testFiles);
  if (missing.length > 0) {
    banner(`SKIPPED tier "${tier.name}": missing ${missing.join(', ')}`);
    summary.push(`${tier.name}: SKIPPED (missing ${missing.join(', ')})`);
    if (requireServices) failed = true;
    continue;
  }
  if (files.length === 0) {
    summary.push(`${tier.name}: no test files`);
    continue;
  }
  console.error(`\n[test] tier ${tier.name}: ${files.length} file(s)`);
  // A test file that hangs fails with its name after this long instead of stalling CI.
  const timeout = process.env.CELERIAC_TEST_TIMEOUT_MS ?? String(tier.timeoutMs ?? 300_000);
  const r = spawnSync(
    process.execPath,
    ['--test', '--test-reporter=spec', `--test-timeout=${timeout}`, ...(tier.serial ? ['--test-concurrency=1'] : []), ...files],
    {
      cwd: root,
      stdio: 'inherit',
      env: { ...process.env, CELERIAC_TEST_TIER: tier.name },
    },
  );
  summary.push(`${tier.name}: ${r.status === 0 ? 'passed' : `FAILED (exit ${r.status})`}`);
  if (r.status !== 0) failed = true;
}
console.error(`\n[test] summary\n  ${summary.join('\n  ')}`);
// A run that executed no test at all is a broken setup (e.g. nothing was built), not a pass.
if (!summary.some((s) => /passed|FAILED/.test(s))) {
  console.error('[test] no test ran: is dist/ built? (npm run build)');
  failed = true;
}
process.exit(failed ? 1 : 0);
