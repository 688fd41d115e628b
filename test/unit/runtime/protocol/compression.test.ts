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

  it("bzip2 under each kombu name: what Python's bz2.compress wrote", () => {
    // bz2.compress(b'{"hello": "world"}') in Python 3.11.
    const bz = Buffer.from('425a68393141592653593bed4aee0000081980500000100644908a20002201a1a040d0341ef600cc7265348e6f1772453850903bed4aee', 'hex');
    for (const h of ['application/x-bz2', 'bzip2', 'bzip']) assert.equal(decompress(bz, h, 1 << 20).toString(), '{"hello": "world"}', h);
  });

  it('bzip2: a body inflating past the limit is refused, and bytes that are not bzip2 say so', () => {
    // bz2.compress(b'\0' * 8 MiB): 48 bytes.
    const bomb = Buffer.from('425a6839314159265359a23d4b580040404080c00000040008200030cc0529a60100d8808078bb9229c2848511ea5ac0', 'hex');
    assert.equal(decompress(bomb, 'bzip2', 8 << 20).length, 8 << 20);
    assert.throws(
      () => decompress(bomb, 'application/x-bz2', 1 << 20),
      (e) => e instanceof DecodeError && /inflates to more than 1048576 bytes/.test(e.message),
    );
    assert.throws(
      () => decompress(body, 'application/x-bz2', 1 << 20),
      (e) => e instanceof DecodeError && /Cannot decompress application\/x-bz2 body: Not bzip data/.test(e.message),
    );
  });

  it('lzma under each kombu name: a DecodeError that says there is no decoder', () => {
    for (const h of ['application/x-lzma', 'lzma', 'xz']) {
      assert.throws(
        () => decompress(body, h, 1 << 20),
        (e) => e instanceof DecodeError && /Unsupported compression .*no xz\/lzma decoder/.test(e.message),
        h,
      );
    }
  });
});
