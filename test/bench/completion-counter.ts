/**
 * Preloaded into the bench's celeriac worker (`node --import`, with BENCH_COMPLETION_SOCKET, a Unix
 * socket the bench listens on): reports the worker's count of succeeded tasks to the bench, one
 * line per report ("count epoch-ms": the time the last of them completed, so the report's delay is
 * not measured), as the BullMQ worker of the bench does over IPC (bullmq-worker.ts): at most
 * every 20 ms, 20 ms after a completion. Not IPC: `celeriac worker` re-executes node
 * (worker-node-flags.ts), which closes an IPC channel; this module then runs again in the new image.
 *
 * Why not /metrics: polling it every 20 ms cost the worker 5-8% of its CPU (the default metrics
 * read /proc, the histograms are formatted), an observation cost BullMQ's row did not pay.
 *
 * It counts where /metrics does, `celeriac_tasks_completed_total{outcome="succeeded"}`, which the
 * consumer increments after the result is stored: prom-client's Counter is wrapped here (the same
 * module instance the worker loads, by the CommonJS cache), a name compare per increment.
 */
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import { basename } from 'node:path';
import { isMainThread } from 'node:worker_threads';

const NAME = 'celeriac_tasks_completed_total';
const path = process.env.BENCH_COMPLETION_SOCKET;

// --import runs in worker threads too, and forked pool runners (runner-entry.js) inherit the flag
// and the environment: only the worker's own main thread (main.js) counts.
if (path && isMainThread && basename(process.argv[1] ?? '') === 'main.js') {
  const conn = connect(path);
  conn.unref(); // the worker exits on its own terms, not held open by the bench
  conn.on('error', () => {}); // the bench is gone: nothing to report to
  let completed = 0;
  let at = 0;
  let timer: NodeJS.Timeout | null = null;
  const report = () => {
    timer = null;
    conn.write(`${completed} ${at}\n`);
  };
  type Inc = (this: { name: string }, labels?: unknown, value?: number) => void;
  const require = createRequire(import.meta.url);
  const proto = (require('prom-client/lib/counter') as { prototype: { incWithoutExemplar: Inc } }).prototype;
  const inc = proto.incWithoutExemplar;
  proto.incWithoutExemplar = function (this: { name: string }, labels?: unknown, value?: number) {
    if (this.name === NAME && (labels as { outcome?: string } | undefined)?.outcome === 'succeeded') {
      completed += typeof value === 'number' ? value : 1;
      at = performance.timeOrigin + performance.now();
      timer ??= setTimeout(report, 20);
    }
    inc.call(this, labels, value);
  };
}
