// `celeriac worker` re-executes node with its heap flags (worker-node-flags.ts) unless the user set
// the same setting, and only for the worker command.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { commandName, setsFlag, WORKER_NODE_FLAGS } from '../../../../runtime/src/cli/worker-node-flags.js';
import { repoRoot } from '../../../support/processes.js';

const bin = join(repoRoot, 'dist/runtime/src/cli/main.js');
const canExec = typeof (process as { execve?: unknown }).execve === 'function' && process.platform !== 'win32';
/** Prints the node flags the command ends up running with (the preload runs again after an exec). */
const printFlags = `data:text/javascript,process.stderr.write('flags '%2BJSON.stringify(process.execArgv.filter((a)=>a.startsWith('--max-semi')))%2B'\\n')`;

function flagsSeen(args: string[], nodeOptions?: string): string[] {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  if (nodeOptions) env.NODE_OPTIONS = nodeOptions;
  const r = spawnSync(process.execPath, ['--import', printFlags, bin, ...args], { env, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stderr.split('\n').filter((l) => l.startsWith('flags '));
}

describe('worker node flags', () => {
  it('knows a flag set in either spelling, with or without a value', () => {
    assert.ok(setsFlag(['--max-semi-space-size=16'], '--max-semi-space-size=4'));
    assert.ok(setsFlag(['--max_semi_space_size=16'], '--max-semi-space-size=4'));
    assert.ok(!setsFlag(['--max-old-space-size=512', '--import', 'x.js'], '--max-semi-space-size=4'));
  });

  it('finds the command after global options', () => {
    assert.equal(commandName(['node', 'main.js', '--debug', 'worker', '-A', 'x.js']), 'worker');
    assert.equal(commandName(['node', 'main.js', 'call', 'worker']), 'call');
    assert.equal(commandName(['node', 'main.js', '--help']), undefined);
  });

  it(`worker: runs with ${WORKER_NODE_FLAGS.join(' ')} ${canExec ? '(re-executed)' : '(no process.execve here: V8 defaults)'}`, () => {
    const seen = flagsSeen(['worker', '--help']);
    assert.deepEqual(seen.at(-1), canExec ? `flags ${JSON.stringify(WORKER_NODE_FLAGS)}` : 'flags []');
    assert.equal(seen.length, canExec ? 2 : 1);
  });

  it("keeps the user's own semi-space size (NODE_OPTIONS), and other commands as they are", () => {
    assert.deepEqual(flagsSeen(['worker', '--help'], '--max-semi-space-size=8'), ['flags []']);
    assert.deepEqual(flagsSeen(['call', '--help']), ['flags []']);
  });
});
