import { test } from 'node:test';
import assert from 'node:assert/strict';
import { measuredPodStartMs, POD_START_SAMPLES, type PodTimes } from '../../../../operator/src/autoscaler/pod-start.js';

const pod = (createdS: number, readyS: number | null): PodTimes => ({
  metadata: { creationTimestamp: new Date(createdS * 1000).toISOString() },
  status: {
    conditions:
      readyS === null ? [{ type: 'Ready', status: 'False' }] : [{ type: 'Ready', status: 'True', lastTransitionTime: new Date(readyS * 1000).toISOString() }],
  },
});

test('pod start: creation to Ready, mean of the latest pods; none ready, none measured', () => {
  assert.equal(measuredPodStartMs([]), null);
  assert.equal(measuredPodStartMs([pod(0, null)]), null);
  assert.equal(measuredPodStartMs([pod(0, 6), pod(10, 18), pod(20, null)]), 7000);
  // only the latest POD_START_SAMPLES count: an old slow start ages out
  const pods = [pod(0, 60), ...Array.from({ length: POD_START_SAMPLES }, (_, i) => pod(100 + i, 106 + i))];
  assert.equal(measuredPodStartMs(pods), 6000);
});
