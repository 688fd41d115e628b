// The vitest version of runtime/examples/testing/signup.node-test.ts (which the test suite runs;
// vitest is not installed in this repository, so this file is an example only: copy it, with
// runtime/examples/testing/signup.ts importing from 'celeriac', into a
// project that has vitest). `npx vitest run`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TaskFailedError } from 'celeriac';
import { recordSends, useEagerMode, type EagerMode, type SendRecorder } from 'celeriac/testing';
import { app, MailboxError, sendWelcome, signUp } from './signup.js';

describe('signUp: what it sends (no broker, nothing runs)', () => {
  let sent: SendRecorder;
  beforeAll(() => {
    sent = recordSends(app, { publish: false });
  });
  afterAll(() => sent.stop());

  it('enqueues one welcome e-mail for the address', async () => {
    const { welcomeTaskId } = await signUp('ada@example.com');
    expect(sent.assertSent('accounts.sendWelcome', { args: ['ada@example.com'] }).id).toBe(welcomeTaskId);
  });

  it('sends nothing for a bad address', async () => {
    sent.clear();
    await expect(signUp('not-an-address')).rejects.toThrow(/not an e-mail address/);
    sent.assertNotSent('accounts.sendWelcome');
  });
});

describe('signUp: eager mode (the task runs in this process)', () => {
  let eager: EagerMode;
  beforeAll(async () => {
    eager = await useEagerMode(app);
  });
  afterAll(() => eager.stop());

  it('the welcome task has run when signUp returns', async () => {
    const { welcomeTaskId } = await signUp('bob@example.com');
    expect(await app.asyncResult(welcomeTaskId).get()).toBe('welcome sent to bob@example.com');
  });

  it("a task's own error reaches the caller", async () => {
    await expect(sendWelcome.delay('eve@invalid')).rejects.toBeInstanceOf(MailboxError);
  });
});

describe('signUp: eager mode without propagate (the result holds the failure)', () => {
  let eager: EagerMode;
  beforeAll(async () => {
    eager = await useEagerMode(app, { propagate: false });
  });
  afterAll(() => eager.stop());

  it('delay() resolves; get() throws TaskFailedError as for a remote worker', async () => {
    const r = await sendWelcome.delay('eve@invalid');
    await expect(r.get()).rejects.toBeInstanceOf(TaskFailedError);
    await expect(r.get()).rejects.toMatchObject({ excType: 'MailboxError' });
  });
});
