/**
 * Body compression as kombu names it: the `compression` header holds a content type
 * (`application/x-gzip` is a zlib stream, not gzip; spec §2.4). Decoders accept the aliases too.
 */
import { brotliCompressSync, brotliDecompressSync, deflateSync, inflateSync } from 'node:zlib';
import { ProtocolError } from '../errors.js';

export type CompressionName = 'zlib' | 'gzip' | 'brotli';

export const COMPRESSION_NAMES: readonly CompressionName[] = ['zlib', 'gzip', 'brotli'];

/** Compresses `body`; returns the bytes and the value of the `compression` header. */
export function compress(body: Buffer, name: CompressionName): { body: Buffer; header: string } {
  return name === 'brotli' ? { body: brotliCompressSync(body), header: 'application/x-brotli' } : { body: deflateSync(body), header: 'application/x-gzip' };
}

/** Inflates a body whose `compression` header is `header` (a content type or an alias). */
export function decompress(body: Buffer, header: string): Buffer {
  switch (header) {
    case 'application/x-gzip':
    case 'zlib':
    case 'gzip':
      return inflateSync(body);
    case 'application/x-brotli':
    case 'brotli':
      return brotliDecompressSync(body);
    default:
      throw new ProtocolError(
        `Unsupported compression "${header}" (supported: application/x-gzip (zlib), application/x-brotli). ` +
          `bzip2, lzma and zstd bodies need a sender that uses zlib.`,
      );
  }
}
