/**
 * Authenticates a client's request to the MP (ADR 0005, "Signing a
 * request"): the `CairnClient` header, the registered key, the clock window,
 * the nonce, the approval. Refusals are thrown as CairnErrors in the ADR's
 * order; the route's error handler logs them with the caller's address.
 *
 * The nonce cache is per MP process: a nonce is remembered until its
 * request's timestamp leaves the clock window, after which the timestamp
 * check refuses the request anyway.
 *
 * Sessions (ADR 0012): a client opens one with a signed request and then
 * sends a `CairnSession` HMAC instead of an Ed25519 signature. The session
 * checks come first (unknown, another client's, expired, bad MAC), then the
 * same clock window and nonce as a signed request, then the client's row,
 * read on every request so that a revocation refuses the very next request
 * (and ends the session). `LastSeenTime` is written at most once a minute
 * per client, in one transaction a second for all clients.
 */
import type { Kysely } from 'kysely';
import type { Database, ClientRow } from '../datastore/schema.ts';
import { touchClient } from '../datastore/clients.ts';
import { precompile } from '../datastore/precompiled.ts';
import { CLIENT_CLOCK_WINDOW_MS, SESSION_AUTH_SCHEME, answerSessionOffer, newSessionId, parseClientAuthorization, parsePublicKey, parseSessionAuthorization, parseX25519, signDocument, verifyClientSignature, verifySessionMac } from '../shared/client-auth.ts';
import type { ClientAuthorization } from '../shared/client-auth.ts';
import type { ComponentLog } from '../shared/cmtrace-log.ts';
import { CairnError, describeError } from '../shared/errors.ts';
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

/**
 * Remembers (client, nonce) pairs until their request's timestamp leaves the
 * clock window: after that the clock check refuses a replay anyway, so the
 * cache holds at most a window's worth of requests. Swept every 30 seconds.
 */
