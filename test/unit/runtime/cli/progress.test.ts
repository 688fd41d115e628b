// `celeriac call --wait` progress: a task's PROGRESS {current, total} drawn as a bar, redrawn in
// place on a terminal, one line per change elsewhere.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeState, followState } from '../../../../runtime/src/cli/progress.js';
import { createTestApp, startTestWorker } from '../../../../runtime/src/testing/index.js';
import { eventually } from '../../../support/eventually.js';
import type { TaskContext } from '../../../../runtime/src/index.js';

describe('call --wait progress', () => {
  it('draws {current, total} as a bar with a count and a percentage; other states as their name', () => {
    assert.equal(describeState({ status: 'PROGRESS', result: { current: 3, total: 4 } }), `state: PROGRESS [${'#'.repeat(18)}${'-'.repeat(6)}] 3/4 75%`);
    assert.equal(describeState({ status: 'STARTED', result: { pid: 1, hostname: 'h' } }), 'state: STARTED');
    assert.equal(describeState({ status: 'PROGRESS', result: { current: 1, total: 0 } }), 'state: PROGRESS');
  });

  for (const tty of [true, false]) {
    it(`follows a task's updateState to its end (${tty ? 'terminal: redrawn in place' : 'not a terminal: one line each'})`, async () => {
      const app = createTestApp();
      let release!: () => void;
      const released = new Promise<void>((r) => (release = r));
      app.task('t.steps', async function (this: TaskContext) {
        await this.updateState({ state: 'PROGRESS', meta: { current: 1, total: 2 } });
        await released;
        return 'ok';
      });
      const worker = await startTestWorker(app);
      try {
        const r = await app.sendTask('t.steps');
        let text = '';
        const done = new AbortController();
        followState(r, 'p ', { write: (t) => (text += t), tty }, done.signal);
        await eventually(() => assert.ok(text.includes('1/2')));
        release();
        assert.equal(await r.get({ timeout: 5000 }), 'ok');
        await eventually(() => assert.ok(text.includes('SUCCESS')));
        done.abort();
        const bar = `p state: PROGRESS [${'#'.repeat(12)}${'-'.repeat(12)}] 1/2 50%`;
        assert.ok(text.endsWith('p state: SUCCESS\n'), JSON.stringify(text));
        if (tty) assert.ok(text.includes(`\r${bar}\x1b[K\np state: SUCCESS\n`), JSON.stringify(text));
        else assert.ok(text.includes(`${bar}\np state: SUCCESS\n`), JSON.stringify(text));
      } finally {
        await worker.stop();
      }
    });
  }
});
