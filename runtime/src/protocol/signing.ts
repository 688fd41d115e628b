/**
 * Celery's `auth` serializer (spec §2.5; celery/security): the serialized body is signed with the
 * sender's RSA key (PSS, MGF1, maximum salt) and packed with the signer's certificate id, the inner
 * content type and encoding, under content type `application/data`. Both packings are written and
 * read: Celery 5.2-5.4 put the signer and signature raw, 5.5+ base64 each; they cannot read each
 * other, so the writer's is chosen by config, and the reader detects it (5.5+ first).
 *
 * Keys and certificates come in as PEM text (app/security.ts reads the files); everything here is
 * pure. A message that fails any check throws SecurityError, Celery's exception for it.
 */
import { constants, createPrivateKey, sign, verify, X509Certificate, type KeyObject } from 'node:crypto';
import { SecurityError } from '../errors.js';

/** The content type and encoding of a signed body, as Celery registers the auth serializer. */
export const AUTH_CONTENT_TYPE = 'application/data';
export const AUTH_CONTENT_ENCODING = 'utf-8';

/** Which Celery generation's packing to write (both are always read). */
export type SignatureFormat = 'celery-5.5' | 'celery-5.2';
export const SIGNATURE_FORMATS: readonly SignatureFormat[] = ['celery-5.5', 'celery-5.2'];

const SEP = Buffer.from([0x00, 0x01]);

export interface SignerOptions {
  /** PEM private key (RSA); with `keyPassword` when it is encrypted. */
  readonly key?: string;
  readonly keyPassword?: string;
  /** PEM certificate of `key`: its issuer and serial number name the signer. */
  readonly certificate?: string;
  /** PEM certificates of every trusted signer (Celery's cert store). */
  readonly certStore?: readonly string[];
  /** Digest of the signature (Celery's security_digest), default sha256. */
  readonly digest?: string;
  readonly format?: SignatureFormat;
  /** For the expiry check of the store; default now. */
  readonly now?: Date;
}

/** An inner body and how it is serialized, as packed in a signed message. */
export interface SignedContent {
  readonly body: Buffer;
  readonly contentType: string;
  readonly contentEncoding: string;
}

export interface MessageSigner {
  /** Signs a serialized body: the `application/data` body to send. Needs `key` and `certificate`. */
  sign(inner: SignedContent): Buffer;
  /** Checks a signed body against the cert store and returns the inner body; throws SecurityError. */
  verify(body: Buffer): SignedContent;
}

/**
 * Celery's certificate id: the issuer's attribute values joined by spaces, then the serial number
 * in decimal (e.g. `US Celeriac worker1 4775…`).
 */
export function certificateId(cert: X509Certificate): string {
  const values = cert.issuer.split('\n').map((rdn) => rdn.slice(rdn.indexOf('=') + 1));
  return `${values.join(' ')} ${BigInt(`0x${cert.serialNumber}`).toString(10)}`;
}