export class ClientNonceCache {
  readonly #expiry = new Map<string, number>();
  #lastSweep = 0;
  claim(key: string, ts: number, now = Date.now()): boolean {
    if (now - this.#lastSweep > 30_000) {
      this.#lastSweep = now;
      for (const [k, until] of this.#expiry) if (until < now) this.#expiry.delete(k);
    }
    if (this.#expiry.has(key)) return false;
    this.#expiry.set(key, ts + CLIENT_CLOCK_WINDOW_MS);
    return true;
  }
  get size(): number {
    return this.#expiry.size;
  }
}

/** Checks the timestamp and the nonce of an already signature-checked request. */
export function checkFreshness(auth: ClientAuthorization, nonces: ClientNonceCache, now = Date.now()): void {
  if (Math.abs(now - auth.ts) > CLIENT_CLOCK_WINDOW_MS) throw new ClockSkewError(`the request says ${new Date(auth.ts).toISOString()}, the MP's clock ${new Date(now).toISOString()}`, now);
  if (!nonces.claim(`${auth.clientId} ${auth.nonce}`, auth.ts, now)) throw new CairnError('CAIRN_AUTH_REPLAY', `nonce ${auth.nonce} from ${auth.clientId}`);
}

export interface AuthenticatedClient {
  readonly row: ClientRow;
  readonly resourceId: number;
  /**
   * The site database's change counter (migration 0010, row `mp`), read in
   * the same statement as the client's row: what the MP's caches are keyed
   * by (src/mp/mp-cache.ts); -1 when the database has no counter row.
   */
  readonly changeCounter: number;
}

/** Ours (ADR 0012): how long a session lasts. The agent renews a minute before. */
export const SESSION_LIFETIME_MS = 60 * 60 * 1000;
/** How often the batched `LastSeenTime` writes go to the database. */
export const TOUCH_FLUSH_MS = 1000;

interface Session {
  readonly clientId: string;
  readonly key: Buffer;
  /** The client's Ed25519 key when the session was opened: a session never outlives its key. */
  readonly publicKeyPem: string;
  readonly expiresAt: number;
}

/**
 * The MP's sessions, in memory only (a restarted MP has none; clients open
 * new ones). At most one per client: a new session replaces the client's
 * previous one, so the table never holds more entries than clients.
 */
export class SessionStore {
  readonly #byId = new Map<string, Session>();
  readonly #byClient = new Map<string, string>();
  #lastSweep = 0;

  add(sessionId: string, s: Session, now: number): void {
    if (now - this.#lastSweep > 60_000) {
      this.#lastSweep = now;
      for (const [id, old] of this.#byId) if (old.expiresAt < now) this.end(id);
    }
    const previous = this.#byClient.get(s.clientId);
    if (previous !== undefined) this.#byId.delete(previous);
    this.#byId.set(sessionId, s);
    this.#byClient.set(s.clientId, sessionId);
  }

  get(sessionId: string): Session | undefined {
    return this.#byId.get(sessionId);
  }

  end(sessionId: string): void {
    const s = this.#byId.get(sessionId);
    if (!s) return;
    this.#byId.delete(sessionId);
    if (this.#byClient.get(s.clientId) === sessionId) this.#byClient.delete(s.clientId);
  }

  get size(): number {
    return this.#byId.size;
  }
}

export interface ClientAuthenticatorOptions {
  /** Where session openings and background write failures are logged. */
  readonly log?: ComponentLog;
  readonly sessionLifetimeMs?: number;
  /** The clock (tests). */
  readonly now?: () => number;
}

/** What `POST /mp/v1/session` answers: the exact bytes and the site's signature over them. */
export interface OpenedSession {
  readonly client: AuthenticatedClient;
  readonly sessionId: string;
  readonly bytes: string;
  readonly signature: string;
}

export class ClientAuthenticator {
  readonly #db: Kysely<Database>;
  readonly nonces = new ClientNonceCache();
  readonly sessions = new SessionStore();
  readonly #log: ComponentLog | undefined;
  readonly #lifetimeMs: number;
  readonly #now: () => number;
  /** Parsed public keys by client ID and PEM, so a key is parsed once. */
  readonly #keys = new Map<string, { pem: string; key: KeyObject }>();
  /** Last time each client's LastSeenTime was queued: at most once a minute per client. */
  readonly #touched = new Map<number, number>();
  /** LastSeenTime writes waiting for the next batch. */
  #pendingTouches = new Map<number, string>();
  #flushTimer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();
  /** The client's row by client ID and the change counter, compiled once (src/datastore/precompiled.ts): read on every request. */
  readonly #findClient: (clientId: string) => Promise<(ClientRow & { MpChangeCounter: number | null })[]>;

  constructor(db: Kysely<Database>, opts: ClientAuthenticatorOptions = {}) {
    this.#db = db;
    this.#findClient = precompile(db, (clientId) =>
      db
        .selectFrom('ClientRegistration')
        .selectAll('ClientRegistration')
        .select((eb) => eb.selectFrom('ChangeCounters').select('Counter').where('Name', '=', 'mp').as('MpChangeCounter'))
        .where('ClientID', '=', clientId),
    );
    this.#log = opts.log;
    this.#lifetimeMs = opts.sessionLifetimeMs ?? SESSION_LIFETIME_MS;
    this.#now = opts.now ?? Date.now;
  }

  /**
   * Authenticates `method path body` or throws the ADR's refusal: a
   * `CairnClient` signature (ADR 0005) or a `CairnSession` MAC (ADR 0012).
   * `allow` lists the approval states the route accepts besides `approved`.
   */
  async authenticate(header: string | undefined, method: string, pathWithQuery: string, body: Buffer, allow: readonly ('pending' | 'revoked')[] = []): Promise<AuthenticatedClient> {
    if (header?.startsWith(`${SESSION_AUTH_SCHEME} `)) return this.#authenticateSession(header, method, pathWithQuery, body, allow);
    const auth = parseClientAuthorization(header);
    if (!auth) throw new CairnError('CAIRN_AUTH_MISSING', header ? 'the Authorization header is not a CairnClient signature' : 'no Authorization header');
    const [found] = await this.#findClient(auth.clientId);
    if (!found) throw new CairnError('CAIRN_CLIENT_UNKNOWN', auth.clientId);
    const { MpChangeCounter: counter, ...row } = found;
    let cached = this.#keys.get(row.ClientID);
    if (!cached || cached.pem !== row.PublicKey) {
      const key = parsePublicKey(row.PublicKey);
      if (!key) throw new CairnError('CAIRN_AUTH_INVALID', `the stored key of ${row.ClientID} cannot be parsed`);
      cached = { pem: row.PublicKey, key };
      this.#keys.set(row.ClientID, cached);
    }
    if (!verifyClientSignature(auth, cached.key, method, pathWithQuery, body)) throw new CairnError('CAIRN_AUTH_INVALID', `signature of ${auth.clientId} does not match`);
    checkFreshness(auth, this.nonces, this.#now());
    return this.#admit(row, counter, allow);
  }

  async #authenticateSession(header: string, method: string, pathWithQuery: string, body: Buffer, allow: readonly ('pending' | 'revoked')[]): Promise<AuthenticatedClient> {
    const auth = parseSessionAuthorization(header);
    if (!auth) throw new CairnError('CAIRN_AUTH_MISSING', 'the Authorization header is not a well-formed CairnSession header');
    const session = this.sessions.get(auth.sessionId);
    if (!session) throw new CairnError('CAIRN_SESSION_UNKNOWN', `session ${auth.sessionId} of ${auth.clientId}`);
    if (session.clientId !== auth.clientId) throw new CairnError('CAIRN_SESSION_MISMATCH', `${auth.clientId} presented session ${auth.sessionId}, which is ${session.clientId}'s`);
    const now = this.#now();
    if (now >= session.expiresAt) {
      this.sessions.end(auth.sessionId);
      throw new CairnError('CAIRN_SESSION_EXPIRED', `session ${auth.sessionId} of ${auth.clientId} expired at ${new Date(session.expiresAt).toISOString()}`);
    }
    if (!verifySessionMac(auth, session.key, method, pathWithQuery, body)) throw new CairnError('CAIRN_AUTH_INVALID', `the session MAC of ${auth.clientId} (session ${auth.sessionId}) does not match`);
    checkFreshness(auth, this.nonces, now);
    const [found] = await this.#findClient(auth.clientId);
    if (!found || found.PublicKey !== session.publicKeyPem) {
      this.sessions.end(auth.sessionId);
      throw new CairnError('CAIRN_CLIENT_UNKNOWN', `${auth.clientId} is no longer registered with the key that opened session ${auth.sessionId}`);
    }
    const { MpChangeCounter: counter, ...row } = found;
    // A revoked client's session ends at its first use after the revocation.
    if (row.ApprovalStatus === 'revoked') {
      this.sessions.end(auth.sessionId);
      throw new CairnError('CAIRN_CLIENT_REVOKED', `${row.ClientID} (${row.NetBIOSName}); its session ${auth.sessionId} is ended`);
    }
    return this.#admit(row, counter, allow);
  }

  #admit(row: ClientRow, counter: number | null, allow: readonly ('pending' | 'revoked')[]): AuthenticatedClient {
    const status = row.ApprovalStatus;
    if (status === 'revoked' && !allow.includes('revoked')) throw new CairnError('CAIRN_CLIENT_REVOKED', `${row.ClientID} (${row.NetBIOSName})`);
    if (status === 'pending' && !allow.includes('pending')) throw new CairnError('CAIRN_CLIENT_NOT_APPROVED', `${row.ClientID} (${row.NetBIOSName})`);
    const resourceId = Number(row.ResourceID);
    const now = this.#now();
    if (now - (this.#touched.get(resourceId) ?? 0) > 60_000) {
      this.#touched.set(resourceId, now);
      this.#pendingTouches.set(resourceId, new Date(now).toISOString());
      this.#flushTimer ??= setTimeout(() => void this.flushTouches(), TOUCH_FLUSH_MS).unref();
    }
    return { row, resourceId, changeCounter: counter === null ? -1 : Number(counter) };
  }

  /** Writes the queued `LastSeenTime` values in one transaction. */
  flushTouches(): Promise<void> {
    if (this.#flushTimer) clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    const batch = this.#pendingTouches;
    if (batch.size === 0) return this.#flushing;
    this.#pendingTouches = new Map();
    this.#flushing = this.#flushing.then(async () => {
      try {
        await this.#db.transaction().execute(async (trx) => {
          for (const [resourceId, when] of batch) await touchClient(trx, resourceId, when);
        });
      } catch (err) {
        this.#log?.warn(`Could not record when ${batch.size} clients were last seen: ${describeError(err)}`);
      }
    });
    return this.#flushing;
  }

