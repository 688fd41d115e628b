// The rpc:// backend's in-memory states (KeptStates): the latest state per task, the oldest dropped.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KeptStates } from '../../../../runtime/src/backends/rpc.js';
import type { TaskMeta } from '../../../../runtime/src/protocol/result-meta.js';

const meta = (id: string, status: string) => ({ task_id: id, status, result: null, traceback: null, children: [] }) as unknown as TaskMeta;

describe('rpc:// kept states', () => {
  it('keeps the latest state of each task and forgets on delete', () => {
    const kept = new KeptStates(4);
    kept.set('a', meta('a', 'STARTED'));
    kept.set('a', meta('a', 'SUCCESS'));
    assert.equal(kept.get('a')?.status, 'SUCCESS');
    kept.delete('a');
    assert.equal(kept.get('a'), undefined);
  });

  it('keeps at least the last generation of tasks, drops older ones whole, and keeps a state updated late', () => {
    const kept = new KeptStates(3);
    for (const id of ['t1', 't2', 't3']) kept.set(id, meta(id, 'STARTED')); // a full generation: now the older one
    kept.set('t1', meta('t1', 'SUCCESS')); // updated: moves to the newer generation
    for (const id of ['t4', 't5']) kept.set(id, meta(id, 'SUCCESS')); // the newer is full: t2, t3 dropped
    assert.equal(kept.get('t1')?.status, 'SUCCESS');
    assert.equal(kept.get('t2'), undefined);
    assert.equal(kept.get('t3'), undefined);
    for (const id of ['t4', 't5']) assert.equal(kept.get(id)?.status, 'SUCCESS');
    kept.set('t6', meta('t6', 'SUCCESS'));
    assert.equal(kept.get('t5')?.status, 'SUCCESS', 'the last generation is kept whole');
  });
});
