// Runs the README's "Extending the worker" example (runtime/examples/extending/shop.ts) on a
// worker, and checks that the README shows that very file.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { startTestWorker } from '../../../runtime/src/testing/index.js';
import { repoRoot } from '../../support/processes.js';
import { app, db, finished, report } from '../../../runtime/examples/extending/shop.js';

describe('README: extending the worker', () => {
  it('shows runtime/examples/extending/shop.ts from its import on', () => {
    const source = readFileSync(`${repoRoot}/runtime/examples/extending/shop.ts`, 'utf8');
    const shown = source.slice(source.indexOf('import ')).replace("'../../src/index.js'", "'celeriac'");
    assert.ok(
      readFileSync(`${repoRoot}/README.md`, 'utf8').includes(shown),
      'README.md is out of date: paste runtime/examples/extending/shop.ts into "Extending the worker"',
    );
  });

  it('runs: the pool is open for the tasks and closed at shutdown; progress, the signal and the control command work', async () => {
    const worker = await startTestWorker(app);
    try {
      assert.equal(db.open, true);
      const r = await report.delay(3);
      const states: unknown[] = [];
      for await (const m of r.follow({ intervalMs: 5 })) states.push(m.status === 'PROGRESS' ? m.result : m.status);
      assert.deepEqual(states.at(-1), 'SUCCESS');
      assert.equal(await r.get(), 3);
      assert.deepEqual(finished, [`${r.id} SUCCESS`]);
      const replies = await app.control.inspect('db_stats', {}, { destination: [app.config.hostname] });
      assert.deepEqual(replies, { [app.config.hostname]: { open: true, queries: 3 } });
    } finally {
      await worker.stop();
    }
    assert.equal(db.open, false);
  });
});
