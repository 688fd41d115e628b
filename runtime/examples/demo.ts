/**
 * `npm start`: the main job on the embedded file:// broker, no server needed. Starts a worker on
 * ./tasks.ts, calls a task that succeeds, one that fails and is retried, one with a countdown and
 * one that fails for good, prints results as they arrive and the worker's metrics URL, and exits 0.
 * `npm start -- --keep` leaves the worker running (Ctrl-C stops it).
 */
import { createWorker } from '../src/worker/index.js';
import { TaskFailedError } from '../src/errors.js';
import { app, add, divide, flaky } from './tasks.js';

const keep = process.argv.includes('--keep');
const started = Date.now();
const since = () => `${String(Date.now() - started).padStart(5)} ms`;
const say = (line: string) => process.stdout.write(`${line}\n`);

// Any free port for /metrics; the worker's own log lines (e.g. the failure) in readable form.
app.configure({ metricsPort: 0, logFormat: 'pretty' });
say(`celeriac demo: broker ${app.config.brokerUrl} (embedded, no server), queue "${app.config.defaultQueue}"`);
const broker = await app.broker();
const stale = await broker.purge(app.config.defaultQueue);
if (stale > 0) say(`(removed ${stale} message(s) left from an earlier demo run)`);

const worker = createWorker(app);
await worker.start();
say(`worker started: ${app.config.concurrency} slots, metrics at ${worker.metricsUrl}`);

const calls = [
  { label: 'demo.add(2, 3)', result: add.delay(2, 3) },
  { label: "demo.flaky('hello')   (fails twice, retried)", result: flaky.delay('hello') },
  { label: 'demo.add(40, 2)  with countdown 1000 ms', result: add.applyAsync([40, 2], {}, { countdown: 1000 }) },
  { label: 'demo.divide(1, 0)     (fails for good)', result: divide.delay(1, 0) },
];
say(`sent ${calls.length} tasks; results as they arrive:`);

let ok = true;
await Promise.all(
  calls.map(async (c) => {
    const r = await c.result;
    try {
      const value = await r.get({ timeout: 30_000 });
      say(`  ${since()}  ${c.label.padEnd(48)} -> ${JSON.stringify(value)}`);
    } catch (err) {
      if (err instanceof TaskFailedError) say(`  ${since()}  ${c.label.padEnd(48)} -> FAILURE ${err.excType}: ${err.excMessage}`);
      else {
        ok = false;
        say(`  ${since()}  ${c.label.padEnd(48)} -> error: ${(err as Error).message}`);
      }
    }
  }),
);

const metrics = await (await fetch(worker.metricsUrl!)).text();
const completed = metrics.split('\n').filter((l) => l.startsWith('celeriac_tasks_completed_total{'));
say(`worker metrics (${worker.metricsUrl}):`);
for (const l of completed) say(`  ${l}`);

if (keep) {
  say('--keep: the worker keeps running. Call it from another terminal, e.g.');
  say(`  npx celeriac call demo.add --args '[1, 2]' --queue ${app.config.defaultQueue} --wait`);
  say('Ctrl-C stops it.');
  const stop = () => void worker.stop().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
} else {
  await worker.stop();
  say(`done in ${since().trim()}`);
  process.exit(ok ? 0 : 1);
}
