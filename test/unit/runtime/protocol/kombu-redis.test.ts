// kombu's Redis layout (runtime/src/protocol/kombu-redis.ts), shared by the Redis broker and the
// operator's redis-list source: the names Python Celery and Flower read.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  bindingKey,
  bindingMember,
  fanoutPrefix,
  listFor,
  LUA_SEP,
  queueLists,
  queueOfList,
  unackedEntry,
  unackedRoutingKey,
} from '../../../../runtime/src/protocol/kombu-redis.js';

describe("kombu's Redis layout", () => {
  it('names the queue and its priority sub-lists, step 0 first', () => {
    assert.deepEqual(queueLists('celery'), ['celery', 'celery\x06\x163', 'celery\x06\x166', 'celery\x06\x169']);
  });

  it('puts a priority in the largest step at or below it (clamped to 0..9)', () => {
    const got = [-1, 0, 2, 3, 5, 6, 8, 9, 12, undefined, 'x'].map((p) => listFor('q', p));
    assert.deepEqual(got, ['q', 'q', 'q', 'q\x06\x163', 'q\x06\x163', 'q\x06\x166', 'q\x06\x166', 'q\x06\x169', 'q\x06\x169', 'q', 'q']);
    assert.equal(queueOfList('q\x06\x166'), 'q');
    assert.equal(queueOfList('q'), 'q');
  });

  it('writes bindings, fanout channels and unacked entries as kombu does', () => {
    assert.equal(bindingKey('celery'), '_kombu.binding.celery');
    assert.equal(bindingMember('celery', 'celery'), 'celery\x06\x16\x06\x16celery');
    assert.equal(fanoutPrefix(15), '/15.');
    const entry = unackedEntry('{"body":"e30="}', '', 'celery');
    assert.deepEqual(JSON.parse(entry), [{ body: 'e30=' }, '', 'celery']);
    assert.equal(unackedRoutingKey(entry), 'celery');
    assert.equal(unackedRoutingKey('not json'), null);
    assert.equal(unackedRoutingKey('{"a":1}'), null);
  });

  it('spells the separator for Lua as decimal escapes', () => {
    assert.equal(LUA_SEP, '\\6\\22');
  });
});
