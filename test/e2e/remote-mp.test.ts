/**
 * End to end, a remote MP (`cairn mp`) on its own port: clients register and
 * get policy through it, their reports and status messages go to its
 * outboxes, and its file dispatch (MPFDM) moves them to the site server;
 * with the site server down meanwhile, nothing is lost.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterTests, cli, freePort, readLog, startSite, tempDir, waitFor } from '../helpers/processes.ts';
import { addRemoteMp, mpRequest, newTestClient, register } from '../helpers/mp-client.ts';

const { cleanups, track } = afterTests();
function report(clientId: string, serial: number, topic: string): string {
  return `<Report><ReportHeader><Identification><Machine><ClientID>${clientId}</ClientID><NetBIOSName>REMOTE-01</NetBIOSName><Priority>5</Priority></Machine></Identification><ReportDetails><ReportContent>State Message Data</ReportContent></ReportDetails></ReportHeader><ReportBody><StateMessage MessageTime="20261122070000.000000+000" SerialNumber="${serial}"><Topic ID="${topic}" Type="901" IDType="1" User="" UserSID=""/><State ID="2" Criticality="0"/><UserParameters Flags="0" Count="0"></UserParameters></StateMessage></ReportBody></Report>`;
}

describe('remote management point', () => {
  test('[UC21][UC22] a remote MP relays into its outboxes and its file dispatch moves every file to the site, the site down then up', async () => {
    const work = await tempDir('remote-mp');
    cleanups.push(() => fsp.rm(work, { recursive: true, force: true }));
    const dataDir = path.join(work, 'site');
    const sitePort = await freePort();
    let site = track(await startSite(dataDir, ['--no-local-dp', '--port', String(sitePort)]));
    const started = await addRemoteMp(site, work, 'mp1');
    assert.match(JSON.parse((await cli(site, ['mp', 'list', '--json'])).stdout)[0].name, /^mp1$/);
    const mp = track(started.mp);
    const mpData = started.data;

    // The same site key, registration and policy through the remote MP.
    const siteKey = (await (await fetch(`${site.url}/mp/v1/site-key`)).json()) as { fingerprint: string };
    assert.equal(((await (await fetch(`${mp.url}/mp/v1/site-key`)).json()) as { fingerprint: string }).fingerprint, siteKey.fingerprint);
    const c = newTestClient('REMOTE-01', ['10.5.0.1']);
    assert.equal((await register(mp.url, c)).json.status, 'approved');
    await waitFor('the client to get its ClientSettings assignment through the remote MP', async () => {
      const r = await mpRequest(mp.url, c, 'GET', '/mp/v1/policy/assignments');
      return r.status === 200 && (r.json.assignments as { category: string }[]).some((a) => a.category === 'ClientSettings');
    });
    const mpfdm = () => readLog(mpData, 'MPFDM');
    // The registration's .CLI travels by the MP file dispatch on its own schedule, not before the assignment: waited for, not assumed.
    await waitFor('MPFDM to move the registration .CLI to the site', async () => /Moved file .*policypv\.box.*\.CLI to /.test(await mpfdm()));

    // With the site up: a report reaches the state system.
    assert.equal((await mpRequest(mp.url, c, 'POST', '/mp/v1/relay/state-messages', undefined, { rawBody: report(c.clientId, 1, '{d-up}') })).status, 202);
    await waitFor('the first state at the site', async () => {
      const states = JSON.parse((await cli(site, ['state', 'list', '--client', c.clientId, '--json'])).stdout || '[]') as { topicId: string }[];
      return states.some((s) => s.topicId === '{d-up}');
    });

    // The site server goes down; the MP keeps accepting, into its outbox.
    await site.kill('SIGTERM');
    const outbox = path.join(mpData, 'outboxes', 'StateMsg.box');
    for (let i = 0; i < 3; i += 1) {
      const r = await mpRequest(mp.url, c, 'POST', '/mp/v1/relay/state-messages', undefined, { rawBody: report(c.clientId, 10 + i, `{d-down-${i}}`) });
      assert.equal(r.status, 202, JSON.stringify(r.json));
    }
    const status = await mpRequest(mp.url, c, 'POST', '/mp/v1/relay/status-messages', { messages: [{ id: 0x40000000 + 10003, component: 'ContentTransferManager', machine: 'REMOTE-01', time: new Date().toISOString(), istr: ['CS100001', '1'], attrs: [{ id: 408, value: c.clientId }] }] });
    assert.equal(status.status, 202, JSON.stringify(status.json));
    await waitFor('the dispatch to fail and back off', async () => /Could not move .*cannot reach the site server/.test(await mpfdm()));
    assert.equal((await fsp.readdir(outbox)).filter((n) => n.endsWith('.SMX')).length, 3);
    assert.equal((await fsp.readdir(path.join(mpData, 'outboxes', 'statmgr.box'))).filter((n) => n.endsWith('.SVF')).length, 1);

    // The site comes back on the same address: every file arrives, none is lost, the outboxes empty.
    site = track(await startSite(dataDir, ['--no-local-dp', '--port', String(sitePort)]));
    await waitFor('the outboxes to empty', async () => (await fsp.readdir(outbox)).filter((n) => n.endsWith('.SMX')).length === 0 && (await fsp.readdir(path.join(mpData, 'outboxes', 'statmgr.box'))).filter((n) => n.endsWith('.SVF')).length === 0);
    await waitFor('every state at the site', async () => {
      const states = JSON.parse((await cli(site, ['state', 'list', '--client', c.clientId, '--json'])).stdout || '[]') as { topicId: string }[];
      return ['{d-up}', '{d-down-0}', '{d-down-1}', '{d-down-2}'].every((t) => states.some((s) => s.topicId === t));
    });
    await waitFor('the status message at the site', async () => {
      const msgs = JSON.parse((await cli(site, ['status-messages', '--component', 'ContentTransferManager', '--json'])).stdout || '[]') as { id: number }[];
      return msgs.length === 1;
    });
    const log = await mpfdm();
    assert.match(log, /The site server answers again after \d+ failed attempts/);
    assert.equal((log.match(/Moved file .*StateMsg\.box.*\.SMX to /g) ?? []).length, 4);
    assert.match(await readLog(dataDir, 'MP_Relay'), /Received .*\.SMX \(\d+ bytes\) from management point mp1/);

    // A dispatch signed with a wrong key is refused and logged at the site.
    const forged = await fetch(`${site.url}/mp/v1/dispatch/state/x.SMX`, { method: 'POST', headers: { 'x-cairn-mp': 'mp1', authorization: 'CairnHMAC ts=1,nonce=00000000000000000000000000000000,sig=' + '0'.repeat(64) }, body: 'x' });
    assert.equal(forged.status, 401);
    assert.match(await readLog(dataDir, 'MP_Relay'), /Refused POST \/mp\/v1\/dispatch\/state\/x\.SMX .*management point mp1.*CAIRN_AUTH_INVALID/);
  });
});
