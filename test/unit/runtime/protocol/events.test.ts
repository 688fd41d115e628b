// Celery events on the wire (runtime/src/protocol/events.ts) against the spec's test vector TV6.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeEvents, encodeEvents, eventGroup, eventRoutingKey, utcOffsetHours, type CeleryEvent } from '../../../../runtime/src/protocol/events.js';
import { pyRepr, pyReprLimited } from '../../../../runtime/src/protocol/py-repr.js';
import { exceptionRepr } from '../../../../runtime/src/protocol/result-meta.js';

// TV6: task-succeeded on Redis, single and batched (task.multi) forms.
const TV6_BODY =
  'eyJob3N0bmFtZSI6ICJjZWxlcnlAd29ya2VyMSIsICJ1dGNvZmZzZXQiOiAwLCAicGlkIjogNDI0MywgImNsb2NrIjogMTcsICJ1dWlkIjogIjExMTExMTExLTExMTEtNDExMS04MTExLTExMTExMTExMTExMSIsICJyZXN1bHQiOiAiNSIsICJydW50aW1lIjogMC4wMTIzLCAidGltZXN0YW1wIjogMTczNTczMjgwMC41LCAidHlwZSI6ICJ0YXNrLXN1Y2NlZWRlZCJ9';
const TV6_MULTI =
  'W3siaG9zdG5hbWUiOiAiY2VsZXJ5QHdvcmtlcjEiLCAidXRjb2Zmc2V0IjogMCwgInBpZCI6IDQyNDMsICJjbG9jayI6IDE3LCAidXVpZCI6ICIxMTExMTExMS0xMTExLTQxMTEtODExMS0xMTExMTExMTExMTEiLCAicmVzdWx0IjogIjUiLCAicnVudGltZSI6IDAuMDEyMywgInRpbWVzdGFtcCI6IDE3MzU3MzI4MDAuNSwgInR5cGUiOiAidGFzay1zdWNjZWVkZWQifV0=';
const TV6_EVENT: CeleryEvent = {
  hostname: 'celery@worker1',
  utcoffset: 0,
  pid: 4243,
  clock: 17,
  uuid: '11111111-1111-4111-8111-111111111111',
  result: '5',
  runtime: 0.0123,
  timestamp: 1735732800.5,
  type: 'task-succeeded',
};
const message = (b64: string) => ({ body: Buffer.from(b64, 'base64'), contentType: 'application/json', contentEncoding: 'utf-8', headers: {}, properties: {} });

describe('protocol/events', () => {
  it('decodes TV6 in the single and the task.multi form', () => {
    assert.deepEqual(decodeEvents(message(TV6_BODY)), [TV6_EVENT]);
    assert.deepEqual(decodeEvents(message(TV6_MULTI)), [TV6_EVENT]);
  });

  it("encodes one event with its type's routing key, headers {hostname} and delivery_mode 1", () => {
    const { message: m, routingKey } = encodeEvents(TV6_EVENT);
    assert.equal(routingKey, 'task.succeeded');
    assert.deepEqual(m.headers, { hostname: 'celery@worker1' });
    assert.equal(m.properties.delivery_mode, 1);
    assert.equal(m.contentType, 'application/json');
    assert.deepEqual(JSON.parse(m.body.toString()), TV6_EVENT);
  });

  it('encodes a batch as an array with routing key <group>.multi', () => {
    const { message: m, routingKey } = encodeEvents([TV6_EVENT, { ...TV6_EVENT, clock: 18 }]);
    assert.equal(routingKey, 'task.multi');
    assert.equal(JSON.parse(m.body.toString()).length, 2);
  });

  it('refuses a body that is not an event', () => {
    assert.throws(() => decodeEvents(message(Buffer.from('{"no": "type"}').toString('base64'))), /not an event/);
    assert.throws(() => decodeEvents(message(Buffer.from('[1]').toString('base64'))), /not an event/);
  });

  it('names groups and routing keys as Celery does', () => {
    assert.equal(eventGroup('worker-heartbeat'), 'worker');
    assert.equal(eventRoutingKey('worker-heartbeat'), 'worker.heartbeat');
  });

  it('gives the UTC offset in hours west, floored', () => {
    assert.equal(utcOffsetHours({ getTimezoneOffset: () => 0 } as Date), 0);
    assert.equal(utcOffsetHours({ getTimezoneOffset: () => -120 } as Date), -2); // CEST
    assert.equal(utcOffsetHours({ getTimezoneOffset: () => -330 } as Date), -6); // IST, floor(-5.5)
  });
});

describe('protocol/py-repr', () => {
  it("writes Python's repr of JSON values", () => {
    assert.equal(pyRepr([1, 'a', null, true, { k: [1.5] }]), "[1, 'a', None, True, {'k': [1.5]}]");
    assert.equal(pyRepr("it's"), '"it\'s"');
    assert.equal(pyRepr('a\nb'), "'a\\nb'");
  });

  it('truncates long reprs as saferepr does with resultrepr_maxsize', () => {
    const r = pyReprLimited('x'.repeat(2000));
    assert.equal(r.length, 1024);
    assert.ok(r.endsWith('...'));
  });

  it('writes an exception dict as Type(args)', () => {
    assert.equal(exceptionRepr({ exc_type: 'ValueError', exc_message: ['bad value', 7], exc_module: 'builtins' }), "ValueError('bad value', 7)");
  });
});
