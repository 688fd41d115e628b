import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { checkTextDepth } from '../../../../runtime/src/protocol/limits.js';
import { DecodeError } from '../../../../runtime/src/errors.js';

/** The scan as it was, one code unit at a time: the fast scan (strings skipped by indexOf) must agree with it. */
function referenceDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '[' || c === '{') deepest = Math.max(deepest, ++depth);
    else if (c === ']' || c === '}') depth--;
  }
  return deepest;
}

/** The deepest `max` checkTextDepth accepts for `text`, as a string and as bytes (they must agree). */
function deepestAccepted(text: string): number {
  const ok = (t: string | Buffer, max: number) => {
    try {
      checkTextDepth(t, max, 'Text');
      return true;
    } catch (err) {
      assert.ok(err instanceof DecodeError);
      assert.match(err.message, new RegExp(`^Text is nested deeper than ${max} levels`));
      return false;
    }
  };
  let max = 0;
  while (!ok(text, max)) max++;
  for (const m of [max - 1, max]) if (m >= 0) assert.equal(ok(Buffer.from(text), m), ok(text, m), `bytes and text disagree at ${m} for ${text}`);
  return max;
}

describe('checkTextDepth', () => {
  it('counts brackets outside strings only, however the strings escape their quotes', () => {
    const cases: [string, number][] = [
      ['[[1], {"a": [2]}]', 3],
      ['["[[[", {"{": "]]"}]', 2],
      [String.raw`["a\"[[[", [1]]`, 2], // an escaped quote does not end the string
      [String.raw`["a\\", [[1]]]`, 3], // an even run of backslashes: the quote ends it
      [String.raw`["a\\\"[[", [1]]`, 2], // an odd run: the quote is escaped
      [String.raw`["\\\\", [[[1]]]]`, 4],
      [String.raw`[{"k\"": "v\\"}, [[]]]`, 3],
      ['["unterminated [[[[', 1], // nothing after an unclosed string counts
      ['"[[["', 0],
      ['', 0],
    ];
    for (const [text, depth] of cases) {
      const padded = text + ' '.repeat(20); // longer than every max tried: the scan runs
      assert.equal(referenceDepth(padded), depth, `reference for ${text}`);
      assert.equal(deepestAccepted(padded), depth, text);
    }
  });

  it('agrees with the character-by-character scan on random JSON-like text', () => {
    const alphabet = ['[', ']', '{', '}', '"', '\\', 'a', ',', ':', ' ', '"', '\\\\', '\\"'];
    let seed = 7;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let n = 0; n < 2000; n++) {
      let text = '';
      const len = 1 + Math.floor(next() * 40);
      for (let i = 0; i < len; i++) text += alphabet[Math.floor(next() * alphabet.length)];
      text += ' '.repeat(50);
      assert.equal(deepestAccepted(text), referenceDepth(text), JSON.stringify(text));
    }
  });

  it('skips text no longer than the limit (each level needs a byte)', () => {
    assert.doesNotThrow(() => checkTextDepth('[[[[', 4, 'Text'));
    assert.throws(() => checkTextDepth('[[[[ ', 3, 'Text'), DecodeError);
  });
});
