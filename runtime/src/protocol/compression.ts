/**
 * Body compression as kombu names it: the `compression` header holds a content type
 * (`application/x-gzip` is a zlib stream, not gzip; spec §2.4). Decoders accept the aliases too.
 */
import { brotliCompressSync, brotliDecompressSync, deflateSync, inflateSync } from 'node:zlib';
import { DecodeError } from '../errors.js';

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
    default:
      throw new DecodeError(
        `Unsupported compression "${header}" (supported: application/x-gzip (zlib), application/x-brotli). ` +
          `bzip2, lzma and zstd bodies need a sender that uses zlib.`,
      );
  }
}
