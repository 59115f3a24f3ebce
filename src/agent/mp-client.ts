/**
 * Client messaging (the seed's CcmExec messaging layer, `CcmMessaging.log`):
 * the one HTTP client through which the agent talks to its management point
 * (docs/adr/0005-mp-client-protocol.md). It signs every request but the
 * site-key fetch with the client's key (`signClientRequest`), logs every
 * request and reply (route, status, bytes each way, duration), and turns
 * every failure into a CairnError with a clear code:
 *
 * - no answer (refused, reset, timeout): `CAIRN_AGENT_MP_UNREACHABLE`;
 * - `CAIRN_CLIENT_CLOCK_SKEW` from the MP: `CAIRN_AGENT_CLOCK_SKEW`, logged
 *   once with both clocks; the caller does not retry at once (its schedule
 *   decides), so a wrong clock never makes the agent loop;
 * - any other refusal: `CAIRN_AGENT_MP_REFUSED`, carrying the MP's own code
 *   and HTTP status (`MpRefusal.mpCode`), so callers can act on
 *   `CAIRN_CLIENT_UNKNOWN` or `CAIRN_CLIENT_NOT_APPROVED`.
 *
 * One `MpTransport` (one keep-alive socket pool) is shared by every client
 * of a simulation; each client has its own `MpClient` view with its key and
 * its log prefix. It never retries by itself: retry and backoff belong to the
 * component that knows what the request was for.
 *
 * Sessions (ADR 0012): once the site key is pinned (`MpTransport.trustSiteKey`),
 * each client opens a session with one signed `POST /mp/v1/session` and sends
 * its later requests under the session's HMAC (registration and its status
 * check stay signed). It renews the session a minute
 * before it expires. When the MP answers `CAIRN_SESSION_UNKNOWN`,
 * `CAIRN_SESSION_EXPIRED` or `CAIRN_SESSION_MISMATCH` (it restarted, or the
 * session ended), the client opens a new session and sends the request once
 * more: the refused request did nothing on the MP, so this is the one retry
 * the transport makes. An MP without sessions (404), or one that refuses a
 * session because the client is not approved, revoked or unknown, gets
 * signed requests, which it answers as before; the client tries a session
 * again a minute later (an hour after a 404).
 */
import http from 'node:http';
import https from 'node:https';
import { createPrivateKey, randomUUID } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import type { ComponentLog } from '../shared/cmtrace-log.ts';
import { CairnError, describeError } from '../shared/errors.ts';
import { SESSION_ROUTE, SIGNATURE_HEADER, acceptSessionReply, newSessionOffer, signClientRequest, signSessionRequest } from '../shared/client-auth.ts';
import type { ClientSession } from '../shared/client-auth.ts';

/** Ours: how long one MP request may take before it counts as unreachable. */
export const MP_REQUEST_TIMEOUT_MS = 60_000;
/** Ours: the largest MP reply the agent reads (policy bodies and lists are small). */
export const MAX_MP_REPLY_BYTES = 16 * 1024 * 1024;

export class MpRefusal extends CairnError {
  /** The MP's code, e.g. `CAIRN_CLIENT_NOT_APPROVED`; '' when the reply had none. */
  readonly mpCode: string;
  readonly httpStatus: number;
  constructor(httpStatus: number, mpCode: string, mpMessage: string, route: string) {
    super('CAIRN_AGENT_MP_REFUSED', `${route}: HTTP ${httpStatus}${mpCode ? ` ${mpCode}` : ''}${mpMessage ? ` (${mpMessage})` : ''}`);
    this.mpCode = mpCode;
    this.httpStatus = httpStatus;
  }
}

export interface MpReply {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

/** The shared part: the MP's address and one keep-alive agent. */
export class MpTransport {
  readonly baseUrl: URL;
  readonly #agent: http.Agent;
  readonly #request: typeof http.request;
  /** The pinned site key: sessions are opened only once it is known (their replies are signed with it). */
  #siteKey: KeyObject | undefined;

