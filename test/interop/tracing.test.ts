/**
 * One trace across Python and TypeScript, both ways, on Redis and RabbitMQ: a Python Celery 5.7
 * client with opentelemetry-instrumentation-celery sends a TypeScript task (fixtures/py_traced.py);
 * the celeriac worker (in this process, spans in memory) runs it, and the task sends a Python task
 * that an instrumented Python worker runs. The trace id is the same everywhere and each span's
 * parent is the one before it: py-client -> apply_async (py) -> run (ts) -> apply_async (ts) -> run (py).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { SpanKind } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { createApp, type App } from '../../runtime/src/index.js';
import { createWorker, type Worker } from '../../runtime/src/worker/index.js';
import { eventually } from '../support/eventually.js';
import { startMemoryTracing } from '../support/otel.js';
import { pythonWorkerArgs, startProcess, stopProcess, withOutputOf, type Started } from '../support/processes.js';
import { uniqueName, useRabbit, useRedis, type ServiceResult } from '../support/servers.js';
import { fixtures, pythonEnv, pythons, skipReason } from './interop-suite.js';

const run = promisify(execFile);
const py = pythons[0]!; // Celery 5.7: the virtualenv with the instrumentation
const [redis, rabbit] = await Promise.all([useRedis(), useRabbit()]);
after(async () => {
  await redis.server?.stop();
  await rabbit.server?.stop();
});
const otel = startMemoryTracing();
after(() => otel.stop());

interface PySpan {
  name: string;
  kind: string;
  trace_id: string;
  span_id: string;
  parent_id: string | null;
  attributes: Record<string, unknown>;
}
const readSpans = (path: string): PySpan[] =>
  existsSync(path)
    ? readFileSync(path, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as PySpan)
    : [];

function crossTrace(label: string, broker: ServiceResult, system: string) {
  describe(`tracing across Python and TypeScript (${label})`, { skip: skipReason(py, broker.skip || redis.skip) }, () => {
    const tsQueue = uniqueName('ts-traced');
    const pyQueue = uniqueName('py-traced');
    const spansFile = join(mkdtempSync(join(tmpdir(), 'celeriac-otel-')), 'py-spans.jsonl');
    const brokerUrl = broker.server?.url ?? '';
    const backendUrl = redis.server?.url ?? '';
    const env = { ...pythonEnv(brokerUrl, backendUrl, pyQueue), INTEROP_SPANS: spansFile };
    let app: App;
    let worker: Worker;
    let pyWorker: Started;
    before(async () => {
      app = createApp({ broker: brokerUrl, backend: backendUrl, queues: [tsQueue], tracing: true, metricsPort: null, logLevel: 'warn' });
      app.task('tsinterop.traced_relay', async (x: number) =>
        (await app.sendTask<number>('pyinterop.traced_leaf', [x], {}, { queue: pyQueue })).get({ timeout: 20_000 }),
      );
      worker = createWorker(app);
      await worker.start();
      pyWorker = startProcess(py.exe!, pythonWorkerArgs('py_traced', pyQueue, `${pyQueue}@localhost`), { env, cwd: fixtures });
    });
    after(async () => {
      await worker?.stop();
      await app?.close();
      await stopProcess(pyWorker);
    });

    it('keeps one trace with the right parents from a Python client to a Python worker through a TypeScript task', () =>
      withOutputOf({ 'python worker': pyWorker }, async () => {
        const { stdout } = await run(py.exe!, ['py_traced.py', 'tsinterop.traced_relay', tsQueue, '41'], { env, cwd: fixtures, timeout: 60_000 });
        assert.equal(JSON.parse(stdout.trim().split('\n').pop()!).result, 42);

        const pySpans = await eventually(() => {
          const s = readSpans(spansFile);
          assert.ok(s.some((x) => x.name === 'run/pyinterop.traced_leaf') && s.some((x) => x.name === 'py-client'), `python spans: ${s.map((x) => x.name)}`);
          return s;
        });
        const pyOne = (name: string) => {
          const found = pySpans.filter((s) => s.name === name);
          assert.equal(found.length, 1, `one python span ${name}`);
          return found[0]!;
        };
        const tsOne = (name: string): ReadableSpan => {
          const found = otel
            .spans()
            .filter((s) => s.name === name && s.attributes['messaging.destination.name'] === (name.includes('leaf') ? pyQueue : tsQueue));
          assert.equal(found.length, 1, `one typescript span ${name}`);
          return found[0]!;
        };
        const client = pyOne('py-client');
        const pySend = pyOne('apply_async/tsinterop.traced_relay');
        const tsRun = tsOne('run/tsinterop.traced_relay');
        const tsSend = tsOne('apply_async/pyinterop.traced_leaf');
        const pyRun = pyOne('run/pyinterop.traced_leaf');

        const traceId = client.trace_id;
        for (const s of [pySend, pyRun]) assert.equal(s.trace_id, traceId, `${s.name} in the trace`);
        for (const s of [tsRun, tsSend]) assert.equal(s.spanContext().traceId, traceId, `${s.name} in the trace`);
        assert.equal(pySend.parent_id, client.span_id);
        assert.equal(tsRun.parentSpanContext?.spanId, pySend.span_id, 'the TypeScript run is a child of the Python send');
        assert.equal(tsSend.parentSpanContext?.spanId, tsRun.spanContext().spanId);
        assert.equal(pyRun.parent_id, tsSend.spanContext().spanId, 'the Python run is a child of the TypeScript send');

        // Both languages name and tag alike.
        assert.equal(pySend.kind, 'PRODUCER');
        assert.equal(pyRun.kind, 'CONSUMER');
        assert.equal(tsSend.kind, SpanKind.PRODUCER);
        assert.equal(tsRun.kind, SpanKind.CONSUMER);
        assert.equal(pyRun.attributes['celery.task_name'], 'pyinterop.traced_leaf');
        assert.equal(pyRun.attributes['messaging.message.id'], tsSend.attributes['messaging.message.id']);
        assert.equal(pyRun.attributes['celery.action'], tsRun.attributes['celery.action']);
        assert.equal(pySend.attributes['messaging.message.id'], tsRun.attributes['messaging.message.id']);
        assert.equal(tsRun.attributes['messaging.system'], system);
      }));
  });
}

crossTrace('redis', redis, 'redis');
crossTrace('amqp', rabbit, 'rabbitmq');
