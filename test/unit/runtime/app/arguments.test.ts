// Keyword arguments bound to declared parameter names as a Python call binds them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bindArguments } from '../../../../runtime/src/app/arguments.js';
import { createTestApp } from '../../../../runtime/src/testing/index.js';

const join = { params: ['parts', 'sep'] } as const;
const typeError = (message: string) => (err: unknown) => err instanceof TypeError && err.message === message;

describe('bindArguments', () => {
  it('puts each keyword at its parameter, after the positional ones', () => {
    assert.deepEqual(bindArguments('ts.join', join, [['a', 'b']], { sep: '-' }), [['a', 'b'], '-']);
    assert.deepEqual(bindArguments('ts.join', join, [], { sep: '-', parts: ['x'] }), [['x'], '-']);
  });

  it('leaves a missing argument undefined', () => {
    assert.deepEqual(bindArguments('ts.join', join, [], { sep: '-' }), [undefined, '-']);
    assert.deepEqual(bindArguments('ts.join', join, [['a']], {}), [['a']]);
  });

  it("fails an unknown keyword with Python's wording", () => {
    assert.throws(() => bindArguments('ts.join', join, [['a']], { x: 1 }), typeError("join() got an unexpected keyword argument 'x'"));
  });

  it("fails a keyword given positionally too with Python's wording", () => {
    assert.throws(() => bindArguments('ts.join', join, [['a'], ','], { sep: '-' }), typeError("join() got multiple values for argument 'sep'"));
  });

  it('tells a task without declared names how to declare them', () => {
    assert.throws(
      () => bindArguments('ts.join', {}, [['a']], { sep: '-' }),
      (err: unknown) =>
        err instanceof TypeError && /unexpected keyword argument 'sep'/.test(err.message) && /params: \[/.test(err.message) && /readsKwargs/.test(err.message),
    );
  });

  it('passes keywords through untouched to a task that reads this.kwargs', () => {
    assert.deepEqual(bindArguments('ts.any', { readsKwargs: true }, [1], { k: 2 }), [1]);
  });
});

describe('app.task params', () => {
  const app = createTestApp();
  const t = app.task('ts.join', (parts: string[], sep: string) => parts.join(sep ?? ','), { params: ['parts', 'sep'] });

  it('refuses an unbindable keyword at call time (Celery typing check)', async () => {
    // @ts-expect-error: 'x' is not a declared parameter name
    await assert.rejects(async () => t.applyAsync([['a']], { x: 1 }), typeError("join() got an unexpected keyword argument 'x'"));
  });

  it('refuses params that are not names, or a name twice', () => {
    assert.throws(() => app.task('ts.dup', (a: number, b: number) => a + b, { params: ['a', 'a'] }), /given twice/);
    // @ts-expect-error: one name for a two-parameter function
    assert.throws(() => app.task('ts.short', (a: number, b: number) => a + b, { params: [1] }), /parameter names/);
  });
});
