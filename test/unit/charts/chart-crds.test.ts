// The chart ships copies of crds/*.yaml (Helm installs a chart's crds/ folder before its
// templates). They must stay byte-identical: `npm run sync-crds` copies them. This is in the unit
// tier (not package/, where the rest of the chart is tested) so that a change to crds/ cannot land
// without its copy: `npm test` runs before every landing and needs no helm.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chartDir, repoRoot } from '../../support/package-tools.js';

async function yamlFiles(dir: string): Promise<string[]> {
  return (await readdir(dir, { withFileTypes: true }))
    .filter((e) => e.isFile() && e.name.endsWith('.yaml'))
    .map((e) => e.name)
    .sort();
}

test('charts/celeriac/crds holds the same files as crds/, byte for byte', async () => {
  const top = join(repoRoot, 'crds');
  const chart = join(chartDir, 'crds');
  const names = await yamlFiles(top);
  assert.ok(names.length > 0, 'crds/ holds no CRD');
  assert.deepEqual(await yamlFiles(chart), names, 'file lists differ: run `npm run sync-crds`');
  for (const name of names) {
    const [a, b] = await Promise.all([readFile(join(top, name)), readFile(join(chart, name))]);
    assert.ok(a.equals(b), `charts/celeriac/crds/${name} differs from crds/${name}: run \`npm run sync-crds\``);
  }
});
