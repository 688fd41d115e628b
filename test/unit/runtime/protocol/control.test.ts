// Remote-control wire format (spec §7, TV8) and the CLI's mapping of positional arguments.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeControl, decodeReply, encodeControl, encodeReply, isAddressedTo, type ControlRequest } from '../../../../runtime/src/protocol/control.js';
import { commandArguments } from '../../../../runtime/src/cli/commands/control.js';
import { BUILTIN_COMMANDS } from '../../../../runtime/src/control/commands.js';

const TV8_REQUEST =
  'eyJtZXRob2QiOiAicGluZyIsICJhcmd1bWVudHMiOiB7fSwgImRlc3RpbmF0aW9uIjogbnVsbCwgInBhdHRlcm4iOiBudWxsLCAibWF0Y2hlciI6IG51bGwsICJ0aWNrZXQiOiAiN2U3ZTdlN2UtMDAwMC00MDAwLTgwMDAtMDAwMDAwMDAwMDAxIiwgInJlcGx5X3RvIjogeyJleGNoYW5nZSI6ICJyZXBseS5jZWxlcnkucGlkYm94IiwgInJvdXRpbmdfa2V5IjogIjBjMGMwYzBjLTAwMDAtMzAwMC04MDAwLTAwMDAwMDAwMDAwMSJ9fQ==';
const TV8_REPLY = 'eyJjZWxlcnlAd29ya2VyMSI6IHsib2siOiAicG9uZyJ9fQ==';
const json = (body: string, headers: Record<string, unknown>) => ({
  body: Buffer.from(body, 'base64'),
  contentType: 'application/json',
  contentEncoding: 'utf-8',
  headers,
  properties: {},
});

describe('remote-control messages', () => {
  it("reads TV8's ping request and writes a reply Python reads as TV8's", () => {
    const req = decodeControl(json(TV8_REQUEST, { clock: 1, expires: 1735732801.0 }));
    assert.equal(req.method, 'ping');
    assert.equal(req.ticket, '7e7e7e7e-0000-4000-8000-000000000001');
    assert.deepEqual(req.reply_to, { exchange: 'reply.celery.pidbox', routing_key: '0c0c0c0c-0000-3000-8000-000000000001' });
    const reply = encodeReply('celery@worker1', { ok: 'pong' }, req.ticket, 3);
    assert.deepEqual(JSON.parse(reply.body.toString()), JSON.parse(Buffer.from(TV8_REPLY, 'base64').toString()));
    assert.deepEqual(reply.headers, { ticket: req.ticket, clock: 3 });
    assert.equal(reply.properties.delivery_mode, 1);
    assert.deepEqual(decodeReply(json(TV8_REPLY, { ticket: 't', clock: 3 })), { ticket: 't', clock: 3, body: { 'celery@worker1': { ok: 'pong' } } });
  });

  it('a request without a reply wanted carries no ticket and no reply_to', () => {
    const body = JSON.parse(encodeControl('revoke', { task_id: 'x' }).body.toString());
    assert.equal('ticket' in body, false);
    assert.equal('reply_to' in body, false);
    const asked = JSON.parse(encodeControl('ping', {}, { replyTo: 'oid', ticket: 'tk', destination: ['a@b'] }).body.toString());
    assert.deepEqual(asked, {
      method: 'ping',
      arguments: {},
      destination: ['a@b'],
      pattern: null,
      matcher: null,
      ticket: 'tk',
      reply_to: { exchange: 'reply.celery.pidbox', routing_key: 'oid' },
    });
  });

  it('addresses by destination, else by glob or pcre pattern, else everyone', () => {
    const req = (o: Partial<ControlRequest>): ControlRequest => ({
      method: 'ping',
      arguments: {},
      destination: null,
      pattern: null,
      matcher: null,
      ticket: null,
      reply_to: null,
      ...o,
    });
    assert.equal(isAddressedTo(req({}), 'w1@h'), true);
    assert.equal(isAddressedTo(req({ destination: ['w2@h'] }), 'w1@h'), false);
    assert.equal(isAddressedTo(req({ destination: [] }), 'w1@h'), true);
    assert.equal(isAddressedTo(req({ pattern: 'w*@h', matcher: 'glob' }), 'w1@h'), true);
    assert.equal(isAddressedTo(req({ pattern: 'w?@x', matcher: 'glob' }), 'w1@h'), false);
    assert.equal(isAddressedTo(req({ pattern: 'w\\d', matcher: 'pcre' }), 'w1@h'), true);
    assert.equal(isAddressedTo(req({ pattern: 'w*', matcher: null }), 'x@h'), true, 'a pattern without a matcher is ignored, as Celery');
  });
});

describe('CLI arguments of a command (Celery _compile_arguments)', () => {
  const spec = (n: string) => BUILTIN_COMMANDS.get(n)!;
  it('maps positional words onto declared, typed arguments, the rest into the variadic one', () => {
    assert.deepEqual(commandArguments('rate_limit', spec('rate_limit'), ['t', '10/m']), { task_name: 't', rate_limit: '10/m' });
    assert.deepEqual(commandArguments('time_limit', spec('time_limit'), ['t', '10', '20']), { task_name: 't', soft: 10, hard: 20 });
    assert.deepEqual(commandArguments('revoke', spec('revoke'), ['a', 'b']), { task_id: ['a', 'b'] });
    assert.deepEqual(commandArguments('query_task', spec('query_task'), ['x']), { ids: ['x'] });
    assert.deepEqual(commandArguments('pool_grow', spec('pool_grow'), []), {});
  });
  it('refuses a word that is not a number where one is declared, and extra words', () => {
    assert.throws(() => commandArguments('pool_grow', spec('pool_grow'), ['two']), /argument n: expected an integer/);
    assert.throws(() => commandArguments('ping', spec('ping'), ['x']), /ping takes at most 0 argument/);
  });
});
