/**
 * Celery's canvas builtin tasks a worker runs itself (celery/app/builtins.py): `celery.map` and
 * `celery.starmap` call a registered task's function once per item, in this process, and return
 * the list of results; `chunks` sends groups of `celery.starmap`; `celery.accumulate` hands a
 * group's results on (the body Task.replace gives a group). Registered by the worker so a
 * Python client's `task.map(...)`, `task.starmap(...)` and `task.chunks(...)` run on it.
 */
import type { App } from '../app/app.js';
import { bindArguments } from '../app/arguments.js';
import type { TaskContext } from '../app/task.js';
import { NotRegisteredError } from '../errors.js';
import { asSignature, CANVAS_TASKS, type SignatureDict } from './signature.js';

/** Celery's `celery.accumulate`: the body a group gets when a task replaces itself with it. */
export const ACCUMULATE = 'celery.accumulate';

/** Registers celery.map, celery.starmap and celery.accumulate on `app` unless it defines them itself. */
export function registerCanvasTasks(app: App): void {
  const run = async (ctx: TaskContext, task: SignatureDict, it: unknown, spread: boolean): Promise<unknown[]> => {
    const sig = asSignature(task, `${ctx.name} task`);
    const t = app.tasks.get(sig.task);
    if (!t) throw new NotRegisteredError(sig.task, [...app.tasks.keys()]);
    if (!Array.isArray(it)) throw Object.assign(new TypeError(`${ctx.name}: 'it' must be a list, got ${typeof it}`), { excModule: 'builtins' });
    const results: unknown[] = [];
    // One after another, as Celery's `[task(item) for item in it]`.
    for (const item of it) {
      const args = spread ? (Array.isArray(item) ? item : [item]) : [item];
      results.push(await t.fn.apply(ctx, bindArguments(t.name, t.options, args, {}) as never));
    }
    return results;
  };
  if (!app.tasks.has(ACCUMULATE))
    app.task(
      ACCUMULATE,
      // accumulate(*args, index=None): the args, or the one at `index`.
      function (this: TaskContext, ...args: unknown[]) {
        const index = this.kwargs.index;
        return typeof index === 'number' ? args[index] : args;
      },
      { readsKwargs: true },
    );
  for (const [name, spread] of [
    [CANVAS_TASKS.xmap, false],
    [CANVAS_TASKS.xstarmap, true],
  ] as const) {
    if (app.tasks.has(name)) continue;
    app.task(
      name,
      function (this: TaskContext, task: SignatureDict, it: unknown) {
        return run(this, task, it, spread);
      },
      { params: ['task', 'it'] },
    );
  }
}
