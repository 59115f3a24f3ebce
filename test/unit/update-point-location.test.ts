/**
 * Update-point location (spec 30 §2; docs/adr/0010-scan-agent.md): the
 * `WSUSLocationRequest`/`WSUSLocationReply` XML in the spec's exact format,
 * and the MP's route black-box through fastify's inject() on a real SQLite
 * site database: only update points holding at least the requested content
 * version, in install order; boundaries decide whether a client is served;
 * a malformed request is refused with its code and logged.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { SiteDatabase } from '../../src/datastore/engine.ts';
import { writeSetting } from '../../src/datastore/site-control.ts';
import { insertUpdatePoint, recordUpdatePointSync } from '../../src/datastore/update-points.ts';
import { addBoundary, insertBoundaryGroup } from '../../src/datastore/boundaries.ts';
import { newClientId, newKeyPair, signClientRequest } from '../../src/shared/client-auth.ts';
import { buildWsusLocationReply, buildWsusLocationRequest, parseWsusLocationReply, parseWsusLocationRequest } from '../../src/shared/wsus-location.ts';
import { mountTestMp } from '../helpers/mp-app.ts';

const SOURCE = '{C2D17964-BBDD-4339-B9F3-12D7205B39CC}';

// The spec's examples, as written (spec 30 §2 steps 2 and 3).
const SPEC_REQUEST = `<WSUSLocationRequest SchemaVersion="1.00">
  <Content ID="{C2D17964-BBDD-4339-B9F3-12D7205B39CC}" Version="38"/>
  <AssignedSite SiteCode="PS1"/>
  <ClientLocationInfo OnInternet="0">
    <ADSite Name="CM12-R2-PS1"/><Forest Name="CONTOSO.COM"/><Domain Name="CONTOSO.COM"/>
    <IPAddresses><IPAddress SubnetAddress="192.168.2.0" Address="192.168.2.62"/></IPAddresses>
  </ClientLocationInfo>
</WSUSLocationRequest>`;
const SPEC_REPLY = `<WSUSLocationReply SchemaVersion="1.00"><Sites><Site><MPSite SiteCode="PS1"/>
 <LocationRecords>
  <LocationRecord WSUSURL="http://PS1SITE.CONTOSO.COM:8530" ServerName="PS1SITE.CONTOSO.COM" Version="38"/>
  <LocationRecord WSUSURL="https://PS1SYS.CONTOSO.COM:8531" ServerName="PS1SYS.CONTOSO.COM" Version="38"/>
 </LocationRecords></Site></Sites></WSUSLocationReply>`;

test("the spec's WSUSLocationRequest and WSUSLocationReply parse, and what Cairn builds is the spec's format on one line", () => {
  const q = parseWsusLocationRequest(SPEC_REQUEST);
  assert.deepEqual(q, { contentId: SOURCE, version: 38, assignedSite: 'PS1', onInternet: false, adSite: 'CM12-R2-PS1', forest: 'CONTOSO.COM', domain: 'CONTOSO.COM', ipAddresses: [{ subnetAddress: '192.168.2.0', address: '192.168.2.62' }] });
  assert.equal(buildWsusLocationRequest(q), SPEC_REQUEST.replace(/>\s+</g, '><'));
  const { reply, ignored } = parseWsusLocationReply(SPEC_REPLY);
  assert.deepEqual(ignored, []);
  assert.deepEqual(reply, {
    sites: [
      {
        siteCode: 'PS1',
        records: [
          { url: 'http://PS1SITE.CONTOSO.COM:8530', serverName: 'PS1SITE.CONTOSO.COM', version: 38 },
          { url: 'https://PS1SYS.CONTOSO.COM:8531', serverName: 'PS1SYS.CONTOSO.COM', version: 38 },
        ],
      },
    ],
  });
  assert.equal(buildWsusLocationReply(reply), SPEC_REPLY.replace(/>\s+</g, '><'));
});

test('a malformed WSUSLocationRequest is CAIRN_WSUS_LOCATION_REQUEST_INVALID naming what is wrong; a reply record without a URL is dropped, not the reply', () => {
  const bad: [string, RegExp][] = [
    ['', /empty/],
    ['<WSUSLocationRequest', /not well-formed/],
    ['<Report/>', /not a WSUSLocationRequest/],
    [SPEC_REQUEST.replace('SchemaVersion="1.00"', 'SchemaVersion="2.00"'), /SchemaVersion/],
    [SPEC_REQUEST.replace('Version="38"', 'Version="-1"'), /Content Version/],
    [SPEC_REQUEST.replace('{C2D17964-BBDD-4339-B9F3-12D7205B39CC}', 'PS100001'), /Content ID/],
    [SPEC_REQUEST.replace('SiteCode="PS1"', 'SiteCode="P S"'), /SiteCode/],
    [SPEC_REQUEST.replace('OnInternet="0"', 'OnInternet="yes"'), /OnInternet/],
    [SPEC_REQUEST.replace('Address="192.168.2.62"', 'Address="<script>"'), /Address/],
    [SPEC_REQUEST.replace(/<ClientLocationInfo[\s\S]*<\/ClientLocationInfo>/, ''), /ClientLocationInfo is missing/],
  ];
  for (const [xml, why] of bad) {
    assert.throws(() => parseWsusLocationRequest(xml), (e: { code?: string; message?: string; detail?: string }) => e.code === 'CAIRN_WSUS_LOCATION_REQUEST_INVALID' && why.test(`${e.detail ?? ''} ${e.message ?? ''}`), xml.slice(0, 80));
  }
  const { reply, ignored } = parseWsusLocationReply(SPEC_REPLY.replace('WSUSURL="http://PS1SITE.CONTOSO.COM:8530"', 'WSUSURL="file:///etc"'));
  assert.equal(reply.sites[0]!.records.length, 1);
  assert.equal(ignored.length, 1);
  assert.throws(() => parseWsusLocationReply('{"locations":[]}'), (e: { code?: string }) => e.code === 'CAIRN_AGENT_MP_REPLY_INVALID');
});

describe('the MP route POST /mp/v1/location/update-points (inject)', () => {
  let dir: string;
  let db: SiteDatabase;
  let app: FastifyInstance;
  const c = { clientId: newClientId(), name: 'PC1', keys: newKeyPair() };

  async function post(payload: string) {
    const url = '/mp/v1/location/update-points';
    const res = await app.inject({ method: 'POST', url, payload, headers: { authorization: signClientRequest(c.clientId, c.keys.privateKey, 'POST', url, payload), 'content-type': 'text/xml' } });
    return { status: res.statusCode, body: res.body, type: String(res.headers['content-type']) };
  }
  const request = (version: number, address: string) =>
    buildWsusLocationRequest({ contentId: SOURCE, version, assignedSite: 'CS1', onInternet: false, adSite: '', forest: '', domain: '', ipAddresses: [{ subnetAddress: '', address }] });
  const urls = (body: string) => parseWsusLocationReply(body).reply.sites.flatMap((s) => s.records.map((r) => `${r.url} ${r.version}`));

  before(async () => {
    ({ dir, db, app } = await mountTestMp('wsus-location'));
    const payload = JSON.stringify({ clientId: c.clientId, name: c.name, publicKey: c.keys.publicKey, ipAddresses: ['10.1.0.5'], osFamily: 'linux', osVersion: '12', agentVersion: '1' });
    const reg = await app.inject({ method: 'POST', url: '/mp/v1/register', payload, headers: { authorization: signClientRequest(c.clientId, c.keys.privateKey, 'POST', '/mp/v1/register', payload), 'content-type': 'application/json' } });
    assert.equal(reg.statusCode, 200);
    const a = await insertUpdatePoint(db.db, { name: 'sup-a', url: 'http://127.0.0.1:8530/', key: 'k', siteCode: 'CS1' });
    const b = await insertUpdatePoint(db.db, { name: 'sup-b', url: 'http://127.0.0.2:8530', key: 'k', siteCode: 'CS1' });
    await recordUpdatePointSync(db.db, a.SUPID, { ok: true, contentVersion: 5 });
    await recordUpdatePointSync(db.db, b.SUPID, { ok: true, contentVersion: 7 });
  });
  after(async () => {
    await app.close();
    await db.destroy();
    await fsp.rm(dir, { recursive: true, force: true });
  });

  test('[UC8] only update points holding at least the requested content version, in install order; none when none does yet', async () => {
    const five = await post(request(5, '10.1.0.5'));
    assert.equal(five.status, 200);
    assert.match(five.type, /text\/xml/);
    assert.deepEqual(urls(five.body), ['http://127.0.0.1:8530 5', 'http://127.0.0.2:8530 7']);
    assert.deepEqual(urls((await post(request(6, '10.1.0.5'))).body), ['http://127.0.0.2:8530 7']);
    const none = await post(request(8, '10.1.0.5'));
    assert.equal(none.body, '<WSUSLocationReply SchemaVersion="1.00"><Sites><Site><MPSite SiteCode="CS1"/><LocationRecords></LocationRecords></Site></Sites></WSUSLocationReply>');
    const log = fs.readFileSync(path.join(dir, 'logs', 'MP_Location.log'), 'utf8');
    assert.match(log, /MP LM: Message Body : <WSUSLocationRequest SchemaVersion="1.00"><Content ID="\{C2D17964-BBDD-4339-B9F3-12D7205B39CC\}" Version="6"\/>/);
    assert.match(log, /MP LM: calling MP_GetWSUSServerLocations N'\{C2D17964-BBDD-4339-B9F3-12D7205B39CC\}',N'6',N'CS1',N'CS1',N'0',N''/);
    assert.match(log, /the site has no boundaries: every client is served; 1 update point\(s\) hold content version 6 or later; left out, older: sup-a \(5\)\./);
    assert.match(log, /MP LM: Reply message body: <WSUSLocationReply/);
  });

  test('boundaries: a client inside is served; outside only while mp.locationFallback is 1', async () => {
    const g = await insertBoundaryGroup(db.db, 'Branch');
    await addBoundary(db.db, g.GroupID, 'subnet', '10.1.0.0/24');
    assert.deepEqual(urls((await post(request(7, '10.1.0.5'))).body), ['http://127.0.0.2:8530 7']);
    assert.deepEqual(urls((await post(request(7, '172.16.0.9'))).body), ['http://127.0.0.2:8530 7'], 'fallback is on by default');
    await writeSetting(db.db, 'mp.locationFallback', 0);
    assert.deepEqual(urls((await post(request(7, '172.16.0.9'))).body), []);
    assert.deepEqual(urls((await post(request(7, '10.1.0.5'))).body), ['http://127.0.0.2:8530 7']);
    await writeSetting(db.db, 'mp.locationFallback', 1);
    assert.match(fs.readFileSync(path.join(dir, 'logs', 'MP_Location.log'), 'utf8'), /outside every boundary and mp\.locationFallback = 0: no update point/);
  });

  test('a malformed request is refused with 400 CAIRN_WSUS_LOCATION_REQUEST_INVALID, logged, and the MP goes on', async () => {
    const bad = await post(SPEC_REQUEST.replace('Version="38"', 'Version="x"'));
    assert.equal(bad.status, 400);
    assert.equal((JSON.parse(bad.body) as { code: string }).code, 'CAIRN_WSUS_LOCATION_REQUEST_INVALID');
    assert.match(fs.readFileSync(path.join(dir, 'logs', 'MP_Location.log'), 'utf8'), /CAIRN_WSUS_LOCATION_REQUEST_INVALID/);
    const unsigned = await app.inject({ method: 'POST', url: '/mp/v1/location/update-points', payload: SPEC_REQUEST });
    assert.equal(unsigned.statusCode, 401);
    assert.equal((await post(request(7, '10.1.0.5'))).status, 200);
  });
});
