// Builds the real image from the Dockerfile with podman and runs both entrypoints in it.
// Only where podman (Debian package) is installed; elsewhere it is skipped loudly, and
// dockerfile.test.ts still checks the Dockerfile against the package.
//
// No image registry is reachable here, so the official node slim base is replaced by a local
// one of the same shape: Debian bookworm from debootstrap plus Node 24 and npm from the npm
// registry (--build-arg NODE_IMAGE). On these machines `podman run` fails in the OCI runtime
// (crun and runc both get EPERM from setrlimit while creating the container), so the image is
// run with buildah's chroot isolation, which needs no OCI runtime.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually } from '../support/eventually.js';
import { cachedNode24, expectOk, node24Version, npmCommand, repoRoot, run } from '../support/package-tools.js';

const cacheRoot = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'celeriac');
const baseImage = `localhost/celeriac-node-base:${node24Version}`;
const image = 'localhost/celeriac:package-test';

async function which(cmd: string): Promise<boolean> {
  return (await run('sh', ['-c', `command -v ${cmd}`])).code === 0;
}

function loudSkip(t: { skip(msg: string): void; name: string }, why: string): void {
  console.error(`\n!!! SKIPPED ${t.name}: ${why}\n`);
  t.skip(why);
}

/** Debian bookworm (debootstrap) + Node 24 + npm, imported as a podman image once. */
async function ensureBaseImage(): Promise<void> {
  if ((await run('podman', ['image', 'exists', baseImage])).code === 0) return;
  const nodeBin = await cachedNode24();
  if (!nodeBin) throw new Error(`Node ${node24Version} could not be installed from the npm registry`);
  const npmDir = join(cacheRoot, `npm-for-image`);
  if (!existsSync(join(npmDir, 'node_modules', 'npm', 'bin', 'npm-cli.js'))) {
    await mkdir(npmDir, { recursive: true });
    await writeFile(join(npmDir, 'package.json'), '{"name":"celeriac-npm-for-image","private":true}');
    expectOk(await run(npmCommand(), ['install', '--no-audit', '--no-fund', 'npm@11'], { cwd: npmDir }), 'npm install npm@11');
  }
  const work = await mkdtemp(join(tmpdir(), 'celeriac-base-'));
  const rootfs = join(work, 'rootfs');
  try {
    expectOk(await run('debootstrap', ['--variant=minbase', 'bookworm', rootfs, 'http://deb.debian.org/debian'],
      { timeoutMs: 900_000 }), 'debootstrap');
    const script = [
      `cp ${join(nodeBin, 'node')} ${rootfs}/usr/local/bin/node`,
      `mkdir -p ${rootfs}/usr/local/lib/node_modules`,
      `cp -a ${join(npmDir, 'node_modules', 'npm')} ${rootfs}/usr/local/lib/node_modules/npm`,
      `ln -s ../lib/node_modules/npm/bin/npm-cli.js ${rootfs}/usr/local/bin/npm`,
      `ln -s ../lib/node_modules/npm/bin/npx-cli.js ${rootfs}/usr/local/bin/npx`,
      `rm -rf ${rootfs}/var/cache/apt/archives/*.deb ${rootfs}/var/lib/apt/lists/*`,
      `tar -C ${rootfs} -c . | podman import --change 'CMD ["node"]' ` +
        `--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - ${baseImage}`,
    ].join(' && ');
    expectOk(await run('sh', ['-c', script], { timeoutMs: 600_000 }), 'making the base image');
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Build-time only settings of this machine: its CA bundle (TLS-inspecting proxy) and an npm cache. */
async function buildMounts(): Promise<string[]> {
  const mounts: string[] = [];
  const ca = '/etc/ssl/certs/ca-certificates.crt';
  if (existsSync(ca)) {
    const npmrc = join(cacheRoot, 'image-build-npmrc');
    await writeFile(npmrc, `cafile=${ca}\n`);
    mounts.push('-v', `${ca}:${ca}:ro`, '-v', `${npmrc}:/usr/local/etc/npmrc:ro`);
  }
  const npmCache = join(cacheRoot, 'image-build-npm-cache');
  await mkdir(npmCache, { recursive: true });
  mounts.push('-v', `${npmCache}:/root/.npm`);
  return mounts;
}

test('podman builds the image; both entrypoints run in it as the non-root user; as PID 1 SIGTERM shuts a worker down warmly', async (t) => {
  if (!(await which('podman')) || !(await which('buildah'))) {
    return loudSkip(t, 'podman/buildah are not installed (apt-get install podman buildah): the image is not built');
  }
  const haveBase = (await run('podman', ['image', 'exists', baseImage])).code === 0;
  if (!haveBase && !(await which('debootstrap'))) {
    return loudSkip(t, 'debootstrap is not installed: no local Debian base image can be made');
  }
  await ensureBaseImage();
  expectOk(await run('podman', [
    'build', '--isolation', 'chroot', '--network', 'host', ...(await buildMounts()),
    '--build-arg', `NODE_IMAGE=${baseImage}`, '-t', image, repoRoot,
  ], { timeoutMs: 1_200_000 }), 'podman build');

  const ctr = expectOk(await run('buildah', ['from', image]), 'buildah from').stdout.trim();
  try {
    const inImage = async (...cmd: string[]) =>
      expectOk(await run('buildah', ['run', '--isolation', 'chroot', ctr, '--', ...cmd]), cmd.join(' '));
    assert.equal((await inImage('id', '-u')).stdout.trim(), '10001');
    assert.match((await inImage('node', '--version')).stdout, /^v24\./);
    const worker = await inImage('celeriac', 'worker', '--help');
    assert.match(worker.stdout + worker.stderr, /usage/i);
    const operator = await inImage('celeriac-operator', '--help');
    assert.match(operator.stdout + operator.stderr, /usage/i);
    // --omit=dev: the compiler and test libraries are not in the image.
    assert.equal((await run('buildah', ['run', '--isolation', 'chroot', ctr, '--', 'test', '-e', '/app/node_modules/typescript'])).code, 1);
    // The worker image contract: a module under /app/tasks imports the package by name.
    const tasks = expectOk(await run('buildah', ['run', '--isolation', 'chroot', '--workingdir', '/app/tasks', ctr, '--',
      'node', '--input-type=module', '-e', "const m = await import('celeriac'); console.log(Object.keys(m).length)"]),
    'import celeriac from /app/tasks');
    assert.ok(Number(tasks.stdout.trim()) > 0);

    // PID 1 in a pod: the image's `celeriac` (docker/node-init.sh) puts tini in front, tini passes
    // SIGTERM on to node, and the worker shuts down warmly and exits 0. The pod is imitated with a
    // new PID namespace (unshare) and a chroot into the container's filesystem. The metrics server
    // (any free port) is what keeps a worker on memory:// from running out of work to wait on.
    if (!(await which('unshare')) || process.getuid?.() !== 0) {
      console.error('\n!!! SKIPPED the PID-1 signal check: it needs root and unshare (util-linux)\n');
      return;
    }
    const mnt = expectOk(await run('buildah', ['mount', ctr]), 'buildah mount').stdout.trim();
    await writeFile(join(mnt, 'app', 'tasks', 'tasks.js'),
      "import { createApp } from 'celeriac';\nexport const app = createApp({ name: 'image-test' });\n" +
      "export const add = app.task('image.add', (a, b) => a + b);\n");
    const pod = spawn('unshare', ['--pid', '--fork', '--mount', '--kill-child', 'sh', '-c',
      `mount -t proc proc ${mnt}/proc && exec chroot --userspec=10001:10001 ${mnt} /usr/bin/env -i ` +
      'PATH=/usr/local/bin:/usr/bin:/bin HOME=/app /usr/local/bin/celeriac worker -A /app/tasks/tasks.js -b memory:// --metrics-port 0'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    for (const s of [pod.stdout, pod.stderr]) s.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((r) => pod.once('exit', (code) => r(code)));
    try {
      // The namespace's PID 1 is the unshare's child; once it is tini and the worker is up, signal it.
      const init = await eventually(async () => {
        const child = (await run('pgrep', ['-P', String(pod.pid)])).stdout.trim().split('\n')[0];
        assert.ok(child, `no PID 1 yet; output: ${output}`);
        assert.equal((await readFile(`/proc/${child}/comm`, 'utf8')).trim(), 'tini');
        assert.match(output, /ready|started|consuming/i, `worker not up yet: ${output}`);
        return Number(child);
      }, { timeoutMs: 60_000 });
      process.kill(init, 'SIGTERM');
      assert.equal(await exited, 0, output);
      assert.match(output, /warm shutdown requested/);
      assert.match(output, /worker stopped/);
    } finally {
      pod.kill('SIGKILL');
      await run('buildah', ['umount', ctr]);
    }
  } finally {
    await run('buildah', ['rm', ctr]);
  }
});
