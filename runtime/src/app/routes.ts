/**
 * Task routing, as Celery's `task_routes` (celery/app/routes.py): which queue an outgoing task
 * message goes to. Every message, from a client or from a worker (link, link_error, chain step),
 * is routed here, through `App.sendTask`, so one signature lands in one queue whoever sends it.
 *
 * A router is one of (Celery's forms):
 * - a map `{ 'shop.add': 'math', 'shop.reports.*': { queue: 'reports' } }`: exact names first, then
 *   the keys holding a `*`, read as fnmatch globs in insertion order (a key without `*` is exact,
 *   even with `?` or `[`, as Celery's MapRoute);
 * - the same as a list of `[pattern, route]` pairs, where a pattern may also be a RegExp, matched
 *   from the start of the name as Python's `re.match` (not searched anywhere in it);
 * - a function `(name, args, kwargs, options) => route | null | undefined`.
 *
 * `routes` is one router or a list of them; they are asked in order and the first answer wins.
 * As in Celery a list at the top is a list of routers, so a list of pairs goes inside one:
 * `routes: [[['a.*', 'qa'], [/^b\./, 'qb']], myRouterFn]`. A route is a queue name or
 * `{ queue?, priority? }` (exchange and routing keys are not supported: celeriac publishes to
 * queues by name).
 *
 * Precedence, Celery's (docs "Specifying task destination"; Router.route merges the route *under*
 * the call's options, which already hold Task.queue): the caller's `queue`, then the task's own
 * `queue` option, then the first router's answer, then `defaultQueue`. A route's `priority`
 * applies when the caller gives none. A retry is sent with its queue given explicitly (the queue
 * it came from), so routes never move a retry, as Celery's Task.retry.
 */
import { ConfigError } from '../errors.js';
import type { ApplyOptions } from './task.js';

/** Where a router sends a task: a queue name, or options. */
export type Route = string | RouteOptions;

export interface RouteOptions {
  readonly queue?: string;
  /** Message priority when the caller gives none (0-255 on the wire; see ApplyOptions.priority). */
  readonly priority?: number;
}

/** Celery's router function; null or undefined passes the task on to the next router. */
export type RouterFn = (
  name: string,
  args: readonly unknown[],
  kwargs: Readonly<Record<string, unknown>>,
  options: Readonly<ApplyOptions>,
) => Route | null | undefined;

/** Exact names and `*` globs by key, or `[pattern, route]` pairs with RegExp patterns allowed. */
export type RouteMap = Readonly<Record<string, Route>> | readonly (readonly [string | RegExp, Route])[];

export type Router = RouteMap | RouterFn;

/** The `routes` option of createApp: one router or a list asked in order (Celery's task_routes). */
export type Routes = Router | readonly Router[];

/** The first route the routers give for a task, or null. */
export type RouteLookup = (
  name: string,
  args: readonly unknown[],
  kwargs: Readonly<Record<string, unknown>>,
  options: Readonly<ApplyOptions>,
) => RouteOptions | null;

/**
 * Python's fnmatch.translate as a RegExp (`*`, `?`, `[seq]`, `[!seq]`; case-sensitive, whole
 * name). Written here because it is a dozen lines and the npm globbers (minimatch, picomatch)
 * are path matchers: their `*` stops at `/`, fnmatch's does not.
 */
export function fnmatchToRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') re += '[\\s\\S]*';
    else if (c === '?') re += '[\\s\\S]';
    else if (c === '[') {
      // As fnmatch: a `]` right after `[` or `[!` is a member; no closing `]` makes `[` literal.
      let j = i + 1;
      if (pattern[j] === '!') j++;
      if (pattern[j] === ']') j++;
      const end = pattern.indexOf(']', j);
      if (end < 0) {
        re += '\\[';
        continue;
      }
      let members = pattern.slice(i + 1, end);
      const negate = members.startsWith('!');
      if (negate) members = members.slice(1);
      re += `[${negate ? '^' : ''}${members.replace(/[\\\]\[^]/g, '\\$&')}]`;
      i = end;
    } else re += c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  }
  return new RegExp(`^(?:${re})$`);
}

