/**
 * End to end, policy and content location: a real all-in-one `cairn start`
 * with its own DP and a second DP process, clients that register and fetch
 * signed assignment lists and policy bodies through the MP, a package
 * deployed to a collection, boundary groups with and without fallback, the
 * UpdateSource policy on a hand-dropped `.STN`, and a policy body tampered
 * with in the database and caught by the client-side checks of ADR 0005.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { policyHash, verifyDocument } from '../../src/shared/client-auth.ts';
import { openDatabase } from '../../src/datastore/engine.ts';
import type { SiteDatabase } from '../../src/datastore/engine.ts';
import { getSyncStatus } from '../../src/datastore/updates.ts';
import { addDp, afterTests, api, cli, readLog, startSite, tempDir, waitFor } from '../helpers/processes.ts';
import type { SiteProc } from '../helpers/processes.ts';
import { mpRequest, newTestClient, register } from '../helpers/mp-client.ts';
import type { TestClient } from '../helpers/mp-client.ts';

interface Assignment {
  assignmentId: string;
  assignmentVersion: string;
  policyId: string;
  policyVersion: string;
  category: string;
  hashAlgorithm: number;
  hash: string;
}

const { cleanups, track } = afterTests();
let site: SiteProc;
let dataDir: string;
let work: string;
let siteKey: string;
let db: SiteDatabase;
const web = newTestClient('WEB-01', ['10.1.0.5']);
const other = newTestClient('DB-01', ['192.168.7.7']);

/** The client's assignment list, its signature checked as the agent checks it. */
async function assignments(c: TestClient): Promise<Assignment[]> {
  const r = await mpRequest(site.url, c, 'GET', '/mp/v1/policy/assignments');
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.ok(verifyDocument(siteKey, r.bytes, r.headers.get('x-cairn-signature') ?? undefined), 'the assignment list is signed by the site');
  return r.json.assignments as Assignment[];
}

/** A policy body, accepted only as ADR 0005 says: hash equal to the assignment's, and its own signature valid. */
async function policyBody(c: TestClient, a: Assignment): Promise<{ ok: boolean; body: Record<string, unknown>; status: number }> {
  const r = await mpRequest(site.url, c, 'GET', `/mp/v1/policy/${encodeURIComponent(a.policyId)}/${a.policyVersion}`);
  if (r.status !== 200) return { ok: false, body: r.json, status: r.status };
  const ok = policyHash(r.bytes) === a.hash && r.headers.get('x-cairn-hash') === a.hash && r.headers.get('x-cairn-hash-algorithm') === '32780' && verifyDocument(siteKey, r.bytes, r.headers.get('x-cairn-signature') ?? undefined);
  return { ok, body: r.json, status: r.status };
}

async function waitForAssignment(c: TestClient, what: string, pick: (a: Assignment) => boolean): Promise<Assignment> {
  return waitFor(what, async () => (await assignments(c)).find(pick));
}

