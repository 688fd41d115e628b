/**
 * Compressed task messages between Python Celery (5.7 and Debian's 5.2) and celeriac on Redis:
 * each compression this kombu can send reaches a TS worker, which runs it or, for the ones
 * celeriac cannot decode (lzma), stores kombu's DecodeError so the caller fails at once.
 * The other way, celeriac's zlib reaches a Python worker.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { createApp } from '../../runtime/src/index.js';
import { useRedis } from '../support/servers.js';
import { pythonClient, pythonEnv, pythons, skipReason, workerPair } from './interop-suite.js';

const run = promisify(execFile);
const redis = await useRedis();
after(() => redis.server?.stop());
const url = redis.server?.url ?? 'redis://127.0.0.1:1/0';

for (const python of pythons) {
  describe(`${python.label} <-> celeriac: compression (redis)`, { skip: skipReason(python, redis.skip) }, () => {
    const { tsQueue, pyQueue, apps, tsWorker, withLogs } = workerPair(python, url, 'compress');

    it('every compression this kombu can send: run, or refused with a stored DecodeError', () =>
      withLogs(async () => {
        // What kombu registers here depends on the Python modules installed (brotli and zstd are optional).
        const { stdout } = await run(python.exe!, ['-c', 'import kombu.compression as c, json; print(json.dumps(sorted(c._aliases)))'], { timeout: 60_000 });
        const aliases = JSON.parse(stdout) as string[];
        for (const must of ['zlib', 'gzip', 'bzip2', 'lzma', 'xz']) assert.ok(aliases.includes(must), `kombu offers ${must} (has ${aliases.join(', ')})`);
        const outcomes = await pythonClient(
          python.exe!,
          pythonEnv(url, url, tsQueue),
          aliases.map((compression, i) => ({ op: 'send_task', name: 'interop.add', args: [i, 1000], options: { compression }, queue: tsQueue })),
        );
        const decodable = new Set(['zlib', 'gzip', 'bzip', 'bzip2', 'brotli']);
        aliases.forEach((compression, i) => {
          const o = outcomes[i]!;
          if (decodable.has(compression)) {
            assert.equal(o.result, i + 1000, `${compression}: ran`);
          } else {
            assert.equal(o.state, 'FAILURE', `${compression}: a stored failure, not a wait`);
            assert.equal(o.error?.type, 'DecodeError', compression);
            assert.equal(o.error?.module, 'kombu.exceptions', compression);
            assert.match(o.error!.message, /Unsupported compression|no zstd/, compression);
          }
        });
        assert.equal(tsWorker()!.exitCode, null, 'the TS worker is still running');
      }));

    it("celeriac's zlib-compressed tasks run on the Python worker", () =>
      withLogs(async () => {
        const app = createApp({ name: 'interop-compress', broker: url, backend: url, taskCompression: 'zlib', logLevel: 'warn' });
        apps.push(app);
        const r = await app.sendTask<number>('pyinterop.add', [40, 2], {}, { queue: pyQueue });
        assert.equal(await r.get({ timeout: 60_000 }), 42);
      }));
  });
}
