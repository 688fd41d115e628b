/**
 * Body compression as kombu names it: the `compression` header holds a content type
 * (`application/x-gzip` is a zlib stream, not gzip; spec §2.4). Decoders accept the aliases too.
 *
 * Decoded: zlib and brotli (node:zlib), zstd where node:zlib has it (Node 22.15+). Not decoded:
 * bzip2 and lzma (xz), which Celery can send with Python's standard library: Node has no decoder
 * built in, and a library (seek-bzip for bzip2, node-liblzma for xz) is not a dependency yet.
 * Those bodies are refused as DecodeError, stored as FAILURE for the caller.
 */
import * as zlib from 'node:zlib';
import { brotliCompressSync, brotliDecompressSync, deflateSync, inflateSync } from 'node:zlib';
import { DecodeError } from '../errors.js';

/** node:zlib's zstd (Node 22.15+, 23.8+); absent on Node 20, where a zstd body is refused by name. */
const zstdDecompressSync = (zlib as { zstdDecompressSync?: (b: Buffer, o: { maxOutputLength: number }) => Buffer }).zstdDecompressSync;

/** Compression header values this process can decode. */
const DECODABLE = ['application/x-gzip (zlib)', 'application/x-brotli', ...(zstdDecompressSync ? ['application/zstd'] : [])];

export type CompressionName = 'zlib' | 'gzip' | 'brotli';

export const COMPRESSION_NAMES: readonly CompressionName[] = ['zlib', 'gzip', 'brotli'];

/** Compresses `body`; returns the bytes and the value of the `compression` header. */
export function compress(body: Buffer, name: CompressionName): { body: Buffer; header: string } {
  return name === 'brotli' ? { body: brotliCompressSync(body), header: 'application/x-brotli' } : { body: deflateSync(body), header: 'application/x-gzip' };
}

/**
 * Inflates a body whose `compression` header is `header` (a content type or an alias), to at most
 * `maxBytes` (a larger output is refused, not allocated: no zip bomb). Throws DecodeError.
 */
export function decompress(body: Buffer, header: string, maxBytes: number): Buffer {
  const inflate = (run: () => Buffer): Buffer => {
    try {
      return run();
    } catch (err) {
      const over = (err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE';
      throw new DecodeError(
        over
          ? `${header} body inflates to more than ${maxBytes} bytes (config maxMessageBytes)`
          : `Cannot decompress ${header} body: ${(err as Error).message}`,
        { cause: err },
      );
    }
  };
  switch (header) {
    case 'application/x-gzip':
    case 'zlib':
    case 'gzip':
      return inflate(() => inflateSync(body, { maxOutputLength: maxBytes }));
    case 'application/x-brotli':
    case 'brotli':
      return inflate(() => brotliDecompressSync(body, { maxOutputLength: maxBytes }));
    case 'application/zstd':
    case 'zstd':
    case 'zstandard': {
      if (!zstdDecompressSync)
        throw new DecodeError(`Cannot decompress ${header} body: this Node.js (${process.version}) has no zstd; Node 22.15+ has it built in`);
      return inflate(() => zstdDecompressSync!(body, { maxOutputLength: maxBytes }));
    }
    case 'application/x-bz2':
    case 'bzip2':
    case 'bzip':
    case 'application/x-lzma':
    case 'lzma':
    case 'xz':
      // kombu registers these from Python's standard library; Node has neither built in.
      throw new DecodeError(
        `Unsupported compression "${header}": celeriac has no ${header.includes('bz') ? 'bzip2' : 'xz/lzma'} decoder; send with zlib (or brotli, zstd)`,
      );
    default:
      throw new DecodeError(`Unsupported compression "${header}" (supported: ${DECODABLE.join(', ')})`);
  }
}
