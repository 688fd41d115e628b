// The canvas end to end in one process (memory:// broker and backend): chains, groups, chords,
// failures, and canvases a worker cannot apply.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { applySignature } from '../../../../runtime/src/canvas/apply.js';
import { chain, pipe } from '../../../../runtime/src/canvas/chain.js';
import { chord } from '../../../../runtime/src/canvas/chord.js';
import { group, GroupResult } from '../../../../runtime/src/canvas/group.js';
import { chunks, signature, xmap, xstarmap } from '../../../../runtime/src/canvas/signature.js';
import { CanvasError, TaskFailedError } from '../../../../runtime/src/errors.js';
import type { AsyncResult } from '../../../../runtime/src/app/result.js';
import type { TaskContext } from '../../../../runtime/src/app/task.js';
import { encodeTask } from '../../../../runtime/src/protocol/task-message.js';
import { DEAD_REASON_HEADER } from '../../../../runtime/src/protocol/dead-letter.js';
import { createApp } from '../../../../runtime/src/app/app.js';
import { createTestApp, startTestWorker } from '../../../../runtime/src/testing/index.js';
import type { Worker } from '../../../../runtime/src/worker/worker.js';
import { eventually } from '../../../support/eventually.js';

const app = createTestApp({ concurrency: 4 });
const add = app.task('c.add', (a: number, b: number) => a + b);
const total = app.task('c.total', (xs: number[]) => xs.reduce((a, b) => a + b, 0));
const fail = app.task('c.fail', (x: number) => {
  throw Object.assign(new Error(`bad ${x}`), { name: 'ValueError' });
});
const errbackCalls: string[] = [];
app.task('c.replaced', function (this: TaskContext, x: number) {
  this.replace(chain(add.s(x, 1), add.s(100)));
});
app.task('c.replacedByGroup', function (this: TaskContext, x: number) {
  this.replace(group([add.s(x, 1), add.s(x, 2)]));
});
const ident = app.task('c.ident', (xs: unknown) => xs);
/** Adds `x + 100` to its chord (Celery's Task.add_to_chord). */
app.task('c.grow', async function (this: TaskContext, x: number) {
  await this.addToChord(add.s(x, 100));
  return x;
});
app.task('c.notInChord', async function (this: TaskContext) {
  await this.addToChord(add.s(1, 1));
});
/** Applies a task and a group as its children (Celery: `.delay()` inside a task). */
app.task('c.spawn', async function (this: TaskContext, x: number) {
  await this.applyChild(add.s(x, 1));
  await this.applyChild(group([add.s(x, 2), add.s(x, 3)]));
  return x;
});
app.task('c.errback', (id: string) => {
  errbackCalls.push(id);
});

let worker: Worker;
before(async () => {
  worker = await startTestWorker(app);
});
after(async () => {
  await worker.stop();
  await app.close();
});

const T = { timeout: 5000 };

