/**
 * Authenticates a client's request to the MP (ADR 0005, "Signing a
 * request"): the `CairnClient` header, the registered key, the clock window,
 * the nonce, the approval. Refusals are thrown as CairnErrors in the ADR's
 * order; the route's error handler logs them with the caller's address.
 *
 * The nonce cache is per MP process: a nonce is remembered for twice the
 * clock window, after which the timestamp check refuses the request anyway.
 */
import type { Kysely } from 'kysely';
import type { Database, ClientRow } from '../datastore/schema.ts';
import { findClient, touchClient } from '../datastore/clients.ts';
import { CLIENT_CLOCK_WINDOW_MS, parseClientAuthorization, parsePublicKey, verifyClientSignature } from '../shared/client-auth.ts';
import type { ClientAuthorization } from '../shared/client-auth.ts';
import { CairnError } from '../shared/errors.ts';
import type { ErrorCode } from '../shared/errors.ts';
import type { KeyObject } from 'node:crypto';

/** A refusal that carries the MP's clock (CAIRN_CLIENT_CLOCK_SKEW). */
export class ClockSkewError extends CairnError {
  readonly serverTime: number;
  constructor(detail: string, serverTime: number) {
    super('CAIRN_CLIENT_CLOCK_SKEW', detail);
    this.serverTime = serverTime;
  }
  override toJSON(): { code: ErrorCode; message: string; serverTime: number } {
    return { ...super.toJSON(), serverTime: this.serverTime };
  }
}

/** Remembers (client, nonce) pairs for twice the clock window. */
export class ClientNonceCache {
  readonly #seen = new Map<string, number>();
  #lastSweep = 0;
  claim(key: string, now = Date.now()): boolean {
    if (now - this.#lastSweep > CLIENT_CLOCK_WINDOW_MS) {
      this.#lastSweep = now;
      for (const [k, t] of this.#seen) if (now - t > CLIENT_CLOCK_WINDOW_MS * 2) this.#seen.delete(k);
    }
    if (this.#seen.has(key)) return false;
    this.#seen.set(key, now);
    return true;
  }
}

/** Checks the timestamp and the nonce of an already signature-checked request. */
export function checkFreshness(auth: ClientAuthorization, nonces: ClientNonceCache, now = Date.now()): void {
  if (Math.abs(now - auth.ts) > CLIENT_CLOCK_WINDOW_MS) throw new ClockSkewError(`the request says ${new Date(auth.ts).toISOString()}, the MP's clock ${new Date(now).toISOString()}`, now);
  if (!nonces.claim(`${auth.clientId} ${auth.nonce}`, now)) throw new CairnError('CAIRN_AUTH_REPLAY', `nonce ${auth.nonce} from ${auth.clientId}`);
}

export interface AuthenticatedClient {
  readonly row: ClientRow;
  readonly resourceId: number;
}

export class ClientAuthenticator {
  readonly #db: Kysely<Database>;
  readonly nonces = new ClientNonceCache();
  /** Parsed public keys by client ID and PEM, so a key is parsed once. */
  readonly #keys = new Map<string, { pem: string; key: KeyObject }>();
  /** Last time each client's LastSeenTime was written: at most once a minute per client. */
  readonly #touched = new Map<number, number>();

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  /**
   * Authenticates `method path body` or throws the ADR's refusal.
   * `allow` lists the approval states the route accepts besides `approved`.
   */
  async authenticate(header: string | undefined, method: string, pathWithQuery: string, body: Buffer, allow: readonly ('pending' | 'revoked')[] = []): Promise<AuthenticatedClient> {
    const auth = parseClientAuthorization(header);
    if (!auth) throw new CairnError('CAIRN_AUTH_MISSING', header ? 'the Authorization header is not a CairnClient signature' : 'no Authorization header');
    const row = await findClient(this.#db, auth.clientId);
    if (!row) throw new CairnError('CAIRN_CLIENT_UNKNOWN', auth.clientId);
    let cached = this.#keys.get(row.ClientID);
    if (!cached || cached.pem !== row.PublicKey) {
      const key = parsePublicKey(row.PublicKey);
      if (!key) throw new CairnError('CAIRN_AUTH_INVALID', `the stored key of ${row.ClientID} cannot be parsed`);
      cached = { pem: row.PublicKey, key };
      this.#keys.set(row.ClientID, cached);
    }
    if (!verifyClientSignature(auth, cached.key, method, pathWithQuery, body)) throw new CairnError('CAIRN_AUTH_INVALID', `signature of ${auth.clientId} does not match`);
    checkFreshness(auth, this.nonces);
    const status = row.ApprovalStatus;
    if (status === 'revoked' && !allow.includes('revoked')) throw new CairnError('CAIRN_CLIENT_REVOKED', `${row.ClientID} (${row.NetBIOSName})`);
    if (status === 'pending' && !allow.includes('pending')) throw new CairnError('CAIRN_CLIENT_NOT_APPROVED', `${row.ClientID} (${row.NetBIOSName})`);
    const resourceId = Number(row.ResourceID);
    const now = Date.now();
    if (now - (this.#touched.get(resourceId) ?? 0) > 60_000) {
      this.#touched.set(resourceId, now);
      await touchClient(this.#db, resourceId);
    }
    return { row, resourceId };
  }
}
