// Builds the real image from the Dockerfile with podman and runs both entrypoints in it.
// Only where podman (Debian package) is installed; elsewhere it is skipped loudly, and
// dockerfile.test.ts still checks the Dockerfile against the package.
//
// No image registry is reachable here, so the official node slim base is replaced by a local
// one of the same shape: Debian bookworm from debootstrap plus Node 24 and npm from the npm
// registry (--build-arg NODE_IMAGE). The build uses chroot isolation (no OCI runtime needed).
// Running containers needs care on these VMs: the process lacks CAP_SYS_RESOURCE, so podman's
// default rlimits (above the host's hard limits) fail with EPERM, and crun refuses the hybrid
// cgroup layout; runc with explicit, lower --ulimit values works. Where no container starts at
// all, the pod-like run is skipped loudly and the chroot checks still run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { resources } from '../../operator/src/k8s/kube-client.js';
import type { KubeObject } from '../../operator/src/types.js';
import { envtestSkipReason, freePort, startControlPlane } from '../support/envtest.js';
import { eventually } from '../support/eventually.js';
import { expectOk, run, which } from '../support/package-tools.js';
import { buildProjectImage, projectImage as image } from '../support/project-image.js';

/** Skips loudly; where services are required (CI) a test that cannot run is a failure. */
function loudSkip(t: { skip(msg: string): void; name: string }, why: string): void {
  if (process.env.CELERIAC_REQUIRE_SERVICES === '1') {
    assert.fail(`${why} (CELERIAC_REQUIRE_SERVICES=1: test/support/setup-image.sh installs the tools)`);
  }
  console.error(`\n!!! SKIPPED ${t.name}: ${why}\n`);
  t.skip(why);
}

test('podman builds the image; both entrypoints and a tasks module run in it as the non-root user', async (t) => {
  const why = await buildProjectImage();
  if (why) return loudSkip(t, why);
  const ctr = expectOk(await run('buildah', ['from', image]), 'buildah from').stdout.trim();
  try {
    const inImage = async (...cmd: string[]) => expectOk(await run('buildah', ['run', '--isolation', 'chroot', ctr, '--', ...cmd]), cmd.join(' '));
    assert.equal((await inImage('id', '-u')).stdout.trim(), '10001');
    assert.match((await inImage('node', '--version')).stdout, /^v24\./);
    const worker = await inImage('celeriac', 'worker', '--help');
    assert.match(worker.stdout + worker.stderr, /usage/i);
    const operator = await inImage('celeriac-operator', '--help');
    assert.match(operator.stdout + operator.stderr, /usage/i);
    // --omit=dev: the compiler and test libraries are not in the image.
    assert.equal((await run('buildah', ['run', '--isolation', 'chroot', ctr, '--', 'test', '-e', '/app/node_modules/typescript'])).code, 1);
    // The worker image contract: a module under /app/tasks imports the package by name.
    const tasks = expectOk(
      await run('buildah', [
        'run',
        '--isolation',
        'chroot',
        '--workingdir',
        '/app/tasks',
        ctr,
        '--',
        'node',
        '--input-type=module',
        '-e',
        "const m = await import('celeriac'); console.log(Object.keys(m).length)",
      ]),
      'import celeriac from /app/tasks',
    );
    assert.ok(Number(tasks.stdout.trim()) > 0);
  } finally {
    await run('buildah', ['rm', ctr]);
  }
});

/** `podman run` flags of a pod as the chart and the operator make it, plus what these VMs need. */
async function podFlags(): Promise<string[]> {
  const runtime = (await which('runc')) ? ['--runtime', 'runc'] : [];
  return [
    ...runtime,
    'run',
    '-d',
    '--network',
    'none',
    '--read-only',
    '--tmpfs',
    '/tmp',
    '--cap-drop',
    'ALL',
    '--security-opt',
    'no-new-privileges',
    '--user',
    '10001:10001',
    '--ulimit',
    'nofile=1024:1024',
    '--ulimit',
    'nproc=1024:1024',
  ];
}

