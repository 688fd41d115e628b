/**
 * Preloaded into the bench's celeriac worker (`node --import`, with BENCH_COMPLETION_IPC=1 and an
 * IPC channel): reports the worker's count of succeeded tasks to the bench over IPC, as the BullMQ
 * worker of the bench does (bullmq-worker.ts): at most every 20 ms, 20 ms after a completion.
 *
 * Why not /metrics: polling it every 20 ms cost the worker 5-8% of its CPU (the default metrics
 * read /proc, the histograms are formatted), an observation cost BullMQ's row did not pay.
 *
 * It counts where /metrics does, `celeriac_tasks_completed_total{outcome="succeeded"}`, which the
 * consumer increments after the result is stored: prom-client's Counter is wrapped here (the same
 * module instance the worker loads, by the CommonJS cache), a name compare per increment.
 */
import { createRequire } from 'node:module';
import { isMainThread } from 'node:worker_threads';

const NAME = 'celeriac_tasks_completed_total';

// --import runs in worker threads too, and forked pool runners inherit the flag: the env var is
// removed at once so only this process (the worker's main thread) counts.
if (process.env.BENCH_COMPLETION_IPC === '1' && isMainThread && process.send) {
  delete process.env.BENCH_COMPLETION_IPC;
  const send = process.send.bind(process);
  process.channel?.unref(); // the worker exits on its own terms, not held open by the bench
  let completed = 0;
  let timer: NodeJS.Timeout | null = null;
  const report = () => {
    timer = null;
    send({ completed });
  };
  type Inc = (this: { name: string }, labels?: unknown, value?: number) => void;
  const require = createRequire(import.meta.url);
  const proto = (require('prom-client/lib/counter') as { prototype: { incWithoutExemplar: Inc } }).prototype;
  const inc = proto.incWithoutExemplar;
  proto.incWithoutExemplar = function (this: { name: string }, labels?: unknown, value?: number) {
    if (this.name === NAME && (labels as { outcome?: string } | undefined)?.outcome === 'succeeded') {
      completed += typeof value === 'number' ? value : 1;
      timer ??= setTimeout(report, 20);
    }
    inc.call(this, labels, value);
  };
}
