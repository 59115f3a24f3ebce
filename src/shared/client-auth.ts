/**
 * The client–MP contract's cryptography (docs/adr/0005-mp-client-protocol.md):
 * Ed25519 key pairs for clients and the site, the `CairnClient` request
 * signature, and the site's signature over policy documents. Shared by the
 * MP (verifying) and the agent (signing, verifying policies), so that the two
 * cannot drift apart.
 */
import { createHash, createHmac, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes, randomUUID, sign, timingSafeEqual, verify } from 'node:crypto';
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
  // Encoded by the key-generation job itself: exporting the job's KeyObjects afterwards can deadlock on Node 20 (see newX25519).
  const { privateKey, publicKey } = generateKeyPairSync('ed25519', { privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
  return { privateKey, publicKey };
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

// --- Sessions (ADR 0012) -------------------------------------------------------
//
// One Ed25519-signed `POST /mp/v1/session` carries the client's ephemeral
// X25519 public key; the MP answers with its own, under the site's signature.
// Both derive the session key with HKDF-SHA256 from the X25519 secret, and
// later requests carry an HMAC-SHA256 under it instead of an Ed25519
// signature (~2 µs to check instead of ~160 µs), with the same timestamp
// window and nonce as a signed request.

export const SESSION_AUTH_SCHEME = 'CairnSession';
/** The session route under the MP's base path. */
export const SESSION_ROUTE = '/mp/v1/session';
const SESSION_KEY_INFO = 'CairnSession v1';

/** A client's half of a session exchange: its ephemeral X25519 key (raw public key, base64url). */
export interface SessionOffer {
  readonly privateKey: KeyObject;
  readonly clientKey: string;
}

export function newSessionOffer(): SessionOffer {
  const { privateKey, raw } = newX25519();
  return { privateKey, clientKey: raw };
}

/** PKCS#8 DER of an X25519 private key: a fixed prefix and the 32 raw bytes (RFC 8410). */
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

/**
 * An ephemeral X25519 key pair from 32 random bytes (any 32 bytes are a
 * valid X25519 private key), and the raw public key in base64url.
 *
 * Not `generateKeyPairSync('x25519')` then an export of its keys: on Node 20
 * that deadlocks the event loop when a garbage collection runs inside the
 * export and finalises the key-generation job, which takes the same key
 * mutex the export holds (an MP hung at its 336th session under load,
 * docs/performance.md, "Caches (fourth session)"). An imported key has no
 * such job. The JWK import takes the private bytes `d` and derives the public
 * key itself (Node ignores the `x` given with `d`; the public key is read
 * back from the imported key, never taken from `x`); should a Node release
 * check `x`, the PKCS#8 import (about ten times slower here) is used.
 */
function newX25519(): { privateKey: KeyObject; raw: string } {
  const d = randomBytes(32);
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d: d.toString('base64url'), x: d.toString('base64url') }, format: 'jwk' });
  } catch {
    privateKey = createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, d]), format: 'der', type: 'pkcs8' });
  }
  const x = createPublicKey(privateKey).export({ format: 'jwk' }).x;
  if (typeof x !== 'string') throw new Error('not an X25519 key');
  return { privateKey, raw: x };
}

/** Parses a raw X25519 public key (base64url of 32 bytes), or undefined. */
export function parseX25519(raw: unknown): KeyObject | undefined {
  if (typeof raw !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(raw)) return undefined;
  try {
    return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: raw }, format: 'jwk' });
  } catch {
    return undefined;
  }
}

/** A new session ID: 32 hex lower. */
export function newSessionId(): string {
  return randomBytes(16).toString('hex');
}

/**
 * The session key both sides derive: HKDF-SHA256 over the X25519 secret,
 * salted with the session ID, bound to the client ID and both public keys.
 */
export function deriveSessionKey(privateKey: KeyObject, peerKey: KeyObject, sessionId: string, clientId: string, clientKey: string, mpKey: string): Buffer {
  const secret = diffieHellman({ privateKey, publicKey: peerKey });
  return Buffer.from(hkdfSync('sha256', secret, Buffer.from(sessionId, 'utf8'), Buffer.from(`${SESSION_KEY_INFO}\n${clientId}\n${clientKey}\n${mpKey}`, 'utf8'), 32));
}

