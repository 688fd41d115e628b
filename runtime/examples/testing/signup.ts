/**
 * Code under test for the testing examples: a sign-up that enqueues a welcome e-mail. Its app
 * points at a Redis server that the unit tests never need (celeriac/testing keeps them off it).
 */
import { createApp } from '../../src/index.js';

export const app = createApp({ name: 'accounts', broker: 'redis://localhost:6379/0', backend: 'redis://localhost:6379/0' });

/** The welcome task's own error: eager mode (propagate) rejects with this very object. */
export class MailboxError extends Error {
  override readonly name = 'MailboxError';
}

export const sendWelcome = app.task('accounts.sendWelcome', (email: string) => {
  if (email.endsWith('@invalid')) throw new MailboxError(`no mailbox for ${email}`);
  return `welcome sent to ${email}`;
});

/** Signs a user up and enqueues the welcome e-mail; returns the task id to poll. */
export async function signUp(email: string): Promise<{ email: string; welcomeTaskId: string }> {
  if (!email.includes('@')) throw new Error(`not an e-mail address: ${email}`);
  const r = await sendWelcome.delay(email);
  return { email, welcomeTaskId: r.id };
}
