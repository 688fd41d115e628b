/** kombu's JSON envelope: envelopeText() writes exactly what JSON.stringify(toEnvelope()) writes. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { envelopeText, readEnvelope, toEnvelope } from '../../../../runtime/src/protocol/envelope.js';
import { encodeTask, type TaskMessageInput } from '../../../../runtime/src/protocol/task-message.js';
import { serializerByName } from '../../../../runtime/src/protocol/serializers.js';
import type { WireMessage } from '../../../../runtime/src/protocol/wire-message.js';

/** The envelope text with its (random) delivery tag blanked. */
const untagged = (text: string) => text.replace(/"delivery_tag":"[^"]*"/, '"delivery_tag":"-"');

const message = (properties: Record<string, unknown>, headers: Record<string, unknown> = { task: 't', id: 'i', 'ünï"\\': [1, { a: null }] }): WireMessage => ({
  body: Buffer.from([0, 1, 2, 250, 251, 255]),
  contentType: 'application/x-test "quoted"',
  contentEncoding: 'binary',
  headers,
  properties,
});

describe('envelopeText', () => {
  const cases: [string, WireMessage][] = [
    ['properties as a producer sets them', message({ correlation_id: 'c', reply_to: 'r', delivery_mode: 2, priority: 5 })],
    ['no properties', message({})],
    ['a property left undefined', message({ priority: undefined, reply_to: 'r' })],
    [
      'properties already holding envelope keys (a message taken from an envelope)',
      message({ delivery_tag: 'old', delivery_info: { exchange: 'x' }, priority: 0 }),
    ],
    ['empty headers', message({ priority: 0 }, {})],
  ];
  for (const [name, m] of cases) {
    it(`writes what JSON.stringify(toEnvelope()) writes: ${name}`, () => {
      for (const [exchange, routingKey] of [
        ['', 'celery'],
        ['ex"1', 'rk\\ü'],
      ] as const) {
        const text = envelopeText(m, exchange, routingKey);
        assert.equal(untagged(text), untagged(JSON.stringify(toEnvelope(m, exchange, routingKey))));
        const read = readEnvelope(text);
        assert.ok(read.env, 'reads back as an envelope');
        assert.match(read.env.properties.delivery_tag!, /^[0-9a-f-]{36}$/);
        assert.deepEqual(read.message.body, m.body);
      }
    });
  }

  // encodeTask's headers are written from a template and its JSON body's null embed from a constant:
  // the same bytes as the generic forms, whatever the values.
  const task = (o: Partial<TaskMessageInput>): WireMessage =>
    encodeTask({ id: 'a-1', name: 'proj.add', args: [1, 2], kwargs: {}, origin: 'gen1@h', serializer: 'json', ...o });
  const tasks: [string, WireMessage][] = [
    ['a plain call', task({})],
    [
      'every header set',
      task({
        eta: new Date(0),
        expires: new Date(1e12),
        group: 'g',
        groupIndex: 3,
        retries: 2,
        timelimit: [10, 5],
        parentId: 'p',
        rootId: 'r',
        shadow: 's',
        ignoreResult: true,
        replyTo: 'rq',
        priority: 9,
      }),
    ],
    [
      'text to escape',
      task({ name: 'ü"\\\n\u2028', args: ['\ud800', 'é', '\'"', 'x'.repeat(300)], kwargs: { 'k"': [null, { a: 1.5e300 }], n: -0 }, origin: '\u0001' }),
    ],
    ['a timelimit with one side', task({ timelimit: [null, 2.5] })],
    ['user headers', task({ headers: { custom: [1, 'two'], lang: 'js' } })],
    ['values the template does not expect', task({ retries: undefined, groupIndex: undefined })],
    ['a body with special values', task({ args: [1n << 70n, NaN, Buffer.from([255])], kwargs: { d: new Date(5) }, dateTags: true })],
  ];
  for (const [name, m] of tasks) {
    it(`writes a task message as JSON.stringify(toEnvelope()) does: ${name}`, () => {
      assert.equal(untagged(envelopeText(m, '', 'q')), untagged(JSON.stringify(toEnvelope(m, '', 'q'))));
    });
  }
  it('writes the JSON body dumps() writes', () => {
    const input = { args: [1n << 70n, 'é', { a: [null] }], kwargs: { d: new Date(5), b: Buffer.from('x') }, dateTags: true };
    const embed = { callbacks: null, errbacks: null, chain: null, chord: null };
    assert.deepEqual(task(input).body, serializerByName('json').dumps([input.args, input.kwargs, embed], { dateTags: true }));
    assert.deepEqual(task({}).body, serializerByName('json').dumps([[1, 2], {}, embed]));
  });

  it('gives each envelope its own delivery tag', () => {
    const m = message({ priority: 0 });
    assert.notEqual(JSON.parse(envelopeText(m, '', 'q')).properties.delivery_tag, JSON.parse(envelopeText(m, '', 'q')).properties.delivery_tag);
  });
});
