/**
 * The protocol between the site server and a distribution point.
 *
 * Authentication is mutual and never sends the shared key: the site signs each
 * request with HMAC-SHA256 over method, path (with query), a timestamp and a
 * nonce; the DP checks the signature, the clock window and that the nonce is
 * fresh, and answers with a proof (HMAC over the nonce and its status code)
 * that only a holder of the same key can make. The site rejects a response
 * without a valid proof, so a process squatting on the DP's address is not
 * mistaken for the DP. Content bytes are protected by their SHA-256, which
 * the DP checks before a file enters its library.
 *
 * Routes (all JSON unless said otherwise):
 * - `GET  /dp/v1/status` → DpStatus
 * - `POST /dp/v1/files/missing` {hashes} → {missing}
 * - `GET  /dp/v1/uploads/:hash?content=ID` → {offset}: bytes already held under the temporary name, for resume
 * - `PUT  /dp/v1/uploads/:hash?content=ID&offset=N&size=TOTAL` raw bytes → 200 {offset} while partial,
 *   201 {stored: true} when complete and verified; 409 {code, offset} when `offset` is not where the DP is;
 *   422 CAIRN_DP_HASH_MISMATCH (temporary file discarded); 507 CAIRN_DP_DISK_FULL
 *   With `&replace=1` (a redistribute) the bytes replace the library's copy even when it has one.
 * - `PUT  /dp/v1/deltas/:hash?content=ID&base=OLDHASH&size=TOTAL` a `cairn-delta/1` body (delta.ts) →
 *   201 {stored: true, literalBytes}; 409 CAIRN_DP_DELTA_BASE_MISSING; 400 CAIRN_DP_DELTA_INVALID; 422 CAIRN_DP_HASH_MISMATCH
 * - `PUT  /dp/v1/contents/:contentId` ContentDefinition → 200 {contentId, removedContents, filesDeleted}
 *   (older versions of the package are removed once this one is current); 409 CAIRN_DP_CONTENT_INCOMPLETE {missing}
 * - `PUT  /dp/v1/signatures/:contentId` a `cairn-signatures/2` file → 200 {contentId, files}
 * - `GET  /dp/v1/packages/:pkgId` → {packageId, contentId|null, version|null, contents}
 * - `DELETE /dp/v1/packages/:pkgId` → {packageId, contents, filesDeleted, bytesFreed}
 * - `POST /dp/v1/packages/:pkgId/validate` → {packageId, contentId, version, files, problems[]}; 404 when not on the DP
 * - public, no authentication (what clients and `curl` use):
 *   `GET|HEAD /SMS_DP_SMSPKG$/<PkgID>/<path>` the file (Range supported),
 *   `GET /SMS_DP_SMSPKG$/<PkgID>/` the package's current file list as JSON (PackageListing),
 *   `GET /SMS_DP_SMSSIG$/<ContentID>` the content's signatures (`cairn-signatures/2`).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const AUTH_SCHEME = 'CairnHMAC';
export const PROOF_HEADER = 'x-cairn-dp-proof';
export const CLOCK_WINDOW_MS = 5 * 60 * 1000;
export const PACKAGE_SHARE = 'SMS_DP_SMSPKG$';
export const SIGNATURE_SHARE = 'SMS_DP_SMSSIG$';

export interface DpStatus {
  readonly name: string;
  readonly freeBytes: number;
  readonly contents: number;
}

export interface PackageListing {
  readonly packageId: string;
  readonly contentId: string;
  readonly version: number;
  readonly hash: string;
  readonly files: readonly { readonly path: string; readonly size: number; readonly hash: string; readonly url: string }[];
}

/** Generates a new shared key for a DP: 32 random bytes, base64url. */
export function newSharedKey(): string {
  return randomBytes(32).toString('base64url');
}

function mac(key: string, text: string): string {
  return createHmac('sha256', key).update(text).digest('hex');
}

function equalHex(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y);
}

export interface SignedRequest {
  readonly authorization: string;
  readonly nonce: string;
}

/** Signs a request the site sends to a DP. `pathWithQuery` is exactly what goes on the request line. */
export function signRequest(key: string, method: string, pathWithQuery: string, now = Date.now()): SignedRequest {
  const nonce = randomBytes(16).toString('hex');
  const sig = mac(key, `${method.toUpperCase()}\n${pathWithQuery}\n${now}\n${nonce}`);
  return { authorization: `${AUTH_SCHEME} ts=${now},nonce=${nonce},sig=${sig}`, nonce };
}

export type VerifyResult = { ok: true; nonce: string } | { ok: false; code: 'CAIRN_AUTH_MISSING' | 'CAIRN_AUTH_INVALID'; reason: string };

/** Remembers nonces for the clock window so a captured request cannot be replayed. */
export class NonceCache {
  readonly #seen = new Map<string, number>();
  /** True when the nonce is new (and now remembered). */
  claim(nonce: string, now = Date.now()): boolean {
    if (this.#seen.size > 10_000) for (const [n, t] of this.#seen) if (now - t > CLOCK_WINDOW_MS * 2) this.#seen.delete(n);
    if (this.#seen.has(nonce)) return false;
    this.#seen.set(nonce, now);
    return true;
  }
}

/** Checks a request on the DP side. */
export function verifyRequest(key: string, header: string | undefined, method: string, pathWithQuery: string, nonces: NonceCache, now = Date.now()): VerifyResult {
  if (!header) return { ok: false, code: 'CAIRN_AUTH_MISSING', reason: 'no Authorization header' };
  const m = /^CairnHMAC ts=(\d+),nonce=([0-9a-f]{32}),sig=([0-9a-f]{64})$/.exec(header);
  if (!m) return { ok: false, code: 'CAIRN_AUTH_INVALID', reason: 'malformed Authorization header' };
  const [, ts, nonce, sig] = m as unknown as [string, string, string, string];
  if (Math.abs(now - Number(ts)) > CLOCK_WINDOW_MS) return { ok: false, code: 'CAIRN_AUTH_INVALID', reason: 'timestamp outside the 5-minute window' };
  if (!equalHex(sig, mac(key, `${method.toUpperCase()}\n${pathWithQuery}\n${ts}\n${nonce}`))) return { ok: false, code: 'CAIRN_AUTH_INVALID', reason: 'signature does not match' };
  if (!nonces.claim(nonce, now)) return { ok: false, code: 'CAIRN_AUTH_INVALID', reason: 'nonce already used' };
  return { ok: true, nonce };
}

/** The DP's proof for a response to the request that carried `nonce`. */
export function proveResponse(key: string, nonce: string, status: number): string {
  return mac(key, `dp\n${nonce}\n${status}`);
}

/** Checks the DP's proof on the site side. */
export function verifyProof(key: string, nonce: string, status: number, proof: string | undefined): boolean {
  return typeof proof === 'string' && equalHex(proof, proveResponse(key, nonce, status));
}
