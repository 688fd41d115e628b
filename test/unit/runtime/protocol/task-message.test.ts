// The wire spec's test vectors (../shared/spec/celery-wire.md §9) and the codec's edge cases.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeTask, encodeTask, isoUtc, parseIsoTime } from '../../../../runtime/src/protocol/task-message.js';
import { pyRepr } from '../../../../runtime/src/protocol/py-repr.js';
import { fromEnvelope, parseEnvelope, toEnvelope } from '../../../../runtime/src/protocol/envelope.js';
import { acceptedContentTypes, serializerByName } from '../../../../runtime/src/protocol/serializers.js';
import { buildMeta, exceptionToDict, withExtendedMeta } from '../../../../runtime/src/protocol/result-meta.js';
import { ContentDisallowedError, ProtocolError } from '../../../../runtime/src/errors.js';
import type { WireMessage } from '../../../../runtime/src/protocol/wire-message.js';

const JSON_ONLY = acceptedContentTypes(['json']);
const ALL = acceptedContentTypes(['json', 'msgpack', 'yaml']);

const TV1 = `{"body": "W1syLCAzXSwge30sIHsiY2FsbGJhY2tzIjogbnVsbCwgImVycmJhY2tzIjogbnVsbCwgImNoYWluIjogbnVsbCwgImNob3JkIjogbnVsbH1d",
 "content-encoding": "utf-8", "content-type": "application/json",
 "headers": {"lang": "py", "task": "proj.tasks.add", "id": "11111111-1111-4111-8111-111111111111",
   "shadow": null, "eta": null, "expires": null, "group": null, "group_index": null, "retries": 0,
   "timelimit": [null, null], "root_id": "11111111-1111-4111-8111-111111111111", "parent_id": null,
   "argsrepr": "(2, 3)", "kwargsrepr": "{}", "origin": "gen4242@client1", "ignore_result": false},
 "properties": {"correlation_id": "11111111-1111-4111-8111-111111111111",
   "reply_to": "f0f0f0f0-0000-3000-8000-000000000001", "delivery_mode": 2,
   "delivery_info": {"exchange": "", "routing_key": "celery"}, "priority": 0,
   "body_encoding": "base64", "delivery_tag": "dddddddd-0000-4000-8000-000000000001"}}`;

const TV3_BODY =
  'W1sxLCAyXSwge30sIHsiY2FsbGJhY2tzIjogbnVsbCwgImVycmJhY2tzIjogbnVsbCwgImNoYWluIjogW3sidGFzayI6ICJwcm9qLnRhc2tzLmFkZCIsICJhcmdzIjogWzRdLCAia3dhcmdzIjoge30sICJvcHRpb25zIjogeyJ0YXNrX2lkIjogImMwMDAwMDAwLTAwMDAtNDAwMC04MDAwLTAwMDAwMDAwMDAwMyIsICJyZXBseV90byI6ICJmMGYwZjBmMC0wMDAwLTMwMDAtODAwMC0wMDAwMDAwMDAwMDEifSwgInN1YnRhc2tfdHlwZSI6IG51bGwsICJpbW11dGFibGUiOiBmYWxzZX0sIHsidGFzayI6ICJwcm9qLnRhc2tzLmFkZCIsICJhcmdzIjogWzNdLCAia3dhcmdzIjoge30sICJvcHRpb25zIjogeyJ0YXNrX2lkIjogImMwMDAwMDAwLTAwMDAtNDAwMC04MDAwLTAwMDAwMDAwMDAwMiIsICJyZXBseV90byI6ICJmMGYwZjBmMC0wMDAwLTMwMDAtODAwMC0wMDAwMDAwMDAwMDEifSwgInN1YnRhc2tfdHlwZSI6IG51bGwsICJpbW11dGFibGUiOiBmYWxzZX1dLCAiY2hvcmQiOiBudWxsfV0=';
const TV4_BODY =
  'W1sxLCAxXSwge30sIHsiY2FsbGJhY2tzIjogbnVsbCwgImVycmJhY2tzIjogbnVsbCwgImNoYWluIjogbnVsbCwgImNob3JkIjogeyJ0YXNrIjogInByb2oudGFza3MudHN1bSIsICJhcmdzIjogW10sICJrd2FyZ3MiOiB7fSwgIm9wdGlvbnMiOiB7InRhc2tfaWQiOiAiZDAwMDAwMDAtMDAwMC00MDAwLTgwMDAtMDAwMDAwMDAwMGZmIiwgInJlcGx5X3RvIjogImYwZjBmMGYwLTAwMDAtMzAwMC04MDAwLTAwMDAwMDAwMDAwMSJ9LCAic3VidGFza190eXBlIjogbnVsbCwgImltbXV0YWJsZSI6IGZhbHNlfX1d';
