/**
 * End to end, the MP's client authentication (ADR 0005): a real `cairn start`
 * process, clients that register with their own Ed25519 keys (automatic and
 * manual approval), and every refusal of the ADR's table with its code and
 * its line in the MP's log. Client requests are signed with the shared
 * `signClientRequest`; assignment lists are checked with `verifyDocument`.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { verifyDocument } from '../../src/shared/client-auth.ts';
import { STATE_MESSAGES_ROUTE, postToRelay } from '../../src/mp/state-relay.ts';
import { afterTests, cli, readLog, startSite, tempDir, waitFor } from '../helpers/processes.ts';
import { mpRequest, newTestClient, register, registrationBody } from '../helpers/mp-client.ts';
import type { TestClient } from '../helpers/mp-client.ts';

const { cleanups, track } = afterTests();

function report(clientId: string, name: string, serial: number): string {
  return `<Report><ReportHeader><Identification><Machine><ClientID>${clientId}</ClientID><NetBIOSName>${name}</NetBIOSName><Priority>5</Priority></Machine></Identification><ReportDetails><ReportContent>State Message Data</ReportContent></ReportDetails></ReportHeader><ReportBody><StateMessage MessageTime="20261122070000.000000+000" SerialNumber="${serial}"><Topic ID="{d1}" Type="901" IDType="1" User="" UserSID=""/><State ID="2" Criticality="0"/><UserParameters Flags="0" Count="0"></UserParameters></StateMessage></ReportBody></Report>`;
}

describe('MP registration and client authentication', () => {
  test('[UC21] clients register with their own keys; unknown, pending, revoked, replayed, skewed and forged requests are refused with their codes and logged', async () => {
    const work = await tempDir('mp-reg');
    cleanups.push(() => fsp.rm(work, { recursive: true, force: true }));
    const dataDir = path.join(work, 'site');
    const site = track(await startSite(dataDir, ['--no-local-dp']));
    const mp = site.url;

    // The site key: anonymous, with its fingerprint; the key file is private.
    const siteKey = (await (await fetch(`${mp}/mp/v1/site-key`)).json()) as { siteCode: string; publicKey: string; fingerprint: string };
    assert.equal(siteKey.siteCode, 'CS1');
    assert.match(siteKey.fingerprint, /^[0-9A-F]{64}$/);
    assert.equal((await fsp.stat(path.join(dataDir, 'site-signing.key'))).mode & 0o777, 0o600);

    // Automatic approval (mp.autoApprove defaults to 1): approved at once; repeating is harmless.
    const a = newTestClient('PCA', ['10.1.2.3']);
    const reg = await register(mp, a);
    assert.equal(reg.status, 200, JSON.stringify(reg.json));
    assert.deepEqual(reg.json, { clientId: a.clientId, status: 'approved' });
    assert.deepEqual((await register(mp, a)).json, { clientId: a.clientId, status: 'approved' });
    assert.deepEqual((await mpRequest(mp, a, 'GET', '/mp/v1/registration')).json, { clientId: a.clientId, status: 'approved' });

    // The assignment list is signed by the site key; the ClientSettings policy reaches every approved client.
    const list = await waitFor('the ClientSettings assignment for PCA', async () => {
      const r = await mpRequest(mp, a, 'GET', '/mp/v1/policy/assignments');
      assert.equal(r.status, 200, JSON.stringify(r.json));
      assert.ok(verifyDocument(siteKey.publicKey, r.bytes, r.headers.get('x-cairn-signature') ?? undefined), 'the assignment list verifies');
      const items = r.json.assignments as { category: string }[];
      return items.some((x) => x.category === 'ClientSettings') ? r : undefined;
    });
    assert.equal(list.json.clientId, a.clientId);
    assert.equal(list.json.siteCode, 'CS1');

    // Refusals, in the ADR's order.
    const missing = await fetch(`${mp}/mp/v1/policy/assignments`);
    assert.equal(missing.status, 401);
    assert.equal(((await missing.json()) as { code: string }).code, 'CAIRN_AUTH_MISSING');
    const stranger = newTestClient('STRANGER');
    const unknown = await mpRequest(mp, stranger, 'GET', '/mp/v1/policy/assignments');
    assert.deepEqual([unknown.status, unknown.json.code], [401, 'CAIRN_CLIENT_UNKNOWN']);
    const forged = await mpRequest(mp, a, 'GET', '/mp/v1/policy/assignments', undefined, { signWith: stranger.keys.privateKey });
    assert.deepEqual([forged.status, forged.json.code], [401, 'CAIRN_AUTH_INVALID']);
    const skewed = await mpRequest(mp, a, 'GET', '/mp/v1/policy/assignments', undefined, { now: Date.now() - 10 * 60 * 1000 });
    assert.deepEqual([skewed.status, skewed.json.code], [401, 'CAIRN_CLIENT_CLOCK_SKEW']);
    assert.equal(typeof skewed.json.serverTime, 'number');
    const once = await mpRequest(mp, a, 'GET', '/mp/v1/policy/assignments');
    assert.equal(once.status, 200);
    const replay = await mpRequest(mp, a, 'GET', '/mp/v1/policy/assignments', undefined, { authorization: once.authorization });
    assert.deepEqual([replay.status, replay.json.code], [401, 'CAIRN_AUTH_REPLAY']);

    // Bad bodies: malformed JSON, a wrong key type, an oversize body.
    const bad = await mpRequest(mp, newTestClient('BAD'), 'POST', '/mp/v1/register', undefined, { rawBody: '{"clientId": ' });
    assert.deepEqual([bad.status, bad.json.code], [400, 'CAIRN_REQUEST_INVALID']);
    const big = await mpRequest(mp, a, 'POST', '/mp/v1/location/content', undefined, { rawBody: JSON.stringify({ pad: 'x'.repeat(70 * 1024) }) });
    assert.deepEqual([big.status, big.json.code], [413, 'CAIRN_REQUEST_TOO_LARGE']);
    // The same client ID with another key.
    const thief: TestClient = { ...newTestClient('THIEF'), clientId: a.clientId };
    const mismatch = await register(mp, thief);
    assert.deepEqual([mismatch.status, mismatch.json.code], [409, 'CAIRN_CLIENT_KEY_MISMATCH']);

    // The relay: a client signs its own report; another client's ClientID is refused; the relay key still works.
    const own = await mpRequest(mp, a, 'POST', '/mp/v1/relay/state-messages', undefined, { rawBody: report(a.clientId, 'PCA', 1) });
    assert.equal(own.status, 202, JSON.stringify(own.json));
    const foreign = await mpRequest(mp, a, 'POST', '/mp/v1/relay/state-messages', undefined, { rawBody: report(stranger.clientId, 'X', 1) });
    assert.deepEqual([foreign.status, foreign.json.code], [403, 'CAIRN_CLIENT_MISMATCH']);
    const relayKey = (await fsp.readFile(path.join(dataDir, 'relay.key'), 'utf8')).trim();
    assert.equal((await postToRelay(mp, relayKey, STATE_MESSAGES_ROUTE, report(stranger.clientId, 'X', 2))).status, 202);
    // Topic type 901 is a known topic: the state system stores it with its friendly name.
    await waitFor('the content deployment state of PCA', async () => {
      const r = await cli(site, ['state', 'list', '--client', a.clientId, '--json']);
      const states = JSON.parse(r.stdout || '[]') as { topicType: number; stateName?: string }[];
      return states.find((s) => s.topicType === 901 && s.stateName === 'Downloaded and verified');
    });

    // Manual approval: pending clients get nothing but the refusal until an administrator approves them.
    assert.equal((await cli(site, ['settings', 'set', 'mp.autoApprove', '0'])).code, 0);
    const b = newTestClient('PCB', ['10.9.0.1']);
    assert.deepEqual((await register(mp, b)).json, { clientId: b.clientId, status: 'pending' });
    assert.deepEqual((await mpRequest(mp, b, 'GET', '/mp/v1/registration')).json, { clientId: b.clientId, status: 'pending' });
    const pending = await mpRequest(mp, b, 'GET', '/mp/v1/policy/assignments');
    assert.deepEqual([pending.status, pending.json.code], [403, 'CAIRN_CLIENT_NOT_APPROVED']);
    const pendingReport = await mpRequest(mp, b, 'POST', '/mp/v1/relay/state-messages', undefined, { rawBody: report(b.clientId, 'PCB', 1) });
    assert.deepEqual([pendingReport.status, pendingReport.json.code], [403, 'CAIRN_CLIENT_NOT_APPROVED']);
    const listed = JSON.parse((await cli(site, ['client', 'list', '--json'])).stdout) as { name: string; status: string }[];
    assert.deepEqual(listed.map((c) => [c.name, c.status]), [['PCA', 'approved'], ['PCB', 'pending']]);
    const approved = await cli(site, ['client', 'approve', 'PCB']);
    assert.equal(approved.code, 0, approved.stderr);
    assert.match(approved.stdout, /PCB .*pending -> approved/);
    await waitFor('PCB to get its ClientSettings assignment', async () => {
      const r = await mpRequest(mp, b, 'GET', '/mp/v1/policy/assignments');
      return r.status === 200 && (r.json.assignments as unknown[]).length > 0;
    });

    // Revocation: by client ID; everything is refused but the registration status, which says so.
    assert.equal((await cli(site, ['client', 'revoke', a.clientId])).code, 0);
    const revoked = await mpRequest(mp, a, 'GET', '/mp/v1/policy/assignments');
    assert.deepEqual([revoked.status, revoked.json.code], [403, 'CAIRN_CLIENT_REVOKED']);
    assert.deepEqual((await mpRequest(mp, a, 'GET', '/mp/v1/registration')).json, { clientId: a.clientId, status: 'revoked' });
    const again = await register(mp, a);
    assert.deepEqual([again.status, again.json.code], [403, 'CAIRN_CLIENT_REVOKED']);
    const nobody = await cli(site, ['client', 'approve', 'NOBODY']);
    assert.equal(nobody.code, 1);
    assert.match(nobody.stderr, /CAIRN_CLIENT_NOT_FOUND/);

    // Every refusal is in the endpoint's log with the caller's address; the admin calls are audited.
    const policyLog = await readLog(dataDir, 'MP_Policy');
    for (const code of ['CAIRN_AUTH_MISSING', 'CAIRN_CLIENT_UNKNOWN', 'CAIRN_AUTH_INVALID', 'CAIRN_CLIENT_CLOCK_SKEW', 'CAIRN_AUTH_REPLAY', 'CAIRN_CLIENT_NOT_APPROVED', 'CAIRN_CLIENT_REVOKED']) {
      assert.match(policyLog, new RegExp(`Refused GET /mp/v1/policy/assignments from 127\\.0\\.0\\.1: ${code}`), code);
    }
    const regLog = await readLog(dataDir, 'MP_Registration');
    assert.match(regLog, /Registered new client .*\(PCA, .*approved automatically \(mp.autoApprove = 1\)/);
    assert.match(regLog, /Registered new client .*\(PCB, .*pending approval by an administrator/);
    assert.match(regLog, /CAIRN_CLIENT_KEY_MISMATCH/);
    assert.match(regLog, /CAIRN_REQUEST_INVALID/);
    assert.match(await readLog(dataDir, 'MP_Relay'), /CAIRN_CLIENT_MISMATCH/);
    assert.match(await readLog(dataDir, 'MP_Location'), /CAIRN_REQUEST_TOO_LARGE/);
    const prov = await readLog(dataDir, 'SMSProv');
    assert.match(prov, /called POST \/api\/v1\/clients\/PCB\/approve: 200, approved client .* \(PCB\), was pending/);
    assert.match(prov, /revoked client .* \(PCA\), was approved/);
    // Registration bodies are what ADR 0005 says, nothing more: the helper's body has exactly its fields.
    assert.deepEqual(Object.keys(registrationBody(a)).sort(), ['agentVersion', 'clientId', 'ipAddresses', 'name', 'osFamily', 'osVersion', 'publicKey']);
  });
});
