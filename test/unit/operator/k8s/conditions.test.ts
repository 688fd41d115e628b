import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { conditionReason, findCondition, rfc3339, setCondition } from '../../../../operator/src/k8s/conditions.js';

const t1 = new Date('2026-01-01T00:00:00.123Z');
const t2 = new Date('2026-01-01T00:05:00Z');

describe('setCondition (metav1.Condition semantics)', () => {
  it('adds a condition with lastTransitionTime now, in RFC 3339 seconds', () => {
    const list = setCondition(undefined, { type: 'Ready', status: 'False', reason: 'Waiting', message: 'm', observedGeneration: 1 }, t1);
    assert.deepEqual(list, [
      { type: 'Ready', status: 'False', reason: 'Waiting', message: 'm', observedGeneration: 1, lastTransitionTime: '2026-01-01T00:00:00Z' },
    ]);
  });

  it('keeps lastTransitionTime while the status stays, but updates reason, message and generation', () => {
    const a = setCondition(undefined, { type: 'Ready', status: 'False', reason: 'Waiting', message: '0/2' }, t1);
    const b = setCondition(a, { type: 'Ready', status: 'False', reason: 'StillWaiting', message: '1/2', observedGeneration: 2 }, t2);
    assert.equal(b[0]?.lastTransitionTime, rfc3339(t1));
    assert.equal(b[0]?.reason, 'StillWaiting');
    assert.equal(b[0]?.message, '1/2');
    assert.equal(b[0]?.observedGeneration, 2);
  });

  it('moves lastTransitionTime when the status flips', () => {
    const a = setCondition(undefined, { type: 'Ready', status: 'False', reason: 'Waiting', message: '' }, t1);
    const b = setCondition(a, { type: 'Ready', status: 'True', reason: 'Ready', message: '' }, t2);
    assert.equal(b[0]?.lastTransitionTime, '2026-01-01T00:05:00Z');
  });

  it('keeps other conditions and their order, and does not mutate the input', () => {
    const a = setCondition(
      setCondition(undefined, { type: 'Ready', status: 'True', reason: 'R', message: '' }, t1),
      { type: 'Degraded', status: 'False', reason: 'D', message: '' },
      t1,
    );
    const copy = structuredClone(a);
    const b = setCondition(a, { type: 'Ready', status: 'False', reason: 'X', message: '' }, t2);
    assert.deepEqual(a, copy);
    assert.deepEqual(
      b.map((c) => c.type),
      ['Ready', 'Degraded'],
    );
    assert.equal(findCondition(b, 'Degraded')?.reason, 'D');
  });
});

describe('conditionReason', () => {
  it('keeps CamelCase reasons and turns free text into one', () => {
    assert.equal(conditionReason('ReplicasReady'), 'ReplicasReady');
    assert.equal(conditionReason('backlog above target'), 'BacklogAboveTarget');
    assert.equal(conditionReason('queue-depth'), 'QueueDepth');
    assert.equal(conditionReason('2 pods: ready'), 'PodsReady');
    assert.equal(conditionReason('---'), 'Unknown');
    const list = setCondition(undefined, { type: 'ScalingActive', status: 'True', reason: 'All metrics below target', message: '' }, t1);
    assert.equal(list[0]?.reason, 'AllMetricsBelowTarget');
  });
});