const TV9_BODY = 'eJyLjjbSUTCO1VGorgVipeTEnJykxOTsYiUrhbzSnBwdBaXUoiI0keSMxMw8ZG5+UQqUWxsLAApsGfI=';

function withBody(body: string, headers: Record<string, unknown> = {}): WireMessage {
  const env = parseEnvelope(TV1);
  return { ...fromEnvelope(env), body: Buffer.from(body, 'base64'), headers: { ...env.headers, ...headers } };
}

describe('protocol: the spec test vectors', () => {
  it('TV1: decodes a Celery 5.2 plain task from its Redis envelope', () => {
    const req = decodeTask(fromEnvelope(parseEnvelope(TV1)), JSON_ONLY);
    assert.equal(req.protocol, 2);
    assert.equal(req.name, 'proj.tasks.add');
    assert.equal(req.id, '11111111-1111-4111-8111-111111111111');
    assert.deepEqual(req.args, [2, 3]);
    assert.deepEqual(req.kwargs, {});
    assert.deepEqual(req.embed, { callbacks: null, errbacks: null, chain: null, chord: null });
    assert.equal(req.rootId, req.id);
    assert.equal(req.parentId, null);
    assert.equal(req.replyTo, 'f0f0f0f0-0000-3000-8000-000000000001');
    assert.deepEqual(req.timelimit, [null, null]);
    assert.equal(req.retries, 0);
    assert.equal(req.origin, 'gen4242@client1');
  });

  it('TV1: a message we encode has every 5.2 header and the same decoded body', () => {
    const m = encodeTask({
      id: '11111111-1111-4111-8111-111111111111',
      name: 'proj.tasks.add',
      args: [2, 3],
      kwargs: {},
      origin: 'gen4242@client1',
      replyTo: 'f0f0f0f0-0000-3000-8000-000000000001',
      serializer: 'json',
    });
    const tv1 = parseEnvelope(TV1);
    for (const k of Object.keys(tv1.headers)) assert.ok(k in m.headers, `header ${k} is written`);
    for (const k of [
      'lang',
      'task',
      'id',
      'shadow',
      'eta',
      'expires',
      'group',
      'group_index',
      'retries',
      'timelimit',
      'root_id',
      'parent_id',
      'argsrepr',
      'kwargsrepr',
      'origin',
      'ignore_result',
    ]) {
      assert.deepEqual(m.headers[k], tv1.headers[k], `header ${k}`);
    }
    assert.deepEqual(JSON.parse(m.body.toString()), JSON.parse(Buffer.from(tv1.body, 'base64').toString()));
    assert.equal(m.properties.correlation_id, tv1.properties.correlation_id);
    assert.equal(m.properties.delivery_mode, 2);
    assert.equal(m.properties.priority, 0);
    // Through our envelope and back, as the Redis and file brokers store it.
    const round = fromEnvelope(parseEnvelope(JSON.stringify(toEnvelope(m, '', 'celery'))));
    assert.deepEqual(decodeTask(round, JSON_ONLY).args, [2, 3]);
  });

  it('TV2 variant: countdown/expires/time limits map to eta, expires, [hard, soft] and expiration', () => {
    const now = Date.now();
    const m = encodeTask({
      id: 'x',
      name: 'proj.tasks.add',
      args: [2, 3],
      kwargs: {},
      origin: 'o',
      eta: new Date(now + 10_000),
      expires: new Date(now + 60_000),
      timelimit: [10, 5],
      priority: 5,
      serializer: 'json',
    });
    assert.deepEqual(m.headers.timelimit, [10, 5]);
    assert.match(String(m.headers.eta), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$/);
    assert.equal(m.properties.priority, 5);
    const exp = Number(m.properties.expiration);
    assert.ok(exp > 59_000 && exp <= 60_000, `expiration ${exp} ms`);
    const req = decodeTask(m, JSON_ONLY);
    assert.equal(req.eta?.getTime(), now + 10_000);
    assert.deepEqual(req.timelimit, [10, 5]);
  });

  it('TV3: a chain carries the rest reversed, each frozen with its task id', () => {
    const req = decodeTask(withBody(TV3_BODY), JSON_ONLY);
    assert.deepEqual(req.args, [1, 2]);
    assert.equal(req.embed.chain?.length, 2);
    assert.equal(req.embed.chain?.[1]?.options.task_id, 'c0000000-0000-4000-8000-000000000002');
    assert.deepEqual(req.embed.chain?.[0]?.args, [4]);
  });

  it('TV4: a chord header task carries the frozen body signature', () => {
    const req = decodeTask(withBody(TV4_BODY, { group: '9f9f9f9f-0000-4000-8000-000000000000', group_index: 0 }), JSON_ONLY);
    assert.equal(req.embed.chord?.task, 'proj.tasks.tsum');
    assert.equal(req.embed.chord?.options.task_id, 'd0000000-0000-4000-8000-0000000000ff');
    assert.equal(req.group, '9f9f9f9f-0000-4000-8000-000000000000');
    assert.equal(req.groupIndex, 0);
  });

  it('TV5: result meta fields in Celery order, task_id last', () => {
    const meta = buildMeta('11111111-1111-4111-8111-111111111111', 'SUCCESS', 5);
    assert.deepEqual(Object.keys(meta), ['status', 'result', 'traceback', 'children', 'date_done', 'task_id']);
    assert.equal(meta.result, 5);
    assert.match(String(meta.date_done), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$/);
    assert.equal(buildMeta('x', 'STARTED', { pid: 1, hostname: 'h' }).date_done, null);
    const failed = buildMeta('d1', 'FAILURE', exceptionToDict(Object.assign(new Error('bad value'), { name: 'ValueError' })), { groupId: 'g' });
    assert.deepEqual(failed.result, { exc_type: 'ValueError', exc_message: ['bad value'], exc_module: 'builtins' });
    assert.equal(failed.group_id, 'g');
    assert.equal(Object.keys(failed).at(-1), 'task_id');
  });

  it('TV5 with result_extended: name, args, kwargs, worker, retries, queue before task_id', () => {
    const meta = withExtendedMeta(buildMeta('11111111-1111-4111-8111-111111111111', 'SUCCESS', 5, { parentId: 'p' }), {
      name: 'proj.tasks.add',
      args: [2, 3],
      kwargs: {},
      worker: 'celery@worker1',
      retries: 0,
      queue: 'celery',
    });
    assert.deepEqual(Object.keys(meta), [
      'status',
      'result',
      'traceback',
      'children',
      'date_done',
      'parent_id',
      'name',
      'args',
      'kwargs',
      'worker',
      'retries',
      'queue',
      'task_id',
    ]);
    assert.deepEqual([meta.name, meta.args, meta.kwargs, meta.worker, meta.retries, meta.queue], ['proj.tasks.add', [2, 3], {}, 'celery@worker1', 0, 'celery']);
  });

  it('TV9: inflates a zlib-compressed body (header application/x-gzip)', () => {
    const req = decodeTask(withBody(TV9_BODY, { compression: 'application/x-gzip', id: '33333333-3333-4333-8333-333333333333' }), JSON_ONLY);
    assert.deepEqual(req.args, [2, 3]);
  });

  it('compresses and decompresses with zlib and brotli', () => {
    for (const compression of ['zlib', 'brotli'] as const) {
      const m = encodeTask({ id: 'c', name: 't', args: ['x'.repeat(1000)], kwargs: {}, origin: 'o', serializer: 'json', compression });
      assert.ok(m.body.length < 200, `${compression} body is compressed`);
      assert.equal(decodeTask(m, JSON_ONLY).args[0], 'x'.repeat(1000));
    }
  });
});