/** Builds a signer/verifier; throws SecurityError for a key or certificate Celery would refuse. */
export function createMessageSigner(o: SignerOptions): MessageSigner {
  const digest = o.digest ?? 'sha256';
  const format = o.format ?? 'celery-5.5';
  const guard = <T>(what: string, f: () => T): T => {
    try {
      return f();
    } catch (err) {
      throw new SecurityError(`${what}: ${(err as Error).message}`, { cause: err });
    }
  };
  const key: KeyObject | null = o.key ? guard('Invalid private key', () => createPrivateKey({ key: o.key!, passphrase: o.keyPassword })) : null;
  if (key && key.asymmetricKeyType !== 'rsa') throw new SecurityError(`Unsupported private key type ${key.asymmetricKeyType}: Celery signs with RSA keys only`);
  const own = o.certificate ? guard('Invalid certificate', () => new X509Certificate(o.certificate!)) : null;
  const ownId = own ? certificateId(own) : null;
  const store = new Map<string, X509Certificate>();
  const now = o.now ?? new Date();
  for (const pem of o.certStore ?? []) {
    const cert = guard('Invalid certificate in the cert store', () => new X509Certificate(pem));
    const id = certificateId(cert);
    if (now >= new Date(cert.validTo)) throw new SecurityError(`Expired certificate: '${id}'`);
    if (store.has(id)) throw new SecurityError(`Duplicate certificate: '${id}'`);
    store.set(id, cert);
  }
  const pss = { padding: constants.RSA_PKCS1_PSS_PADDING };

  const certOf = (id: string): X509Certificate => {
    const cert = store.get(id);
    if (!cert) throw new SecurityError(`Unknown certificate: '${id}'`);
    return cert;
  };

  /** The fields of a signed body, in whichever packing it has. */
  const unpack = (raw: Buffer): { signer: string; signature: Buffer; rest: Buffer[] } => {
    // 5.5+: base64(signer) SEP base64(signature) SEP ct SEP ce SEP body (at most 5 parts).
    const parts = splitOnSep(raw, 5);
    let signer55: string | null = null;
    if (parts.length === 5 && isBase64(parts[0]!) && isBase64(parts[1]!)) {
      signer55 = Buffer.from(parts[0]!.toString('latin1'), 'base64').toString('utf8');
      if (store.has(signer55)) return { signer: signer55, signature: Buffer.from(parts[1]!.toString('latin1'), 'base64'), rest: parts.slice(2) };
    }
    // 5.2-5.4: signer SEP signature (key size / 8 bytes, may hold SEP) SEP ct SEP ce SEP body.
    const first = raw.indexOf(SEP);
    if (first < 0) throw new SecurityError('Signed message has no signer field');
    const signer = raw.subarray(0, first).toString('utf8');
    // Known under neither packing: name the signer as the 5.5+ packing gives it, when it parsed.
    if (!store.has(signer) && signer55 !== null) certOf(signer55);
    const bits = certOf(signer).publicKey.asymmetricKeyDetails?.modulusLength ?? 0;
    const start = first + SEP.length;
    const signature = raw.subarray(start, start + (bits >> 3));
    return { signer, signature, rest: splitOnSep(raw.subarray(start + (bits >> 3) + SEP.length), 3) };
  };

  return {
    sign(inner) {
      if (!key || !own || !ownId) throw new SecurityError('Signing needs securityKey and securityCertificate');
      const signature = sign(digest, inner.body, { key, ...pss, saltLength: constants.RSA_PSS_SALTLEN_MAX_SIGN });
      const head =
        format === 'celery-5.5'
          ? [Buffer.from(Buffer.from(ownId).toString('base64')), Buffer.from(signature.toString('base64'))]
          : [Buffer.from(ownId), signature];
      const fields = [...head, Buffer.from(inner.contentType), Buffer.from(inner.contentEncoding), inner.body];
      return Buffer.from(joinOnSep(fields).toString('base64'));
    },
    verify(body) {
      const raw = Buffer.from(body.toString('latin1'), 'base64');
      const { signer, signature, rest } = unpack(raw);
      const [contentType, contentEncoding, inner] = rest;
      if (inner === undefined) throw new SecurityError(`Signed message from '${signer}' is missing fields`);
      const cert = certOf(signer);
      let ok: boolean;
      try {
        ok = verify(digest, inner, { key: cert.publicKey, ...pss, saltLength: constants.RSA_PSS_SALTLEN_AUTO }, signature);
      } catch (err) {
        throw new SecurityError(`Bad signature from '${signer}': ${(err as Error).message}`, { cause: err });
      }
      if (!ok) throw new SecurityError(`Bad signature from '${signer}': the body does not match it`);
      return { body: inner, contentType: contentType!.toString('utf8'), contentEncoding: contentEncoding!.toString('utf8') };
    },
  };
}

function splitOnSep(b: Buffer, maxParts: number): Buffer[] {
  const out: Buffer[] = [];
  let from = 0;
  while (out.length < maxParts - 1) {
    const at = b.indexOf(SEP, from);
    if (at < 0) break;
    out.push(b.subarray(from, at));
    from = at + SEP.length;
  }
  out.push(b.subarray(from));
  return out;
}

function joinOnSep(parts: readonly Buffer[]): Buffer {
  return Buffer.concat(parts.flatMap((p, i) => (i === 0 ? [p] : [SEP, p])));
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
function isBase64(b: Buffer): boolean {
  return b.length % 4 === 0 && BASE64.test(b.toString('latin1'));
}
