/**
 * A Next.js App Router route handler (app/api/tasks/route.ts) that enqueues tasks and reports
 * their status. Next.js calls these exports with a web Request; nothing here imports `next`.
 *
 *   POST /api/tasks         {"task":"add","args":[2,3]}  -> 202 {"taskId":"..."}
 *   GET  /api/tasks?id=<id>                              -> 200 {"id","state","result"|"error"}
 *
 * In a Next.js project, import the tasks module from where it lives (here ../../../../tasks.js)
 * and run a worker beside the app: `celeriac worker -A <your tasks module>`. The broker must be
 * one the web server and the workers share (redis://, amqp://, or file:// on one machine).
 */
import { app } from '../../../../tasks.js';
import { enqueue, readStatus } from '../../../../status.js';

// The Node.js runtime (not Edge): celeriac's brokers use Node sockets and files.
export const runtime = 'nodejs';

export async function POST(request: Request): Promise<Response> {
  let body: unknown;
  try {
    body = await request.json();
  } catch {
    return Response.json({ error: 'body: expected JSON' }, { status: 400 });
  }
  const sent = await enqueue(body);
  return Response.json(sent, { status: 'error' in sent ? 400 : 202 });
}

export async function GET(request: Request): Promise<Response> {
  const id = new URL(request.url).searchParams.get('id');
  if (!id) return Response.json({ error: 'id: expected ?id=<task id>' }, { status: 400 });
  return Response.json(await readStatus(app, id));
}
