/** kombu's JSON envelope: envelopeText() writes exactly what JSON.stringify(toEnvelope()) writes. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { envelopeText, readEnvelope, toEnvelope } from '../../../../runtime/src/protocol/envelope.js';
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

  it('gives each envelope its own delivery tag', () => {
    const m = message({ priority: 0 });
    assert.notEqual(JSON.parse(envelopeText(m, '', 'q')).properties.delivery_tag, JSON.parse(envelopeText(m, '', 'q')).properties.delivery_tag);
  });
});
