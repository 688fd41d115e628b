// A chord under failure on Redis, with real worker processes: a worker killed (SIGKILL) with
// acksLate in the middle of a header task; the message comes back, another worker runs it, and
// the body runs exactly once.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { applySignature, chord, createApp, signature, type AsyncResult } from '../../runtime/src/index.js';
import { eventually } from '../support/eventually.js';
import { startWorker, stopProcess } from '../support/processes.js';
import { uniqueName, useRedis } from '../support/servers.js';

const redis = await useRedis();
const dir = mkdtempSync(join(tmpdir(), 'celeriac-chord-'));
after(async () => {
  await redis.server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('chord under failure (redis)', { skip: redis.skip }, () => {
  it('a worker killed with acksLate in the middle of a header task: the body runs exactly once', async () => {
    const queue = uniqueName('chord-kill');
    // A short visibility timeout brings the killed worker's unacknowledged message back quickly.
    const brokerUrl = `${redis.server!.url}?visibilityTimeoutMs=1000`;
    const backendUrl = redis.server!.url;
    const ledger = join(dir, 'ledger.txt');
    const env = { CELERIAC_BROKER_URL: brokerUrl, CELERIAC_RESULT_BACKEND: backendUrl, LEDGER: ledger };
    const lines = () => (existsSync(ledger) ? readFileSync(ledger, 'utf8').trim().split('\n') : []);
    const app = createApp({ name: 'chord-client', broker: brokerUrl, backend: backendUrl, logLevel: 'silent' });
    const admin = new Redis(redis.server!.url);
    const first = startWorker('dist/test/integration/fixtures/chord-tasks.js', queue, { ...env, HANG: '1' }, ['-l', 'warn']);
    let second: ReturnType<typeof startWorker> | undefined;
    try {
      const part = (x: number, hang = false) => signature('ck.part', [x, hang], {}, { queue });
      const r = (await applySignature(app, chord([part(1), part(2), part(3, true), part(4)], signature('ck.total', [], {}, { queue })))) as AsyncResult;
      const hanging = await eventually(
        () => {
          const l = lines().filter((x) => x.includes('ck.part'));
          assert.equal(l.length, 4, 'every header task started on the first worker');
          return l;
        },
        { timeoutMs: 20_000 },
      );
      assert.equal(lines().filter((l) => l.includes('ck.total')).length, 0, 'no body before the header completes');
      // Kill only once the three quick parts are acknowledged (acks late, after their results): the
      // hanging part is then the one message the broker still holds for this queue.
      await eventually(
        async () => {
          const held = (await admin.hvals('unacked')).filter((v) => v.includes(queue));
          assert.equal(held.length, 1, 'only the hanging header task unacknowledged');
        },
        { timeoutMs: 20_000 },
      );
      await stopProcess(first, 'SIGKILL');
      second = startWorker('dist/test/integration/fixtures/chord-tasks.js', queue, env, ['-l', 'warn']);
      assert.equal(await r.get({ timeout: 30_000 }), 10);
      const bodies = lines().filter((l) => l.includes('ck.total'));
      assert.equal(bodies.length, 1, `the body ran once (ledger: ${lines().join(' | ')}; header runs ${hanging.length})`);
      // The restored header task ran again on the second worker.
      assert.equal(lines().filter((l) => l.includes('ck.part') && l.endsWith(` ${second!.pid}`)).length, 1);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- first ---\n${first.output()}\n--- second ---\n${second?.output()}`, { cause: err });
    } finally {
      await stopProcess(first, 'SIGKILL');
      await stopProcess(second);
      await app.close();
      admin.disconnect();
    }
  });
});
