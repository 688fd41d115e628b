import { test } from 'node:test';
import assert from 'node:assert/strict';
import { drainsToCancel, planScale, type PodView } from '../../../../operator/src/autoscaler/scale-plan.js';

const pod = (name: string, o: Partial<PodView> = {}): PodView => ({ name, ready: true, draining: false, load: 0, ...o });

test('scale-down drains the idle pods first, never the busy one; replicas wait for them', () => {
  const pods = [pod('busy', { load: 2 }), pod('idle-a'), pod('idle-b')];
  assert.deepEqual(planScale(pods, 1, 3, 3), { remove: [], drain: ['idle-a', 'idle-b'], replicas: 3 });
});

test('drained pods that report no task leave by deletion cost, and replicas drop by that many', () => {
  const pods = [pod('busy', { load: 2 }), pod('idle-a', { draining: true }), pod('idle-b', { draining: true })];
  assert.deepEqual(planScale(pods, 1, 1, 3), { remove: ['idle-a', 'idle-b'], drain: [], replicas: 1 });
});

test('a draining pod with tasks, or never scraped, stays; so do drained pods while another pod is starting', () => {
  assert.deepEqual(planScale([pod('a'), pod('b', { draining: true, load: 1 }), pod('c', { draining: true, load: null })], 1, 1, 3).remove, []);
  assert.deepEqual(planScale([pod('a'), pod('new', { ready: false, load: null }), pod('b', { draining: true })], 2, 2, 3).remove, []);
});

test('pods still starting (or not created) go before any ready pod is drained', () => {
  const pods = [pod('a'), pod('b'), pod('new', { ready: false, load: null })];
  assert.deepEqual(planScale(pods, 2, 3, 3), { remove: [], drain: [], replicas: 2 });
  // 5 replicas but 3 pods exist: the 2 not created yet go first.
  assert.deepEqual(planScale([pod('a'), pod('b'), pod('c')], 2, 5, 5), { remove: [], drain: ['a'], replicas: 3 });
});

test('scaling up keeps draining pods in replicas on top of the target', () => {
  assert.deepEqual(planScale([pod('a'), pod('b', { draining: true, load: 3 })], 4, 1, 2), { remove: [], drain: [], replicas: 5 });
});

test('drains to cancel: as many as the target is above the committed count, in drain order, pods with an IP', () => {
  const draining = [
    { name: 'x', ip: null },
    { name: 'y', ip: '10.0.0.2' },
    { name: 'z', ip: '10.0.0.3' },
  ];
  assert.deepEqual(drainsToCancel(draining, 5, 3), {
    wanted: 2,
    candidates: [
      { name: 'y', ip: '10.0.0.2' },
      { name: 'z', ip: '10.0.0.3' },
    ],
  });
  assert.deepEqual(drainsToCancel(draining, 3, 3), { wanted: 0, candidates: [] });
});
