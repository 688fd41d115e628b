// The npm tarball as a user gets it: its file list, every `exports` entry imported from a
// scratch ESM project, and every bin started with --help.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expectOk, npmCommand, packTarball, repoRoot, run } from '../support/package-tools.js';

interface PackageJson {
  name: string;
  exports: Record<string, { types: string; default: string }>;
  bin: Record<string, string>;
}

const pkg = JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8')) as PackageJson;

/** A scratch ESM project with the packed tarball installed (production dependencies only). */
async function scratchProject(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'celeriac-scratch-'));
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'scratch', private: true, type: 'module' }));
  expectOk(
    await run(npmCommand(), ['install', '--omit=dev', '--no-audit', '--no-fund', '--prefer-offline', await packTarball()], {
      cwd: dir,
    }),
    'npm install of the packed tarball',
  );
  return dir;
}

const scratch = scratchProject();

test('the tarball holds the build output, the CRDs and no tests', async () => {
  const r = expectOk(await run(npmCommand(), ['pack', '--dry-run', '--json'], { cwd: repoRoot }), 'npm pack --dry-run');
  const [info] = JSON.parse(r.stdout) as { files: { path: string }[] }[];
  assert.ok(info, 'npm pack --dry-run printed no package');
  const files = new Set(info.files.map((f) => f.path));
  for (const target of [...Object.values(pkg.bin), ...Object.values(pkg.exports).flatMap((e) => [e.default, e.types])]) {
    assert.ok(files.has(target.replace(/^\.\//, '')), `${target} is missing from the tarball`);
  }
  assert.ok(files.has('crds/celeriac.io_workerpools.yaml'), 'crds/ is missing from the tarball');
  const tests = [...files].filter((f) => f.startsWith('dist/test/'));
  assert.deepEqual(tests, [], 'compiled tests must not be published');
  // The examples import dev dependencies (express, fastify): `npm start` runs them from the repository.
  const examples = [...files].filter((f) => f.startsWith('dist/runtime/examples/'));
  assert.deepEqual(examples, [], 'compiled examples must not be published');
});

for (const entry of Object.keys(pkg.exports)) {
  const specifier = entry === '.' ? pkg.name : `${pkg.name}/${entry.slice(2)}`;
  test(`import '${specifier}' from a scratch ESM project`, async () => {
    const dir = await scratch;
    const probe = join(dir, `probe-${entry === '.' ? 'main' : entry.slice(2)}.mjs`);
    await writeFile(probe, `const m = await import(${JSON.stringify(specifier)});\nconsole.log(JSON.stringify(Object.keys(m)));\n`);
    const r = expectOk(await run(process.execPath, [probe], { cwd: dir }), `import ${specifier}`);
    const names = JSON.parse(r.stdout) as string[];
    assert.ok(names.length > 0, `${specifier} exports nothing`);
  });
}

// @opentelemetry/api is an optional peer; prom-client depends on it, so it is there in practice.
test('tasks run from the installed package with tracing off, and on with no OpenTelemetry SDK registered', async () => {
  const dir = await scratch;
  const probe = join(dir, 'probe-tracing.mjs');
  await writeFile(
    probe,
    [
      `import { createApp } from 'celeriac';`,
      `import { createWorker } from 'celeriac/worker';`,
      `const values = [];`,
      `for (const tracing of [false, true]) {`,
      `  const app = createApp({ broker: 'memory://probe-' + tracing, logLevel: 'silent', metricsPort: null, tracing });`,
      `  app.task('p.add', (a, b) => a + b);`,
      `  const worker = createWorker(app);`,
      `  await worker.start();`,
      `  values.push(await (await app.sendTask('p.add', [2, 3])).get({ timeout: 5000 }));`,
      `  await worker.stop();`,
      `  values.push((await app.tracing()) === null ? 'off' : 'on');`,
      `}`,
      `console.log(JSON.stringify(values));`,
    ].join('\n'),
  );
  const r = expectOk(await run(process.execPath, [probe], { cwd: dir }), 'tracing probe');
  assert.deepEqual(JSON.parse(r.stdout), [5, 'off', 5, 'on']);
});

for (const [bin, help] of [
  ['celeriac', ['worker', '--help']],
  ['celeriac', ['migrate', '--help']],
  ['celeriac-operator', ['--help']],
] as const) {
  test(`bin ${bin} ${help.join(' ')} runs from the installed package`, async () => {
    assert.ok(pkg.bin[bin], `package.json has no bin ${bin}`);
    const dir = await scratch;
    const r = expectOk(await run(join(dir, 'node_modules', '.bin', bin), help, { cwd: dir }), `${bin} --help`);
    assert.match(r.stdout + r.stderr, /usage/i, `${bin} --help printed no usage`);
  });
}

test('both bins print the package version from the installed package', async () => {
  const { version } = JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  const dir = await scratch;
  for (const bin of Object.keys(pkg.bin)) {
    const r = expectOk(await run(join(dir, 'node_modules', '.bin', bin), ['--version'], { cwd: dir }), `${bin} --version`);
    assert.equal(r.stdout.trim(), version, `${bin} --version`);
  }
});
