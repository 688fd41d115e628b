/**
 * A Fastify 5 app that enqueues tasks and reports their status (the same routes as express.ts):
 *
 *   POST /tasks      {"task":"add","args":[2,3]}  -> 202 {"taskId":"..."}
 *   GET  /tasks/:id                               -> 200 {"id","state","result"|"error"}
 *
 * Run a worker beside it: `celeriac worker -A dist/runtime/examples/web/tasks.js`.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { app } from './tasks.js';
import { enqueue, readStatus } from './status.js';

export function createFastifyApp(): FastifyInstance {
  const web = Fastify();
  web.post('/tasks', async (req, reply) => {
    const sent = await enqueue(req.body);
    return reply.code('error' in sent ? 400 : 202).send(sent);
  });
  web.get<{ Params: { id: string } }>('/tasks/:id', async (req) => readStatus(app, req.params.id));
  // Close the app's broker and backend connections with the server.
  web.addHook('onClose', async () => app.close());
  return web;
}

// `node dist/runtime/examples/web/fastify.js` serves on PORT (default 3000).
if (import.meta.url === `file://${process.argv[1]}`) {
  const port = Number(process.env.PORT ?? 3000);
  await createFastifyApp().listen({ port });
  console.log(`fastify example on http://localhost:${port}`);
}
