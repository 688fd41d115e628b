// What crosses to and from a pool runner: the wire's value rules, errors with their fields.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Retry } from '../../../../runtime/src/errors.js';
import { crossOutcome, crossRequest, uncrossOutcome, uncrossRequest } from '../../../../runtime/src/pools/crossing.js';
import { exceptionToDict, tracebackOf } from '../../../../runtime/src/protocol/result-meta.js';
import { decodeTask, encodeTask } from '../../../../runtime/src/protocol/task-message.js';
import { acceptedContentTypes } from '../../../../runtime/src/protocol/serializers.js';
import { TimeLimitExceeded } from '../../../../runtime/src/pools/trace.js';

/** Through the serializer and V8's structured clone, as a message to a runner goes. */
const roundTrip = <T>(v: T): T => structuredClone(v);

class Shop extends Error {
  readonly excModule = 'shop.errors';
  readonly sku = 'A-1';
}

describe('crossing to a runner', () => {
  it('arguments arrive as the message carried them, bytes included (msgpack)', () => {
    const wire = encodeTask({ id: 'i', name: 't', args: [Buffer.from('hi'), 1.5, { a: [null] }], kwargs: { k: 'v' }, origin: 'o', serializer: 'msgpack' });
    const req = decodeTask(wire, acceptedContentTypes(['msgpack']));
    const back = uncrossRequest(roundTrip(crossRequest(req, wire.contentType)));
    assert.ok(Buffer.isBuffer(back.args[0]), 'a thread receives a Uint8Array: it must become a Buffer again');
    assert.deepEqual(back.args, req.args);
    assert.deepEqual(back.kwargs, { k: 'v' });
    assert.equal(back.id, 'i');
  });

  it('a datetime argument (kombu 5.3+ tag) reaches the task as a Date, as on the event-loop pool', () => {
    // What Celery 5.3+ sends for add.delay(datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)).
    const body =
      '[[{"__type__": "datetime", "__value__": "2024-01-02T03:04:05+00:00"}], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]';
    const wire = encodeTask({ id: 'i', name: 't', args: [], kwargs: {}, origin: 'o', serializer: 'json' });
    const req = decodeTask({ ...wire, body: Buffer.from(body) }, acceptedContentTypes(['json']));
    assert.ok(req.args[0] instanceof Date, 'the worker decodes the tag as a Date');
    const back = uncrossRequest(roundTrip(crossRequest(req, wire.contentType)));
    assert.ok(back.args[0] instanceof Date, `the runner's task got ${typeof back.args[0]} ${String(back.args[0])}`);
    assert.deepEqual(back.args, req.args);
  });

  it('a result is what JSON carries: no Map, no class, no undefined, toJSON applied; a Date stays a Date until it is stored', () => {
    // The store writes the Date as the config says (ISO text, or the datetime tag with jsonDateTags), as for the event-loop pool.
    const value = { m: new Map([[1, 2]]), d: new Date(0), u: undefined, c: { toJSON: () => 'as json' } };
    const o = uncrossOutcome(roundTrip(crossOutcome({ state: 'SUCCESS', value, runtimeMs: 1 }, 'json')), 'json');
    assert.deepEqual(o, { state: 'SUCCESS', value: { m: {}, d: new Date(0), c: 'as json' }, runtimeMs: 1 });
  });

  it('an error keeps type, module, message, stack and its own fields, so the stored FAILURE is the same', () => {
    for (const err of [Object.assign(new Shop('out of stock'), { name: 'ShopError' }), new TypeError('bad'), new TimeLimitExceeded(500), 'a thrown string']) {
      const o = uncrossOutcome(roundTrip(crossOutcome({ state: 'FAILURE', error: err, runtimeMs: 1 }, 'json')), 'json');
      assert.equal(o.state, 'FAILURE');
      if (o.state !== 'FAILURE') continue;
      assert.deepEqual(exceptionToDict(o.error), exceptionToDict(err));
      assert.equal(tracebackOf(o.error), tracebackOf(err));
      if (err instanceof Shop) assert.equal((o.error as Shop).sku, 'A-1');
    }
  });

  it('a retry keeps its countdown, eta and cause', () => {
    const eta = new Date(1_000_000);
    const o = uncrossOutcome(roundTrip(crossOutcome({ state: 'RETRY', retry: new Retry(5000, new RangeError('later'), eta), runtimeMs: 1 }, 'json')), 'json');
    assert.equal(o.state, 'RETRY');
    if (o.state !== 'RETRY') return;
    assert.ok(o.retry instanceof Retry);
    assert.equal(o.retry.countdownMs, 5000);
    assert.deepEqual(o.retry.eta, eta);
    assert.deepEqual(exceptionToDict(o.retry.exc), exceptionToDict(new RangeError('later')));
    assert.equal(o.retry.message, new Retry(5000, new RangeError('later')).message);
  });
});