  constructor(mpUrl: string, maxSockets = 64) {
    let u: URL;
    try {
      u = new URL(mpUrl);
    } catch {
      throw new CairnError('CAIRN_REQUEST_INVALID', `--mp ${JSON.stringify(mpUrl)} is not a URL`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new CairnError('CAIRN_REQUEST_INVALID', `--mp must be an http(s) URL, not ${u.protocol}`);
    this.baseUrl = u;
    const opts = { keepAlive: true, maxSockets, keepAliveMsecs: 10_000 };
    this.#agent = u.protocol === 'https:' ? new https.Agent(opts) : new http.Agent(opts);
    this.#request = u.protocol === 'https:' ? https.request : http.request;
  }

  /** Lets every client of this transport open sessions, checking the MP's replies with the pinned site key. */
  trustSiteKey(key: KeyObject): void {
    this.#siteKey = key;
  }

  get siteKey(): KeyObject | undefined {
    return this.#siteKey;
  }

  /** The path on the request line for a route such as `/mp/v1/register`, under the MP URL's own path. */
  pathFor(route: string): string {
    return `${this.baseUrl.pathname.replace(/\/+$/, '')}${route}`;
  }

  send(method: string, requestPath: string, headers: Record<string, string>, body: Buffer | undefined): Promise<MpReply> {
    return new Promise<MpReply>((resolve, reject) => {
      const req = this.#request(
        { protocol: this.baseUrl.protocol, hostname: this.baseUrl.hostname, port: this.baseUrl.port, method, path: requestPath, agent: this.#agent, headers: { ...headers, ...(body ? { 'content-length': String(body.length) } : {}) }, timeout: MP_REQUEST_TIMEOUT_MS },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > MAX_MP_REPLY_BYTES) {
              req.destroy(new Error(`the reply is larger than ${MAX_MP_REPLY_BYTES} bytes`));
              return;
            }
            chunks.push(c);
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${MP_REQUEST_TIMEOUT_MS / 1000} s`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  close(): void {
    this.#agent.destroy();
  }
}

export interface MpSigner {
  readonly clientId: string;
  readonly privateKey: KeyObject;
}

export interface RequestOptions {
  readonly body?: Buffer | string;
  readonly contentType?: string;
  /** False only for the anonymous site-key fetch. */
  readonly signed?: boolean;
}

/** Ours (ADR 0012): a session is renewed this long before the MP said it expires. */
export const SESSION_RENEW_BEFORE_MS = 60_000;
/** After an MP refused a session for this client (not approved, revoked, unknown): signed requests for this long. */
export const SESSION_RETRY_AFTER_REFUSAL_MS = 60_000;
/** After an MP without sessions (404 on the session route): signed requests for this long. */
export const SESSION_RETRY_AFTER_404_MS = 60 * 60 * 1000;

/** Registration proves possession of the key, and its status check must answer pending and revoked clients: always signed. */
const ALWAYS_SIGNED = new Set(['/mp/v1/register', '/mp/v1/registration']);
const SESSION_ENDED = new Set(['CAIRN_SESSION_UNKNOWN', 'CAIRN_SESSION_EXPIRED', 'CAIRN_SESSION_MISMATCH']);
const SESSION_REFUSED = new Set(['CAIRN_CLIENT_NOT_APPROVED', 'CAIRN_CLIENT_REVOKED', 'CAIRN_CLIENT_UNKNOWN']);

interface OpenSession extends ClientSession {
  readonly renewAt: number;
}

/** One client's view of the MP: its key, its log. */
export class MpClient {
  readonly transport: MpTransport;
  readonly #signer: MpSigner;
  readonly #log: ComponentLog;
  #session: OpenSession | undefined;
  #opening: Promise<OpenSession | undefined> | undefined;
  #noSessionUntil = 0;

  constructor(transport: MpTransport, signer: MpSigner | { clientId: string; privateKeyPem: string }, log: ComponentLog) {
    this.transport = transport;
    this.#signer = 'privateKey' in signer ? signer : { clientId: signer.clientId, privateKey: createPrivateKey(signer.privateKeyPem) };
    this.#log = log;
  }

  get clientId(): string {
    return this.#signer.clientId;
  }

  /**
   * Sends one request and returns the reply when its status is 2xx; throws
   * the CairnErrors above otherwise. Every attempt is logged.
   */
  async request(method: string, route: string, options: RequestOptions = {}): Promise<MpReply> {
    const p = this.transport.pathFor(route);
    const body = options.body === undefined ? undefined : Buffer.isBuffer(options.body) ? options.body : Buffer.from(options.body, 'utf8');
    const signed = options.signed !== false;
    let session = signed && !ALWAYS_SIGNED.has(route) ? await this.#currentSession() : undefined;
    let reply = await this.#attempt(method, p, body, options.contentType, signed, session);
    if (session && reply.status === 401) {
      const { mpCode } = refusalOf(reply);
      if (SESSION_ENDED.has(mpCode)) {
        this.#log.info(`${method} ${p}: the MP no longer accepts session ${session.sessionId} (${mpCode}); opening a new session and sending the request again.`);
        if (this.#session === session) this.#session = undefined;
        session = await this.#currentSession();
        reply = await this.#attempt(method, p, body, options.contentType, signed, session);
      }
    }
    return this.#check(method, p, body, reply);
  }

  /** One attempt, logged; the reply whatever its status. */
  async #attempt(method: string, p: string, body: Buffer | undefined, contentType: string | undefined, signed: boolean, session: OpenSession | undefined): Promise<MpReply & { line: string }> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body) headers['content-type'] = contentType ?? 'application/json';
    if (session) headers.authorization = signSessionRequest(this.#signer.clientId, session.sessionId, session.key, method, p, body ?? '');
    else if (signed) headers.authorization = signClientRequest(this.#signer.clientId, this.#signer.privateKey, method, p, body ?? '');
    const started = process.hrtime.bigint();
    const ms = (): string => (Number(process.hrtime.bigint() - started) / 1e6).toFixed(1);
    let reply: MpReply;
    try {
      reply = await this.transport.send(method, p, headers, body);
    } catch (err) {
      this.#log.warn(`${method} ${p}: no reply after ${ms()} ms, ${body?.length ?? 0} bytes sent: ${describeError(err)}`);
      throw new CairnError('CAIRN_AGENT_MP_UNREACHABLE', `${method} ${this.transport.baseUrl.origin}${p}: ${(err as Error).message}`, { cause: err });
    }
    const line = `${method} ${p} -> ${reply.status}, ${body?.length ?? 0} bytes sent, ${reply.body.length} bytes received, ${ms()} ms${session ? '' : signed ? ', signed' : ''}`;
    if (reply.status >= 200 && reply.status < 300) this.#log.info(line);
    return { ...reply, line };
  }

  /** Returns a 2xx reply; throws the refusal otherwise (logged). */
  #check(method: string, p: string, _body: Buffer | undefined, reply: MpReply & { line: string }): MpReply {
    const { line, ...rest } = reply;
    if (reply.status >= 200 && reply.status < 300) return rest;
    const { mpCode, mpMessage, serverTime } = refusalOf(reply);
    if (mpCode === 'CAIRN_CLIENT_CLOCK_SKEW') {
      const theirs = serverTime === undefined ? 'not given' : /^\d+$/.test(serverTime) ? new Date(Number(serverTime)).toISOString() : serverTime;
      this.#log.error(`${line}: refused with CAIRN_CLIENT_CLOCK_SKEW: this machine's clock (${new Date().toISOString()}) is more than 5 minutes off the MP's (${theirs}). Every request will be refused until the clock is corrected; the agent tries again on its normal schedule.`);
      throw new CairnError('CAIRN_AGENT_CLOCK_SKEW', `this machine's clock says ${new Date().toISOString()}, the MP's says ${theirs}`);
    }
    this.#log.warn(`${line}: refused${mpCode ? ` with ${mpCode}` : ''}${mpMessage ? `: ${mpMessage}` : ''}`);
    throw new MpRefusal(reply.status, mpCode, mpMessage, `${method} ${p}`);
  }

  /**
   * A request to one of the MP's queues that has a reply (the seed's
   * CcmMessaging lines for `mp_locationmanager`, spec 30 §2 steps 2 and 6):
   * logs the outgoing message, the reply delivered to the local endpoint,
   * and the delivery, around `request`.
   */
  async exchange(queue: string, endpoint: string, method: string, route: string, options: RequestOptions = {}): Promise<MpReply> {
    const messageId = `{${randomUUID().toUpperCase()}}`;
    const q = `mp:[${this.transport.baseUrl.protocol.replace(':', '')}]${queue}`;
    this.#log.info(`Sending async message '${messageId}' to outgoing queue '${q}'`);
    this.#log.info(`Sending outgoing message '${messageId}'. Flags 0x200, sender account empty`);
    const reply = await this.request(method, route, options);
    const replyId = `{${randomUUID().toUpperCase()}}`;
    this.#log.info(`Message '${messageId}' got reply '${replyId}' to local endpoint queue '${endpoint}'`);
    this.#log.info(`OutgoingMessage(Queue='${q.replace(':', '_')}', ID=${messageId}): Delivered successfully to host '${this.transport.baseUrl.hostname}'.`);
    this.#log.info(`Message '${replyId}' delivered to endpoint '${endpoint}'`);
    return reply;
  }

  /**
   * The session to send under, opening one if needed (one opening at a time
   * per client); undefined when requests go signed instead (no pinned site
   * key yet, an MP without sessions, a client the MP will not open one for).
   */
  async #currentSession(): Promise<OpenSession | undefined> {
    const siteKey = this.transport.siteKey;
    if (!siteKey || Date.now() < this.#noSessionUntil) return undefined;
    if (this.#session && Date.now() < this.#session.renewAt) return this.#session;
    this.#opening ??= this.#openSession(siteKey).finally(() => (this.#opening = undefined));
    return this.#opening;
  }

  async #openSession(siteKey: KeyObject): Promise<OpenSession | undefined> {
    const p = this.transport.pathFor(SESSION_ROUTE);
    const offer = newSessionOffer();
    const body = Buffer.from(JSON.stringify({ clientKey: offer.clientKey }), 'utf8');
    const reply = await this.#attempt('POST', p, body, 'application/json', true, undefined);
    if (reply.status === 404 || (reply.status >= 400 && reply.status < 500 && SESSION_REFUSED.has(refusalOf(reply).mpCode))) {
      const code = refusalOf(reply).mpCode || `HTTP ${reply.status}`;
      const wait = reply.status === 404 ? SESSION_RETRY_AFTER_404_MS : SESSION_RETRY_AFTER_REFUSAL_MS;
      this.#log.warn(`${reply.line}: no session (${code}); sending signed requests for the next ${wait / 60_000} minutes.`);
      this.#noSessionUntil = Date.now() + wait;
      this.#session = undefined;
      return undefined;
    }
    this.#check('POST', p, body, reply);
    let session: ClientSession;
    try {
      session = acceptSessionReply(offer, this.#signer.clientId, reply.body, typeof reply.headers[SIGNATURE_HEADER] === 'string' ? reply.headers[SIGNATURE_HEADER] : undefined, siteKey);
    } catch (err) {
      this.#log.error(`POST ${p}: refusing the MP's session reply: ${(err as Error).message}.`);
      throw new CairnError('CAIRN_AGENT_MP_REPLY_INVALID', `POST ${p}: ${(err as Error).message}`);
    }
    const lifetimeMs = session.expiresInSeconds * 1000;
    this.#session = { ...session, renewAt: Date.now() + Math.max(lifetimeMs - SESSION_RENEW_BEFORE_MS, lifetimeMs / 2) };
    this.#log.info(`Opened session ${session.sessionId} with the MP, valid for ${session.expiresInSeconds} s.`);
    return this.#session;
  }

  /** Sends a JSON body (or none) and parses a JSON reply; a reply that is not JSON is `CAIRN_AGENT_MP_REPLY_INVALID`. */
  async json<T>(method: string, route: string, body?: unknown, options: Omit<RequestOptions, 'body'> = {}): Promise<{ reply: MpReply; json: T }> {
    const reply = await this.request(method, route, { ...options, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    return { reply, json: parseJsonReply<T>(reply, `${method} ${route}`) };
  }
}

function refusalOf(reply: MpReply): { mpCode: string; mpMessage: string; serverTime: string | undefined } {
  let mpCode = '';
  let mpMessage = '';
  let serverTime: string | undefined;
  try {
    const j = JSON.parse(reply.body.toString('utf8')) as { code?: unknown; message?: unknown; serverTime?: unknown };
    if (typeof j.code === 'string') mpCode = j.code;
    if (typeof j.message === 'string') mpMessage = j.message;
    if (typeof j.serverTime === 'string' || typeof j.serverTime === 'number') serverTime = String(j.serverTime);
  } catch {
    // Not a Cairn error body (a proxy, another server): the status says enough.
  }
  return { mpCode, mpMessage, serverTime };
}

export function parseJsonReply<T>(reply: MpReply, what: string): T {
  try {
    const v = JSON.parse(reply.body.toString('utf8')) as unknown;
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
    return v as T;
  } catch (err) {
    throw new CairnError('CAIRN_AGENT_MP_REPLY_INVALID', `${what}: ${(err as Error).message}`);
  }
}
