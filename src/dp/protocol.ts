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
 * - `PUT  /dp/v1/bundles?content=ID[&replace=1]` a `cairn-bundle/1` body (small files in one request, see
 *   `encodeBundleHeader`) → 200 {stored: [hash], rejected: [{hash, code, message}]}; each file is hash-checked
 *   on its own, so one bad file does not cost the others; 507 CAIRN_DP_DISK_FULL
 * - `POST /dp/v1/chunks/missing` {hashes} → {missing}: chunks (ADR 0009) the DP's ChunkLib lacks
 * - `PUT  /dp/v1/chunks?content=ID[&replace=1]` a `cairn-bundle/1` body whose entries are chunks →
 *   200 {stored, rejected} as for `/bundles`; each chunk is hashed (in a worker) before it is stored
 * - `PUT  /dp/v1/manifests/:hash?content=ID[&replace=1]` a chunked file's manifest JSON (chunk-lib.ts) →
 *   201 {stored: true} once every chunk is present and the chunks in order hash to `:hash`;
 *   409 CAIRN_DP_CONTENT_INCOMPLETE {missing: [chunk hash]}; 422 CAIRN_DP_HASH_MISMATCH
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

/**
 * A bundle carries many small files in one request, so that a package of a
 * thousand small files costs a few requests instead of a thousand: one JSON
 * line `{"format":"cairn-bundle/1","files":[{"hash","size"},…]}` and a
 * newline, then the files' bytes one after another in that order. Files of at
 * most BUNDLE_FILE_MAX_BYTES travel this way; a bundle holds at most
 * BUNDLE_MAX_FILES files and BUNDLE_MAX_BYTES bytes of them.
 */
export const BUNDLE_FORMAT = 'cairn-bundle/1';
export const BUNDLE_FILE_MAX_BYTES = 256 * 1024;
export const BUNDLE_MAX_BYTES = 4 * 1024 * 1024;
export const BUNDLE_MAX_FILES = 512;
/** The header line's limit: 512 entries of a 64-hex hash and a size fit well within it. */
const BUNDLE_HEADER_MAX_BYTES = 64 * 1024;

export interface BundleEntry {
  readonly hash: string;
  readonly size: number;
}

export function encodeBundleHeader(files: readonly BundleEntry[]): Buffer {
  return Buffer.from(`${JSON.stringify({ format: BUNDLE_FORMAT, files: files.map((f) => ({ hash: f.hash.toUpperCase(), size: f.size })) })}\n`);
}

/** Where each file's bytes are in a bundle; undefined and a reason when the body is not a well-formed bundle. */
export function parseBundle(body: Buffer): { files: (BundleEntry & { readonly start: number })[] } | { error: string } {
  const nl = body.subarray(0, BUNDLE_HEADER_MAX_BYTES + 1).indexOf(0x0a);
  if (nl < 0) return { error: 'no header line' };
  let header: unknown;
  try {
    header = JSON.parse(body.subarray(0, nl).toString('utf8'));
  } catch {
    return { error: 'the header line is not JSON' };
  }
  const h = header as { format?: unknown; files?: unknown };
  if (typeof header !== 'object' || header === null || h.format !== BUNDLE_FORMAT) return { error: `not a ${BUNDLE_FORMAT} header` };
  if (!Array.isArray(h.files) || h.files.length === 0 || h.files.length > BUNDLE_MAX_FILES) return { error: `a bundle holds 1 to ${BUNDLE_MAX_FILES} files` };
  const files: (BundleEntry & { start: number })[] = [];
  let start = nl + 1;
  for (const f of h.files as unknown[]) {
    const e = f as { hash?: unknown; size?: unknown };
    if (typeof f !== 'object' || f === null || typeof e.hash !== 'string' || !/^[0-9A-F]{64}$/.test(e.hash)) return { error: 'a file entry has no valid hash' };
    if (typeof e.size !== 'number' || !Number.isSafeInteger(e.size) || e.size < 0 || e.size > BUNDLE_FILE_MAX_BYTES) return { error: `file ${e.hash} has no valid size (at most ${BUNDLE_FILE_MAX_BYTES})` };
    files.push({ hash: e.hash, size: e.size, start });
    start += e.size;
  }
  if (start !== body.length) return { error: `the header names ${start - nl - 1} bytes of files, the body holds ${body.length - nl - 1}` };
  return { files };
}

/** Packs small files into bundles within the limits, in the order given. */
export function packBundles<T extends BundleEntry>(files: readonly T[]): T[][] {
  const out: T[][] = [];
  let current: T[] = [];
  let bytes = 0;
  for (const f of files) {
    if (current.length > 0 && (current.length >= BUNDLE_MAX_FILES || bytes + f.size > BUNDLE_MAX_BYTES)) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(f);
    bytes += f.size;
  }
  if (current.length > 0) out.push(current);
  return out;
}
