import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { brokerProblem, replacing } from '../../../../operator/src/reconcilers/worker-pool.js';
import type { TaskQueue, WorkerPoolAutoscalingStatus } from '../../../../operator/src/types.js';

describe('replacing (status.autoscaling written whole through a merge patch)', () => {
  it('sends null for every key the new object leaves out, so the merge removes it', () => {
    const prev: WorkerPoolAutoscalingStatus = { desiredReplicas: 5, fallback: true, failures: 15, draining: ['a'], reason: 'Fallback' };
    assert.deepEqual(replacing(prev, { desiredReplicas: 5, reason: 'Steady' }), {
      desiredReplicas: 5,
      reason: 'Steady',
      fallback: null,
      failures: null,
      draining: null,
    });
  });

  it('sends nothing extra when the keys are the same, so an unchanged status compares equal', () => {
    assert.deepEqual(replacing({ a: 1, b: 2 }, { a: 1, b: 3 }), { a: 1, b: 3 });
    assert.deepEqual(replacing<Record<string, unknown>>(undefined, { a: 1, gone: null }), { a: 1 });
  });
});

describe('brokerProblem', () => {
  const tq = (name: string, status?: 'True' | 'False'): TaskQueue => ({
    metadata: { name },
    spec: { broker: { type: 'redis', url: 'redis://r:6379/0' }, queue: { name } },
    status: status
      ? {
          conditions: [
            {
              type: 'BrokerReachable',
              status,
              reason: status === 'True' ? 'Connected' : 'AuthenticationFailed',
              message: 'WRONGPASS invalid username-password pair',
              lastTransitionTime: '2026-01-01T00:00:00Z',
            },
          ],
        }
      : {},
  });

  it('names the first TaskQueue whose broker check failed, with its reason', () => {
    assert.deepEqual(brokerProblem([tq('a', 'True'), tq('b', 'False')]), {
      reason: 'AuthenticationFailed',
      message: 'TaskQueue "b" cannot reach its broker: WRONGPASS invalid username-password pair',
    });
  });

  it('is null while every queue is reachable or not checked yet', () => {
    assert.equal(brokerProblem([tq('a', 'True'), tq('b')]), null);
  });
});
