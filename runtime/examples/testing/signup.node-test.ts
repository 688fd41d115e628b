/**
 * Testing code that sends tasks, with Node's test runner (`node --test`). In your project import
 * from 'celeriac/testing' and your own modules; the suite runs this file
 * (test/unit/examples/testing-examples.test.ts). The vitest version is docs/examples/testing/.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { TaskFailedError } from '../../src/index.js';
import { recordSends, useEagerMode, type EagerMode, type SendRecorder } from '../../src/testing/index.js';
import { app, MailboxError, sendWelcome, signUp } from './signup.js';

describe('signUp: what it sends (no broker, nothing runs)', () => {
  let sent: SendRecorder;
  before(() => {
    sent = recordSends(app, { publish: false });
  });
  after(() => sent.stop());

  it('enqueues one welcome e-mail for the address', async () => {
    const { welcomeTaskId } = await signUp('ada@example.com');
    assert.equal(sent.assertSent('accounts.sendWelcome', { args: ['ada@example.com'] }).id, welcomeTaskId);
  });

  it('sends nothing for a bad address', async () => {
    sent.clear();
    await assert.rejects(signUp('not-an-address'), /not an e-mail address/);
    sent.assertNotSent('accounts.sendWelcome');
  });
});

describe('signUp: eager mode (the task runs in this process)', () => {
  let eager: EagerMode;
  before(async () => {
    eager = await useEagerMode(app);
  });
  after(() => eager.stop());

  it('the welcome task has run when signUp returns', async () => {
    const { welcomeTaskId } = await signUp('bob@example.com');
    assert.equal(await app.asyncResult(welcomeTaskId).get(), 'welcome sent to bob@example.com');
  });

  it("a task's own error reaches the caller", async () => {
    await assert.rejects(sendWelcome.delay('eve@invalid'), MailboxError);
  });
});

describe('signUp: eager mode without propagate (the result holds the failure)', () => {
  let eager: EagerMode;
  before(async () => {
    eager = await useEagerMode(app, { propagate: false });
  });
  after(() => eager.stop());

  it('delay() resolves; get() throws TaskFailedError as for a remote worker', async () => {
    const r = await sendWelcome.delay('eve@invalid');
    assert.equal(await r.state(), 'FAILURE');
    await assert.rejects(r.get(), (err: unknown) => err instanceof TaskFailedError && err.excType === 'MailboxError');
  });
});
