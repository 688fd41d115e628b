/**
 * Values across the boundary, both ways, on Redis with results in Redis (docs/values.md): Celery
 * 5.2 (Debian's) to 5.7, each series with its kombu, json and msgpack task messages. Each value is checked on both sides:
 * as the receiving task saw it, and as the sender read it back from the result.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { createApp } from '../../runtime/src/index.js';
import { useRedis } from '../support/servers.js';
import { allSeries, fixtures, pythonEnv, skipReason, workerPair } from './interop-suite.js';

const run = promisify(execFile);
const redis = await useRedis();
after(() => redis.server?.stop());
const url = redis.server?.url ?? 'redis://127.0.0.1:1/0';

/** A value as Python saw it (py_tasks.py `described`). */
type Py = { type: string; repr: string };
const py = (type: string, repr: string): Py => ({ type, repr });
/** A value as TypeScript saw it (ts-tasks.ts `described`). */
type Ts = { kind: string; text: string };
const ts = (kind: string, text: string): Ts => ({ kind, text });

async function pyValues(exe: string, serializer: string, op: 'to_ts' | 'from_ts', queue: string): Promise<Record<string, unknown>> {
  const env = pythonEnv(url, url, queue, serializer);
  const { stdout } = await run(exe, [join(fixtures, 'py_values.py'), op, queue], { env, cwd: fixtures, timeout: 120_000 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>;
}

for (const python of allSeries) {
  describe(`${python.label} <-> celeriac: values (redis)`, { skip: skipReason(python, redis.skip) }, () => {
    const kombuTags = python.series >= 5.3; // kombu >= 5.3 writes and reads bytes/datetime tags
    // A cluster of Celery 5.3+ peers only may write Dates as kombu's datetime tag (jsonDateTags);
    // with 5.2 in it, celeriac writes ISO text (spec §2.2).
    const { tsQueue, pyQueue, apps, withLogs } = workerPair(python, url, 'values', { ts: { CELERIAC_JSON_DATE_TAGS: kombuTags ? '1' : '0' } });
    /** A TS Date as Python reads it from JSON: a datetime with tags, else its ISO text. */
    const dateInPython = kombuTags
      ? py('datetime', 'datetime.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.timezone.utc)')
      : py('str', "'2024-01-02T03:04:05.678Z'");

    for (const serializer of ['json', 'msgpack'] as const) {
      it(`Python values reach a TS task exact (${serializer}), and Python reads them back exact from its result`, () =>
        withLogs(async () => {
          const r = (await pyValues(python.exe!, serializer, 'to_ts', tsQueue)) as { names: string[]; sent: Py[]; ts_saw: Ts[]; echo: Py[] };
          const big = serializer === 'json' ? '18446744073709551616' : '18446744073709551615';
          const tsExpected: Record<string, Ts> = {
            int_2_53_plus_1: ts('bigint', '9007199254740993'),
            int_neg_2_63: ts('bigint', '-9223372036854775808'),
            int_2_40: ts('number', '1099511627776'),
            int_big: ts('bigint', big),
            float: ts('number', '1.5'),
            nan: ts('number', 'NaN'),
            inf: ts('number', 'Infinity'),
            neg_inf: ts('number', '-Infinity'),
            bytes_binary: ts('Buffer', 'ff00'),
            bytes_text: ts('Buffer', '68c3a9'),
            // kombu 5.2 writes an aware datetime as a plain ISO string with Z.
            datetime: kombuTags ? ts('Date', '2024-01-02T03:04:05.678Z') : ts('string', '"2024-01-02T03:04:05.678000Z"'),
            timestamp: ts('Date', '2024-01-02T03:04:05.678Z'),
          };
          assert.deepEqual(Object.fromEntries(r.names.map((n, i) => [n, r.ts_saw[i]])), Object.fromEntries(r.names.map((n) => [n, tsExpected[n]])));
          // Back in Python: every value as it was sent, except a Date (a datetime with tags, else ISO
          // text) and bytes for kombu 5.2, which cannot read kombu 5.3's bytes tag (a dict there).
          const echoExpected = (name: string, sent: Py): Py => {
            if (name === 'timestamp' || (name === 'datetime' && kombuTags)) return dateInPython;
            if (name === 'datetime') return py('str', "'2024-01-02T03:04:05.678000Z'"); // kombu 5.2 sent this text
            if (name.startsWith('bytes') && !kombuTags) return { type: 'dict', repr: r.echo[r.names.indexOf(name)]!.repr };
            return sent;
          };
          assert.deepEqual(
            r.echo,
            r.names.map((n, i) => echoExpected(n, r.sent[i]!)),
          );
          if (!kombuTags && r.names.includes('bytes_binary'))
            assert.match(r.echo[r.names.indexOf('bytes_binary')]!.repr, /'__type__': 'base64', '__value__': '\/wA='/);
        }));

      it(`TS values reach a Python task exact (${serializer}), and TS reads them back exact from its result`, () =>
        withLogs(async () => {
          const app = createApp({ name: 'interop-values', broker: url, backend: url, taskSerializer: serializer, jsonDateTags: kombuTags, logLevel: 'warn' });
          apps.push(app);
          const big = serializer === 'json' ? 2n ** 64n : 2n ** 64n - 1n;
          const sent = [2n ** 53n + 1n, big, 2 ** 40, NaN, Infinity, -Infinity, Buffer.from([0xff, 0]), new Date('2024-01-02T03:04:05.678Z')];
          const res = await app.sendTask<{ kinds: Py[]; echo: unknown[] }>('pyinterop.inspect_values', sent, {}, { queue: pyQueue });
          const { kinds, echo } = await res.get({ timeout: 60_000 });
          const bytesInPython =
            serializer === 'msgpack' || kombuTags ? py('bytes', "b'\\xff\\x00'") : py('dict', "{'__type__': 'base64', '__value__': '/wA='}");
          assert.deepEqual(kinds, [
            py('int', '9007199254740993'),
            py('int', String(big)),
            py('int', '1099511627776'),
            py('float', 'nan'),
            py('float', 'inf'),
            py('float', '-inf'),
            bytesInPython,
            // msgpack has no datetime in kombu: ISO text either way.
            serializer === 'json' ? dateInPython : py('str', "'2024-01-02T03:04:05.678Z'"),
          ]);
          // Python 5.2 echoes msgpack bytes as {"hex"}: its JSON cannot write bytes.
          const bytesBack = serializer === 'msgpack' && !kombuTags ? { hex: 'ff00' } : Buffer.from([0xff, 0]);
          // Python 5.7 returns a datetime it got as one, tagged: a Date again.
          const dateBack = serializer === 'json' && kombuTags ? new Date('2024-01-02T03:04:05.678Z') : '2024-01-02T03:04:05.678Z';
          assert.deepStrictEqual(echo, [2n ** 53n + 1n, big, 2 ** 40, NaN, Infinity, -Infinity, bytesBack, dateBack]);
        }));
    }

    it('values a TS task returns are read exact by Python AsyncResult.get()', () =>
      withLogs(async () => {
        const r = (await pyValues(python.exe!, 'json', 'from_ts', tsQueue)) as { got: Record<string, Py> };
        const bytes = (repr: string, b64: string) => (kombuTags ? py('bytes', repr) : py('dict', `{'__type__': 'base64', '__value__': '${b64}'}`));
        assert.deepEqual(r.got, {
          int_2_53_plus_1: py('int', '9007199254740993'),
          int_2_64: py('int', '18446744073709551616'),
          int_2_40: py('int', '1099511627776'),
          nan: py('float', 'nan'),
          inf: py('float', 'inf'),
          neg_inf: py('float', '-inf'),
          bytes_binary: bytes("b'\\xff\\x00'", '/wA='),
          bytes_text: kombuTags ? py('bytes', "b'h\\xc3\\xa9'") : py('dict', "{'__type__': 'bytes', '__value__': 'hé'}"),
          date: dateInPython,
        });
      }));
  });
}
