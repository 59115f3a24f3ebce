/**
 * The client–MP contract's cryptography (docs/adr/0005-mp-client-protocol.md):
 * Ed25519 key pairs for clients and the site, the `CairnClient` request
 * signature, and the site's signature over policy documents. Shared by the
 * MP (verifying) and the agent (signing, verifying policies), so that the two
 * cannot drift apart.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, randomUUID, sign, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';

export const CLIENT_AUTH_SCHEME = 'CairnClient';
/** How far a request's timestamp may be from the MP's clock. */
export const CLIENT_CLOCK_WINDOW_MS = 5 * 60 * 1000;
/** The product's hash algorithm ID for SHA-256 (REFERENCE.md: 32780, 0x800C). */
export const HASH_ALGORITHM_SHA256 = 32780;
export const SIGNATURE_HEADER = 'x-cairn-signature';
export const HASH_HEADER = 'x-cairn-hash';
export const HASH_ALGORITHM_HEADER = 'x-cairn-hash-algorithm';

export interface KeyPairPem {
  /** PKCS#8 PEM. */
  readonly privateKey: string;
  /** SPKI PEM. */
  readonly publicKey: string;
}

export function newKeyPair(): KeyPairPem {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/** A new client ID in the `Report`'s shape: `GUID:` and an upper-case UUID. */
export function newClientId(): string {
  return `GUID:${randomUUID().toUpperCase()}`;
}

export const CLIENT_ID_RE = /^GUID:[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$/;

/** SHA-256 of the DER public key, hex upper: what an administrator compares. */
export function keyFingerprint(publicKeyPem: string): string {
  const der = createPublicKey(publicKeyPem).export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('hex').toUpperCase();
}

/** Parses a public key, or undefined when it is not an Ed25519 SPKI PEM. */
export function parsePublicKey(pem: string): KeyObject | undefined {
  try {
    const key = createPublicKey(pem);
    return key.asymmetricKeyType === 'ed25519' ? key : undefined;
  } catch {
    return undefined;
  }
}

export function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

function requestText(method: string, pathWithQuery: string, ts: number | string, nonce: string, body: Buffer | string): string {
  return `${method.toUpperCase()}\n${pathWithQuery}\n${ts}\n${nonce}\n${sha256Hex(body)}`;
}

/** The Authorization header for a client request. `pathWithQuery` is exactly what goes on the request line. */
export function signClientRequest(clientId: string, privateKeyPem: string | KeyObject, method: string, pathWithQuery: string, body: Buffer | string = '', now = Date.now()): string {
  const nonce = randomBytes(16).toString('hex');
  const key = typeof privateKeyPem === 'string' ? createPrivateKey(privateKeyPem) : privateKeyPem;
  const sig = sign(null, Buffer.from(requestText(method, pathWithQuery, now, nonce, body)), key).toString('base64url');
  return `${CLIENT_AUTH_SCHEME} id=${clientId},ts=${now},nonce=${nonce},sig=${sig}`;
}

export interface ClientAuthorization {
  readonly clientId: string;
  readonly ts: number;
  readonly nonce: string;
  readonly sig: string;
}

/** Parses the header; undefined when it is missing or malformed (`CAIRN_AUTH_MISSING`). */
export function parseClientAuthorization(header: string | undefined): ClientAuthorization | undefined {
  if (!header) return undefined;
  const m = /^CairnClient id=(GUID:[0-9A-F-]{36}),ts=(\d{1,16}),nonce=([0-9a-f]{32}),sig=([A-Za-z0-9_-]{86})$/.exec(header);
  if (!m) return undefined;
  const [, clientId, ts, nonce, sig] = m as unknown as [string, string, string, string, string];
  return { clientId, ts: Number(ts), nonce, sig };
}

/** True when `auth.sig` is the client's signature over this request. Checks nothing else (clock, nonce, approval are the MP's). */
export function verifyClientSignature(auth: ClientAuthorization, publicKey: KeyObject | string, method: string, pathWithQuery: string, body: Buffer | string = ''): boolean {
  const key = typeof publicKey === 'string' ? parsePublicKey(publicKey) : publicKey;
  if (!key) return false;
  try {
    return verify(null, Buffer.from(requestText(method, pathWithQuery, auth.ts, auth.nonce, body)), key, Buffer.from(auth.sig, 'base64url'));
  } catch {
    return false;
  }
}

/** The site's signature over a document (a policy body, an assignment list): base64url Ed25519 over the exact bytes. */
export function signDocument(privateKeyPem: string | KeyObject, bytes: Buffer | string): string {
  const key = typeof privateKeyPem === 'string' ? createPrivateKey(privateKeyPem) : privateKeyPem;
  return sign(null, Buffer.from(bytes), key).toString('base64url');
}

export function verifyDocument(publicKey: KeyObject | string, bytes: Buffer | string, signature: string | undefined): boolean {
  if (typeof signature !== 'string' || !/^[A-Za-z0-9_-]{86}$/.test(signature)) return false;
  const key = typeof publicKey === 'string' ? parsePublicKey(publicKey) : publicKey;
  if (!key) return false;
  try {
    return verify(null, Buffer.from(bytes), key, Buffer.from(signature, 'base64url'));
  } catch {
    return false;
  }
}

/** A policy body's hash as assignments carry it: SHA-256, hex upper (algorithm 32780). */
export function policyHash(bytes: Buffer | string): string {
  return sha256Hex(bytes).toUpperCase();
}
