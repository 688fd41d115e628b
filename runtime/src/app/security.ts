/**
 * The message signer of an app, from its security config (Celery's security_key,
 * security_certificate, security_cert_store, security_digest): PEM files read once, e.g. from a
 * mounted Kubernetes Secret. protocol/signing.ts does the cryptography.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../errors.js';
import { createMessageSigner, type MessageSigner } from '../protocol/signing.js';
import type { Config } from './config.js';

/** The signer the config describes, or null when it names no key, certificate or cert store. */
export function signerFromConfig(c: Config): MessageSigner | null {
  if (c.securityKey === null && c.securityCertificate === null && c.securityCertStore === null) return null;
  const problems: string[] = [];
  const read = (path: string, key: string): string | undefined => {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      problems.push(`${key}: cannot read ${path} (${(err as Error).message})`);
      return undefined;
    }
  };
  if ((c.securityKey === null) !== (c.securityCertificate === null)) problems.push('securityKey and securityCertificate: give both to sign, or neither');
  const usesAuth = c.taskSerializer === 'auth' || c.acceptContent.includes('auth') || c.acceptContent.includes('application/data');
  if (!usesAuth) problems.push("security keys are set, but neither taskSerializer nor acceptContent uses 'auth'");
  const key = c.securityKey === null ? undefined : read(c.securityKey, 'securityKey');
  const certificate = c.securityCertificate === null ? undefined : read(c.securityCertificate, 'securityCertificate');
  const store: string[] = [];
  if (c.securityCertStore !== null) {
    const path = c.securityCertStore;
    let files: string[] = [path];
    try {
      // A folder means every file in it, as Celery's FSCertStore (a mounted Secret's keys).
      if (statSync(path).isDirectory())
        files = readdirSync(path)
          .filter((f) => !f.startsWith('.'))
          .map((f) => join(path, f))
          .filter((f) => statSync(f).isFile());
    } catch (err) {
      problems.push(`securityCertStore: cannot read ${path} (${(err as Error).message})`);
      files = [];
    }
    for (const f of files) {
      const pem = read(f, 'securityCertStore');
      if (pem !== undefined) store.push(pem);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return createMessageSigner({
    key,
    keyPassword: c.securityKeyPassword ?? undefined,
    certificate,
    certStore: store,
    digest: c.securityDigest,
    format: c.securityFormat,
  });
}
