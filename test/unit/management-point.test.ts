/**
 * The MP plugin black-box through fastify's inject() (STYLE.md, convention
 * 6): a real SQLite site database, real keys, the routes of ADR 0005. The
 * end-to-end tests cover the same routes through real processes; these pin
 * down the edge cases of parsing and authentication.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import { generateKeyPairSync } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { SiteDatabase } from '../../src/datastore/engine.ts';
import { writeSetting } from '../../src/datastore/site-control.ts';
import { ClientNonceCache } from '../../src/mp/client-authenticator.ts';
import { newClientId, newKeyPair, signClientRequest } from '../../src/shared/client-auth.ts';
import { mountTestMp } from '../helpers/mp-app.ts';

let dir: string;
let db: SiteDatabase;
let app: FastifyInstance;
const changed: number[] = [];

function client(name: string) {
  return { clientId: newClientId(), name, keys: newKeyPair() };
}
type Client = ReturnType<typeof client>;

async function call(c: Client, method: 'GET' | 'POST', url: string, body?: unknown, raw?: string, signAs?: string) {
  const payload = raw ?? (body === undefined ? '' : JSON.stringify(body));
  const res = await app.inject({ method, url, payload, headers: { authorization: signClientRequest(signAs ?? c.clientId, c.keys.privateKey, method, url, payload), 'content-type': 'application/json' } });
  return { status: res.statusCode, json: res.json() as Record<string, unknown> };
}

function regBody(c: Client, extra: Record<string, unknown> = {}) {
  return { clientId: c.clientId, name: c.name, publicKey: c.keys.publicKey, ipAddresses: ['10.0.0.1'], osFamily: 'linux', osVersion: '6', agentVersion: '1', ...extra };
}

describe('MP plugin (inject)', () => {
  before(async () => {
    ({ dir, db, app } = await mountTestMp('mp-inject', async (id) => void changed.push(id)));
  });
  after(async () => {
    await app.close();
    await db.destroy();
    await fsp.rm(dir, { recursive: true, force: true });
  });

  test('registration refuses a header naming another client, a non-object body, an RSA key, control characters and a missing header', async () => {
    const c = client('PC1');
    const other = client('PC2');
    const wrongId = await call(c, 'POST', '/mp/v1/register', regBody(c), undefined, other.clientId);
    assert.deepEqual([wrongId.status, wrongId.json.code], [401, 'CAIRN_AUTH_INVALID']);
    const list = await call(c, 'POST', '/mp/v1/register', undefined, '[1,2]');
    assert.deepEqual([list.status, list.json.code], [400, 'CAIRN_REQUEST_INVALID']);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const rsaReply = await call(c, 'POST', '/mp/v1/register', regBody(c, { publicKey: rsa }));
    assert.deepEqual([rsaReply.status, rsaReply.json.code], [400, 'CAIRN_REQUEST_INVALID']);
    assert.match(String(rsaReply.json.message), /Ed25519/);
    const ctl = await call(c, 'POST', '/mp/v1/register', regBody(c, { name: 'PC\u0007' }));
    assert.deepEqual([ctl.status, ctl.json.code], [400, 'CAIRN_REQUEST_INVALID']);
    const ips = await call(c, 'POST', '/mp/v1/register', regBody(c, { ipAddresses: 'x' }));
    assert.deepEqual([ips.status, ips.json.code], [400, 'CAIRN_REQUEST_INVALID']);
    const none = await app.inject({ method: 'POST', url: '/mp/v1/register', payload: JSON.stringify(regBody(c)) });
    assert.deepEqual([none.statusCode, (none.json() as { code: string }).code], [401, 'CAIRN_AUTH_MISSING']);
    assert.equal(changed.length, 0, 'nothing was registered');
  });

  test('a registered client: its own policies only, its own status messages only; pending while mp.autoApprove is 0', async () => {
    const c = client('PC3');
    assert.deepEqual((await call(c, 'POST', '/mp/v1/register', regBody(c))).json, { clientId: c.clientId, status: 'approved' });
    assert.equal(changed.length, 1);
    const policy = await call(c, 'GET', `/mp/v1/policy/${encodeURIComponent('{00000000-0000-0000-0000-000000000000}')}/1.00`);
    assert.deepEqual([policy.status, policy.json.code], [404, 'CAIRN_POLICY_NOT_FOUND']);
    const msg = (clientId: string) => ({ messages: [{ id: 0x40000000 + 10002, component: 'ContentTransferManager', machine: 'PC3', time: new Date().toISOString(), attrs: [{ id: 408, value: clientId }] }] });
    assert.equal((await call(c, 'POST', '/mp/v1/relay/status-messages', msg(c.clientId))).status, 202);
    const foreign = await call(c, 'POST', '/mp/v1/relay/status-messages', msg(newClientId()));
    assert.deepEqual([foreign.status, foreign.json.code], [403, 'CAIRN_CLIENT_MISMATCH']);
    const badXml = await call(c, 'POST', '/mp/v1/relay/state-messages', undefined, '<Report><ReportHeader>');
    assert.deepEqual([badXml.status, badXml.json.code], [400, 'CAIRN_STATE_XML_MALFORMED']);
    await writeSetting(db.db, 'mp.autoApprove', 0);
    const p = client('PC4');
    assert.deepEqual((await call(p, 'POST', '/mp/v1/register', regBody(p))).json, { clientId: p.clientId, status: 'pending' });
    assert.equal(changed.length, 1, 'a pending client changes no membership');
    const loc = await call(p, 'POST', '/mp/v1/location/content', { packageId: 'CS100001', version: 1, ipAddresses: [] });
    assert.deepEqual([loc.status, loc.json.code], [403, 'CAIRN_CLIENT_NOT_APPROVED']);
  });

  test('the nonce cache forgets a nonce only once its request left the clock window', () => {
    const cache = new ClientNonceCache();
    const t0 = 1_000_000_000_000;
    assert.equal(cache.claim('a', t0, t0), true);
    assert.equal(cache.claim('a', t0, t0 + 1000), false);
    assert.equal(cache.claim('a', t0, t0 + 4 * 60_000), false);
    // After the window the entry is swept; the clock check refuses such a request before the cache is asked.
    assert.equal(cache.claim('b', t0 + 6 * 60_000, t0 + 6 * 60_000), true);
    assert.equal(cache.size, 1);
  });
});
