/**
 * README "Extending the worker": a user component, a custom control command, a signal, a task
 * base and progress, in one tasks module. The README shows this file from the `import` on (with
 * 'celeriac' as the import path); test/unit/examples/extending-example.test.ts runs it.
 */
import { createApp, type TaskBase, type TaskContext } from '../../src/index.js';

export const app = createApp({ name: 'shop' });

/** Stands for a real client such as pg.Pool: opened with the worker, ended at its shutdown. */
export class ConnectionPool {
  open = false;
  queries = 0;
  async connect() {
    this.open = true;
  }
  async end() {
    this.open = false;
  }
  async query(sql: string) {
    if (!this.open) throw new Error('the pool is closed');
    this.queries++;
    return sql;
  }
}
export const db = new ConnectionPool();

// A component: started after the result backend and before the worker consumes; stopped after the last task.
app.component({ name: 'db', requires: ['backend'], before: ['consumer'], start: () => db.connect(), stop: () => db.end() });

// A remote-control command that reads it: `celeriac inspect db_stats`.
app.controlCommand('db_stats', { type: 'inspect', handler: () => ({ open: db.open, queries: db.queries }) });

// A signal, as Celery's task_postrun, for one task only (Celery's `sender`).
export const finished: string[] = [];
app.signals.connect('taskPostrun', ({ taskId, state }) => void finished.push(`${taskId} ${state}`), { sender: 'shop.report' });

// Shared options and hooks of a family of tasks (Celery's base= class).
const audited: TaskBase = {
  maxRetries: 2,
  onFailure(exc) {
    this.log.error({ err: exc }, 'audited task failed');
  },
};

// Progress: a custom state with its meta, for AsyncResult.follow() and `celeriac call --wait`.
export const report = app.task(
  'shop.report',
  async function (this: TaskContext, rows: number) {
    for (let current = 1; current <= rows; current++) {
      await db.query(`select ${current}`);
      await this.updateState({ state: 'PROGRESS', meta: { current, total: rows } });
    }
    return rows;
  },
  { base: audited },
);
