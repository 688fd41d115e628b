// protocol/python-json.ts: the bytes Python's json.dumps writes (a chord join's sorted set orders
// members of one score by them, so TypeScript and Python workers must write the same).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pythonJsonDumps } from '../../../../runtime/src/protocol/python-json.js';

describe('pythonJsonDumps', () => {
  it("writes what Python's json.dumps writes: separators, ensure_ascii, surrogate pairs", () => {
    const value = [1, 'd0000000-0000-4000-8000-000000000001', 'SUCCESS', { k: 'héllo ✓ "q"\n', n: [null, true, 1.5, -7, { deep: [] }] }, '😀'];
    // Printed by CPython 3.11: json.dumps(<the same value>)
    const python =
      '[1, "d0000000-0000-4000-8000-000000000001", "SUCCESS", {"k": "h\\u00e9llo \\u2713 \\"q\\"\\n", "n": [null, true, 1.5, -7, {"deep": []}]}, "\\ud83d\\ude00"]';
    assert.equal(pythonJsonDumps(value), python);
    assert.deepEqual(JSON.parse(pythonJsonDumps(value)), value);
  });
});
