// tracing/tracing.ts on the memory:// broker: span kinds, names, attributes, the traceparent header
// and parent links from a client span through send -> run -> send -> run, failures and retries.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { createTestApp, startTestWorker } from '../../../../runtime/src/testing/index.js';
import type { App } from '../../../../runtime/src/app/app.js';
import type { TaskContext } from '../../../../runtime/src/app/task.js';
import type { Worker } from '../../../../runtime/src/worker/worker.js';
import { startMemoryTracing } from '../../../support/otel.js';
import { eventually } from '../../../support/eventually.js';

const otel = startMemoryTracing();
const app = createTestApp({ tracing: true });
app.task('t.child', (x: number) => x * 2);
app.task('t.parent', async (x: number) => (await app.sendTask<number>('t.child', [x])).get({ timeout: 5000 }));
app.task('t.fail', () => {
  throw Object.assign(new Error('boom'), { name: 'ValueError' });
});
app.task(
  't.retry',
  function (this: TaskContext) {
    if (this.retries === 0) this.retry({ countdown: 1, exc: new Error('not yet') });
    return this.retries;
  },
  { maxRetries: 1 },
);

const spansOf = (id: string) => otel.spans().filter((s) => s.attributes['messaging.message.id'] === id);
const one = (spans: ReadableSpan[], name: string): ReadableSpan => {
  const found = spans.filter((s) => s.name === name);
  assert.equal(found.length, 1, `one span named ${name}, got ${spans.map((s) => s.name).join(', ')}`);
  return found[0]!;
};
const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;

/** The headers of the next message on `queue` (taken and acknowledged). */
async function headersOfNext(a: App, queue: string): Promise<Record<string, unknown>> {
  const broker = await a.broker();
  const ctl = new AbortController();
  return new Promise((resolve, reject) => {
    broker
      .consume(
        [queue],
        async (d) => {
          await d.ack();
          resolve(d.message.headers);
          ctl.abort();
        },
        { prefetch: 1, signal: ctl.signal },
      )
      .catch(reject);
  });
}

let worker: Worker;
before(async () => {
  worker = await startTestWorker(app);
});
after(async () => {
  await worker.stop();
  await app.close();
  await otel.stop();
});

describe('tracing', () => {
  it('links client span -> apply_async -> run -> apply_async -> run in one trace, with the instrumentation names', async () => {
    const r = await trace.getTracer('test').startActiveSpan('client-active', async (active) => {
      try {
        return await app.sendTask<number>('t.parent', [21]);
      } finally {
        active.end();
      }
    });
    assert.equal(await r.get({ timeout: 5000 }), 42);
    const client = one(otel.spans(), 'client-active');
    const sendParent = await eventually(() => one(spansOf(r.id), 'apply_async/t.parent'));
    const runParent = await eventually(() => one(spansOf(r.id), 'run/t.parent'));
    const sendChild = await eventually(() => one(otel.spans(), 'apply_async/t.child'));
    const childId = String(sendChild.attributes['messaging.message.id']);
    const runChild = await eventually(() => one(spansOf(childId), 'run/t.child'));

    const traceId = client.spanContext().traceId;
    for (const s of [sendParent, runParent, sendChild, runChild]) assert.equal(s.spanContext().traceId, traceId, `${s.name} in the client's trace`);
    assert.equal(parentOf(sendParent), client.spanContext().spanId);
    assert.equal(parentOf(runParent), sendParent.spanContext().spanId);
    assert.equal(parentOf(sendChild), runParent.spanContext().spanId);
    assert.equal(parentOf(runChild), sendChild.spanContext().spanId);

    assert.equal(sendParent.kind, SpanKind.PRODUCER);
    assert.equal(runParent.kind, SpanKind.CONSUMER);
    assert.deepEqual(
      { ...sendParent.attributes },
      {
        'celery.action': 'apply_async',
        'celery.task_name': 't.parent',
        'messaging.message.id': r.id,
        'messaging.system': 'memory',
        'messaging.destination.name': 'celery',
        'messaging.destination': 'celery',
        'messaging.operation.type': 'send',
      },
    );
    assert.equal(runParent.attributes['celery.action'], 'run');
    assert.equal(runParent.attributes['celery.state'], 'SUCCESS');
    assert.equal(runParent.attributes['messaging.operation.type'], 'process');
    assert.equal(runParent.attributes['celery.hostname'], app.config.hostname);
    assert.equal(runParent.status.code, SpanStatusCode.UNSET);
  });

  it('writes the context as a W3C traceparent task header', async () => {
    const queue = 'traced-nobody';
    const r = await app.sendTask('t.child', [1], {}, { queue });
    const headers = await headersOfNext(app, queue);
    const send = one(spansOf(r.id), 'apply_async/t.child');
    const { traceId, spanId } = send.spanContext();
    assert.equal(headers.traceparent, `00-${traceId}-${spanId}-01`);
  });

  it('marks a failed run as an error with the exception', async () => {
    const r = await app.sendTask('t.fail');
    await assert.rejects(r.get({ timeout: 5000 }));
    const run = await eventually(() => one(spansOf(r.id), 'run/t.fail'));
    assert.equal(run.status.code, SpanStatusCode.ERROR);
    assert.equal(run.status.message, 'boom');
    assert.equal(run.attributes['celery.state'], 'FAILURE');
    assert.equal(run.events.find((e) => e.name === 'exception')?.attributes?.['exception.type'], 'ValueError');
  });

  it('records a retry reason, and the retry is sent from inside the run', async () => {
    const r = await app.sendTask('t.retry');
    assert.equal(await r.get({ timeout: 5000 }), 1);
    const runs = await eventually(() => {
      const s = spansOf(r.id).filter((x) => x.name === 'run/t.retry');
      assert.equal(s.length, 2);
      return s;
    });
    const [first, second] = runs.sort((a, b) => Number(a.attributes['celery.retries'] ?? 0) - Number(b.attributes['celery.retries'] ?? 0));
    assert.equal(first!.attributes['celery.state'], 'RETRY');
    assert.match(String(first!.attributes['celery.retry.reason']), /not yet/);
    assert.equal(second!.attributes['celery.retries'], 1);
    const resend = spansOf(r.id).find((s) => s.name === 'apply_async/t.retry' && s.attributes['celery.retries'] === 1);
    assert.ok(resend, 'the retry has a producer span');
    assert.equal(parentOf(resend), first!.spanContext().spanId);
    assert.equal(parentOf(second!), resend.spanContext().spanId);
  });
});

describe('tracing off', () => {
  it('sends no traceparent and makes no span', async () => {
    const plain = createTestApp();
    const before = otel.spans().length;
    const r = await plain.sendTask('t.any', [], {}, { queue: 'plain' });
    const headers = await headersOfNext(plain, 'plain');
    assert.equal(headers.id, r.id);
    assert.equal(headers.traceparent, undefined);
    assert.equal(otel.spans().length, before);
    assert.equal(await plain.tracing(), null);
    await plain.close();
  });
});
