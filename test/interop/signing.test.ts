/**
 * Celery's auth serializer (signed task messages) between Python Celery and celeriac on Redis:
 * Celery 5.7 with the 5.5+ packing and Debian's 5.2 with the 5.2 packing, both ways. Keys and
 * certificates are files, the cert store a folder of them (as a mounted Kubernetes Secret). A
 * message from an untrusted signer and a tampered one are refused with SecurityError, stored for the
 * caller (Python and TypeScript read it) and dead-lettered.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { outgoingTask } from '../../runtime/src/app/send.js';
import { createApp } from '../../runtime/src/index.js';
import { TaskFailedError } from '../../runtime/src/errors.js';
import { DEAD_REASON_HEADER } from '../../runtime/src/protocol/dead-letter.js';
import { makeCertificate } from '../support/certificates.js';
import { eventually } from '../support/eventually.js';
import { useRedis } from '../support/servers.js';
import { pythonClient, pythonEnv, pythons, skipReason, workerPair } from './interop-suite.js';

const redis = await useRedis();
after(() => redis.server?.stop());
const url = redis.server?.url ?? 'redis://127.0.0.1:1/0';

const dir = mkdtempSync(join(tmpdir(), 'celeriac-signing-'));
const py = makeCertificate('python', dir);
const ts = makeCertificate('typescript', dir);
const mallory = makeCertificate('mallory', dir);
// The trusted store: the two certificates, as the keys of a mounted Secret.
const store = join(dir, 'store');
mkdirSync(store);
copyFileSync(py.certPath, join(store, 'python.pem'));
copyFileSync(ts.certPath, join(store, 'typescript.pem'));

const pySecurity = (who: { keyPath: string; certPath: string }) => ({
  INTEROP_SECURITY_KEY: who.keyPath,
  INTEROP_SECURITY_CERTIFICATE: who.certPath,
  INTEROP_SECURITY_CERT_STORE: store,
});

for (const python of pythons) {
  const format = python.label === 'Celery 5.7' ? 'celery-5.5' : 'celery-5.2';
  describe(`${python.label} <-> celeriac: signed messages, ${format} packing (redis)`, { skip: skipReason(python, redis.skip) }, () => {
    const tsSecurity = {
      CELERIAC_TASK_SERIALIZER: 'auth',
      CELERIAC_ACCEPT_CONTENT: 'auth',
      CELERIAC_SECURITY_KEY: ts.keyPath,
      CELERIAC_SECURITY_CERTIFICATE: ts.certPath,
      CELERIAC_SECURITY_CERT_STORE: store,
      CELERIAC_SECURITY_FORMAT: format,
    };
    const { tsQueue, pyQueue, apps, withLogs } = workerPair(python, url, 'auth', { ts: tsSecurity, py: pySecurity(py) });

    it('a Python client signs, the TS worker verifies and runs; an untrusted signer gets SecurityError', () =>
      withLogs(async () => {
        const [ok] = await pythonClient(python.exe!, { ...pythonEnv(url, url, tsQueue), ...pySecurity(py) }, [
          { op: 'send_task', name: 'interop.add', args: [2, 3], queue: tsQueue },
        ]);
        assert.equal(ok!.result, 5);
        const [refused] = await pythonClient(python.exe!, { ...pythonEnv(url, url, tsQueue), ...pySecurity(mallory) }, [
          { op: 'send_task', name: 'interop.add', args: [40, 2], queue: tsQueue },
        ]);
        assert.equal(refused!.state, 'FAILURE');
        assert.equal(refused!.error?.type, 'SecurityError');
        assert.equal(refused!.error?.module, 'celery.exceptions');
        assert.match(refused!.error!.message, /Unknown certificate: 'US Celeriac mallory \d+'/);
        const dead = await deadLetters(`${tsQueue}.dead`, 1);
        assert.match(dead[0]!.reason, /Unknown certificate/);
      }));

    it('celeriac signs, the Python worker verifies and runs; a tampered body is refused and dead-lettered byte-exact', () =>
      withLogs(async () => {
        const app = createApp({
          name: 'interop-auth',
          broker: url,
          backend: url,
          taskSerializer: 'auth',
          acceptContent: ['auth'],
          securityKey: ts.keyPath,
          securityCertificate: ts.certPath,
          securityCertStore: store,
          securityFormat: format,
          logLevel: 'warn',
        });
        apps.push(app);
        const r = await app.sendTask<number>('pyinterop.add', [40, 2], {}, { queue: pyQueue });
        assert.equal(await r.get({ timeout: 60_000 }), 42);

        // A signed message whose body changed on the way: same signature, other numbers.
        const signed = signedMessage(app, 'interop.add', [1, 1]);
        const raw = Buffer.from(signed.body.toString(), 'base64');
        const changed = Buffer.from(raw.toString('latin1').replace('[[1, 1]', '[[9, 9]').replace('[[1,1]', '[[9,9]'), 'latin1');
        assert.notDeepEqual(changed, raw, 'the body was changed');
        const tampered = { ...signed, body: Buffer.from(changed.toString('base64')) };
        await (await app.broker()).publish(tsQueue, tampered);
        const err = await app
          .asyncResult(String(signed.headers.id))
          .get({ timeout: 30_000 })
          .then(
            () => null,
            (e: unknown) => e,
          );
        assert.ok(err instanceof TaskFailedError, `a TaskFailedError, got ${String(err)}`);
        assert.equal(err.excType, 'SecurityError');
        assert.match(err.excMessage, /Bad signature/);
        const dead = await deadLetters(`${tsQueue}.dead`, 2);
        assert.ok(
          dead.some((d) => d.body.equals(tampered.body) && /Bad signature/.test(d.reason)),
          'dead-lettered with its bytes and the reason',
        );
      }));
  });
}

/** A signed task message as the app would send it, not sent. */
function signedMessage(app: ReturnType<typeof createApp>, name: string, args: unknown[]) {
  return outgoingTask(
    name,
    args,
    {},
    {},
    { config: app.config, origin: app.origin, task: undefined, route: null, ownReplyTo: undefined, id: randomUUID(), now: Date.now(), signer: app.signer() },
  ).message;
}

/** The dead letters of a Redis queue, once there are `n`. */
async function deadLetters(queue: string, n: number): Promise<{ body: Buffer; reason: string }[]> {
  const r = new Redis(url);
  try {
    return await eventually(async () => {
      const items = await r.lrange(queue, 0, -1);
      assert.equal(items.length, n, `dead letters in ${queue}`);
      return items.map((t) => {
        const e = JSON.parse(t) as { body: string; headers: Record<string, unknown> };
        return { body: Buffer.from(e.body, 'base64'), reason: String(e.headers[DEAD_REASON_HEADER]) };
      });
    });
  } finally {
    r.disconnect();
  }
}
