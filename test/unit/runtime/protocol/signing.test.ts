/**
 * Celery's auth serializer (protocol/signing.ts, spec §2.5): both packings written and read, the
 * signer id as Celery computes it, and every tampering refused with SecurityError.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { describe, it } from 'node:test';
import { certificateId, createMessageSigner, SIGNATURE_FORMATS } from '../../../../runtime/src/protocol/signing.js';
import { SecurityError } from '../../../../runtime/src/errors.js';
import { makeCertificate } from '../../../support/certificates.js';

const alice = makeCertificate('alice');
const mallory = makeCertificate('mallory');
const inner = { body: Buffer.from('[[2, 2], {}, {"callbacks": null}]'), contentType: 'application/json', contentEncoding: 'utf-8' };
const SEP = Buffer.from([0, 1]);

describe('auth serializer', () => {
  it("names the signer as Celery does: the issuer's values, then the serial in decimal", () => {
    const cert = new X509Certificate(alice.cert);
    assert.equal(certificateId(cert), `US Celeriac alice ${BigInt(`0x${cert.serialNumber}`)}`);
  });

  for (const format of SIGNATURE_FORMATS) {
    it(`${format}: signs, and a reader of either packing verifies and unpacks`, () => {
      const s = createMessageSigner({ key: alice.key, certificate: alice.cert, certStore: [alice.cert], format });
      const body = s.sign(inner);
      const raw = Buffer.from(body.toString(), 'base64');
      const id = certificateId(new X509Certificate(alice.cert));
      const first = raw.subarray(0, raw.indexOf(SEP)).toString();
      assert.equal(first, format === 'celery-5.5' ? Buffer.from(id).toString('base64') : id);
      assert.deepEqual(createMessageSigner({ certStore: [alice.cert] }).verify(body), inner);
    });
  }

  it('refuses a changed body, an unknown signer and a forged signer id, as SecurityError', () => {
    const s = createMessageSigner({ key: alice.key, certificate: alice.cert, certStore: [alice.cert] });
    const reader = createMessageSigner({ certStore: [alice.cert] });
    const raw = Buffer.from(s.sign(inner).toString(), 'base64');
    const tampered = Buffer.from(raw.toString('latin1').replace('[[2, 2]', '[[2, 3]'), 'latin1');
    assert.throws(
      () => reader.verify(Buffer.from(tampered.toString('base64'))),
      (e) => e instanceof SecurityError && /Bad signature/.test(e.message),
    );
    const fromMallory = createMessageSigner({ key: mallory.key, certificate: mallory.cert }).sign(inner);
    assert.throws(
      () => reader.verify(fromMallory),
      (e) => e instanceof SecurityError && /Unknown certificate/.test(e.message),
    );
    // Mallory's key under Alice's name.
    const forged = createMessageSigner({ key: mallory.key, certificate: alice.cert }).sign(inner);
    assert.throws(
      () => reader.verify(forged),
      (e) => e instanceof SecurityError && /Bad signature/.test(e.message),
    );
  });

  it('refuses a non-RSA key, a duplicate certificate and garbage, as SecurityError', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    assert.throws(
      () => createMessageSigner({ key: ec, certificate: alice.cert }),
      (e) => e instanceof SecurityError && /RSA keys only/.test(e.message),
    );
    assert.throws(() => createMessageSigner({ certStore: [alice.cert, alice.cert] }), /Duplicate certificate/);
    assert.throws(() => createMessageSigner({ certStore: [alice.cert] }).verify(Buffer.from('not base64 at all!')), SecurityError);
    assert.throws(() => createMessageSigner({ certStore: [alice.cert] }).verify(Buffer.from('')), SecurityError);
  });
});
