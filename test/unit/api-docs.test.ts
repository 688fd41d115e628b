// The API reference (TypeDoc, `npm run docs`) builds without warnings for the public entry points
// (typedoc.json): every type a public signature names is exported, every {@link} resolves, and
// no export loses its TSDoc. Exports that had none when this test came are listed in
// api-docs-undocumented.txt: a new undocumented export fails, and a listed one that gains TSDoc
// must leave the list. Takes about 15 s (TypeDoc type-checks the sources).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { repoRoot } from '../support/processes.js';

describe('API reference (TypeDoc)', () => {
  it('builds with no warning beyond the listed undocumented exports', () => {
    const out = mkdtempSync(join(tmpdir(), 'celeriac-api-'));
    try {
      const r = spawnSync(process.execPath, [join(repoRoot, 'node_modules/typedoc/bin/typedoc'), '--out', out], { cwd: repoRoot, encoding: 'utf8' });
      const text = `${r.stdout}${r.stderr}`.replace(/\x1b\[[0-9;]*m/g, '');
      assert.equal(r.status, 0, text);
      const warnings = text
        .split('\n')
        .filter((l) => /^\[(warning|error)\]/.test(l) && !/^\[warning\] Found \d+ errors/.test(l))
        .map((l) => l.replace(/^\[warning\] /, ''));
      const listed = new Set(
        readFileSync(join(repoRoot, 'test/unit/api-docs-undocumented.txt'), 'utf8')
          .split('\n')
          .filter((l) => l !== ''),
      );
      const fresh = warnings.filter((w) => !listed.has(w));
      assert.deepEqual(fresh, [], `new TypeDoc warnings: export the type, fix the link, or write the TSDoc:\n${fresh.join('\n')}`);
      const stale = [...listed].filter((l) => !warnings.includes(l));
      assert.deepEqual(stale, [], 'documented now: remove these lines from test/unit/api-docs-undocumented.txt');
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
