/**
 * The site signing key (ADR 0005, "Site signing key"): an Ed25519 key pair
 * the site creates on its first start in `<data>/site-signing.key` (PKCS#8
 * PEM, mode 0600). The policy provider signs policy bodies with it and every
 * MP signs the assignment lists it serves. A remote MP is given a copy
 * (`cairn mp --site-key FILE`, docs/adr/0006-mp-server.md). Losing it makes
 * every client refuse the site until its pinned key is deleted, so it is
 * never replaced silently: a damaged file is an error, not a reason for a new key.
 */
import fs from 'node:fs';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { keyFingerprint, newKeyPair } from '../shared/client-auth.ts';
import { CairnError } from '../shared/errors.ts';

export interface SiteSigningKey {
  readonly privateKey: KeyObject;
  /** SPKI PEM, as `GET /mp/v1/site-key` returns it. */
  readonly publicKeyPem: string;
  /** SHA-256 of the DER public key, hex upper. */
  readonly fingerprint: string;
}

export function loadSiteSigningKey(file: string): SiteSigningKey {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new CairnError('CAIRN_SITE_SIGNING_KEY_INVALID', `${file}: ${(err as Error).message}`);
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new CairnError('CAIRN_SITE_SIGNING_KEY_INVALID', `${file} holds a ${privateKey.asymmetricKeyType} key`);
  const publicKeyPem = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString();
  return { privateKey, publicKeyPem, fingerprint: keyFingerprint(publicKeyPem) };
}

/** Loads the key, creating it when the file does not exist yet (first start). Returns whether it was created. */
export function ensureSiteSigningKey(file: string): { key: SiteSigningKey; created: boolean } {
  if (!fs.existsSync(file)) {
    const pair = newKeyPair();
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, pair.privateKey, { mode: 0o600 });
    // A concurrent first start must not replace a key another process already wrote.
    try {
      fs.linkSync(tmp, file);
      fs.rmSync(tmp, { force: true });
      return { key: loadSiteSigningKey(file), created: true };
    } catch {
      fs.rmSync(tmp, { force: true });
    }
  }
  return { key: loadSiteSigningKey(file), created: false };
}
