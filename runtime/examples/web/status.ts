/**
 * What the web examples answer: enqueueing from a JSON body, and a task's status for
 * `GET /tasks/:id`. One place, so the Express, Fastify and Next.js examples behave alike.
 */
import type { App, TaskState } from '../../src/index.js';
import { add, divide } from './tasks.js';

/** The body of a status response. */
export interface TaskStatus {
  readonly id: string;
  /** PENDING (unknown or waiting), STARTED, RETRY, SUCCESS, FAILURE or REVOKED. */
  readonly state: TaskState;
  /** The value, once SUCCESS. */
  readonly result?: unknown;
  /** The remote exception, once FAILURE or REVOKED. */
  readonly error?: { readonly type: string; readonly message: string };
}

/** Reads a task's state and result from the result backend (PENDING when nothing is stored). */
export async function readStatus(app: App, id: string): Promise<TaskStatus> {
  const meta = await app.asyncResult(id).meta();
  if (meta.status === 'SUCCESS') return { id, state: meta.status, result: meta.result };
  if (meta.status === 'FAILURE' || meta.status === 'REVOKED') {
    const exc = (meta.result ?? {}) as { exc_type?: unknown; exc_message?: unknown };
    const message = Array.isArray(exc.exc_message) ? exc.exc_message.map(String).join(', ') : String(exc.exc_message ?? '');
    return { id, state: meta.status, error: { type: String(exc.exc_type ?? 'Exception'), message } };
  }
  return { id, state: meta.status };
}

/**
 * Enqueues the task a JSON body asks for: `{ "task": "add" | "divide", "args": [a, b] }`.
 * Returns the task id, or a message for a 400 answer.
 */
export async function enqueue(body: unknown): Promise<{ taskId: string } | { error: string }> {
  const { task, args } = (body ?? {}) as { task?: unknown; args?: unknown };
  if (!Array.isArray(args) || args.length !== 2 || !args.every((a) => typeof a === 'number'))
    return { error: 'args: expected two numbers, e.g. {"task":"add","args":[2,3]}' };
  const [a, b] = args as [number, number];
  if (task === 'add') return { taskId: (await add.delay(a, b)).id };
  if (task === 'divide') return { taskId: (await divide.delay(a, b)).id };
  return { error: 'task: expected "add" or "divide"' };
}
