/**
 * The management point's client routes (docs/adr/0005-mp-client-protocol.md),
 * as one fastify plugin mounted under `/mp`: by the site's HTTP server for
 * the in-process MP of `cairn start`, and by `cairn mp` on another host.
 *
 * Transport and the MP's small decisions only: each route authenticates the
 * request (src/mp/client-authenticator.ts), parses the body at the edge,
 * reads or writes the site database, and answers. The policy provider builds
 * and signs policies (src/site/components/policypv/); this plugin signs only
 * the per-client assignment lists, with the same site key.
 *
 * Logs, one per endpoint as the product has them (CMTrace): registration in
 * `MP_Registration.log`, policy requests in `MP_Policy.log`, content location
 * in `MP_Location.log`, the relay and status receiver in `MP_Relay.log`.
 * Every refusal is logged there with the caller's address, the code and why.
 *
 * It must never answer an unknown, pending (except registration status) or
 * revoked client with anything but the refusal, and never serve a policy
 * that is not mapped to the asking client.
 */
import type { Kysely } from 'kysely';
import type { FastifyInstance, FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { ComponentLog } from '../shared/cmtrace-log.ts';
import { refusalHandler } from '../shared/refusals.ts';
import { CairnError, ERRORS } from '../shared/errors.ts';
import { CLIENT_ID_RE, HASH_ALGORITHM_HEADER, HASH_ALGORITHM_SHA256, HASH_HEADER, SIGNATURE_HEADER, keyFingerprint, parseClientAuthorization, parsePublicKey, signDocument, verifyClientSignature } from '../shared/client-auth.ts';
import type { Database } from '../datastore/schema.ts';
import { findClient, insertClient, refreshClientFacts } from '../datastore/clients.ts';
import type { ApprovalStatus, ClientFacts } from '../datastore/clients.ts';
import { readSettings } from '../datastore/site-control.ts';
import { assignmentsForResource, policyForResource } from '../datastore/policies.ts';
import { ClientAuthenticator, checkFreshness } from './client-authenticator.ts';
import { locateAmong } from './content-location.ts';
import { MpCache } from './mp-cache.ts';
import { locateUpdatePoints } from './update-point-location.ts';
import { buildWsusLocationReply, MAX_WSUS_LOCATION_BYTES, parseWsusLocationRequest } from '../shared/wsus-location.ts';
import { stateRelay } from './state-relay.ts';
import type { StateRelayOptions } from './state-relay.ts';
import type { SiteSigningKey } from './site-signing-key.ts';

export const SITE_KEY_ROUTE = '/v1/site-key';
export const REGISTER_ROUTE = '/v1/register';
export const REGISTRATION_ROUTE = '/v1/registration';
export const ASSIGNMENTS_ROUTE = '/v1/policy/assignments';
export const LOCATION_ROUTE = '/v1/location/content';
/** Update-point location (spec 30 §2; docs/adr/0010-scan-agent.md): a `WSUSLocationRequest` in, a `WSUSLocationReply` out. */
export const WSUS_LOCATION_ROUTE = '/v1/location/update-points';
/** ADR 0012: opens a session (an Ed25519-signed X25519 exchange). */
export const OPEN_SESSION_ROUTE = '/v1/session';

/** Ours: registration and location bodies are small JSON documents. */
export const MAX_MP_REQUEST_BYTES = 64 * 1024;

export interface MpLogs {
  readonly registration: ComponentLog;
  readonly policy: ComponentLog;
  readonly location: ComponentLog;
  readonly relay: ComponentLog;
}

export interface ManagementPointOptions {
  readonly db: Kysely<Database>;
  readonly siteCode: string;
  readonly signingKey: SiteSigningKey;
  readonly logs: MpLogs;
  /** Where relayed `.SMX`/`.SVF` files go: the site's inboxes (in-process MP) or the MP's outboxes (remote MP). */
  readonly relay: Omit<StateRelayOptions, 'siteCode' | 'log' | 'clientAuth'>;
  /**
   * Called after a client is registered approved, or an approved client's
   * name or addresses changed: the policy provider must re-evaluate
   * collections (a `.CLI` file in `policypv.box`, directly or dispatched).
   */
  readonly onClientChanged: (resourceId: number) => Promise<void>;
  /**
   * Client IDs approved at their first registration whatever
   * `mp.autoApprove` says: the agent `cairn start` runs for the site's own
   * machine (issue 4, part 4). Read on every registration.
   */
  readonly siteOwnClientIds?: () => ReadonlySet<string>;
  /** How long a session lasts (ADR 0012); tests shorten it. */
  readonly sessionLifetimeMs?: number;
}

type RawRequest = FastifyRequest<{ Body: Buffer }>;

function rawBody(request: FastifyRequest): Buffer {
  return Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
}

function parseJson(body: Buffer): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new CairnError('CAIRN_REQUEST_INVALID', `the body is not JSON (${(err as Error).message})`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new CairnError('CAIRN_REQUEST_INVALID', 'the body must be a JSON object');
  return v as Record<string, unknown>;
}

function text(o: Record<string, unknown>, key: string, max: number, allowEmpty = false, allowNewlines = false): string {
  const v = o[key];
  if (typeof v !== 'string' || (!allowEmpty && !v) || v.length > max || [...v].some((ch) => ch.charCodeAt(0) < 0x20 && !(allowNewlines && (ch === '\n' || ch === '\r')))) throw new CairnError('CAIRN_REQUEST_INVALID', `${key} must be a string of ${allowEmpty ? 0 : 1}-${max} printable characters`);
  return v;
}

function addresses(o: Record<string, unknown>, key: string): string[] {
  const v = o[key] ?? [];
  if (!Array.isArray(v) || v.length > 32 || !v.every((a) => typeof a === 'string' && a.length > 0 && a.length <= 45 && /^[0-9A-Fa-f.:%a-z]+$/.test(a))) throw new CairnError('CAIRN_REQUEST_INVALID', `${key} must be a list of at most 32 IP addresses`);
  return v as string[];
}

/** The register body (ADR 0005), validated. */
export function parseRegistration(body: Buffer): ClientFacts {
  const o = parseJson(body);
  const clientId = text(o, 'clientId', 41);
  if (!CLIENT_ID_RE.test(clientId)) throw new CairnError('CAIRN_REQUEST_INVALID', 'clientId must be GUID:<UUID in upper case>');
  const publicKey = text(o, 'publicKey', 4096, false, true);
  if (!parsePublicKey(publicKey)) throw new CairnError('CAIRN_REQUEST_INVALID', 'publicKey must be an Ed25519 public key (SPKI PEM)');
  return {
    clientId,
    name: text(o, 'name', 64),
    publicKey,
    fingerprint: keyFingerprint(publicKey),
    ipAddresses: addresses(o, 'ipAddresses'),
    osFamily: text(o, 'osFamily', 64, true),
    osVersion: text(o, 'osVersion', 64, true),
    agentVersion: text(o, 'agentVersion', 64, true),
  };
}

export const managementPoint: FastifyPluginAsync<ManagementPointOptions> = async (app: FastifyInstance, opts: ManagementPointOptions) => {
  const { db, logs } = opts;
  const auth = new ClientAuthenticator(db, { log: logs.registration, ...(opts.sessionLifetimeMs === undefined ? {} : { sessionLifetimeMs: opts.sessionLifetimeMs }) });
  app.addHook('onClose', async () => auth.close());
  const cache = new MpCache(db);

  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

  const logFor = (url: string): ComponentLog => (url.includes('/v1/regist') || url.includes(OPEN_SESSION_ROUTE) ? logs.registration : url.includes('/v1/policy') ? logs.policy : url.includes('/v1/location') ? logs.location : logs.relay);

  app.setErrorHandler(
    refusalHandler({
      logFor: (request) => logFor(request.url),
      tooLarge: () => ({ code: 'CAIRN_REQUEST_TOO_LARGE', message: `${ERRORS.CAIRN_REQUEST_TOO_LARGE.message} (at most ${MAX_MP_REQUEST_BYTES} bytes)` }),
    }),
  );

  app.get(SITE_KEY_ROUTE, async () => ({ siteCode: opts.siteCode, publicKey: opts.signingKey.publicKeyPem, fingerprint: opts.signingKey.fingerprint }));

  // Registration: signed with the key in the body (proof of possession).
  app.post(REGISTER_ROUTE, { bodyLimit: MAX_MP_REQUEST_BYTES }, async (request: RawRequest) => {
    const body = rawBody(request);
    const header = parseClientAuthorization(request.headers.authorization);
    if (!header) throw new CairnError('CAIRN_AUTH_MISSING', request.headers.authorization ? 'the Authorization header is not a CairnClient signature' : 'no Authorization header');
    const facts = parseRegistration(body);
    if (header.clientId !== facts.clientId) throw new CairnError('CAIRN_AUTH_INVALID', `the header names ${header.clientId}, the body ${facts.clientId}`);
    if (!verifyClientSignature(header, facts.publicKey, request.method, request.url, body)) throw new CairnError('CAIRN_AUTH_INVALID', `the registration is not signed with the key it carries`);
    checkFreshness(header, auth.nonces);
    const existing = await findClient(db, facts.clientId);
    if (existing) {
      if (existing.PublicKey.trim() !== facts.publicKey.trim()) throw new CairnError('CAIRN_CLIENT_KEY_MISMATCH', `${facts.clientId} is registered with key ${existing.KeyFingerprint}, the request carries ${facts.fingerprint}`);
      if (existing.ApprovalStatus === 'revoked') throw new CairnError('CAIRN_CLIENT_REVOKED', `${facts.clientId} (${existing.NetBIOSName})`);
      await refreshClientFacts(db, facts);
      const changed = existing.NetBIOSName !== facts.name || existing.IPAddresses !== JSON.stringify(facts.ipAddresses);
      logs.registration.info(`Client ${facts.clientId} (${facts.name}) registered again from ${request.ip}; status ${existing.ApprovalStatus}${changed ? '; its name or addresses changed' : ''}.`);
      if (changed && existing.ApprovalStatus === 'approved') await opts.onClientChanged(Number(existing.ResourceID));
      return { clientId: facts.clientId, status: existing.ApprovalStatus };
    }
    const own = opts.siteOwnClientIds?.().has(facts.clientId) ?? false;
    const auto = own || (await readSettings(db))['mp.autoApprove'] === 1;
    const row = await insertClient(db, facts, auto ? 'approved' : 'pending');
    const status = row.ApprovalStatus as ApprovalStatus;
    logs.registration.info(
      `Registered new client ${facts.clientId} (${facts.name}, ${facts.osFamily} ${facts.osVersion}, agent ${facts.agentVersion}, addresses ${facts.ipAddresses.join(' ') || 'none'}) from ${request.ip}; key fingerprint ${facts.fingerprint}; resource ID ${row.ResourceID}; ${status === 'approved' ? (own ? "approved automatically (the site's own agent)" : auto ? 'approved automatically (mp.autoApprove = 1)' : 'approved') : 'pending approval by an administrator (mp.autoApprove = 0)'}.`,
    );
    if (status === 'approved') await opts.onClientChanged(Number(row.ResourceID));
    return { clientId: facts.clientId, status };
  });

  // Sessions (ADR 0012): the reply's exact bytes are signed with the site key, so a client knows the X25519 key is the MP's.
  app.post(OPEN_SESSION_ROUTE, { bodyLimit: MAX_MP_REQUEST_BYTES }, async (request: RawRequest, reply) => {
    const opened = await auth.openSession(request.headers.authorization, request.method, request.url, rawBody(request), opts.signingKey.privateKey);
    logs.registration.info(`Opened session ${opened.sessionId} for ${opened.client.row.ClientID} (${opened.client.row.NetBIOSName}) from ${request.ip}; ${auth.sessions.size} sessions open.`);
    return reply.header('content-type', 'application/json; charset=utf-8').header(SIGNATURE_HEADER, opened.signature).send(opened.bytes);
  });

  app.get(REGISTRATION_ROUTE, async (request: RawRequest) => {
    const c = await auth.authenticate(request.headers.authorization, request.method, request.url, rawBody(request), ['pending', 'revoked']);
    return { clientId: c.row.ClientID, status: c.row.ApprovalStatus };
  });

  app.get(ASSIGNMENTS_ROUTE, async (request: RawRequest, reply) => {
    const c = await auth.authenticate(request.headers.authorization, request.method, request.url, rawBody(request));
    // ADR 0013: the signed list is kept per client until the change counter (read with the client's row) moves.
    const version = c.changeCounter;
    let list = cache.assignmentList(c.resourceId, version);
    if (!list) {
      const rows = await assignmentsForResource(db, c.resourceId);
      const bytes = JSON.stringify({
        clientId: c.row.ClientID,
        siteCode: opts.siteCode,
        generatedAt: new Date().toISOString(),
        assignments: rows.map((a) => ({ assignmentId: a.assignmentId, assignmentVersion: a.assignmentVersion, policyId: a.policyId, policyVersion: a.policyVersion, category: a.category, hashAlgorithm: HASH_ALGORITHM_SHA256, hash: a.hash })),
      });
      list = { bytes, signature: signDocument(opts.signingKey.privateKey, bytes), count: rows.length, summary: rows.map((a) => `${a.assignmentId} ${a.category} ${a.policyVersion}`).join(', ') || 'none' };
      cache.keepAssignmentList(c.resourceId, version, list);
    }
    logs.policy.info(`Replied ${list.count} policy assignments to ${c.row.ClientID} (${c.row.NetBIOSName}): ${list.summary}.`);
    return reply.header('content-type', 'application/json; charset=utf-8').header(SIGNATURE_HEADER, list.signature).send(list.bytes);
  });

  app.get<{ Params: { policyId: string; version: string } }>('/v1/policy/:policyId/:version', async (request, reply) => {
    const c = await auth.authenticate(request.headers.authorization, request.method, request.url, rawBody(request));
    const { policyId, version } = request.params;
    const policy = await policyForResource(db, c.resourceId, policyId);
    if (!policy) throw new CairnError('CAIRN_POLICY_NOT_FOUND', `${policyId} for ${c.row.ClientID}`);
    if (policy.Version !== version) throw new CairnError('CAIRN_POLICY_NOT_FOUND', `${policyId} version ${version} (the current version is ${policy.Version})`);
    logs.policy.info(`Sent policy ${policyId} version ${version} (${policy.Category}, ${Buffer.byteLength(policy.Body)} bytes, hash ${policy.BodyHash}) to ${c.row.ClientID} (${c.row.NetBIOSName}).`);
    return reply
      .header('content-type', 'application/json; charset=utf-8')
      .header(SIGNATURE_HEADER, policy.BodySignature)
      .header(HASH_HEADER, policy.BodyHash)
      .header(HASH_ALGORITHM_HEADER, String(Number(policy.HashAlgId)))
      .send(Buffer.from(policy.Body, 'utf8'));
  });

  app.post(LOCATION_ROUTE, { bodyLimit: MAX_MP_REQUEST_BYTES }, async (request: RawRequest) => {
    const body = rawBody(request);
    const c = await auth.authenticate(request.headers.authorization, request.method, request.url, body);
    const o = parseJson(body);
    const packageId = text(o, 'packageId', 8).toUpperCase();
    if (!/^[A-Z0-9]{8}$/.test(packageId)) throw new CairnError('CAIRN_REQUEST_INVALID', 'packageId must be a package ID such as CS100001');
    const version = o.version;
    if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) throw new CairnError('CAIRN_REQUEST_INVALID', 'version must be a positive integer');
    const ips = addresses(o, 'ipAddresses');
    logs.location.info(`MP LM: Message Body : ${JSON.stringify({ packageId, version, ipAddresses: ips })} from ${c.row.ClientID} (${c.row.NetBIOSName})`);
    // ADR 0013: the setting, the boundary groups and the DPs holding the version come from the cache, read again whenever the change counter moved.
    const counter = c.changeCounter;
    const { fallback, groups: allGroups } = await cache.locationContext(counter);
    const { locations, groups } = locateAmong(await cache.dpsHolding(packageId, version, counter), allGroups, { packageId, ipAddresses: ips }, fallback);
    logs.location.info(`MP LM: the client's boundary groups: ${groups.join(', ') || 'none'}; fallback ${fallback ? 'to every DP holding the content' : 'off'}; ${locations.length} locations.`);
    const replyBody = { packageId, version, locations };
    logs.location.info(`MP LM: Reply message body: ${JSON.stringify(replyBody)}`);
    return replyBody;
  });

  // Spec 30 §2 steps 2-3 (seeds 002/003, MP_Location.log): the queue mp_locationmanager.
  app.post(WSUS_LOCATION_ROUTE, { bodyLimit: MAX_WSUS_LOCATION_BYTES }, async (request: RawRequest, reply) => {
    const body = rawBody(request);
    const c = await auth.authenticate(request.headers.authorization, request.method, request.url, body);
    const xml = body.toString('utf8');
    logs.location.info(`MP LM: Message Body : ${xml} from ${c.row.ClientID} (${c.row.NetBIOSName})`);
    const q = parseWsusLocationRequest(xml);
    logs.location.info(`MP LM: calling MP_GetWSUSServerLocations N'${q.contentId}',N'${q.version}',N'${q.assignedSite}',N'${opts.siteCode}',N'${q.onInternet ? 1 : 0}',N'${q.domain}'`);
    if (q.assignedSite !== opts.siteCode) logs.location.warn(`MP LM: ${c.row.ClientID} is assigned to site ${q.assignedSite}, this MP serves ${opts.siteCode}; answering with ${opts.siteCode}'s update points, where the client is registered.`);
    const fallback = (await readSettings(db))['mp.locationFallback'] === 1;
    const found = await locateUpdatePoints(db, opts.siteCode, q, fallback);
    const how = { boundary: `in boundary groups ${found.groups.join(', ')}`, 'no-boundaries': 'the site has no boundaries: every client is served', fallback: 'outside every boundary, served by fallback (mp.locationFallback = 1)', outside: 'outside every boundary and mp.locationFallback = 0: no update point' }[found.reach];
    logs.location.info(`MP LM: the client's addresses ${q.ipAddresses.map((a) => a.address).join(', ') || 'none'}: ${how}; ${found.records.length} update point(s) hold content version ${q.version} or later${found.tooOld.length ? `; left out, older: ${found.tooOld.join(', ')}` : ''}.`);
    const out = buildWsusLocationReply({ sites: [{ siteCode: opts.siteCode, records: found.records }] });
    logs.location.info(`MP LM: Reply message body: ${out}`);
    return reply.header('content-type', 'text/xml; charset=utf-8').send(out);
  });

  await app.register(stateRelay, {
    ...opts.relay,
    siteCode: opts.siteCode,
    log: logs.relay,
    clientAuth: async (header, method, pathWithQuery, body) => ({ clientId: (await auth.authenticate(header, method, pathWithQuery, body)).row.ClientID }),
  });
};