describe('protocol: serializers and content types', () => {
  it('msgpack and yaml round-trip args and kwargs', () => {
    for (const serializer of ['msgpack', 'yaml'] as const) {
      const m = encodeTask({ id: 'm', name: 't', args: [1, 'two', [3.5], { four: null }], kwargs: { k: true }, origin: 'o', serializer });
      const req = decodeTask(m, ALL);
      assert.deepEqual(req.args, [1, 'two', [3.5], { four: null }], serializer);
      assert.deepEqual(req.kwargs, { k: true });
    }
  });

  it('refuses pickle with an error that says why', () => {
    const m: WireMessage = {
      body: Buffer.from([0x80, 0x04]),
      contentType: 'application/x-python-serialize',
      contentEncoding: 'binary',
      headers: { task: 't', id: 'i' },
      properties: {},
    };
    assert.throws(
      () => decodeTask(m, ALL),
      (err: unknown) => err instanceof ContentDisallowedError && /pickle/.test(err.message),
    );
    assert.throws(() => serializerByName('pickle'), ContentDisallowedError);
  });

  it('refuses a content type outside accept_content, naming what is accepted', () => {
    const m = encodeTask({ id: 'y', name: 't', args: [], kwargs: {}, origin: 'o', serializer: 'yaml' });
    assert.throws(() => decodeTask(m, JSON_ONLY), /application\/x-yaml.*not accepted.*application\/json/);
  });

  it('decodes kombu >= 5.3 JSON tags', () => {
    const body = JSON.stringify([
      [
        { __type__: 'datetime', __value__: '2024-01-02T03:04:05.000678+00:00' },
        { __type__: 'uuid', __value__: { hex: '12345678123456781234567812345678' } },
        { __type__: 'base64', __value__: 'AAE=' },
        { __type__: 'decimal', __value__: '1.10' },
      ],
      {},
      null,
    ]);
    const req = decodeTask(
      { body: Buffer.from(body), contentType: 'application/json', contentEncoding: 'utf-8', headers: { task: 't', id: 'i' }, properties: {} },
      JSON_ONLY,
    );
    assert.equal((req.args[0] as Date).toISOString(), '2024-01-02T03:04:05.000Z');
    assert.equal(req.args[1], '12345678-1234-5678-1234-567812345678');
    assert.deepEqual(req.args[2], Buffer.from([0, 1]));
    assert.equal(req.args[3], '1.10');
  });

  it('rejects malformed bodies with a ProtocolError naming the problem', () => {
    const bad =
      (body: string, headers: Record<string, unknown> = { task: 't', id: 'i' }) =>
      () =>
        decodeTask({ body: Buffer.from(body), contentType: 'application/json', contentEncoding: 'utf-8', headers, properties: {} }, JSON_ONLY);
    assert.throws(bad('{not json'), (e: unknown) => e instanceof ProtocolError && /Cannot decode application\/json/.test(e.message));
    assert.throws(bad('[1, {}, null]'), /args must be a list/);
    assert.throws(bad('[[], [], null]'), /kwargs must be a mapping/);
    assert.throws(bad('"x"'), /\[args, kwargs, embed\]/);
    assert.throws(bad('[[], {}, null]', { task: 't' }), /no "id" header/);
    assert.throws(bad('{"foo": 1}', {}), /Unknown message/);
  });
});

