/**
 * The MP relay endpoint and status receiver (spec 30 section 4 steps 1-2;
 * spec 40, "Files dropped into inboxes"), as a fastify plugin so that the MP
 * role mounts it when it exists; until then the site's HTTP server does
 * (site-server.ts, under `/mp`).
 *
 * Transport only: each route authenticates the request, parses the body at
 * the edge into typed values (STYLE.md, convention 5), and writes one inbox
 * file atomically; the state system and the status manager do the rest.
 *
 * - `POST /mp/v1/relay/state-messages`, body: one `Report` (XML, as in the
 *   spec) → `.SMX` in `inboxes/auth/statesys.box/incoming`; 202
 *   `{ file, records, invalidRecords }`. A report whose individual messages
 *   are bad is still relayed: the state system counts them as invalid
 *   records, and the client does not resend a report forever.
 * - `POST /mp/v1/relay/status-messages`, body: JSON
 *   `{ "messages": [ClientStatusMessage, ...] }` → `.SVF` in
 *   `statmgr.box/statmsgs`; 202 `{ file, messages }`.
 *
 * Authentication: a registered client signs with its own key (ADR 0005;
 * `clientAuth`) or sends under its session (`CairnSession`, ADR 0012), and then a report's `ClientID` (or a status message's
 * attribute 408) must be the signer's, else 403 `CAIRN_CLIENT_MISMATCH`.
 * Tools and tests may still sign with the site's relay key
 * (docs/adr/0003-state-relay.md), HMAC-SHA256 over the method, the path, a
 * timestamp, a nonce and the SHA-256 of the body (the DP protocol's scheme
 * with the body bound in); a remote MP has no relay key and takes client
 * signatures only. Refusals are logged in `MP_Relay.log` with the caller's
 * address and the reason.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { ComponentLog } from '../shared/cmtrace-log.ts';
import { refusalHandler } from '../shared/refusals.ts';
import { CairnError } from '../shared/errors.ts';
import type { ErrorCode } from '../shared/errors.ts';
import { writeInboxFile } from '../shared/inbox.ts';
import { MAX_REPORT_BYTES, parseStateReport } from '../shared/state-report.ts';
import { SEVERITIES, LEVELS, SVF_FORMAT } from '../shared/status-message.ts';
import type { Level, Severity, StatusMessage } from '../shared/status-message.ts';
import { NonceCache, signRequest, verifyRequest } from '../dp/protocol.ts';

/** Where the site mounts this plugin until the MP role exists. */
export const MP_PREFIX = '/mp';
export const STATE_MESSAGES_ROUTE = '/v1/relay/state-messages';
export const STATUS_MESSAGES_ROUTE = '/v1/relay/status-messages';

/** Ours: the largest status-message body (1 MiB) and the most messages in one. */
export const MAX_STATUS_BYTES = 1024 * 1024;
export const MAX_STATUS_MESSAGES = 500;

export interface StateRelayOptions {
  /** The shared secret tools sign with (`<data>/relay.key`); absent on a remote MP, which takes client signatures only. */
  readonly key?: string;
  /** Authenticates a `CairnClient` signature (ADR 0005) and returns the signer's client ID; throws the refusal. */
  readonly clientAuth?: (header: string, method: string, pathWithQuery: string, body: Buffer) => Promise<{ clientId: string }>;
  readonly siteCode: string;
  readonly statesysIncoming: string;
  readonly statmsgs: string;
  readonly log: ComponentLog;
  /** Called after a file is in place, to wake its reader at once. */
  readonly onStateFile?: () => void;
  readonly onStatusFile?: () => void;
}

function bodyHash(body: Buffer | string): string {
  return createHash('sha256').update(body).digest('hex');
}

/** What the DP protocol signs as the "path": the path and the body's hash, so that the body cannot be changed. */
export function signedPath(pathWithQuery: string, body: Buffer | string): string {
  return `${pathWithQuery}\nsha256=${bodyHash(body)}`;
}

/**
 * Signs a relay request; returns the Authorization header. `pathWithQuery`
 * is the full path on the request line, e.g. `/mp/v1/relay/state-messages`.
 */
export function signRelayRequest(key: string, method: string, pathWithQuery: string, body: Buffer | string, now = Date.now()): string {
  return signRequest(key, method, signedPath(pathWithQuery, body), now).authorization;
}