for (const how of [
  { name: "the image's ENTRYPOINT (tini)", entrypoint: [] as string[] },
  { name: 'command: [celeriac] replacing the ENTRYPOINT, as the operator sets it', entrypoint: ['--entrypoint', 'celeriac'] },
]) {
  test(`in a pod-like container via ${how.name}: tini is PID 1 and SIGTERM shuts a mounted-module worker down warmly`, async (t) => {
    const why = await buildProjectImage();
    if (why) return loudSkip(t, why);
    const flags = await podFlags();
    const probe = await run('podman', [...flags.filter((f) => f !== '-d'), '--rm', image, 'true']);
    if (probe.code !== 0) return loudSkip(t, `podman cannot start a container on this machine: ${probe.stderr.trim()}`);

    // The mounted-module way of the image contract: a tasks module from a volume.
    const dir = await mkdtemp(join(tmpdir(), 'celeriac-tasks-'));
    await writeFile(
      join(dir, 'tasks.js'),
      "import { createApp } from 'celeriac';\nexport const app = createApp({ name: 'image-test' });\n" +
        "export const add = app.task('image.add', (a, b) => a + b);\n",
      { mode: 0o644 },
    );
    const args = how.entrypoint.length > 0 ? ['worker'] : ['celeriac', 'worker'];
    // A metrics server on any free port keeps a memory:// worker waiting for work.
    const id = expectOk(
      await run('podman', [
        ...flags,
        ...how.entrypoint,
        '-v',
        `${dir}/tasks.js:/app/tasks/tasks.js:ro`,
        image,
        ...args,
        '-A',
        '/app/tasks/tasks.js',
        '-b',
        'memory://',
        '--metrics-port',
        '0',
      ]),
      'podman run',
    ).stdout.trim();
    try {
      const logs = async () => {
        const r = await run('podman', ['logs', id]);
        return r.stdout + r.stderr;
      };
      await eventually(async () => assert.match(await logs(), /worker ready/), { timeoutMs: 60_000 });
      const pid = expectOk(await run('podman', ['inspect', '--format', '{{.State.Pid}}', id]), 'podman inspect').stdout.trim();
      assert.equal((await readFile(`/proc/${pid}/comm`, 'utf8')).trim(), 'tini');
      expectOk(await run('podman', ['kill', '--signal', 'TERM', id]), 'podman kill');
      const code = expectOk(await run('podman', ['wait', id]), 'podman wait').stdout.trim();
      const out = await logs();
      assert.equal(code, '0', out);
      assert.match(out, /warm shutdown requested/);
      assert.match(out, /worker stopped/);
    } finally {
      await run('podman', ['rm', '-f', id]);
      await rm(dir, { recursive: true, force: true });
    }
  });
}

test('the operator in a pod-like container answers /healthz and /readyz and reconciles a WorkerPool on envtest', async (t) => {
  const why = await buildProjectImage();
  if (why) return loudSkip(t, why);
  const envtestWhy = envtestSkipReason();
  if (envtestWhy) return loudSkip(t, envtestWhy);
  const flags = (await podFlags()).map((f) => (f === 'none' ? 'host' : f)); // the API server listens on loopback
  const probe = await run('podman', [...flags.filter((f) => f !== '-d'), '--rm', image, 'true']);
  if (probe.code !== 0) return loudSkip(t, `podman cannot start a container on this machine: ${probe.stderr.trim()}`);

  const cp = await startControlPlane();
  const port = await freePort();
  let id = '';
  try {
    const ns = await cp.createNamespace('shop');
    await cp.kube.create(resources.taskQueues, {
      apiVersion: 'celeriac.io/v1alpha1',
      kind: 'TaskQueue',
      metadata: { name: 'default', namespace: ns },
      spec: { broker: { type: 'redis', urlSecretRef: { name: 'broker' } }, queue: { name: 'celery' }, checkIntervalSeconds: 600 },
    } as KubeObject);
    await chmod(cp.kubeconfigPath, 0o644);
    id = expectOk(
      await run('podman', [
        ...flags,
        '-v',
        `${cp.kubeconfigPath}:/kube/config:ro`,
        image,
        'celeriac-operator',
        '--kubeconfig=/kube/config',
        `--metrics-port=${port}`,
      ]),
      'podman run',
    ).stdout.trim();
    const logs = async () => {
      const r = await run('podman', ['logs', id]);
      return r.stdout + r.stderr;
    };
    for (const path of ['/healthz', '/readyz']) {
      await eventually(async () => assert.equal((await fetch(`http://127.0.0.1:${port}${path}`)).status, 200, await logs()), { timeoutMs: 60_000 });
    }
    await cp.kube.create(resources.workerPools, {
      apiVersion: 'celeriac.io/v1alpha1',
      kind: 'WorkerPool',
      metadata: { name: 'workers', namespace: ns },
      spec: { queues: ['default'], template: { image: 'example.com/shop:1', tasksModule: '/app/tasks/tasks.js' }, replicas: 1 },
    } as KubeObject);
    await eventually(async () => assert.ok(await cp.kube.get(resources.deployments, ns, 'workers'), await logs()), { timeoutMs: 60_000 });
    expectOk(await run('podman', ['kill', '--signal', 'TERM', id]), 'podman kill');
    assert.equal(expectOk(await run('podman', ['wait', id]), 'podman wait').stdout.trim(), '0', await logs());
  } finally {
    if (id) await run('podman', ['rm', '-f', id]);
    await cp.stop();
  }
});
