/**
 * amqplib, loaded with a field-table decoder that reads every AMQP 0-9-1 tag py-amqp writes.
 *
 * Why (spec §4.7): py-amqp writes Python ints outside ±2^31 with the tag `L` (signed 64-bit).
 * amqplib 0.10 throws `Unexpected type tag "L"` while parsing the frame and drops the whole
 * connection, so one Python message with a large header value (a stamp, a user header holding an
 * id) would take a celeriac worker down, over and over on every redelivery. The replacement below is
 * amqplib's decoder plus `L` (int64), `U` (int16) and `l` kept as int64; a tag it still cannot
 * read ends that table early (its length is known) with `x-celeriac-undecodable-header` naming the
 * key, instead of killing the connection.
 *
 * amqplib's generated defs.js copies `codec.decodeFields` when it loads, so the codec is patched
 * before amqplib is first required; if something loaded amqplib earlier, its modules are loaded
 * afresh. Import amqplib only from here.
 */
import { createRequire } from 'node:module';
import type * as AmqplibModule from 'amqplib';

const require = createRequire(import.meta.url);

type Fields = Record<string, unknown>;

/** Decodes one field table (the slice holds exactly the table's bytes). Never throws on a tag. */
export function decodeFields(slice: Buffer): Fields {
  const fields: Fields = {};
  let offset = 0;
  let val: unknown;

  const decodeValue = (): boolean => {
    const tag = String.fromCharCode(slice[offset]!);
    offset++;
    let len: number;
    switch (tag) {
      case 'b': val = slice.readInt8(offset); offset += 1; break;
      case 'B': val = slice.readUInt8(offset); offset += 1; break;
      case 's': case 'U': val = slice.readInt16BE(offset); offset += 2; break;
      case 'u': val = slice.readUInt16BE(offset); offset += 2; break;
      case 'I': val = slice.readInt32BE(offset); offset += 4; break;
      case 'i': val = slice.readUInt32BE(offset); offset += 4; break;
      // py-amqp writes large Python ints as 'L' with a signed 64-bit value; RabbitMQ uses 'l'.
      // Numbers beyond 2^53 lose precision, as JSON.parse does with the same value in a body.
      case 'L': case 'l': val = Number(slice.readBigInt64BE(offset)); offset += 8; break;
      case 'f': val = slice.readFloatBE(offset); offset += 4; break;
      case 'd': val = slice.readDoubleBE(offset); offset += 8; break;
      case 't': val = slice[offset] !== 0; offset += 1; break;
      case 'V': val = null; break;
      case 'S':
        len = slice.readUInt32BE(offset); offset += 4;
        val = slice.toString('utf8', offset, offset + len); offset += len;
        break;
      case 'x':
        len = slice.readUInt32BE(offset); offset += 4;
        val = slice.subarray(offset, offset + len); offset += len;
        break;
      case 'D': {
        const places = slice[offset]!; offset += 1;
        const digits = slice.readUInt32BE(offset); offset += 4;
        val = { '!': 'decimal', value: { places, digits } };
        break;
      }
      case 'T':
        val = { '!': 'timestamp', value: Number(slice.readBigUInt64BE(offset)) }; offset += 8;
        break;
      case 'F':
        len = slice.readUInt32BE(offset); offset += 4;
        val = decodeFields(slice.subarray(offset, offset + len)); offset += len;
        break;
      case 'A': {
        len = slice.readUInt32BE(offset); offset += 4;
        const until = offset + len;
        const vals: unknown[] = [];
        while (offset < until) {
          if (!decodeValue()) { offset = until; break; }
          vals.push(val);
        }
        val = vals;
        break;
      }
      default:
        return false;
    }
    return true;
  };

  while (offset < slice.length) {
    const keyLen = slice.readUInt8(offset); offset++;
    const key = slice.toString('utf8', offset, offset + keyLen);
    offset += keyLen;
    if (!decodeValue()) {
      // The value's length is unknown: keep what was read and say which key was cut.
      fields['x-celeriac-undecodable-header'] = key;
      break;
    }
    fields[key] = val;
  }
  return fields;
}

function loadPatched(): typeof AmqplibModule {
  const codecPath = require.resolve('amqplib/lib/codec.js');
  const defsPath = require.resolve('amqplib/lib/defs.js');
  if (require.cache[defsPath]) {
    // Loaded before this module (with the original decoder captured): load amqplib afresh.
    const dir = codecPath.slice(0, codecPath.lastIndexOf('/lib/') + 1);
    for (const k of Object.keys(require.cache)) if (k.startsWith(dir)) delete require.cache[k];
  }
  (require(codecPath) as { decodeFields: (b: Buffer) => Fields }).decodeFields = decodeFields;
  return require('amqplib') as typeof AmqplibModule;
}

/** amqplib's promise API, with the patched field-table decoder. */
export const amqplib = loadPatched();
