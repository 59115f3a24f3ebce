/**
 * MP sessions (docs/adr/0012-mp-sessions.md) through fastify's inject() and
 * the authenticator with a clock of its own: a real SQLite site database,
 * real keys. A session opens with a signed X25519 exchange; a forged MAC, a
 * replay, an expired session, another client's session ID and a revoked
 * client's session are each refused with their code.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createPublicKey } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { SiteDatabase } from '../../src/datastore/engine.ts';
import type { SiteSigningKey } from '../../src/mp/site-signing-key.ts';
import { ClientAuthenticator } from '../../src/mp/client-authenticator.ts';
import { acceptSessionReply, newClientId, newKeyPair, newSessionOffer, signClientRequest, signSessionRequest } from '../../src/shared/client-auth.ts';
import type { ClientSession } from '../../src/shared/client-auth.ts';
import { setClientApproval } from '../../src/datastore/clients.ts';
import { mountTestMp } from '../helpers/mp-app.ts';

let dir: string;
let db: SiteDatabase;
let app: FastifyInstance;
let siteKey: SiteSigningKey;

function client(name: string) {
  return { clientId: newClientId(), name, keys: newKeyPair() };
}
type Client = ReturnType<typeof client>;

async function register(c: Client): Promise<void> {
  const payload = JSON.stringify({ clientId: c.clientId, name: c.name, publicKey: c.keys.publicKey, ipAddresses: ['10.0.0.1'], osFamily: 'linux', osVersion: '6', agentVersion: '1' });
  const res = await app.inject({ method: 'POST', url: '/mp/v1/register', payload, headers: { authorization: signClientRequest(c.clientId, c.keys.privateKey, 'POST', '/mp/v1/register', payload), 'content-type': 'application/json' } });
  assert.equal(res.statusCode, 200, res.body);
}

async function setStatus(c: Client, status: 'approved' | 'pending' | 'revoked'): Promise<void> {
  const row = await db.db.selectFrom('ClientRegistration').select('ResourceID').where('ClientID', '=', c.clientId).executeTakeFirstOrThrow();
  await setClientApproval(db.db, Number(row.ResourceID), status);
}

async function openSession(c: Client): Promise<ClientSession> {
  const offer = newSessionOffer();
  const payload = JSON.stringify({ clientKey: offer.clientKey });
  const res = await app.inject({ method: 'POST', url: '/mp/v1/session', payload, headers: { authorization: signClientRequest(c.clientId, c.keys.privateKey, 'POST', '/mp/v1/session', payload), 'content-type': 'application/json' } });
  assert.equal(res.statusCode, 200, res.body);
  return acceptSessionReply(offer, c.clientId, res.rawPayload, res.headers['x-cairn-signature'] as string, createPublicKey(siteKey.publicKeyPem));
}

async function underSession(c: Client, s: ClientSession, url = '/mp/v1/policy/assignments', authorization?: string) {
  const res = await app.inject({ method: 'GET', url, headers: { authorization: authorization ?? signSessionRequest(c.clientId, s.sessionId, s.key, 'GET', url, '') } });
  return { status: res.statusCode, json: res.json() as Record<string, unknown> };
}

describe('MP sessions (inject)', () => {
  before(async () => {
    ({ dir, db, app, siteKey } = await mountTestMp('mp-sessions'));
  });
  after(async () => {
    await app.close();
    await db.destroy();
    await fsp.rm(dir, { recursive: true, force: true });
  });

  test('a session opened with a signed exchange serves the client routes and the relay; a forged MAC, a replay and an unknown session are refused', async () => {
    const c = client('S1');
    await register(c);
    const s = await openSession(c);
    const ok = await underSession(c, s);
    assert.equal(ok.status, 200, JSON.stringify(ok.json));
    assert.equal(ok.json.clientId, c.clientId);
    const url = '/mp/v1/relay/status-messages';
    const payload = JSON.stringify({ messages: [{ id: 0x40000000 + 10002, component: 'ContentTransferManager', machine: 'S1', time: new Date().toISOString(), attrs: [{ id: 408, value: c.clientId }] }] });
    const relayed = await app.inject({ method: 'POST', url, payload, headers: { authorization: signSessionRequest(c.clientId, s.sessionId, s.key, 'POST', url, payload), 'content-type': 'application/json' } });
    assert.equal(relayed.statusCode, 202, relayed.body);

    const forged = await underSession(c, { ...s, key: Buffer.alloc(32, 1) });
    assert.deepEqual([forged.status, forged.json.code], [401, 'CAIRN_AUTH_INVALID']);
    const header = signSessionRequest(c.clientId, s.sessionId, s.key, 'GET', '/mp/v1/policy/assignments', '');
    assert.equal((await underSession(c, s, undefined, header)).status, 200);
    const replay = await underSession(c, s, undefined, header);
    assert.deepEqual([replay.status, replay.json.code], [401, 'CAIRN_AUTH_REPLAY']);
    const skewed = await underSession(c, s, undefined, signSessionRequest(c.clientId, s.sessionId, s.key, 'GET', '/mp/v1/policy/assignments', '', Date.now() - 10 * 60_000));
    assert.deepEqual([skewed.status, skewed.json.code], [401, 'CAIRN_CLIENT_CLOCK_SKEW']);
    const unknown = await underSession(c, { ...s, sessionId: '0'.repeat(32) });
    assert.deepEqual([unknown.status, unknown.json.code], [401, 'CAIRN_SESSION_UNKNOWN']);
    const nested = await app.inject({ method: 'POST', url: '/mp/v1/session', payload: '{}', headers: { authorization: signSessionRequest(c.clientId, s.sessionId, s.key, 'POST', '/mp/v1/session', '{}') } });
    assert.deepEqual([nested.statusCode, (nested.json() as { code: string }).code], [401, 'CAIRN_AUTH_INVALID']);
    assert.match(await fsp.readFile(path.join(dir, 'logs', 'MP_Registration.log'), 'utf8'), new RegExp(`Opened session ${s.sessionId} for ${c.clientId.replace(/[-:]/g, '.')} \\(S1\\)`));
  });

  test("another client's session ID is refused even with that client's MAC; a new session replaces the client's old one", async () => {
    const a = client('S2');
    const b = client('S3');
    await register(a);
    await register(b);
    const sa = await openSession(a);
    const theirs = await underSession(b, sa);
    assert.deepEqual([theirs.status, theirs.json.code], [401, 'CAIRN_SESSION_MISMATCH']);
    const sa2 = await openSession(a);
    const old = await underSession(a, sa);
    assert.deepEqual([old.status, old.json.code], [401, 'CAIRN_SESSION_UNKNOWN']);
    assert.equal((await underSession(a, sa2)).status, 200);
  });

  test("a revoked client's session is refused at its next request and ended; it cannot open another; a pending client cannot open one", async () => {
    const c = client('S4');
    await register(c);
    const s = await openSession(c);
    assert.equal((await underSession(c, s)).status, 200);
    await setStatus(c, 'revoked');
    const revoked = await underSession(c, s);
    assert.deepEqual([revoked.status, revoked.json.code], [403, 'CAIRN_CLIENT_REVOKED']);
    assert.match(String(revoked.json.message), /session .* is ended/);
    const after = await underSession(c, s);
    assert.deepEqual([after.status, after.json.code], [401, 'CAIRN_SESSION_UNKNOWN']);
    const offer = newSessionOffer();
    const payload = JSON.stringify({ clientKey: offer.clientKey });
    const again = await app.inject({ method: 'POST', url: '/mp/v1/session', payload, headers: { authorization: signClientRequest(c.clientId, c.keys.privateKey, 'POST', '/mp/v1/session', payload) } });
    assert.deepEqual([again.statusCode, (again.json() as { code: string }).code], [403, 'CAIRN_CLIENT_REVOKED']);
    await setStatus(c, 'pending');
    const pending = await app.inject({ method: 'POST', url: '/mp/v1/session', payload, headers: { authorization: signClientRequest(c.clientId, c.keys.privateKey, 'POST', '/mp/v1/session', payload) } });
    assert.deepEqual([pending.statusCode, (pending.json() as { code: string }).code], [403, 'CAIRN_CLIENT_NOT_APPROVED']);
    const bad = await app.inject({ method: 'POST', url: '/mp/v1/session', payload: '{"clientKey":"x"}', headers: { authorization: signClientRequest(c.clientId, c.keys.privateKey, 'POST', '/mp/v1/session', '{"clientKey":"x"}') } });
    assert.ok([400, 403].includes(bad.statusCode));
  });

  test('a session expires after its lifetime (the clock moved on), and the LastSeenTime writes are batched', async () => {
    const c = client('S5');
    await register(c);
    let now = Date.now();
    const auth = new ClientAuthenticator(db.db, { sessionLifetimeMs: 60 * 60_000, now: () => now });
    const offer = newSessionOffer();
    const body = Buffer.from(JSON.stringify({ clientKey: offer.clientKey }));
    const opened = await auth.openSession(signClientRequest(c.clientId, c.keys.privateKey, 'POST', '/mp/v1/session', body), 'POST', '/mp/v1/session', body, siteKey.privateKey);
    const s = acceptSessionReply(offer, c.clientId, Buffer.from(opened.bytes), opened.signature, createPublicKey(siteKey.publicKeyPem));
    assert.equal(s.expiresInSeconds, 3600);
    const request = () => auth.authenticate(signSessionRequest(c.clientId, s.sessionId, s.key, 'GET', '/x', '', now), 'GET', '/x', Buffer.alloc(0));
    now += 59 * 60_000;
    assert.equal((await request()).row.ClientID, c.clientId);
    now += 60_000;
    await assert.rejects(request(), (err: { code?: string }) => err.code === 'CAIRN_SESSION_EXPIRED');
    await assert.rejects(request(), (err: { code?: string }) => err.code === 'CAIRN_SESSION_UNKNOWN', 'an expired session is ended');
    await auth.close();
    const row = await db.db.selectFrom('ClientRegistration').select('LastSeenTime').where('ClientID', '=', c.clientId).executeTakeFirstOrThrow();
    assert.equal(row.LastSeenTime, new Date(now - 60_000).toISOString(), 'written at close, with the time the client was last admitted');
  });
});