describe('canvas (memory backend)', () => {
  it('chain: each step gets the previous result; the result knows its parents', async () => {
    const r = (await applySignature(app, chain(add.s(1, 1), add.s(10), add.s(100)))) as AsyncResult;
    assert.equal(await r.get(T), 112);
    const parent = r.parent as AsyncResult;
    assert.equal(await parent.get(T), 12);
    assert.equal(await (parent.parent as AsyncResult).get(T), 2);
    const children = await (parent.parent as AsyncResult).children();
    assert.deepEqual(
      children.map((c) => c.id),
      [parent.id],
      'the first step lists the step it sent (Celery children)',
    );
    const piped = (await applySignature(app, pipe(add.s(2, 2), add.si(5, 5)))) as AsyncResult;
    assert.equal(await piped.get(T), 10, 'an immutable step ignores the previous result');
  });

  it('group: members run with one group id; GroupResult gets them in order and saves/restores', async () => {
    const g = (await applySignature(app, group([add.s(1, 2), add.s(3, 4), add.s(5, 6)]))) as GroupResult;
    assert.deepEqual(await g.get(T), [3, 7, 11]);
    assert.equal(await g.completedCount(), 3);
    assert.equal(await g.ready(), true);
    assert.equal(await g.successful(), true);
    await g.save();
    const back = await GroupResult.restore(app, g.id);
    assert.deepEqual(
      back?.results.map((r) => r.id),
      g.results.map((r) => r.id),
    );
    assert.deepEqual(await back!.join(T), [3, 7, 11]);
  });

  it('chord: the body gets the header results in header order', async () => {
    const r = (await applySignature(app, chord([add.s(1, 1), add.s(2, 2), add.s(3, 3)], total.s()))) as AsyncResult;
    assert.equal(await r.get(T), 12);
    assert.ok(r.parent instanceof GroupResult);
    assert.deepEqual(await r.parent.get(T), [2, 4, 6]);
  });

  it('a group followed by a step in a chain becomes a chord; chains nest', async () => {
    const r = (await applySignature(app, chain(add.s(1, 1), group([add.s(10), add.s(20)]), total.s(), add.s(1000)))) as AsyncResult;
    assert.equal(await r.get(T), 1034);
  });

  it("applies Celery 5.2's chord step (the header's id on the chord, a chain body with its own ids)", async () => {
    const withId = (sig: ReturnType<typeof add.s>, id: string) => ({ ...sig, options: { ...sig.options, task_id: id } });
    const body = chain(withId(total.s(), 'body-total'), withId(add.s(1000), 'body-last'));
    const header = { ...group([add.s(10), add.s(20)]), options: { task_id: 'the-group', chord: body } };
    const step = { ...chord(header, body), options: { task_id: 'the-group' } };
    const broker = await app.broker();
    await broker.publish('celery', encodeTask({ id: 'first-52', name: 'c.add', args: [1, 1], kwargs: {}, chain: [step], origin: 'test', serializer: 'json' }));
    assert.equal(await app.asyncResult('body-last').get(T), 1034);
    assert.equal(await app.asyncResult('body-total').get(T), 34);
  });

  it('map, starmap and chunks run a task per item on the worker (celery.map/celery.starmap)', async () => {
    const double = signature('c.total');
    assert.deepEqual(await ((await applySignature(app, xmap(double, [[1, 2], [3]]))) as AsyncResult).get(T), [3, 3]);
    assert.deepEqual(
      await (
        (await applySignature(
          app,
          xstarmap(add.s(), [
            [1, 2],
            [3, 4],
          ]),
        )) as AsyncResult
      ).get(T),
      [3, 7],
    );
    const parts = (await applySignature(
      app,
      chunks(
        add.s(),
        [
          [1, 1],
          [2, 2],
          [3, 3],
        ],
        2,
      ),
    )) as GroupResult;
    assert.deepEqual(await parts.get(T), [[2, 4], [6]]);
  });

  it('a task replaces itself with a canvas: its id gets the result, its chain and chord go on from it', async () => {
    const r = await app.sendTask('c.replaced', [1]);
    assert.equal(await r.get(T), 102, "the replacement's result under the task's id");
    const inChain = (await applySignature(app, chain(signature('c.replaced', [1]), add.s(1000)))) as AsyncResult;
    assert.equal(await inChain.get(T), 1102);
    const inChord = (await applySignature(app, chord([signature('c.replaced', [1]), add.s(1, 1)], total.s()))) as AsyncResult;
    assert.equal(await inChord.get(T), 104);
    const byGroup = await app.sendTask('c.replacedByGroup', [10]);
    assert.deepEqual(await byGroup.get(T), [11, 12], 'a group replacement gives its list (celery.accumulate)');
  });

  it('chains in a group and in a chord header: each chain counts once, by its last step', async () => {
    const g = (await applySignature(app, group([chain(add.s(1, 1), add.s(10)), add.s(5, 5)]))) as GroupResult;
    assert.deepEqual(await g.get(T), [12, 10]);
    const c = (await applySignature(app, chord([chain(add.s(1, 1), add.s(10)), add.s(5, 5)], total.s()))) as AsyncResult;
    assert.equal(await c.get(T), 22);
  });

  it('link_error on a chain fires once, for the failed step; the chain stops there', async () => {
    const before = errbackCalls.length;
    const r = (await applySignature(app, { ...chain(add.s(1, 1), fail.s(), add.s(1)), options: { link_error: [signature('c.errback')] } })) as AsyncResult;
    await assert.rejects(r.get(T), TaskFailedError);
    const failed = r.parent as AsyncResult;
    await eventually(() => assert.deepEqual(errbackCalls.slice(before), [failed.id]));
  });

  // Expected values are what Celery 5.7 gives for the same canvases on a Python-only fleet
  // (the interop tier compares them live).
  it("nested groups in a chord header are flattened in Celery's order (a nested group's members reversed)", async () => {
    const header = [add.s(0, 0), group([add.s(1, 1), group([add.s(2, 2), add.s(3, 3)]), add.s(4, 4)]), add.s(5, 5)];
    const r = (await applySignature(app, chord(header, ident.s()))) as AsyncResult;
    assert.deepEqual(await r.get(T), [0, 8, 6, 4, 2, 10]);
    const plain = (await applySignature(app, group([group([add.s(1, 1), add.s(2, 2)]), add.s(3, 3)]))) as GroupResult;
    assert.deepEqual(await plain.get(T), [2, 4, 6], 'a plain group keeps its order');
  });

  it('a chord header holding a group (a chain ending in one) is saved and joined with its nesting', async () => {
    const header = [chain(add.s(1, 1), group([add.s(1), add.s(2)])), add.s(3, 3)];
    const r = (await applySignature(app, chord(header, ident.s()))) as AsyncResult;
    assert.deepEqual(await r.get(T), [[3, 4], 6]);
    const gg = (await applySignature(app, chain(group([add.s(1, 1), add.s(2, 2)]), group([ident.s(), ident.s()])))) as GroupResult;
    assert.deepEqual(await gg.get(T), [
      [2, 4],
      [2, 4],
    ]);
  });

  it('a saved nested header whose member failed fails the body with "Join error" and the repr', async () => {
    const header = [chain(add.s(1, 1), group([add.s(1), fail.s()])), add.s(3, 3)];
    const r = (await applySignature(app, chord(header, ident.s()))) as AsyncResult;
    await assert.rejects(
      r.get(T),
      (err: unknown) => err instanceof TaskFailedError && err.excType === 'ChordError' && err.excMessage === "Join error: ValueError('bad 2')",
    );
  });

  it('a header task adds a task to its chord (add_to_chord): the body waits for it and gets its result', async () => {
    const r = (await applySignature(app, chord([signature('c.grow', [1]), add.s(2, 2)], ident.s()))) as AsyncResult;
    const values = (await r.get(T)) as number[];
    // The added task has the adder's group_index (0): the two order by their encoded text, as in a sorted set.
    assert.equal(values[2], 4);
    assert.deepEqual([values[0], values[1]].sort(), [1, 101]);
    const outside = await app.sendTask('c.notInChord');
    await assert.rejects(
      outside.get(T),
      (err: unknown) => err instanceof TaskFailedError && err.excType === 'ValueError' && /not member of any chord/.test(err.excMessage),
    );
  });

  it("what a task applies with applyChild is stored in its children (Celery's add_to_parent)", async () => {
    const r = await app.sendTask('c.spawn', [10]);
    assert.equal(await r.get(T), 10);
    const [single, g] = await r.children();
    assert.ok(single && !(single instanceof GroupResult) && 'get' in single);
    assert.equal(await (single as AsyncResult).get(T), 11);
    const meta = await r.meta();
    assert.equal((meta.children as unknown[]).length, 2);
    const groupTuple = (meta.children as unknown[][])[1]!;
    assert.equal((groupTuple[1] as unknown[]).length, 2, 'the group is stored with its members');
    assert.ok(g);
  });

  it('map and starmap are routed by their inner task, chunks as celery.starmap: as Celery 5.2 and 5.7', async () => {
    const routed = createTestApp({ routes: { 'r.add': 'maths' } });
    const radd = routed.task('r.add', (a: number, b: number) => a + b);
    try {
      const broker = await routed.broker();
      await applySignature(routed, xstarmap(radd.s(), [[1, 2]]));
      await applySignature(routed, xmap(radd.s(), [1]));
      await applySignature(
        routed,
        chunks(
          radd.s(),
          [
            [1, 1],
            [2, 2],
            [3, 3],
          ],
          2,
        ),
      );
      assert.equal(await broker.depth('maths'), 2, 'starmap and map in the queue the routes give r.add');
      assert.equal(await broker.depth('celery'), 2, "chunks' parts where celery.starmap goes (Celery's routes do not reach them)");
      await applySignature(routed, xmap(radd.s(), [1], { queue: 'own' }));
      assert.equal(await broker.depth('own'), 1, "the canvas's own queue wins over the routes");
    } finally {
      await routed.close();
    }
  });

  it('an empty chord header runs the body with no results', async () => {
    const r = (await applySignature(app, chord([], total.s()))) as AsyncResult;
    assert.equal(await r.get(T), 0);
  });

  it('a failed header task fails the body with ChordError naming the task, and fires its errback once', async () => {
    const before = errbackCalls.length;
    const bad = fail.s(7);
    const body = { ...total.s(), options: { link_error: [signature('c.errback')] } };
    const r = (await applySignature(app, chord([add.s(1, 1), { ...bad, options: { task_id: 'failing-header' } }], body))) as AsyncResult;
    await assert.rejects(r.get(T), (err: unknown) => {
      assert.ok(err instanceof TaskFailedError);
      assert.equal(err.excType, 'ChordError');
      assert.equal(err.excModule, 'celery.exceptions');
      assert.equal(err.excMessage, "Dependency failing-header raised ValueError('bad 7')");
      return true;
    });
    await eventually(() => assert.deepEqual(errbackCalls.slice(before), [r.id]));
  });

  it('a chain stops at the failed step and its later steps are stored FAILURE', async () => {
    const r = (await applySignature(app, chain(add.s(1, 1), fail.s(), add.s(1)))) as AsyncResult;
    await assert.rejects(r.get(T), (err: unknown) => err instanceof TaskFailedError && err.excType === 'ValueError');
  });

  it('a message whose canvas has an unknown subtask_type is stored FAILURE and dead-lettered with the reason', async () => {
    const broker = await app.broker();
    const before = await broker.depth('celery.dead');
    const weird = { ...signature('c.add', [1]), subtask_type: 'xfancy', options: { task_id: 'weird-step' } };
    await broker.publish(
      'celery',
      encodeTask({ id: 'has-weird', name: 'c.add', args: [1, 2], kwargs: {}, chain: [weird], origin: 'test', serializer: 'json' }),
    );
    await assert.rejects(
      app.asyncResult('has-weird').get(T),
      (err: unknown) => err instanceof TaskFailedError && err.excType === 'CanvasError' && /xfancy/.test(err.excMessage),
    );
    await assert.rejects(app.asyncResult('weird-step').get(T), (err: unknown) => err instanceof TaskFailedError && /xfancy/.test(err.excMessage));
    await eventually(async () => assert.equal(await broker.depth('celery.dead'), before + 1));
    let reason: unknown;
    await broker.consume(
      ['celery.dead'],
      async (d) => {
        reason = d.message.headers[DEAD_REASON_HEADER];
        await d.ack();
      },
      { prefetch: 1, signal: AbortSignal.timeout(500) },
    );
    assert.match(String(reason), /subtask_type "xfancy"/);
  });

  it('applying an unknown canvas from a client throws CanvasError before sending anything', async () => {
    await assert.rejects(applySignature(app, { ...signature('c.add'), subtask_type: 'xfancy' }), CanvasError);
  });

  it('a chord on a backend that cannot join is refused at call time', async () => {
    const noJoin = { ...app, backend: async () => ({ ...(await app.backend()), chords: undefined }) };
    await assert.rejects(applySignature(noJoin, chord([add.s(1, 1)], total.s())), (err: unknown) => err instanceof CanvasError && /cannot/.test(err.message));
  });
});

describe('chord on the file:// result backend (join through incr)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-chord-file-'));
  const fileApp = createApp({ logLevel: 'silent', broker: `memory://chord-file-${process.pid}`, backend: `file://${dir}`, metricsPort: null });
  const fadd = fileApp.task('f.add', (a: number, b: number) => a + b);
  const ftotal = fileApp.task('f.total', (xs: number[]) => xs.reduce((a, b) => a + b, 0));
  let w: Worker;
  before(async () => {
    w = await startTestWorker(fileApp);
  });
  after(async () => {
    await w.stop();
    await fileApp.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('gives the body the header results in order, as on Redis', async () => {
    const r = (await applySignature(fileApp, chord([fadd.s(1, 1), fadd.s(2, 2), fadd.s(3, 3)], ftotal.s()))) as AsyncResult;
    assert.equal(await r.get(T), 12);
    assert.deepEqual(await (r.parent as GroupResult).get(T), [2, 4, 6]);
  });
});
