import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { scheduleLeadMetric, untilLeadWindow } from '../../../../operator/src/autoscaler/schedule-lead.js';

describe('schedule lead time', () => {
  it('asks for one replica inside the lead window, none before it, and nothing without a lead or a run', () => {
    assert.equal(scheduleLeadMetric(10_000, 5, 5_000)?.value, 1);
    assert.equal(scheduleLeadMetric(10_000, 5, 4_999)?.value, 0);
    assert.equal(scheduleLeadMetric(10_000, 5, 20_000)?.value, 1, 'an overdue run still wants a worker');
    assert.equal(scheduleLeadMetric(10_000, 0, 9_000), null);
    assert.equal(scheduleLeadMetric(null, 5, 9_000), null);
  });
  it('says when the window opens', () => {
    assert.equal(untilLeadWindow(10_000, 5, 1_000), 4_000);
    assert.equal(untilLeadWindow(10_000, 5, 6_000), null);
  });
});
