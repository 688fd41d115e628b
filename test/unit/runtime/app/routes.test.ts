// routes.ts: Celery's task_routes forms (exact names, fnmatch globs, RegExp pairs, functions, lists).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createRouter, fnmatchToRegExp, type Routes } from '../../../../runtime/src/app/routes.js';
import { ConfigError } from '../../../../runtime/src/errors.js';

const queueOf = (routes: Routes | undefined, name: string) => createRouter(routes)(name, [], {}, {})?.queue ?? null;

describe('routes (Celery task_routes)', () => {
  it('keeps a Record of exact names working, and routes nothing else', () => {
    const routes = { 'shop.add': 'math', 'shop.mul': { queue: 'math2' } };
    assert.equal(queueOf(routes, 'shop.add'), 'math');
    assert.equal(queueOf(routes, 'shop.mul'), 'math2');
    assert.equal(queueOf(routes, 'shop.sub'), null);
    assert.equal(queueOf(undefined, 'shop.add'), null);
  });

  it('reads keys with * as fnmatch globs, after exact names, in insertion order', () => {
    const routes = { 'feed.*': 'feeds', 'feed.tasks.*': 'never: the first glob wins', 'feed.tasks.special': 'special' };
    assert.equal(queueOf(routes, 'feed.tasks.special'), 'special');
    assert.equal(queueOf(routes, 'feed.tasks.import'), 'feeds');
    assert.equal(queueOf(routes, 'feedx.tasks'), null);
    // Without a *, ? and [ are plain characters (Celery's MapRoute only globs keys with *).
    assert.equal(queueOf({ 'a?c': 'q' }, 'abc'), null);
    assert.equal(queueOf({ 'a?c': 'q' }, 'a?c'), 'q');
  });

  it('translates fnmatch patterns as Python does', () => {
    const m = (p: string, s: string) => fnmatchToRegExp(p).test(s);
    assert.ok(m('a.*', 'a.b/c.d'), '* crosses dots and slashes');
    assert.ok(m('a.?', 'a.b') && !m('a.?', 'a.bc'));
    assert.ok(m('t.[ab]*', 't.b1') && !m('t.[ab]*', 't.c1'));
    assert.ok(m('t.[!ab]*', 't.c1') && !m('t.[!ab]*', 't.a1'));
    assert.ok(m('t.[]]*', 't.]x'), 'a ] right after [ is a member');
    assert.ok(m('t.[*', 't.[x'), 'an unclosed [ is literal');
    assert.ok(m('a+b(c).*', 'a+b(c).x') && !m('a.*', 'abx'), 'regex characters are literal');
    assert.ok(!m('Shop.*', 'shop.x'), 'case-sensitive');
  });

  it('takes [pattern, route] pairs with RegExp patterns, matched from the start as re.match', () => {
    const routes: Routes = [
      [
        [/(video|image)\.tasks\./, 'media'],
        ['web.*', { queue: 'web', priority: 7 }],
      ],
    ];
    assert.equal(queueOf(routes, 'video.tasks.compress'), 'media');
    assert.equal(queueOf(routes, 'my.video.tasks.compress'), null, 'not searched inside the name');
    assert.deepEqual(createRouter(routes)('web.render', [], {}, {}), { queue: 'web', priority: 7 });
  });

  it('asks a list of routers in order, functions included, the first answer wins', () => {
    const calls: unknown[] = [];
    const routes: Routes = [
      (name, args, kwargs, options) => {
        calls.push([name, args, kwargs, options]);
        return name.startsWith('fn.') ? { queue: 'from-fn' } : null;
      },
      { 'fn.*': 'from-map', 'other.x': 'other' },
    ];
    assert.equal(createRouter(routes)('fn.a', [1], { k: 2 }, { countdown: 5 })?.queue, 'from-fn');
    assert.deepEqual(calls, [['fn.a', [1], { k: 2 }, { countdown: 5 }]]);
    assert.equal(queueOf(routes, 'other.x'), 'other');
    assert.equal(queueOf([() => 'plain-name'], 'x'), 'plain-name');
  });

  it('refuses bad routes at createRouter with every problem named', () => {
    assert.throws(
      () => createRouter({ a: { exchange: 'x', queue: '' } } as never),
      (err: unknown) =>
        err instanceof ConfigError && /unsupported route option\(s\) exchange/.test(err.message) && /queue: expected a non-empty string/.test(err.message),
    );
    assert.throws(() => createRouter([['a.*', 'q']] as never), /a list at the top of routes is a list of routers/);
    assert.throws(() => createRouter({ a: 5 } as never), /expected a queue name or \{ queue, priority \}/);
    assert.throws(() => createRouter(() => ({ priority: 300 }))('x', [], {}, {}), /routes\("x"\) returned.priority: expected an integer from 0 to 255/);
  });
});
