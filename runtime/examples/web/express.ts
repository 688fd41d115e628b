/**
 * An Express 5 app that enqueues tasks and reports their status:
 *
 *   POST /tasks      {"task":"add","args":[2,3]}  -> 202 {"taskId":"..."}
 *   GET  /tasks/:id                               -> 200 {"id","state","result"|"error"}
 *
 * Run a worker beside it: `celeriac worker -A dist/runtime/examples/web/tasks.js`.
 */
import express, { type Express } from 'express';
import { app } from './tasks.js';
import { enqueue, readStatus } from './status.js';

export function createExpressApp(): Express {
  const web = express();
  web.use(express.json());
  web.post('/tasks', async (req, res) => {
    const sent = await enqueue(req.body);
    if ('error' in sent) res.status(400).json(sent);
    else res.status(202).json(sent);
  });
  web.get('/tasks/:id', async (req, res) => {
    res.json(await readStatus(app, req.params.id));
  });
  return web;
}

// `node dist/runtime/examples/web/express.js` serves on PORT (default 3000).
if (import.meta.url === `file://${process.argv[1]}`) {
  const port = Number(process.env.PORT ?? 3000);
  createExpressApp().listen(port, () => console.log(`express example on http://localhost:${port}`));
}
