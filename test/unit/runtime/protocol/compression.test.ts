/**
 * Body compression by kombu's names (protocol/compression.ts): every header value and alias kombu
 * uses is recognised; zstd is decoded where node:zlib has it and refused by name where it does not.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as zlib from 'node:zlib';
import { compress, decompress } from '../../../../runtime/src/protocol/compression.js';
import { DecodeError } from '../../../../runtime/src/errors.js';

const body = Buffer.from('[[2, 3], {}, {"callbacks": null}]');
const zstdCompressSync = (zlib as { zstdCompressSync?: (b: Buffer) => Buffer }).zstdCompressSync;

describe('decompress: kombu header values and aliases', () => {
  it('zlib under application/x-gzip, zlib and gzip; brotli under both its names', () => {
    const z = compress(body, 'zlib');
    assert.equal(z.header, 'application/x-gzip');
    for (const h of ['application/x-gzip', 'zlib', 'gzip']) assert.deepEqual(decompress(z.body, h, 1 << 20), body);
    const b = compress(body, 'brotli');
    for (const h of ['application/x-brotli', 'brotli']) assert.deepEqual(decompress(b.body, h, 1 << 20), body);
  });

  it('zstd (application/zstd, zstd, zstandard) where Node has it, else a DecodeError naming why', () => {
    for (const h of ['application/zstd', 'zstd', 'zstandard']) {
      if (zstdCompressSync) assert.deepEqual(decompress(zstdCompressSync(body), h, 1 << 20), body);
      else
        assert.throws(
          () => decompress(body, h, 1 << 20),
          (e) => e instanceof DecodeError && /has no zstd; Node 22.15\+/.test(e.message),
        );
    }
  });

  it('bzip2 and lzma under each kombu name: a DecodeError that says there is no decoder', () => {
    for (const h of ['application/x-bz2', 'bzip2', 'bzip', 'application/x-lzma', 'lzma', 'xz']) {
      assert.throws(
        () => decompress(body, h, 1 << 20),
        (e) => e instanceof DecodeError && /Unsupported compression .*no (bzip2|xz\/lzma) decoder/.test(e.message),
        h,
      );
    }
  });
});
