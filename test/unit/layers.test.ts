// Dependencies point down: each folder of runtime/src and operator/src may import only the layers
// below it, so that a driver never reaches into the worker and protocol never knows a broker.
// Imports are read from the TypeScript sources (type-only imports count: they couple too).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, it } from 'node:test';
import { repoRoot } from '../support/processes.js';

/**
 * Layers from the bottom up; a module may import its own layer and any layer with a lower rank.
 * A folder missing here fails the test: add it where it belongs.
 */
const RUNTIME: Record<string, number> = {
  'errors.ts': 0,
  'version.ts': 0,
  logging: 1,
  protocol: 1,
  metrics: 1,
  transport: 2,
  tracing: 2,
  brokers: 3,
  backends: 4,
  events: 4,
  app: 5,
  pools: 6,
  beat: 6,
  canvas: 6,
  worker: 7,
  // Remote control's worker side (pidbox, built-in commands): beside the worker, which starts it.
  control: 7,
  cli: 8,
  testing: 9,
  'index.ts': 9,
};
const OPERATOR: Record<string, number> = {
  'errors.ts': 0,
  'types.ts': 0,
  'config.ts': 1,
  'metrics.ts': 1,
  k8s: 2,
  'http-server.ts': 2,
  'api-check.ts': 2,
  'metric-sources': 3,
  reconcilers: 4,
  autoscaler: 5,
  simulator: 6,
  'operator.ts': 7,
  'main.ts': 8,
  'index.ts': 8,
};
/**
 * Narrower than rank: backends/ may use the broker seam and, for rpc:// (which rides an AMQP
 * broker's reply queues), the AmqpBroker interface; no driver internals (shared code is transport/).
 */
const ONLY: Record<string, { layer: string; files: string[] }> = {
  backends: { layer: 'brokers', files: ['broker.ts', 'amqp.ts'] },
};

function sources(dir: string): string[] {
  return readdirSync(dir, { recursive: true })
    .map(String)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .map((f) => join(dir, f));
}

/** Relative import specifiers of a file, resolved to .ts paths. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+['"](\.[^'"]+)['"]/g)) {
    out.push(resolve(dirname(file), m[1]!.replace(/\.js$/, '.ts')));
  }
  for (const m of text.matchAll(/import\(\s*['"](\.[^'"]+)['"]\s*\)/g)) out.push(resolve(dirname(file), m[1]!.replace(/\.js$/, '.ts')));
  return out;
}

/** The layer of a path below `root`: its first folder, or its file name at the top. */
function layerOf(root: string, path: string): string {
  return relative(root, path).split(sep)[0]!;
}

function check(name: string, root: string, ranks: Record<string, number>, below: string[] = []): string[] {
  const problems: string[] = [];
  for (const file of sources(root)) {
    const from = layerOf(root, file);
    if (ranks[from] === undefined) {
      problems.push(`${relative(repoRoot, file)}: ${name} layer "${from}" has no rank in test/unit/layers.test.ts; add it`);
      continue;
    }
    for (const target of importsOf(file)) {
      const rel = relative(repoRoot, target);
      if (!target.startsWith(root + sep)) {
        if (!below.some((b) => target.startsWith(join(repoRoot, b) + sep)))
          problems.push(`${relative(repoRoot, file)} imports ${rel}, outside what ${name} may use`);
        continue;
      }
      const to = layerOf(root, target);
      if (to === from) continue;
      const rank = ranks[to];
      if (rank === undefined || rank > ranks[from]!) problems.push(`${relative(repoRoot, file)} (${from}) imports ${rel} (${to}), a higher layer`);
      const only = ONLY[from];
      if (name === 'runtime' && only && only.layer === to && !only.files.includes(relative(join(root, to), target))) {
        problems.push(`${relative(repoRoot, file)} imports ${rel}: ${from}/ may use only ${only.files.map((f) => `${to}/${f}`).join(', ')}`);
      }
    }
  }
  return problems;
}

describe('layers', () => {
  it('runtime/src imports only downwards, and never the operator', () => {
    assert.deepEqual(check('runtime', join(repoRoot, 'runtime/src'), RUNTIME), []);
  });

  it('operator/src imports only downwards (and the runtime beneath it)', () => {
    assert.deepEqual(check('operator', join(repoRoot, 'operator/src'), OPERATOR, ['runtime/src']), []);
  });
});