describe('MP policy and content location', () => {
  let pkgId: string;
  let source: string;

  before(async () => {
    work = await tempDir('mp-policy');
    cleanups.push(() => fsp.rm(work, { recursive: true, force: true }));
    dataDir = path.join(work, 'site');
    site = track(await startSite(dataDir));
    siteKey = ((await (await fetch(`${site.url}/mp/v1/site-key`)).json()) as { publicKey: string }).publicKey;
    db = openDatabase(`sqlite:${path.join(dataDir, 'site.db')}`);
    cleanups.push(() => db.destroy());
    track(await addDp(site, path.join(work, 'dp2'), 'dp2'));
    source = path.join(work, 'source');
    await fsp.mkdir(path.join(source, 'bin'), { recursive: true });
    await fsp.writeFile(path.join(source, 'setup.sh'), '#!/bin/sh\necho hello\n');
    await fsp.writeFile(path.join(source, 'bin', 'tool.bin'), Buffer.alloc(5000, 3));
    const created = await cli(site, ['package', 'create', '--name', 'Tools', '--source', source]);
    assert.equal(created.code, 0, created.stderr);
    pkgId = created.stdout.trim();
    assert.equal((await cli(site, ['package', 'distribute', pkgId, '--dp', 'local', '--dp', 'dp2'])).code, 0);
    await waitFor('the package on both DPs', async () => {
      const s = await api<{ distributionPoints: { status: number; version: number }[] }>(site, 'GET', `/api/v1/packages/${pkgId}/status`);
      return s.json.distributionPoints.length === 2 && s.json.distributionPoints.every((d) => d.status === 3 && d.version === 1);
    });
    for (const c of [web, other]) assert.equal((await register(site.url, c)).json.status, 'approved');
  });

  test('[CD7.3][CD7.4] a package deployed to a collection becomes a signed ContentDeployment policy with its files, for the collection\'s members only', async () => {
    assert.match((await cli(site, ['collection', 'create', 'Web servers'])).stdout, /^CS1\d{5}\n$/);
    const rule = await cli(site, ['collection', 'add-rule', 'Web servers', '--name-pattern', 'WEB-*']);
    assert.equal(rule.code, 0, rule.stderr);
    const badRule = await cli(site, ['collection', 'add-rule', 'Web servers', '--subnet', '10.1.0.0/33']);
    assert.match(badRule.stderr, /CAIRN_COLLECTION_RULE_INVALID/);
    const deployed = await cli(site, ['package', 'deploy', pkgId, '--collection', 'Web servers', '--json']);
    assert.equal(deployed.code, 0, deployed.stderr);
    const deploymentId = (JSON.parse(deployed.stdout) as { deployment: { deploymentId: string } }).deployment.deploymentId;

    const a = await waitForAssignment(web, 'the ContentDeployment assignment for WEB-01', (x) => x.category === 'ContentDeployment');
    assert.equal(a.policyVersion, '1.00');
    assert.equal(a.hashAlgorithm, 32780);
    const p = await policyBody(web, a);
    assert.ok(p.ok, 'the body verifies');
    assert.equal(p.body.deploymentId, deploymentId);
    assert.equal(p.body.packageId, pkgId);
    assert.equal(p.body.packageVersion, 1);
    // The files are the package's, as the DP lists them.
    const localDpUrl = (JSON.parse(await fsp.readFile(path.join(dataDir, 'site.json'), 'utf8')) as { localDpUrl: string }).localDpUrl;
    const listing = (await (await fetch(`${localDpUrl}/SMS_DP_SMSPKG$/${pkgId}/`)).json()) as { files: { path: string; size: number; hash: string }[] };
    const files = p.body.files as { path: string; size: number; hash: string }[];
    assert.deepEqual(files.map((f) => f.path).sort(), ['bin/tool.bin', 'setup.sh']);
    assert.deepEqual(files.map((f) => [f.path, f.size, f.hash.toUpperCase()]).sort(), listing.files.map((f) => [f.path, f.size, f.hash.toUpperCase()]).sort());

    // DB-01 is not in the collection: no such assignment, and the body is refused.
    assert.ok(!(await assignments(other)).some((x) => x.category === 'ContentDeployment'));
    const refused = await policyBody(other, a);
    assert.deepEqual([refused.status, refused.body.code], [404, 'CAIRN_POLICY_NOT_FOUND']);
    // An old version is refused too.
    const old = await mpRequest(site.url, web, 'GET', `/mp/v1/policy/${encodeURIComponent(a.policyId)}/0.00`);
    assert.deepEqual([old.status, old.json.code], [404, 'CAIRN_POLICY_NOT_FOUND']);

    const log = await readLog(dataDir, 'policypv');
    assert.match(log, new RegExp(`Successfully created policy \\{[0-9a-f-]{36}\\} and policy assignment \\{[0-9a-f-]{36}\\} based on package ${pkgId}`));
    assert.match(log, /Beginning to update the resource to policy mapping\.\.\./);
    assert.match(log, /Successfully updated the resource to policy mapping for \d+ resources/);
    const listed = JSON.parse((await cli(site, ['collection', 'list', '--json'])).stdout) as { collectionId: string; name: string; memberCount: number }[];
    assert.deepEqual(listed.map((c) => [c.name, c.memberCount]), [['All Clients', 2], ['Web servers', 1]]);
    assert.match(await readLog(dataDir, 'SMSProv'), /deployed .* to collection CS1\d{5} \(deployment \{/);

    // A direct member joins at once; deploying again changes nothing.
    assert.equal((await cli(site, ['collection', 'add-member', 'Web servers', 'DB-01'])).code, 0);
    await waitForAssignment(other, 'DB-01 to get the deployment as a direct member', (x) => x.policyId === a.policyId);
    assert.match((await cli(site, ['package', 'deploy', pkgId, '--collection', 'Web servers'])).stdout, /^Already deployed/);

    // A new stored version of the package bumps the policy (and its assignment) with the new files.
    await fsp.writeFile(path.join(source, 'setup.sh'), '#!/bin/sh\necho hello again\n');
    assert.equal((await cli(site, ['package', 'update', pkgId])).code, 0);
    const a2 = await waitForAssignment(web, 'the deployment policy at 2.00', (x) => x.policyId === a.policyId && x.policyVersion === '2.00');
    assert.equal(a2.assignmentVersion, '2.00');
    const p2 = await policyBody(web, a2);
    assert.ok(p2.ok);
    assert.equal(p2.body.packageVersion, 2);
    assert.notEqual((p2.body.files as { path: string; hash: string }[]).find((f) => f.path === 'setup.sh')!.hash, files.find((f) => f.path === 'setup.sh')!.hash);
  });

  test('a policy body changed in the database fails the client-side checks (hash and signature)', async () => {
    const a = await waitForAssignment(web, 'the ClientSettings assignment', (x) => x.category === 'ClientSettings');
    const good = await policyBody(web, a);
    assert.ok(good.ok);
    assert.equal(good.body.policyPollSeconds, 3600);
    const row = await db.db.selectFrom('Policy').select('Body').where('PolicyID', '=', a.policyId).executeTakeFirstOrThrow();
    await db.db.updateTable('Policy').set({ Body: row.Body.replace('3600', '3601') }).where('PolicyID', '=', a.policyId).execute();
    const tampered = await policyBody(web, a);
    assert.equal(tampered.status, 200);
    assert.equal(tampered.ok, false, 'a tampered body must be refused by the client');
    assert.equal(tampered.body.policyPollSeconds, 3601);
    // Changing the setting is the legitimate way: a new version, signed again.
    assert.equal((await cli(site, ['settings', 'set', 'client.policyPollSeconds', '600'])).code, 0);
    const next = await waitForAssignment(web, 'ClientSettings 2.00', (x) => x.policyId === a.policyId && x.policyVersion === '2.00');
    const fresh = await policyBody(web, next);
    assert.ok(fresh.ok);
    assert.equal(fresh.body.policyPollSeconds, 600);
  });

  test('[UC2] a hand-dropped .STN bumps the UpdateSource policy to the site\'s content version, once per content version', async () => {
    const status = await getSyncStatus(db.db, 'CS1');
    await db.db.updateTable('Update_SyncStatus').set({ ContentVersion: 5 }).where('SiteCode', '=', 'CS1').execute();
    const id = `{${status.updateSourceId.toUpperCase()}}`;
    const box = path.join(dataDir, 'inboxes', 'policypv.box');
    const drop = async () => {
      await fsp.writeFile(path.join(box, '.stn.tmp'), '');
      await fsp.rename(path.join(box, '.stn.tmp'), path.join(box, `${id}.STN`));
      await waitFor('the .STN to be handled', async () => !(await fsp.readdir(box)).includes(`${id}.STN`));
    };
    await drop();
    const a = await waitForAssignment(web, 'the UpdateSource assignment', (x) => x.category === 'UpdateSource');
    assert.equal(a.policyVersion, '1.00');
    const body = await policyBody(web, a);
    assert.ok(body.ok);
    // The all-in-one site's own update point is its first (issue 5).
    assert.deepEqual([body.body.updateSourceId, body.body.contentVersion, (body.body.updatePoints as { serverName: string }[]).map((p) => p.serverName)], [id, 5, ['local']]);
    // The same content version again: nothing changes.
    await drop();
    assert.equal((await assignments(web)).find((x) => x.category === 'UpdateSource')!.policyVersion, '1.00');
    // A new content version: version 2.00 for policy and assignment.
    await db.db.updateTable('Update_SyncStatus').set({ ContentVersion: 6 }).where('SiteCode', '=', 'CS1').execute();
    await drop();
    const a2 = (await assignments(web)).find((x) => x.category === 'UpdateSource')!;
    assert.deepEqual([a2.policyVersion, a2.assignmentVersion], ['2.00', '2.00']);
    assert.equal((await policyBody(web, a2)).body.contentVersion, 6);
    const log = await readLog(dataDir, 'policypv');
    const lines = log.split('\n').filter((l) => l.includes(id) || l.includes('UpdateSource'));
    assert.ok(lines.some((l) => l.includes(`Found ${id}.STN`)));
    assert.ok(lines.some((l) => l.includes(`Added scan tool ID ${id}`)));
    assert.ok(lines.some((l) => /Successfully created policy \{.*\} \(version 1\.00\) and policy assignment .* based on update source .*content version 5/.test(l)));
    assert.ok(lines.some((l) => l.includes('is already at content version 5; nothing to change')));
    assert.ok(lines.some((l) => /Successfully updated policy .*\(version 2\.00\).*content version 6/.test(l)));
    assert.ok(lines.some((l) => l.includes(`Add to delete list: ${path.join(box, `${id}.STN`)}`)));
  });

  test('content location: the DPs of the client\'s boundary group first, then the fallback, only DPs holding that version', async () => {
    assert.equal((await cli(site, ['boundary-group', 'create', 'Branch'])).code, 0);
    assert.equal((await cli(site, ['boundary', 'add', 'Branch', '--subnet', '10.1.0.0/16'])).code, 0);
    assert.equal((await cli(site, ['boundary-group', 'add-dp', 'Branch', 'dp2'])).code, 0);
    assert.match((await cli(site, ['boundary', 'add', 'Branch', '--range', '10.0.0.9-10.0.0.1'])).stderr, /CAIRN_BOUNDARY_INVALID/);
    const groups = JSON.parse((await cli(site, ['boundary', 'list', '--json'])).stdout) as unknown;
    assert.deepEqual(groups, [{ name: 'Branch', boundaries: [{ type: 'subnet', value: '10.1.0.0/16' }], distributionPoints: ['dp2'] }]);
    const version = (await api<{ package: { storedVersion: number } }>(site, 'GET', `/api/v1/packages/${pkgId}/status`)).json.package.storedVersion;
    await waitFor('both DPs to hold the current version', async () => {
      const s = await api<{ distributionPoints: { status: number; version: number }[] }>(site, 'GET', `/api/v1/packages/${pkgId}/status`);
      return s.json.distributionPoints.every((d) => d.status === 3 && d.version === version);
    });
    const locate = async (c: TestClient, v = version) => {
      const r = await mpRequest(site.url, c, 'POST', '/mp/v1/location/content', { packageId: pkgId, version: v, ipAddresses: c.ipAddresses });
      assert.equal(r.status, 200, JSON.stringify(r.json));
      return (r.json.locations as { dpName: string; boundaryGroup: string | null; fallback: boolean; packageUrl: string }[]).map((l) => [l.dpName, l.boundaryGroup, l.fallback, l.packageUrl.endsWith(`/SMS_DP_SMSPKG$/${pkgId}/`)]);
    };
    assert.deepEqual(await locate(web), [['dp2', 'Branch', false, true], ['local', null, true, true]]);
    assert.deepEqual(await locate(other), [['dp2', null, true, true], ['local', null, true, true]]);
    assert.deepEqual(await locate(web, version + 5), []);
    assert.equal((await cli(site, ['settings', 'set', 'mp.locationFallback', '0'])).code, 0);
    assert.deepEqual(await locate(web), [['dp2', 'Branch', false, true]]);
    assert.deepEqual(await locate(other), []);
    const log = await readLog(dataDir, 'MP_Location');
    assert.match(log, /MP LM: Message Body : \{"packageId":"CS1\w{5}"/);
    assert.match(log, /MP LM: Reply message body: /);
    const bad = await mpRequest(site.url, web, 'POST', '/mp/v1/location/content', { packageId: pkgId, version: 'one' });
    assert.deepEqual([bad.status, bad.json.code], [400, 'CAIRN_REQUEST_INVALID']);
  });
});
