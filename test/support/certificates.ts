/**
 * Self-signed RSA certificates for the signing tests, made with the openssl CLI in a fresh folder
 * (Node cannot make certificates): as a user would make them for Celery's auth serializer.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCertificate {
  readonly keyPath: string;
  readonly certPath: string;
  readonly key: string;
  readonly cert: string;
}

/** A 2048-bit RSA key and its self-signed certificate for /C=US/O=Celeriac/CN=<name>, in `dir`. */
export function makeCertificate(name: string, dir = mkdtempSync(join(tmpdir(), 'celeriac-cert-'))): TestCertificate {
  const keyPath = join(dir, `${name}.key`);
  const certPath = join(dir, `${name}.pem`);
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '3650', '-subj', `/C=US/O=Celeriac/CN=${name}`],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  return { keyPath, certPath, key: readFileSync(keyPath, 'utf8'), cert: readFileSync(certPath, 'utf8') };
}
