// One style, checked by the formatter instead of by review: every TypeScript and script file is as
// Prettier (.prettierrc.json) writes it. Fix with `npm run format`.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { it } from 'node:test';
import * as prettier from 'prettier';
import { repoRoot } from '../support/processes.js';

it('every source file is formatted (npm run format)', async () => {
  // The files git knows (tracked or new), as a fresh clone has them.
  const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '--', '*.ts', '*.mjs'], { cwd: repoRoot, encoding: 'utf8' })
    .split('\n')
    .filter((f) => f !== '' && !f.endsWith('.d.ts'));
  assert.ok(files.length > 100, `found only ${files.length} files: is this a git checkout?`);
  const unformatted: string[] = [];
  for (const f of files) {
    const path = join(repoRoot, f);
    if ((await prettier.getFileInfo(path, { ignorePath: join(repoRoot, '.prettierignore') })).ignored) continue;
    const options = await prettier.resolveConfig(path);
    if (!(await prettier.check(readFileSync(path, 'utf8'), { ...options, filepath: path }))) unformatted.push(f);
  }
  assert.deepEqual(unformatted, [], 'run `npm run format` and commit');
});
