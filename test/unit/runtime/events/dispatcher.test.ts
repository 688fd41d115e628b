// The event dispatcher (runtime/src/events/dispatcher.ts) on a recording broker: batching,
// enable/disable and what happens when the broker refuses events.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { createEventDispatcher } from '../../../../runtime/src/events/dispatcher.js';
import { LamportClock } from '../../../../runtime/src/protocol/lamport-clock.js';
import type { WireMessage } from '../../../../runtime/src/protocol/wire-message.js';

/** A broker that records broadcasts, or fails them while `failing` is set. */
function recordingBroker() {
  const sent: { exchange: string; routingKey: string | undefined; body: unknown }[] = [];
  const b = {
    failing: false,
    sent,
    async broadcast(exchange: string, m: WireMessage, routingKey?: string) {
      if (b.failing) throw new Error('broker down');
      sent.push({ exchange, routingKey, body: JSON.parse(m.body.toString()) });
    },
  };
  return b;
}

/** A logger whose lines are kept as parsed objects. */
function recordingLog() {
  const lines: { level: number; msg: string; err?: unknown }[] = [];
  const log = pino({ level: 'trace' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  return { log, lines };
}

describe('createEventDispatcher', () => {
  it('sends worker events singly and task events of one turn as one task.multi batch', async () => {
    const broker = recordingBroker();
    const d = createEventDispatcher({ broker, hostname: 'w@h', log: recordingLog().log, taskEvents: true });
    d.send('worker-heartbeat', { freq: 2 });
    d.send('task-received', { uuid: 'a' });
    d.send('task-started', { uuid: 'a' });
    await d.flush();
    assert.deepEqual(
      broker.sent.map((s) => [
        s.exchange,
        s.routingKey,
        Array.isArray(s.body) ? s.body.map((e: { type: string }) => e.type) : (s.body as { type: string }).type,
      ]),
      [
        ['celeryev', 'worker.heartbeat', 'worker-heartbeat'],
        ['celeryev', 'task.multi', ['task-received', 'task-started']],
      ],
    );
    d.send('task-succeeded', { uuid: 'a', result: '5' });
    await d.flush();
    assert.equal(broker.sent.at(-1)!.routingKey, 'task.succeeded', 'a lone task event goes singly');
  });

  it('stamps the common fields with a clock that goes up', async () => {
    const broker = recordingBroker();
    const d = createEventDispatcher({ broker, hostname: 'w@h', log: recordingLog().log, taskEvents: false });
    d.send('worker-online', {});
    d.send('worker-heartbeat', {});
    await d.flush();
    const [a, b] = broker.sent.map((s) => s.body as Record<string, unknown>);
    assert.deepEqual(Object.keys(a!).sort(), ['clock', 'hostname', 'pid', 'timestamp', 'type', 'utcoffset']);
    assert.equal(a!.hostname, 'w@h');
    assert.equal(a!.pid, process.pid);
    assert.ok((b!.clock as number) > (a!.clock as number));
  });

  it('drops task events while disabled; enable() and disable() answer as Celery', async () => {
    const broker = recordingBroker();
    const d = createEventDispatcher({ broker, hostname: 'w@h', log: recordingLog().log, taskEvents: false });
    assert.equal(d.enabled('task'), false);
    assert.equal(d.enabled('worker'), true);
    d.send('task-received', { uuid: 'a' });
    await d.flush();
    assert.equal(broker.sent.length, 0);
    assert.equal(d.enable(), 'task events enabled');
    assert.equal(d.enable(), 'task events already enabled');
    d.send('task-received', { uuid: 'a' });
    await d.flush();
    assert.equal(broker.sent.length, 1);
    assert.equal(d.disable(), 'task events disabled');
    assert.equal(d.disable(), 'task events already disabled');
  });

  it('never throws when the broker fails, logs once per outage, and says when it works again', async () => {
    const broker = recordingBroker();
    const { log, lines } = recordingLog();
    const d = createEventDispatcher({ broker, hostname: 'w@h', log, taskEvents: true });
    broker.failing = true;
    for (let i = 0; i < 5; i++) {
      d.send('worker-heartbeat', {});
      await d.flush();
    }
    const warns = lines.filter((l) => l.level === 40);
    assert.equal(warns.length, 1, 'one warning for the whole outage');
    assert.match(warns[0]!.msg, /sending events failed/);
    assert.ok(warns[0]!.err, 'the warning carries the error');
    broker.failing = false;
    d.send('worker-heartbeat', {});
    await d.flush();
    assert.ok(lines.some((l) => l.level === 30 && /works again \(5 event\(s\) were lost\)/.test(l.msg)));
  });

  it('flush() gives up after its timeout when a publish hangs', async () => {
    const d = createEventDispatcher({
      broker: { broadcast: () => new Promise<void>(() => undefined) },
      hostname: 'w@h',
      log: recordingLog().log,
      taskEvents: true,
    });
    d.send('worker-offline', {});
    assert.equal(await d.flush(10), false);
  });
});

describe('LamportClock', () => {
  it('moves forward and past every clock it sees', () => {
    const c = new LamportClock();
    assert.equal(c.forward(), 1);
    assert.equal(c.adjust(10), 11);
    assert.equal(c.adjust(3), 12);
  });
});