/** Checks a route and gives its options form; `where` names it in the error. */
function routeOptions(route: unknown, where: string): RouteOptions {
  if (typeof route === 'string' && route !== '') return { queue: route };
  if (route !== null && typeof route === 'object' && !Array.isArray(route)) {
    const r = route as Record<string, unknown>;
    const problems: string[] = [];
    const unknown = Object.keys(r).filter((k) => k !== 'queue' && k !== 'priority');
    if (unknown.length > 0)
      problems.push(`${where}: unsupported route option(s) ${unknown.join(', ')} (a route takes queue and priority; celeriac publishes to queues by name)`);
    if (r.queue !== undefined && (typeof r.queue !== 'string' || r.queue === ''))
      problems.push(`${where}.queue: expected a non-empty string, got ${JSON.stringify(r.queue)}`);
    if (r.priority !== undefined && !(Number.isInteger(r.priority) && (r.priority as number) >= 0 && (r.priority as number) <= 255))
      problems.push(`${where}.priority: expected an integer from 0 to 255, got ${JSON.stringify(r.priority)}`);
    if (problems.length > 0) throw new ConfigError(problems);
    return { ...(r.queue !== undefined && { queue: r.queue as string }), ...(r.priority !== undefined && { priority: r.priority as number }) };
  }
  throw new ConfigError([`${where}: expected a queue name or { queue, priority }, got ${JSON.stringify(route)}`]);
}

/** Celery's MapRoute: exact names, then patterns in order. */
function mapRoute(map: RouteMap, where: string): RouteLookup {
  const exact = new Map<string, RouteOptions>();
  const patterns: [RegExp, RouteOptions][] = [];
  const entries: readonly (readonly [unknown, unknown])[] = Array.isArray(map) ? map : Object.entries(map);
  entries.forEach((entry, i) => {
    if (!Array.isArray(entry) || entry.length !== 2) {
      throw new ConfigError([
        `${where}[${i}]: expected a [pattern, route] pair, got ${JSON.stringify(entry)} (a list at the top of routes is a list of routers: put pairs inside one, routes: [[['a.*', 'qa']]])`,
      ]);
    }
    const [key, route] = entry;
    const opts = routeOptions(route, `${where}[${JSON.stringify(String(key))}]`);
    if (key instanceof RegExp) patterns.push([new RegExp(key.source, key.flags.replace(/[gy]/g, '') + 'y'), opts]);
    else if (typeof key === 'string' && key.includes('*')) patterns.push([fnmatchToRegExp(key), opts]);
    else if (typeof key === 'string') exact.set(key, opts);
    else throw new ConfigError([`${where}[${i}]: a pattern is a task name, a glob or a RegExp, got ${JSON.stringify(key)}`]);
  });
  return (name) => {
    const hit = exact.get(name);
    if (hit) return hit;
    for (const [re, opts] of patterns) {
      re.lastIndex = 0; // sticky: matches at the start only, as re.match
      if (re.test(name)) return opts;
    }
    return null;
  };
}

/**
 * Prepares `routes` once (a bad map throws one ConfigError at createApp) and returns the lookup:
 * the first router's answer, or null. A router function's answer is checked on each call.
 */
export function createRouter(routes: Routes | undefined): RouteLookup {
  if (routes === undefined) return () => null;
  // As Celery's prepare(): a list at the top is a list of routers, anything else is one router.
  const list: readonly Router[] = Array.isArray(routes) ? (routes as readonly Router[]) : [routes as Router];
  const lookups = list.map((r, i): RouteLookup => {
    const where = list.length === 1 && !Array.isArray(routes) ? 'routes' : `routes[${i}]`;
    if (typeof r === 'function') {
      return (name, args, kwargs, options) => {
        const route = r(name, args, kwargs, options);
        return route === null || route === undefined ? null : routeOptions(route, `${where}("${name}") returned`);
      };
    }
    if (r === null || typeof r !== 'object')
      throw new ConfigError([`${where}: expected a map, a list of [pattern, route] pairs or a function, got ${JSON.stringify(r)}`]);
    return mapRoute(r, where);
  });
  return (name, args, kwargs, options) => {
    for (const lookup of lookups) {
      const route = lookup(name, args, kwargs, options);
      if (route) return route;
    }
    return null;
  };
}