describe('protocol: v1 and hybrid messages (accept-only)', () => {
  it('reads a protocol v1 dict body, taskset as group', () => {
    const body = {
      task: 'proj.tasks.add',
      id: 'v1-id',
      args: [1, 2],
      kwargs: { z: 1 },
      retries: 2,
      eta: '2025-01-01T12:00:05.385002+00:00',
      expires: null,
      utc: true,
      callbacks: null,
      errbacks: null,
      timelimit: [null, null],
      taskset: 'gs',
      chord: null,
    };
    const req = decodeTask(
      { body: Buffer.from(JSON.stringify(body)), contentType: 'application/json', contentEncoding: 'utf-8', headers: {}, properties: {} },
      JSON_ONLY,
    );
    assert.equal(req.protocol, 1);
    assert.equal(req.name, 'proj.tasks.add');
    assert.deepEqual(req.args, [1, 2]);
    assert.deepEqual(req.kwargs, { z: 1 });
    assert.equal(req.retries, 2);
    assert.equal(req.group, 'gs');
    assert.equal(req.eta?.toISOString(), '2025-01-01T12:00:05.385Z');
  });

  it('merges hybrid headers over the v1 body', () => {
    const body = { task: 'a', id: 'h', args: [], kwargs: {} };
    const req = decodeTask(
      { body: Buffer.from(JSON.stringify(body)), contentType: 'application/json', contentEncoding: 'utf-8', headers: { retries: 4 }, properties: {} },
      JSON_ONLY,
    );
    assert.equal(req.retries, 4);
  });
});

describe('protocol: times and reprs', () => {
  it('reads naive times as UTC and keeps offsets', () => {
    assert.equal(parseIsoTime('2025-01-01T12:00:10.815867', 'eta')?.toISOString(), '2025-01-01T12:00:10.815Z');
    assert.equal(parseIsoTime('2025-01-01T14:00:10+02:00', 'eta')?.toISOString(), '2025-01-01T12:00:10.000Z');
    assert.throws(() => parseIsoTime('tomorrow', 'eta'), /not a valid ISO-8601/);
    assert.equal(isoUtc(new Date('2025-01-01T12:00:10.815Z')), '2025-01-01T12:00:10.815000+00:00');
  });

  it("writes Python's repr for argsrepr", () => {
    assert.equal(pyRepr([1, 'a', null, true, { k: [1.5] }]), "[1, 'a', None, True, {'k': [1.5]}]");
    const m = encodeTask({ id: 'r', name: 't', args: [1], kwargs: {}, origin: 'o', serializer: 'json' });
    assert.equal(m.headers.argsrepr, '(1,)');
  });
});
