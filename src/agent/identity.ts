/**
 * The client's identity and its trust in the site (ADR 0005, "Identities and
 * keys"): on the first start the agent makes its client ID
 * (`GUID:<UUID upper>`) and an Ed25519 key pair, keeps them in its data
 * folder (`client.json`, `client.key` mode 0600), and pins the site's
 * signing key (`site-key.pem`) from `GET /mp/v1/site-key` — trust on first
 * use, logged with the fingerprint, unless `--site-key-fingerprint` says
 * which key to accept. A pinned key that later differs is refused
 * (`CAIRN_SITE_KEY_CHANGED`); deleting `site-key.pem` re-pins.
 *
 * Files are written under a temporary name and renamed, the key before the
 * ID file, so a process killed half-way leaves either nothing or a whole
 * identity. The private key never leaves this folder.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import type { ComponentLog } from '../shared/cmtrace-log.ts';
import { CairnError } from '../shared/errors.ts';
import { CLIENT_ID_RE, keyFingerprint, newClientId, newKeyPair, parsePublicKey } from '../shared/client-auth.ts';
import type { MpClient } from './mp-client.ts';
import { parseJsonReply } from './mp-client.ts';

export interface ClientIdentity {
  readonly clientId: string;
  readonly privateKeyPem: string;
  readonly publicKeyPem: string;
  readonly privateKey: KeyObject;
}

function writeAtomic(file: string, data: string, mode = 0o644): void {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, data, { mode });
  fs.renameSync(tmp, file);
}

export function identityFromPem(clientId: string, privateKeyPem: string): ClientIdentity {
  const privateKey = createPrivateKey(privateKeyPem);
  const publicKeyPem = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString();
  return { clientId, privateKeyPem, publicKeyPem, privateKey };
}

/** Reads `client.json` and `client.key`, or makes them on the first start. */
export function loadOrCreateIdentity(dataDir: string, log: ComponentLog): ClientIdentity {
  fs.mkdirSync(dataDir, { recursive: true });
  const idFile = path.join(dataDir, 'client.json');
  const keyFile = path.join(dataDir, 'client.key');
  if (fs.existsSync(idFile) && fs.existsSync(keyFile)) {
    let clientId: unknown;
    try {
      clientId = (JSON.parse(fs.readFileSync(idFile, 'utf8')) as { clientId?: unknown }).clientId;
    } catch (err) {
      throw new CairnError('CAIRN_REQUEST_INVALID', `${idFile} is not JSON (${(err as Error).message}); move it away to make a new identity`);
    }
    if (typeof clientId !== 'string' || !CLIENT_ID_RE.test(clientId)) throw new CairnError('CAIRN_REQUEST_INVALID', `${idFile} has no valid clientId; move it away to make a new identity`);
    const identity = identityFromPem(clientId, fs.readFileSync(keyFile, 'utf8'));
    log.info(`Client ID is ${clientId}; key fingerprint ${keyFingerprint(identity.publicKeyPem)}.`);
    return identity;
  }
  const pair = newKeyPair();
  const clientId = newClientId();
  writeAtomic(keyFile, pair.privateKey, 0o600);
  fs.chmodSync(keyFile, 0o600);
  writeAtomic(idFile, JSON.stringify({ clientId, createdAt: new Date().toISOString() }, null, 2) + '\n');
  log.info(`Created client ID ${clientId} and a new Ed25519 key pair (fingerprint ${keyFingerprint(pair.publicKey)}) in ${dataDir}.`);
  return identityFromPem(clientId, pair.privateKey);
}

export interface SiteKey {
  readonly siteCode: string;
  readonly publicKeyPem: string;
  readonly publicKey: KeyObject;
  readonly fingerprint: string;
}

/** Normalises a fingerprint as an administrator may type it (colons, spaces, lower case). */
export function normaliseFingerprint(s: string): string {
  return s.replace(/[\s:]/g, '').toUpperCase();
}

/**
 * Returns the pinned site key, pinning it first if there is none. With a
 * pinned key the MP's current key is still fetched and compared, so that a
 * changed key is named at once rather than as a string of refused policies;
 * an MP that cannot be reached then is not an error (the pinned key is all
 * the agent needs).
 */
export async function pinSiteKey(dataDir: string, mp: MpClient, log: ComponentLog, expectedFingerprint?: string): Promise<SiteKey> {
  const file = path.join(dataDir, 'site-key.pem');
  const pinned = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : undefined;
  const fetch = async (): Promise<{ siteCode: string; pem: string }> => {
    const reply = await mp.request('GET', '/mp/v1/site-key', { signed: false });
    const j = parseJsonReply<{ siteCode?: unknown; publicKey?: unknown }>(reply, 'GET /mp/v1/site-key');
    if (typeof j.publicKey !== 'string' || !parsePublicKey(j.publicKey)) throw new CairnError('CAIRN_AGENT_MP_REPLY_INVALID', 'GET /mp/v1/site-key: publicKey is not an Ed25519 SPKI PEM');
    return { siteCode: typeof j.siteCode === 'string' ? j.siteCode : '', pem: j.publicKey };
  };
  if (pinned !== undefined) {
    const key = parsePublicKey(pinned);
    if (!key) throw new CairnError('CAIRN_SITE_KEY_CHANGED', `${file} is not an Ed25519 public key; delete it to pin the site's key again`);
    const fingerprint = keyFingerprint(pinned);
    let siteCode = '';
    try {
      const current = await fetch();
      siteCode = current.siteCode;
      if (keyFingerprint(current.pem) !== fingerprint) {
        log.error(`The MP offers site key ${keyFingerprint(current.pem)}, but this agent pinned ${fingerprint}: refusing it (CAIRN_SITE_KEY_CHANGED). If the site really has a new key, delete ${file} and restart the agent.`);
        throw new CairnError('CAIRN_SITE_KEY_CHANGED', `pinned ${fingerprint}, the MP offers ${keyFingerprint(current.pem)}`);
      }
    } catch (err) {
      if (err instanceof CairnError && err.code === 'CAIRN_SITE_KEY_CHANGED') throw err;
      log.warn(`Could not compare the pinned site key with the MP's now (${(err as Error).message}); using the pinned key ${fingerprint}.`);
    }
    log.info(`Using the pinned site signing key ${fingerprint}.`);
    return { siteCode, publicKeyPem: pinned, publicKey: key, fingerprint };
  }
  const current = await fetch();
  const fingerprint = keyFingerprint(current.pem);
  if (expectedFingerprint !== undefined && normaliseFingerprint(expectedFingerprint) !== fingerprint) {
    log.error(`The MP offers site key ${fingerprint}, not ${normaliseFingerprint(expectedFingerprint)} given with --site-key-fingerprint: refusing it (CAIRN_SITE_KEY_UNTRUSTED).`);
    throw new CairnError('CAIRN_SITE_KEY_UNTRUSTED', `expected ${normaliseFingerprint(expectedFingerprint)}, the MP offers ${fingerprint}`);
  }
  fs.mkdirSync(dataDir, { recursive: true });
  writeAtomic(file, current.pem);
  log.info(
    expectedFingerprint === undefined
      ? `Pinned the site signing key of site ${current.siteCode} on first use: fingerprint ${fingerprint}. Compare it with the site's (GET /mp/v1/site-key); give --site-key-fingerprint to check it before trusting.`
      : `Pinned the site signing key of site ${current.siteCode}: fingerprint ${fingerprint}, as given with --site-key-fingerprint.`,
  );
  return { siteCode: current.siteCode, publicKeyPem: current.pem, publicKey: parsePublicKey(current.pem)!, fingerprint };
}