/** The MP's half: its own ephemeral key and the derived session key. */
export function answerSessionOffer(clientKey: KeyObject, clientKeyRaw: string, sessionId: string, clientId: string): { mpKey: string; key: Buffer } {
  const { privateKey, raw: mpKey } = newX25519();
  return { mpKey, key: deriveSessionKey(privateKey, clientKey, sessionId, clientId, clientKeyRaw, mpKey) };
}

/** What `POST /mp/v1/session` answers (the exact bytes are signed by the site key). */
export interface SessionReply {
  readonly clientId: string;
  readonly sessionId: string;
  readonly clientKey: string;
  readonly mpKey: string;
  readonly expiresInSeconds: number;
  readonly expiresAt: string;
}

export interface ClientSession {
  readonly sessionId: string;
  readonly key: Buffer;
  readonly expiresInSeconds: number;
}

/**
 * The client's check of a session reply: the site's signature over the exact
 * bytes (with the pinned key), the client ID and its own X25519 key echoed,
 * then the derived key. Throws an Error saying what is wrong.
 */
export function acceptSessionReply(offer: SessionOffer, clientId: string, bytes: Buffer, signature: string | undefined, siteKey: KeyObject): ClientSession {
  if (!verifyDocument(siteKey, bytes, signature)) throw new Error(`the session reply's ${signature ? 'signature does not verify with the pinned site key' : 'signature is missing'}`);
  let j: Partial<SessionReply>;
  try {
    j = JSON.parse(bytes.toString('utf8')) as Partial<SessionReply>;
  } catch (err) {
    throw new Error(`the session reply is not JSON (${(err as Error).message})`, { cause: err });
  }
  if (j.clientId !== clientId || j.clientKey !== offer.clientKey) throw new Error('the session reply is for another client or another exchange');
  if (typeof j.sessionId !== 'string' || !/^[0-9a-f]{32}$/.test(j.sessionId)) throw new Error('the session reply has no valid sessionId');
  const mp = parseX25519(j.mpKey);
  if (!mp) throw new Error('the session reply has no valid mpKey');
  const seconds = typeof j.expiresInSeconds === 'number' && Number.isFinite(j.expiresInSeconds) && j.expiresInSeconds > 0 ? j.expiresInSeconds : 0;
  return { sessionId: j.sessionId, key: deriveSessionKey(offer.privateKey, mp, j.sessionId, clientId, offer.clientKey, j.mpKey!), expiresInSeconds: seconds };
}

function sessionMac(key: Buffer, method: string, pathWithQuery: string, ts: number | string, nonce: string, body: Buffer | string): Buffer {
  return createHmac('sha256', key).update(`${SESSION_AUTH_SCHEME}\n${requestText(method, pathWithQuery, ts, nonce, body)}`).digest();
}

/** The Authorization header for a request under a session. */
export function signSessionRequest(clientId: string, sessionId: string, key: Buffer, method: string, pathWithQuery: string, body: Buffer | string = '', now = Date.now()): string {
  const nonce = randomBytes(16).toString('hex');
  const mac = sessionMac(key, method, pathWithQuery, now, nonce, body).toString('base64url');
  return `${SESSION_AUTH_SCHEME} id=${clientId},sid=${sessionId},ts=${now},nonce=${nonce},mac=${mac}`;
}

export interface SessionAuthorization extends ClientAuthorization {
  readonly sessionId: string;
}

/** Parses a `CairnSession` header; undefined when it is missing or malformed. `sig` holds the MAC. */
export function parseSessionAuthorization(header: string | undefined): SessionAuthorization | undefined {
  if (!header) return undefined;
  const m = /^CairnSession id=(GUID:[0-9A-F-]{36}),sid=([0-9a-f]{32}),ts=(\d{1,16}),nonce=([0-9a-f]{32}),mac=([A-Za-z0-9_-]{43})$/.exec(header);
  if (!m) return undefined;
  const [, clientId, sessionId, ts, nonce, sig] = m as unknown as [string, string, string, string, string, string];
  return { clientId, sessionId, ts: Number(ts), nonce, sig };
}

/** True when the header's MAC is right for this request under `key`. Constant time. */
export function verifySessionMac(auth: SessionAuthorization, key: Buffer, method: string, pathWithQuery: string, body: Buffer | string = ''): boolean {
  const expected = sessionMac(key, method, pathWithQuery, auth.ts, auth.nonce, body);
  const given = Buffer.from(auth.sig, 'base64url');
  return given.length === expected.length && timingSafeEqual(given, expected);
}
