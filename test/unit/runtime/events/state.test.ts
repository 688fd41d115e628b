// What `celeriac events` shows (runtime/src/events/state.ts, cli/commands/events.ts), from events.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dumpLine, renderView } from '../../../../runtime/src/cli/commands/events.js';
import type { ReceivedEvent } from '../../../../runtime/src/events/receiver.js';
import { EventState } from '../../../../runtime/src/events/state.js';

const ev = (type: string, fields: Record<string, unknown> = {}, at = 1000): ReceivedEvent => ({
  type,
  hostname: 'w1@h',
  timestamp: at,
  utcoffset: 0,
  pid: 1,
  clock: 1,
  local_received: at,
  ...fields,
});

describe('EventState', () => {
  it('keeps workers alive for two heartbeat intervals and offline after worker-offline', () => {
    const s = new EventState();
    s.apply(ev('worker-heartbeat', { freq: 2, active: 1, processed: 7, sw_ident: 'celeriac', sw_ver: '1.0' }, 1000));
    const w = s.workers.get('w1@h')!;
    assert.deepEqual([w.active, w.processed, w.swIdent], [1, 7, 'celeriac']);
    assert.equal(s.alive(w, 1003.9), true);
    assert.equal(s.alive(w, 1004.1), false);
    s.apply(ev('worker-offline', {}, 1001));
    assert.equal(s.alive(s.workers.get('w1@h')!, 1001), false);
  });

  it('follows a task from received to succeeded, and a late started does not undo success', () => {
    const s = new EventState();
    s.apply(ev('task-received', { uuid: 't1', name: 'add', args: '(2, 3)', kwargs: '{}' }, 1));
    s.apply(ev('task-succeeded', { uuid: 't1', result: '5', runtime: 0.5 }, 3));
    s.apply(ev('task-started', { uuid: 't1' }, 2));
    assert.deepEqual(
      { ...s.tasks.get('t1') },
      {
        uuid: 't1',
        name: 'add',
        state: 'SUCCESS',
        args: '(2, 3)',
        kwargs: '{}',
        result: '5',
        exception: null,
        runtime: 0.5,
        worker: 'w1@h',
        timestamp: 3,
      },
    );
  });

  it('a started event that arrives after success with the same timestamp (a task of under a millisecond) does not undo it', () => {
    const s = new EventState();
    s.apply(ev('task-received', { uuid: 't1' }, 5));
    s.apply(ev('task-succeeded', { uuid: 't1', result: '5' }, 5));
    s.apply(ev('task-started', { uuid: 't1' }, 5));
    assert.equal(s.tasks.get('t1')!.state, 'SUCCESS');
  });

  it('a task received anew after it finished (sent again with its id) follows the new run', () => {
    const s = new EventState();
    s.apply(ev('task-failed', { uuid: 't1', exception: 'E()' }, 5));
    s.apply(ev('task-received', { uuid: 't1' }, 6));
    assert.equal(s.tasks.get('t1')!.state, 'RECEIVED');
  });

  it('keeps only the most recent tasks', () => {
    const s = new EventState(2);
    for (const id of ['a', 'b', 'c']) s.apply(ev('task-received', { uuid: id }));
    assert.deepEqual([...s.tasks.keys()], ['b', 'c']);
  });
});

describe('celeriac events output', () => {
  it("prints --dump lines in celery events --dump's format", () => {
    const names = new Map<string, string>();
    const at = Date.UTC(2026, 0, 2, 3, 4, 5, 600) / 1000;
    assert.equal(
      dumpLine(ev('worker-heartbeat', { freq: 2 }, at), names),
      'w1@h [2026-01-02 03:04:05.600000] heartbeat: clock=1, freq=2, local_received=1767323045.6, pid=1, utcoffset=0',
    );
    dumpLine(ev('task-received', { uuid: 't1', name: 'add', args: '(2, 3)', kwargs: '{}' }, at), names);
    assert.equal(
      dumpLine(ev('task-succeeded', { uuid: 't1', result: '5', runtime: 0.25 }, at), names),
      'w1@h [2026-01-02 03:04:05.600000] task succeeded: add(t1) args=(2, 3) kwargs={} clock=1, local_received=1767323045.6, pid=1, result=5, runtime=0.25, utcoffset=0',
    );
  });

  it('renders workers and the latest tasks in the live view', () => {
    const s = new EventState();
    s.apply(ev('worker-heartbeat', { freq: 2, active: 0, processed: 1, sw_ident: 'celeriac', sw_ver: '1.0', loadavg: [0.1, 0.2, 0.3] }, 1000));
    s.apply(ev('task-received', { uuid: 't1', name: 'add', args: '(2, 3)' }, 1000));
    s.apply(ev('task-succeeded', { uuid: 't1', result: '5', runtime: 0.25 }, 1000));
    const view = renderView(s, 1001);
    assert.match(view, /w1@h\s+online\s+0\s+1\s+0.1 0.2 0.3\s+celeriac 1.0/);
    assert.match(view, /t1\s+add\s+SUCCESS\s+\(2, 3\)\s+5\s+0.250s/);
  });
});
