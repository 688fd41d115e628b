/** The test harness itself: a file the runner stops at its timeout leaves no process behind. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../support/processes.js';
import { eventually } from '../support/eventually.js';

/** Running, not a zombie waiting for a parent that is gone (/proc/PID/stat's state field). */
function running(pid: number): boolean {
  const stat = `/proc/${pid}/stat`;
  if (!existsSync(stat)) return false;
  return readFileSync(stat, 'utf8').split(') ')[1]?.[0] !== 'Z';
}

describe('test harness', () => {
  it('a file stopped at its timeout takes its workers and servers with it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'celeriac-harness-'));
    try {
      const pidsFile = join(dir, 'pids.json');
      const fixture = join(repoRoot, 'dist/test/integration/fixtures/hangs-with-children.js');
      const exitCode = await new Promise<number | null>((resolve) => {
        // Without NODE_TEST_CONTEXT: that would make the inner runner report to this one.
        const { NODE_TEST_CONTEXT: _, ...env } = process.env;
        const p = execFile(process.execPath, ['--test', '--test-timeout=3000', fixture], { env: { ...env, HANG_PIDS_FILE: pidsFile } });
        p.once('exit', (code) => resolve(code));
      });
      assert.equal(exitCode, 1, 'the runner reports the file as failed');
      const pids = JSON.parse(await readFile(pidsFile, 'utf8')) as { child: number; redis: number };
      assert.ok(pids.child > 0 && pids.redis > 0, `both started: ${JSON.stringify(pids)}`);
      await eventually(
        () => {
          assert.equal(running(pids.child), false, `child ${pids.child} still running`);
          assert.equal(running(pids.redis), false, `redis-server ${pids.redis} still running`);
        },
        { timeoutMs: 5_000 },
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
