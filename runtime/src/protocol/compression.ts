/**
 * Body compression as kombu names it: the `compression` header holds a content type
 * (`application/x-gzip` is a zlib stream, not gzip; spec §2.4). Decoders accept the aliases too.
 *
 * Decoded: zlib and brotli (node:zlib), zstd where node:zlib has it (Node 22.15+), bzip2 with
 * seek-bzip (pure JavaScript, synchronous, loaded on the first bzip2 body). Not decoded: lzma (xz).
 * The xz decoders on npm are native bindings whose prebuilt platform packages npm cannot always
 * install (napi-rs's lzma, node-liblzma, lzma-native) or asynchronous streams (xz-decompress),
 * while decoding here is synchronous. An xz body is refused as DecodeError, stored as FAILURE.
 */
import { createRequire } from 'node:module';
import { DecodeError } from '../errors.js';

/**
 * node:zlib, loaded with the first compressed body (few messages are: a worker that sees none
 * does not load it). `require` keeps compress()/decompress() synchronous.
 */
let zlibModule: typeof import('node:zlib') | undefined;
const zlib = () => (zlibModule ??= createRequire(import.meta.url)('node:zlib') as typeof import('node:zlib'));

/** node:zlib's zstd (Node 22.15+, 23.8+); absent on Node 20, where a zstd body is refused by name. */
const zstdDecompressSync = () => (zlib() as { zstdDecompressSync?: (b: Buffer, o: { maxOutputLength: number }) => Buffer }).zstdDecompressSync;

/** Compression header values this process can decode. */
const decodable = () => ['application/x-gzip (zlib)', 'application/x-brotli', 'application/x-bz2', ...(zstdDecompressSync() ? ['application/zstd'] : [])];

/** seek-bzip's decoder: writes each byte to `output.writeByte`. */
type Bunzip = { decode(input: Buffer, output: { writeByte(byte: number): void }, multistream?: boolean): void };
let bunzip: Bunzip | undefined;

/** bzip2 inflated into a buffer that grows to at most `maxBytes` (a larger output throws ERR_BUFFER_TOO_LARGE). */
function bunzip2(body: Buffer, maxBytes: number): Buffer {
  bunzip ??= createRequire(import.meta.url)('seek-bzip') as Bunzip;
  let out = Buffer.allocUnsafe(Math.min(maxBytes, Math.max(16_384, body.length * 4)));
  let size = 0;
  bunzip.decode(
    body,
    {
      writeByte(byte) {
        if (size === out.length) {
          if (size >= maxBytes) throw Object.assign(new RangeError('output too large'), { code: 'ERR_BUFFER_TOO_LARGE' });
          const grown = Buffer.allocUnsafe(Math.min(maxBytes, size * 2));
          out.copy(grown);
          out = grown;
        }
        out[size++] = byte;
      },
    },
    true, // Python's bz2.compress writes one stream; concatenated streams are valid bzip2 too
  );
  return out.subarray(0, size);
}

export type CompressionName = 'zlib' | 'gzip' | 'brotli';

export const COMPRESSION_NAMES: readonly CompressionName[] = ['zlib', 'gzip', 'brotli'];

/** Compresses `body`; returns the bytes and the value of the `compression` header. */
export function compress(body: Buffer, name: CompressionName): { body: Buffer; header: string } {
  return name === 'brotli'
    ? { body: zlib().brotliCompressSync(body), header: 'application/x-brotli' }
    : { body: zlib().deflateSync(body), header: 'application/x-gzip' };
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
      return inflate(() => zlib().inflateSync(body, { maxOutputLength: maxBytes }));
    case 'application/x-brotli':
    case 'brotli':
      return inflate(() => zlib().brotliDecompressSync(body, { maxOutputLength: maxBytes }));
    case 'application/zstd':
    case 'zstd':
    case 'zstandard': {
      const zstd = zstdDecompressSync();
      if (!zstd) throw new DecodeError(`Cannot decompress ${header} body: this Node.js (${process.version}) has no zstd; Node 22.15+ has it built in`);
      return inflate(() => zstd(body, { maxOutputLength: maxBytes }));
    }
    case 'application/x-bz2':
    case 'bzip2':
    case 'bzip':
      return inflate(() => bunzip2(body, maxBytes));
    case 'application/x-lzma':
    case 'lzma':
    case 'xz':
      // kombu registers lzma from Python's standard library; see the file comment for why not here.
      throw new DecodeError(`Unsupported compression "${header}": celeriac has no xz/lzma decoder; send with zlib (or brotli, bzip2, zstd)`);
    default:
      throw new DecodeError(`Unsupported compression "${header}" (supported: ${decodable().join(', ')})`);
  }
}
