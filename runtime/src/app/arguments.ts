/**
 * Keyword arguments bound to a task's parameters as a Python call binds them. JavaScript cannot
 * read parameter names at run time, so a task declares them (`params`); a keyword it cannot bind
 * fails the call with Python's TypeError wording, never silently dropped.
 */
import type { TaskOptions } from './task.js';

/** The parameter names of a function with arguments `A`: one string per parameter. */
export type ParamNames<A extends unknown[]> = { readonly [K in keyof A]: string };

/** Keyword arguments typed from declared names: `{ [name]: type of that parameter }`. */
export type KwargsOf<A extends unknown[], P extends readonly string[]> = string extends P[number]
  ? Record<string, unknown>
  : { [K in keyof P & `${number}` as P[K] & string]?: K extends keyof A ? A[K] : unknown };

/** A TypeError a Python peer rebuilds as its builtin TypeError. */
function typeError(message: string): TypeError {
  return Object.assign(new TypeError(message), { excModule: 'builtins' });
}

/** The name Python's messages use for the function: the task name's last dotted part. */
function pythonFunctionName(taskName: string): string {
  return taskName.slice(taskName.lastIndexOf('.') + 1);
}

/**
 * The positional arguments a task function is called with: `args`, then each keyword at the
 * position of its declared name (a gap is `undefined`, as a missing argument). Throws TypeError as
 * Python does for an unknown keyword or one given twice, and, for a task that declares no names,
 * says how to declare them (unless it reads `this.kwargs` itself: `readsKwargs`).
 */
export function bindArguments(
  taskName: string,
  opts: Pick<TaskOptions, 'params' | 'readsKwargs'>,
  args: readonly unknown[],
  kwargs: Readonly<Record<string, unknown>>,
): readonly unknown[] {
  const keys = Object.keys(kwargs);
  // The common call: no keywords; the args go to the function as they are (no copy per task).
  if (keys.length === 0 || opts.readsKwargs) return args;
  const fn = pythonFunctionName(taskName);
  const params = opts.params;
  if (!params) {
    throw typeError(
      `${fn}() got an unexpected keyword argument '${keys[0]}' (task "${taskName}" declares no parameter names: ` +
        `define it with { params: ['a', 'b', ...] } to bind keyword arguments, or { readsKwargs: true } to read this.kwargs)`,
    );
  }
  const bound = [...args];
  for (const k of keys) {
    const i = params.indexOf(k);
    if (i < 0) throw typeError(`${fn}() got an unexpected keyword argument '${k}'`);
    if (i < args.length) throw typeError(`${fn}() got multiple values for argument '${k}'`);
    while (bound.length < i) bound.push(undefined);
    bound[i] = kwargs[k];
  }
  return bound;
}
