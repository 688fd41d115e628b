// The web examples (runtime/examples/web) as users run them: an Express, a Fastify and a Next.js
// route handler enqueue tasks and read their status, and a real `celeriac worker` process runs
// the tasks module beside them, over the embedded file:// broker. Next.js itself is not installed
// (too heavy for CI): its route handlers are called with real web Requests, as Next.js calls them.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../support/eventually.js';
import { repoRoot, startProcess, stopProcess, type Started } from '../support/processes.js';

const dir = mkdtempSync(join(tmpdir(), 'celeriac-web-'));
// The examples read their broker from the environment, as a deployment would set it.
process.env.CELERIAC_BROKER_URL = `file://${dir}/broker`;
process.env.CELERIAC_RESULT_BACKEND = `file://${dir}/results`;
process.env.CELERIAC_LOG_LEVEL = 'warn';
const { createExpressApp } = await import('../../runtime/examples/web/express.js');
const { createFastifyApp } = await import('../../runtime/examples/web/fastify.js');
const route = await import('../../runtime/examples/web/next/app/api/tasks/route.js');
const { app } = await import('../../runtime/examples/web/tasks.js');

interface Status {
  id: string;
  state: string;
  result?: unknown;
  error?: { type: string; message: string };
}

/** The example's contract, whatever serves it: POST enqueues and answers the id, status reads the result. */
function webContract(name: string, api: () => { post(body: unknown): Promise<Response>; status(id: string): Promise<Response> }) {
  describe(name, () => {
    const finalStatus = async (id: string): Promise<Status> => {
      let last: Status | undefined;
      await eventually(
        async () => {
          const res = await api().status(id);
          assert.equal(res.status, 200);
          last = (await res.json()) as Status;
          assert.ok(['SUCCESS', 'FAILURE'].includes(last.state), `still ${last.state}`);
        },
        { timeoutMs: 20_000, intervalMs: 50 },
      );
      return last!;
    };

    it('enqueues a task, answers its id, and the status endpoint reads its result', async () => {
      const res = await api().post({ task: 'add', args: [2, 3] });
      assert.equal(res.status, 202);
      const { taskId } = (await res.json()) as { taskId: string };
      assert.match(taskId, /^[0-9a-f-]{36}$/);
      assert.deepEqual(await finalStatus(taskId), { id: taskId, state: 'SUCCESS', result: 5 });
    });

    it('reports a failed task with its remote error', async () => {
      const { taskId } = (await (await api().post({ task: 'divide', args: [1, 0] })).json()) as { taskId: string };
      assert.deepEqual(await finalStatus(taskId), { id: taskId, state: 'FAILURE', error: { type: 'ZeroDivisionError', message: 'division by zero' } });
    });

    it('answers 400 to a bad body, and PENDING for an unknown id', async () => {
      const res = await api().post({ task: 'add', args: ['x'] });
      assert.equal(res.status, 400);
      assert.match(((await res.json()) as { error: string }).error, /args: expected two numbers/);
      assert.deepEqual(await (await api().status('no-such-task')).json(), { id: 'no-such-task', state: 'PENDING' });
    });
  });
}

describe('web examples against a real worker', () => {
  let worker: Started;
  let express: Server;
  let expressUrl = '';
  const fastify = createFastifyApp();
  let fastifyUrl = '';

  before(async () => {
    worker = startProcess(
      process.execPath,
      [
        join(repoRoot, 'dist/runtime/src/cli/main.js'),
        'worker',
        '-A',
        join(repoRoot, 'dist/runtime/examples/web/tasks.js'),
        '--metrics-port',
        'none',
        '-l',
        'info',
      ],
      {
        env: { ...process.env, NODE_TEST_CONTEXT: undefined },
      },
    );
    express = createExpressApp().listen(0, '127.0.0.1');
    await new Promise((r) => express.once('listening', r));
    expressUrl = `http://127.0.0.1:${(express.address() as AddressInfo).port}`;
    fastifyUrl = await fastify.listen({ port: 0, host: '127.0.0.1' });
    await eventually(
      () => {
        if (!/worker ready/.test(worker.output())) throw new Error(`worker not ready:\n${worker.output()}`);
      },
      { timeoutMs: 20_000, intervalMs: 25 },
    );
  });
  after(async () => {
    await stopProcess(worker);
    await new Promise((r) => express.close(r));
    await fastify.close();
    await app.close();
  });

  const json = { 'content-type': 'application/json' };
  webContract('Express', () => ({
    post: (body) => fetch(`${expressUrl}/tasks`, { method: 'POST', headers: json, body: JSON.stringify(body) }),
    status: (id) => fetch(`${expressUrl}/tasks/${id}`),
  }));
  webContract('Fastify', () => ({
    post: (body) => fetch(`${fastifyUrl}/tasks`, { method: 'POST', headers: json, body: JSON.stringify(body) }),
    status: (id) => fetch(`${fastifyUrl}/tasks/${id}`),
  }));
  webContract('Next.js route handler', () => ({
    post: (body) => route.POST(new Request('http://localhost/api/tasks', { method: 'POST', headers: json, body: JSON.stringify(body) })),
    status: (id) => route.GET(new Request(`http://localhost/api/tasks?id=${encodeURIComponent(id)}`)),
  }));
});