  /**
   * `POST /mp/v1/session` (ADR 0012): an approved client, authenticated by
   * its Ed25519 signature, offers an X25519 key; the MP answers with its own
   * and a session ID, signed with the site key.
   */
  async openSession(header: string | undefined, method: string, pathWithQuery: string, body: Buffer, signingKey: KeyObject): Promise<OpenedSession> {
    if (header?.startsWith(`${SESSION_AUTH_SCHEME} `)) throw new CairnError('CAIRN_AUTH_INVALID', 'a session is opened with a CairnClient signature, not under another session');
    const client = await this.authenticate(header, method, pathWithQuery, body);
    let offer: unknown;
    try {
      offer = (JSON.parse(body.toString('utf8')) as { clientKey?: unknown } | null)?.clientKey;
    } catch (err) {
      throw new CairnError('CAIRN_REQUEST_INVALID', `the body is not JSON (${(err as Error).message})`);
    }
    const clientKey = parseX25519(offer);
    if (!clientKey) throw new CairnError('CAIRN_REQUEST_INVALID', 'clientKey must be an X25519 public key (32 bytes, base64url)');
    const sessionId = newSessionId();
    const { mpKey, key } = answerSessionOffer(clientKey, offer as string, sessionId, client.row.ClientID);
    const now = this.#now();
    const expiresAt = now + this.#lifetimeMs;
    this.sessions.add(sessionId, { clientId: client.row.ClientID, key, publicKeyPem: client.row.PublicKey, expiresAt }, now);
    const bytes = JSON.stringify({ clientId: client.row.ClientID, sessionId, clientKey: offer, mpKey, expiresInSeconds: Math.floor(this.#lifetimeMs / 1000), expiresAt: new Date(expiresAt).toISOString() });
    return { client, sessionId, bytes, signature: signDocument(signingKey, bytes) };
  }

  /** Stops the batch timer and writes what is queued. */
  async close(): Promise<void> {
    await this.flushTouches();
  }
}
