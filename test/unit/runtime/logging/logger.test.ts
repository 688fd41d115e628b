// The logger's last line of defence for credentials: URLs anywhere in a line lose their password,
// and an ioredis AUTH error (which carries the password in command.args) is logged without it.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { redactText, redactUrl } from '../../../../runtime/src/errors.js';
import { createLogger } from '../../../../runtime/src/logging/logger.js';

function capture(): { log: ReturnType<typeof createLogger>; text: () => string } {
  const out = new PassThrough();
  let text = '';
  out.on('data', (b: Buffer) => (text += b.toString()));
  return { log: createLogger({ level: 'debug', destination: out }), text: () => text };
}

describe('redactText', () => {
  it('hides the password of every URL in a text, keeps the rest', () => {
    assert.equal(
      redactText('from redis://:pw1@h:6379/0 to amqp://user:p%40ss@rabbit:5672/vh and rediss://u:x@h2'),
      'from redis://:***@h:6379/0 to amqp://user:***@rabbit:5672/vh and rediss://u:***@h2',
    );
    assert.equal(redactText('no url here: user:pw@host'), 'no url here: user:pw@host');
    assert.equal(redactText('redis://host:6379/0'), 'redis://host:6379/0');
    assert.equal(redactUrl('amqp://guest:guest@localhost:5672//'), 'amqp://guest:***@localhost:5672//');
  });
});

describe('createLogger redaction', () => {
  it('scrubs a URL password from messages, fields and error messages', () => {
    const { log, text } = capture();
    log.info({ broker: 'redis://:topsecret@h:1/0' }, 'connecting to amqp://u:topsecret@h');
    log.error({ err: new Error('cannot reach redis://:topsecret@h:1/0') }, 'failed');
    assert.ok(!text().includes('topsecret'), text());
    assert.match(text(), /redis:\/\/:\*\*\*@h:1\/0/);
  });

  it('logs an AUTH error without the password in its command args', () => {
    const { log, text } = capture();
    const err = Object.assign(new Error('WRONGPASS invalid username-password pair'), { command: { name: 'auth', args: ['topsecret'] } });
    log.warn({ err }, 'auth failed');
    const line = JSON.parse(text()) as { err: { command: { name: string; args: unknown }; message: string } };
    assert.equal(line.err.command.name, 'auth');
    assert.equal(line.err.command.args, '[redacted]');
    assert.equal(line.err.message, 'WRONGPASS invalid username-password pair');
    // Other commands keep their arguments (they help debugging and hold no credentials).
    const other = capture();
    other.log.warn({ err: Object.assign(new Error('WRONGTYPE'), { command: { name: 'lpush', args: ['q', 'x'] } }) }, 'x');
    assert.deepEqual((JSON.parse(other.text()) as { err: { command: { args: unknown } } }).err.command.args, ['q', 'x']);
  });
});

describe('createLogger errors', () => {
  it("names an error by its name (a task's ZeroDivisionError), not by its constructor (Error)", () => {
    const { log, text } = capture();
    log.error({ err: Object.assign(new Error('division by zero'), { name: 'ZeroDivisionError' }) }, 'task failed');
    assert.equal((JSON.parse(text()) as { err: { type: string } }).err.type, 'ZeroDivisionError');
  });
});
