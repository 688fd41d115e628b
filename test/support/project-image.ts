/**
 * The project's image, built from the checkout's Dockerfile with podman (package and cluster tiers).
 *
 * No image registry is reachable here, so the official node slim base is replaced by a local
 * one of the same shape: Debian bookworm from debootstrap plus Node 24 and npm from the npm
 * registry (--build-arg NODE_IMAGE). The build uses chroot isolation (no OCI runtime needed).
 */
import { existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { cachedNode24, expectOk, node24Version, npmCommand, repoRoot, run, which } from './package-tools.js';

const cacheRoot = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'celeriac');
const baseImage = `localhost/celeriac-node-base:${node24Version}`;
/** The tag of the image built from the checkout. */
export const projectImage = 'localhost/celeriac:package-test';

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
    expectOk(await run('debootstrap', ['--variant=minbase', 'bookworm', rootfs, 'http://deb.debian.org/debian'], { timeoutMs: 900_000 }), 'debootstrap');
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

/** `podman build` with chroot isolation (no OCI runtime needed) and the host's network. */
async function podmanBuild(args: readonly string[], what: string): Promise<void> {
  expectOk(await run('podman', ['build', '--isolation', 'chroot', '--network', 'host', ...args], { timeoutMs: 1_200_000 }), what);
}

let built: Promise<string | false> | undefined;

/** Builds the image once; a string says why it cannot be built here. */
export function buildProjectImage(): Promise<string | false> {
  built ??= (async () => {
    if (!(await which('podman')) || !(await which('buildah'))) {
      return 'podman/buildah are not installed (apt-get install podman buildah runc): the image is not built';
    }
    const haveBase = (await run('podman', ['image', 'exists', baseImage])).code === 0;
    if (!haveBase && !(await which('debootstrap'))) return 'debootstrap is not installed: no local Debian base image can be made';
    await ensureBaseImage();
    await podmanBuild(['-t', projectImage, '--build-arg', `NODE_IMAGE=${baseImage}`, ...(await buildMounts()), repoRoot], 'podman build');
    // Each rebuild leaves the previous image untagged; without this, every test run keeps ~400 MB.
    await run('podman', ['image', 'prune', '-f']);
    return false;
  })();
  return built;
}

/**
 * A docker-archive of a podman image (for containerd's `ctr images import`), cached under
 * `<prefix>-<image id>.tar` so an unchanged image is saved once; older archives of the prefix go.
 */
async function imageArchive(image: string, prefix: string): Promise<string> {
  const id = expectOk(await run('podman', ['image', 'inspect', '--format', '{{.Id}}', image]), 'podman image inspect')
    .stdout.trim()
    .slice(0, 12);
  const dir = join(cacheRoot, 'cluster');
  const archive = join(dir, `${prefix}-${id}.tar`);
  if (existsSync(archive)) return archive;
  await mkdir(dir, { recursive: true });
  for (const old of await readdir(dir)) if (old.startsWith(`${prefix}-`)) await rm(join(dir, old), { force: true });
  expectOk(await run('podman', ['save', '--format', 'docker-archive', '-o', `${archive}.tmp`, image], { timeoutMs: 600_000 }), 'podman save');
  await rename(`${archive}.tmp`, archive);
  return archive;
}

/** The project's image as a docker-archive, built first if needed. */
export async function projectImageArchive(): Promise<string> {
  const why = await buildProjectImage();
  if (why) throw new Error(why);
  return imageArchive(projectImage, 'celeriac-image');
}

const pythonCeleryDir = join(repoRoot, 'test', 'cluster', 'fixtures', 'python-celery');
const pythonCeleryRepository = 'localhost/celeriac-python-celery';

/**
 * The cluster tier's Python Celery worker image (test/cluster/fixtures/python-celery): the local
 * Debian bookworm base plus Debian's `celery`, `python3-celery` (5.2) and `python3-redis`, with the
 * burst's tasks module. Tagged with a hash of its build inputs (the fixture files and the base
 * image's id), so a machine builds it once and again only when an input changes; older tags go.
 */
export async function pythonCeleryImage(): Promise<{ image: string; archive: string }> {
  if (!(await which('podman')) || !(await which('buildah'))) throw new Error('podman/buildah are not installed (apt-get install podman buildah runc)');
  await ensureBaseImage();
  const baseId = expectOk(await run('podman', ['image', 'inspect', '--format', '{{.Id}}', baseImage]), 'podman image inspect').stdout.trim();
  const hash = createHash('sha256').update(baseId);
  for (const f of (await readdir(pythonCeleryDir)).sort()) hash.update(f).update(await readFile(join(pythonCeleryDir, f)));
  const image = `${pythonCeleryRepository}:${hash.digest('hex').slice(0, 12)}`;
  if ((await run('podman', ['image', 'exists', image])).code !== 0) {
    const ca = '/etc/ssl/certs/ca-certificates.crt';
    const mounts = existsSync(ca) ? ['-v', `${ca}:${ca}:ro`] : [];
    await podmanBuild(['-t', image, '--build-arg', `BASE=${baseImage}`, ...mounts, pythonCeleryDir], 'podman build of the Python Celery image');
    const tags = expectOk(await run('podman', ['images', '--format', '{{.Repository}}:{{.Tag}}', pythonCeleryRepository]), 'podman images').stdout;
    for (const old of tags.split('\n').filter((t) => t.trim() && t.trim() !== image)) await run('podman', ['rmi', old.trim()]);
  }
  return { image, archive: await imageArchive(image, 'python-celery-image') };
}