/** Posts a report or status messages to a relay: for tests, the benchmark and, later, the client agent. */
export async function postToRelay(baseUrl: string, key: string, route: typeof STATE_MESSAGES_ROUTE | typeof STATUS_MESSAGES_ROUTE, body: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const p = `${MP_PREFIX}${route}`;
  const res = await fetch(`${baseUrl}${p}`, {
    method: 'POST',
    headers: { authorization: signRelayRequest(key, 'POST', p, body), 'content-type': route === STATE_MESSAGES_ROUTE ? 'text/xml; charset=utf-8' : 'application/json' },
    body,
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

let sequence = 0;
/** Inbox file names sort in arrival order and never repeat (the status manager dedups by file name). */
function fileName(ext: 'SMX' | 'SVF'): string {
  sequence += 1;
  return `${Date.now().toString().padStart(14, '0')}-${process.pid}-${String(sequence).padStart(9, '0')}-${randomBytes(3).toString('hex')}.${ext}`;
}

/** Client status messages as the status receiver accepts them, parsed into the site's StatusMessage. */
export function parseClientStatusMessages(body: unknown, siteCode: string): StatusMessage[] {
  const bad = (what: string): never => {
    throw new CairnError('CAIRN_STATUS_MESSAGE_INVALID', what);
  };
  if (!body || typeof body !== 'object' || Array.isArray(body)) bad('the body must be a JSON object with a messages list');
  const list = (body as { messages?: unknown }).messages;
  if (!Array.isArray(list) || list.length === 0) bad('messages must be a non-empty list');
  if ((list as unknown[]).length > MAX_STATUS_MESSAGES) bad(`at most ${MAX_STATUS_MESSAGES} messages per request`);
  const text = (o: Record<string, unknown>, k: string, i: number, max = 256): string => {
    const v = o[k];
    if (typeof v !== 'string' || !v || v.length > max) bad(`message ${i}: ${k} must be a string of 1-${max} characters`);
    return v as string;
  };
  return (list as unknown[]).map((m, i) => {
    if (!m || typeof m !== 'object' || Array.isArray(m)) bad(`message ${i} is not an object`);
    const o = m as Record<string, unknown>;
    const id = o.id;
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > 0xffffffff) bad(`message ${i}: id must be an integer from 0 to 4294967295`);
    // The top two bits of a client message ID carry its severity (REFERENCE.md): 0x40000000 I, 0x80000000 W, 0xC0000000 E.
    const bits = Math.floor((id as number) / 0x40000000);
    const fromBits: Severity | undefined = bits === 1 ? 'I' : bits === 2 ? 'W' : bits === 3 ? 'E' : undefined;
    if (o.severity !== undefined && !SEVERITIES.includes(o.severity as Severity)) bad(`message ${i}: severity must be I, W or E`);
    if (fromBits && o.severity !== undefined && o.severity !== fromBits) bad(`message ${i}: severity ${String(o.severity)} contradicts the ID's severity bits (${fromBits})`);
    if (o.level !== undefined && !LEVELS.includes(o.level as Level)) bad(`message ${i}: level must be M or D`);
    const time = text(o, 'time', i, 40);
    if (Number.isNaN(Date.parse(time))) bad(`message ${i}: time is not a date`);
    const istr = o.istr ?? [];
    if (!Array.isArray(istr) || istr.length > 10 || !istr.every((s) => typeof s === 'string' && s.length <= 1024)) bad(`message ${i}: istr must be a list of at most 10 strings`);
    const attrs = o.attrs ?? [];
    if (!Array.isArray(attrs) || attrs.length > 20 || !attrs.every((a) => a && typeof a === 'object' && Number.isInteger(a.id) && typeof a.value === 'string' && a.value.length <= 1024)) bad(`message ${i}: attrs must be a list of at most 20 {id, value}`);
    const int = (k: string): number => {
      const v = o[k];
      if (v === undefined) return 0;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) bad(`message ${i}: ${k} must be a non-negative integer`);
      return v as number;
    };
    return {
      id: id as number,
      severity: fromBits ?? ((o.severity as Severity | undefined) ?? 'I'),
      level: (o.level as Level | undefined) ?? 'M',
      source: 'SMS Client',
      component: text(o, 'component', i),
      machine: text(o, 'machine', i),
      site: siteCode,
      pid: int('pid'),
      tid: int('tid'),
      time: new Date(time).toISOString(),
      istr: istr as string[],
      attrs: (attrs as { id: number; value: string }[]).map((a) => ({ id: a.id, value: a.value })),
    };
  });
}

type RawRequest = FastifyRequest<{ Body: Buffer }>;

export const stateRelay: FastifyPluginAsync<StateRelayOptions> = async (app: FastifyInstance, opts: StateRelayOptions) => {
  const { log } = opts;
  const nonces = new NonceCache();

  // Every body arrives raw: the signature covers its bytes, and each route parses it itself.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

  const tooLarge = (url: string): ErrorCode => (url.includes(STATUS_MESSAGES_ROUTE) ? 'CAIRN_STATUS_TOO_LARGE' : 'CAIRN_STATE_TOO_LARGE');

  app.setErrorHandler(refusalHandler({ logFor: () => log, tooLarge: (request) => ({ code: tooLarge(request.url) }) }));

  /** The client that signed each request (absent for a relay-key signature). */
  const signers = new WeakMap<FastifyRequest, string>();

  const authenticate = async (request: RawRequest): Promise<void> => {
    const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
    const header = request.headers.authorization;
    if (opts.clientAuth && (header?.startsWith('CairnClient ') || header?.startsWith('CairnSession '))) {
      signers.set(request, (await opts.clientAuth(header, request.method, request.url, body)).clientId);
      return;
    }
    if (opts.key === undefined) throw new CairnError(header ? 'CAIRN_AUTH_INVALID' : 'CAIRN_AUTH_MISSING', 'this management point takes client signatures only');
    const v = verifyRequest(opts.key, header, request.method, signedPath(request.url, body), nonces);
    if (!v.ok) throw new CairnError(v.code, v.reason);
  };

  app.post(STATE_MESSAGES_ROUTE, { bodyLimit: MAX_REPORT_BYTES, preHandler: authenticate }, async (request: RawRequest, reply) => {
    const xml = Buffer.isBuffer(request.body) ? request.body.toString('utf8') : '';
    const report = parseStateReport(xml);
    const signer = signers.get(request);
    if (signer !== undefined && report.client.clientId !== signer) throw new CairnError('CAIRN_CLIENT_MISMATCH', `the report is for ${report.client.clientId}, signed by ${signer}`);
    const name = fileName('SMX');
    await writeInboxFile(opts.statesysIncoming, name, xml);
    log.info(`Relayed a state-message report from ${report.client.clientId} (${report.client.netbiosName || 'no name'}, priority ${report.client.priority}): ${report.records.length + report.invalid.length} messages, ${report.invalid.length} invalid; wrote ${name} to ${opts.statesysIncoming}.`);
    opts.onStateFile?.();
    return reply.code(202).send({ file: name, records: report.records.length + report.invalid.length, invalidRecords: report.invalid.length });
  });

  app.post(STATUS_MESSAGES_ROUTE, { bodyLimit: MAX_STATUS_BYTES, preHandler: authenticate }, async (request: RawRequest, reply) => {
    let json: unknown;
    try {
      json = JSON.parse(Buffer.isBuffer(request.body) ? request.body.toString('utf8') : '');
    } catch (err) {
      throw new CairnError('CAIRN_STATUS_MESSAGE_INVALID', `the body is not JSON (${(err as Error).message})`);
    }
    const messages = parseClientStatusMessages(json, opts.siteCode);
    const signer = signers.get(request);
    const other = signer === undefined ? undefined : messages.flatMap((m) => m.attrs).find((a) => a.id === 408 && a.value !== signer);
    if (other) throw new CairnError('CAIRN_CLIENT_MISMATCH', `a message names client ${other.value}, signed by ${signer}`);
    const name = fileName('SVF');
    await writeInboxFile(opts.statmsgs, name, JSON.stringify({ format: SVF_FORMAT, messages }));
    log.info(`Received ${messages.length} client status messages from ${messages[0]!.machine}; wrote ${name} to ${opts.statmsgs}.`);
    opts.onStatusFile?.();
    return reply.code(202).send({ file: name, messages: messages.length });
  });
};
