/**
 * The update sync manager end to end (issue 5, parts 3–5 and 8; seed 004):
 * a real `cairn upstream`, two real `cairn sup` update points (the second a
 * replica of the first) and a real site process, driven as an administrator
 * would: `cairn admin sup add`, `cairn admin sync upstream|now|status`,
 * `.SYN` files dropped by hand, the upstream killed and restarted, the site
 * killed mid-sync. Status messages are read from `wsyncmgr.log`'s STATMSG
 * lines (and the status-message API), the catalog through `cairn admin
 * updates list`, and the `.STN` drop from `policypv.box`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { openDatabase } from '../../src/datastore/engine.ts';
import { countUpdates, getSyncStatus, listUpdates } from '../../src/datastore/updates.ts';
import type { SyncStatusView } from '../../src/site/services/update-sync.ts';
import type { UpdatePointView } from '../../src/site/services/update-points.ts';
import { api, cli, freePort, readLog, startSite, tempDir, waitFor } from '../helpers/processes.ts';
import { mpRequest, newTestClient, register } from '../helpers/mp-client.ts';
import { policyHash, verifyDocument } from '../../src/shared/client-auth.ts';
import type { SiteProc } from '../helpers/processes.ts';
import { SECURITY, startSupProcess, startUpstreamProcess, update, updateId, writeCatalog } from '../helpers/catalog.ts';
import type { SupProc, UpstreamProc } from '../helpers/catalog.ts';

const text = (log: string): string[] => log.split('\n').map((l) => /^<!\[LOG\[(.*)\]LOG\]!>/.exec(l)?.[1] ?? '').filter(Boolean);
const wsync = async (site: SiteProc): Promise<string[]> => text(await readLog(site.dataDir, 'wsyncmgr'));
const statmsgs = (lines: readonly string[], id: number): number => lines.filter((l) => l.startsWith(`STATMSG: ID=${id} `)).length;

async function ok(site: SiteProc, args: string[]): Promise<string> {
  const r = await cli(site, args);
  assert.equal(r.code, 0, `cairn admin ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function status(site: SiteProc): Promise<SyncStatusView> {
  return JSON.parse(await ok(site, ['sync', 'status', '--json'])) as SyncStatusView;
}

/** Waits for the n-th 6702 or 6703 in wsyncmgr.log and returns the log's lines. */
async function syncEnded(site: SiteProc, n: number, limitMs = 120_000): Promise<string[]> {
  return waitFor(`sync ${n} to end\n${(await wsync(site)).slice(-20).join('\n')}`, async () => {
    const lines = await wsync(site);
    return statmsgs(lines, 6702) + statmsgs(lines, 6703) >= n && lines.at(-1)!.startsWith('Sync time:') ? lines : undefined;
  }, limitMs);
}

/** Asserts `needles` appear in `lines` in this order (each after the previous). */
function inOrder(lines: readonly string[], needles: readonly (string | RegExp)[], from = 0): void {
  let at = from;
  for (const n of needles) {
    const i = lines.findIndex((l, k) => k >= at && (typeof n === 'string' ? l.includes(n) : n.test(l)));
    assert.ok(i >= 0, `expected ${String(n)} after line ${at} in:\n${lines.slice(from).join('\n')}`);
    at = i + 1;
  }
}

async function configure(site: SiteProc, settings: Record<string, number>): Promise<void> {
  for (const [k, v] of Object.entries(settings)) await ok(site, ['settings', 'set', k, String(v)]);
}

async function addSup(site: SiteProc, dir: string, name: string): Promise<SupProc> {
  const port = await freePort();
  const key = (await ok(site, ['sup', 'add', name, '--url', `http://127.0.0.1:${port}`])).trim();
  return startSupProcess(path.join(dir, name), key, port, name);
}

/** policypv.log's lines for the UpdateSource policy, one per version built. */
const updateSourcePolicies = async (site: SiteProc): Promise<string[]> => text(await readLog(site.dataDir, 'policypv')).filter((l) => /^Successfully (created|updated) policy .* based on update source /.test(l));
/** The current UpdateSource policy body, from the site database. */
async function updateSourceBody(site: SiteProc): Promise<{ contentVersion: number; updatePoints: { serverName: string; url: string }[] }> {
  const database = openDatabase(`sqlite:${path.join(site.dataDir, 'site.db')}`);
  try {
    const row = await database.db.selectFrom('Policy').select(['Body']).where('Category', '=', 'UpdateSource').orderBy('LastModified', 'desc').executeTakeFirstOrThrow();
    return JSON.parse(String(row.Body)) as { contentVersion: number; updatePoints: { serverName: string; url: string }[] };
  } finally {
    await database.destroy();
  }
}
const stnFiles = async (site: SiteProc): Promise<string[]> => (await fsp.readdir(path.join(site.dataDir, 'inboxes', 'policypv.box')).catch(() => [] as string[])).filter((f) => f.endsWith('.STN'));

test('[US2][US3][US4][US5][US6][US7][US8][US9][US10][US11][US12][US18][UC1] sync from cairn upstream through an update point and a replica: full, incremental, no change, FULL.SYN, upstream failure then retry, schedule', async () => {
  const dir = await tempDir('wsync');
  const catalog = path.join(dir, 'catalog');
  await writeCatalog(catalog, 300, { perFile: 100 });
  let up: UpstreamProc = await startUpstreamProcess(catalog);
  const site = await startSite(path.join(dir, 'site'), ['--no-local-dp', '--no-local-sup']);
  const sups: SupProc[] = [];
  try {
    await configure(site, { 'wsyncmgr.scheduleSeconds': 0, 'wsyncmgr.retrySeconds': 0, 'wsyncmgr.pollMs': 50, 'wsyncmgr.pageSize': 64 });
    sups.push(await addSup(site, dir, 'sup1'), await addSup(site, dir, 'sup2'));
    await ok(site, ['sync', 'upstream', up.url]);
    const points = JSON.parse(await ok(site, ['sup', 'list', '--json'])) as UpdatePointView[];
    assert.deepEqual(points.map((p) => [p.name, p.installOrder, p.role]), [['sup1', 1, 'primary'], ['sup2', 2, 'replica']]);

    // The control calls are signed; the catalog is anonymous.
    const unsigned = await fetch(`${sups[0]!.url}/sup/v1/sync?source=&full=0`, { method: 'POST' });
    assert.equal(unsigned.status, 401);
    assert.equal(((await unsigned.json()) as { code: string }).code, 'CAIRN_AUTH_MISSING');

    // 1. Full sync on `cairn admin sync now` (SyncNow → DB monitor → SELF.SYN).
    await ok(site, ['sync', 'now']);
    let lines = await syncEnded(site, 1);
    const dbmon = text(await readLog(site.dataDir, 'SMSDBMON'));
    inOrder(dbmon, [/^RCV:UPDATE on Update_SyncStatus for SyncNotif_WSyncMgr \[SELF\]\[\d+\]$/, /^SND:Dropped .*WSyncMgr\.box\/SELF\.SYN \[\d+\]$/]);
    assert.match(text(await readLog(site.dataDir, 'SMSProv')).join('\n'), /ExecMethodAsync : SMS Provider SMS_SoftwareUpdate::SyncNow/);
    inOrder(lines, [
      'Found local sync request file SELF.SYN',
      'Performing sync on local request',
      `Read SUPs from site settings for CS1`,
      'Found 2 SUPs',
      'Found active SUP sup1',
      'Found active SUP sup2',
      'STATMSG: ID=6701 ',
      'STATMSG: ID=6704 ',
      'Synchronizing update server sup1 ...',
      'sync: update point synchronizing categories',
      'sync: update point synchronizing updates',
      'sync: update point synchronizing updates, processed 300 of 300 items (100%)',
      'Done synchronizing update server sup1',
      'STATMSG: ID=6705 ',
      'sync: SMS synchronizing categories (8 changed)',
      'sync: SMS synchronizing updates (300 changed)',
      /^Synchronizing update e0000000-0000-4000-8000-\d{12} - Update for pkg-/,
      /^sync: SMS synchronizing updates, processed 64 of 300 items \(21%\), ETA in \d\d:\d\d:\d\d$/,
      'sync: SMS synchronizing updates, processed 300 of 300 items (100%)',
      /^Set content version of update source \{[0-9A-F-]{36}\} for site CS1 to 1$/,
      'Synchronizing replica update servers',
      'STATMSG: ID=6706 ',
      'Synchronizing update server sup2 ...',
      'sync: replica update point synchronizing updates, processed 300 of 300 items (100%)',
      'STATMSG: ID=6702 ',
      'Sync succeeded. Setting sync alert to canceled state on site CS1',
      'Updated 308 items in SMS database, new update source content version is 1',
      /^Sync time: 0d00h\d\dm\d\ds$/,
    ]);
    let s = await status(site);
    assert.deepEqual([s.contentVersion, s.lastSyncResult, s.alert, s.itemsChanged, s.lastSyncKind, s.syncRequested], [1, 'succeeded', false, 308, 'delta', null]);
    assert.ok(s.lastSyncStartTime <= s.lastSyncEndTime);
    assert.equal((JSON.parse(await ok(site, ['updates', 'list', '--json', '--limit', '5000'])) as { updates: unknown[] }).updates.length, 300);
    const security = JSON.parse(await ok(site, ['updates', 'list', '--json', '--classification', 'Security Updates', '--limit', '5000'])) as { updates: { id: string }[] };
    assert.equal(security.updates.length, 100);
    // The replica serves the same catalog, anonymously, over the upstream protocol.
    const replica = (await (await fetch(`${sups[1]!.url}/upstream/v1/changes?anchor=`)).json()) as { updates: number; categories: number };
    assert.deepEqual([replica.categories, replica.updates], [8, 300]);
    // UC1: the content version moved, so the DB monitor dropped {UpdateSourceID}.STN, and the policy provider
    // built the UpdateSource policy for that content version, listing the update points, and deleted the file.
    const stn = `{${s.updateSourceId.toUpperCase()}}.STN`;
    assert.ok(text(await readLog(site.dataDir, 'SMSDBMON')).some((l) => /^SND:Dropped .*policypv\.box\/\{[0-9A-F-]{36}\}\.STN \[\d+\]$/.test(l)));
    await waitFor('the UpdateSource policy for content version 1', async () => (await updateSourcePolicies(site)).some((l) => l.includes('content version 1;')));
    inOrder(text(await readLog(site.dataDir, 'policypv')), [`Found ${stn}`, `Added scan tool ID {${s.updateSourceId.toUpperCase()}}`, /^Successfully created policy \{[0-9a-f-]{36}\} \(version 1\.00\) .*content version 1; signed \(hash algorithm 32780\)\.$/]);
    await waitFor('the .STN to be deleted', async () => (await stnFiles(site)).length === 0);
    const body = await updateSourceBody(site);
    assert.deepEqual([body.contentVersion, body.updatePoints.map((p) => p.serverName)], [1, ['sup1', 'sup2']]);
    const messages = await waitFor('6701 and 6702 stored', async () => {
      const m = (await api<{ statusMessages: { id: number }[] }>(site, 'GET', '/api/v1/status-messages?component=SMS_WSUS_SYNC_MANAGER')).json.statusMessages.map((x) => x.id);
      return m.includes(6702) ? m : undefined;
    });
    assert.deepEqual(messages, [6701, 6704, 6705, 6706, 6702]);

    // 2. Incremental, by a hand-dropped SELF.SYN: only the changes travel; a malformed update is rejected with its ID.
    const file = path.join(catalog, 'updates', '0000001.ndjson');
    await fsp.writeFile(`${file}.tmp`, (await fsp.readFile(file, 'utf8')).replace(JSON.stringify(update(5)), JSON.stringify(update(5, 2))));
    await fsp.rename(`${file}.tmp`, file);
    const bad = { ...update(1003), isApplicable: { kind: 'package', name: 'x', installed: true, version: { op: 'lt', value: 'not-a-version' } } };
    await fsp.writeFile(path.join(catalog, 'updates', 'extra.ndjson'), [update(1001), update(1002), bad].map((u) => JSON.stringify(u)).join('\n') + '\n');
    let before = lines.length;
    await fsp.writeFile(path.join(site.dataDir, 'inboxes', 'WSyncMgr.box', 'SELF.SYN'), '');
    lines = await syncEnded(site, 2);
    inOrder(lines, [
      'Wakeup by inbox notification',
      'Found local sync request file SELF.SYN',
      'sync: update point synchronizing updates, processed 4 of 4 items (100%)',
      `sync: update point rejected update ${updateId(1003)}: CAIRN_CATALOG_RULE_INVALID`,
      'sync: SMS synchronizing updates, processed 3 of 3 items (100%)',
      'for site CS1 to 2',
      'STATMSG: ID=6702 ',
      '1 malformed item(s) were rejected',
      'Updated 3 items in SMS database, new update source content version is 2',
    ], before);
    s = await status(site);
    assert.deepEqual([s.contentVersion, s.itemsChanged, s.rejected], [2, 3, 1]);
    assert.ok(!fs.existsSync(path.join(site.dataDir, 'inboxes', 'WSyncMgr.box', 'SELF.SYN')), 'the request file is deleted once its sync ended');
    const five = (JSON.parse(await ok(site, ['updates', 'list', '--json', '--title', 'pkg-5 1.5-1'])) as { updates: { revision: number }[] }).updates;
    assert.deepEqual(five.map((u) => u.revision), [2]);
    await waitFor('the UpdateSource policy for content version 2', async () => (await updateSourcePolicies(site)).some((l) => /\(version 2\.00\) .*content version 2;/.test(l)));
    assert.equal((await updateSourceBody(site)).contentVersion, 2);

    // 3. No change: nothing travels, the content version stays, no .STN.
    before = lines.length;
    await ok(site, ['sync', 'now']);
    lines = await syncEnded(site, 3);
    inOrder(lines, ['sync: update point synchronizing updates', /No changes: content version of update source \{[0-9A-F-]{36}\} for site CS1 stays 2/, 'STATMSG: ID=6702 ', 'Updated 0 items in SMS database, new update source content version is 2'], before);
    assert.ok(!lines.slice(before).some((l) => l.startsWith('sync: SMS synchronizing updates, processed')), 'no update page travels');
    assert.equal((await status(site)).contentVersion, 2);

    // 4. FULL.SYN by hand: everything is read again, nothing changes.
    before = lines.length;
    await fsp.writeFile(path.join(site.dataDir, 'inboxes', 'WSyncMgr.box', 'FULL.SYN'), '');
    lines = await syncEnded(site, 4);
    inOrder(lines, ['Found local sync request file FULL.SYN', 'Starting Sync (full)', 'sync: SMS synchronizing updates, processed 302 of 302 items (100%)', 'stays 2', 'STATMSG: ID=6702 '], before);
    s = await status(site);
    assert.deepEqual([s.contentVersion, s.lastSyncKind, s.itemsChanged], [2, 'full', 0]);

    // 5. The upstream goes away: 6703 with the reason, alert set, catalog and version unchanged; retried per the setting once it is back.
    const upPort = Number(new URL(up.url).port);
    await up.kill();
    before = lines.length;
    await ok(site, ['sync', 'now']);
    lines = await syncEnded(site, 5);
    inOrder(lines, ['STATMSG: ID=6701 ', 'STATMSG: ID=6704 ', /^STATMSG: ID=6703 SEV=E .*CAIRN_UPSTREAM_UNREACHABLE/, /^Sync failed: .*CAIRN_UPSTREAM_UNREACHABLE.*Setting sync alert to active state on site CS1$/, 'Will retry at the next scheduled sync'], before);
    s = await status(site);
    assert.deepEqual([s.contentVersion, s.lastSyncResult, s.alert], [2, 'failed', true]);
    assert.match(s.lastSyncError, /CAIRN_UPSTREAM_UNREACHABLE/);
    assert.equal((JSON.parse(await ok(site, ['updates', 'list', '--json', '--limit', '5000'])) as { updates: unknown[] }).updates.length, 302);
    up = await startUpstreamProcess(catalog, ['--port', String(upPort)]);
    before = lines.length;
    await configure(site, { 'wsyncmgr.retrySeconds': 1 });
    lines = await syncEnded(site, 6);
    inOrder(lines, ['Wakeup for a retry of the failed sync', 'Performing sync on retry', 'STATMSG: ID=6702 ', 'Sync succeeded. Setting sync alert to canceled state on site CS1'], before);
    s = await status(site);
    assert.deepEqual([s.contentVersion, s.lastSyncResult, s.alert, s.lastSyncTrigger], [2, 'succeeded', false, 'retry']);

    // 6. US1: the schedule.
    before = lines.length;
    await configure(site, { 'wsyncmgr.scheduleSeconds': 1 });
    lines = await syncEnded(site, 7);
    inOrder(lines, ['Wakeup for a scheduled regular sync', 'Performing sync on regular schedule', 'STATMSG: ID=6702 '], before);

    // UC1 over the whole run: two syncs changed the catalog, so two .STN drops and UpdateSource versions 1.00
    // and 2.00; the no-change, full, failed and retried syncs after them bumped nothing.
    const drops = text(await readLog(site.dataDir, 'SMSDBMON')).filter((l) => /^SND:Dropped .*policypv\.box\/\{[0-9A-F-]{36}\}\.STN/.test(l));
    assert.equal(drops.length, 2);
    assert.deepEqual((await updateSourcePolicies(site)).map((l) => /\(version (\d+\.00)\)/.exec(l)?.[1]), ['1.00', '2.00']);
    assert.equal((await updateSourceBody(site)).contentVersion, 2);

    // Spec 30 §1 step 4: a client gets the UpdateSource policy at its next policy request, signed by the site.
    const client = newTestClient('SYNC-CLIENT');
    assert.equal((await register(site.url, client)).status, 200);
    const assignment = await waitFor('the UpdateSource assignment for a registered client', async () => {
      const r = await mpRequest(site.url, client, 'GET', '/mp/v1/policy/assignments');
      const list = (r.json['assignments'] ?? []) as { category: string; policyId: string; policyVersion: string; hash: string }[];
      return list.find((a) => a.category === 'UpdateSource');
    });
    assert.equal(assignment.policyVersion, '2.00');
    const siteKey = (await (await fetch(`${site.url}/mp/v1/site-key`)).json()) as { publicKey: string };
    const policy = await mpRequest(site.url, client, 'GET', `/mp/v1/policy/${encodeURIComponent(assignment.policyId)}/${assignment.policyVersion}`);
    assert.equal(policy.status, 200);
    assert.ok(verifyDocument(siteKey.publicKey, policy.bytes, policy.headers.get('x-cairn-signature') ?? undefined), 'the body carries the site signature');
    assert.equal(policyHash(policy.bytes), assignment.hash);
    const delivered = policy.json as { updateSourceId: string; contentVersion: number; updatePoints: { serverName: string }[] };
    assert.deepEqual([delivered.updateSourceId, delivered.contentVersion, delivered.updatePoints.map((p) => p.serverName)], [`{${s.updateSourceId.toUpperCase()}}`, 2, ['sup1', 'sup2']]);
  } finally {
    await site.kill();
    for (const s of sups) await s.kill();
    await up.kill();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test('[US3][US10][US18] a site killed mid-sync shows no half catalog; two pending requests merge into one sync that completes it', async () => {
  const dir = await tempDir('wsync-kill');
  const catalog = path.join(dir, 'catalog');
  await writeCatalog(catalog, 4000, { perFile: 1000 });
  const up = await startUpstreamProcess(catalog);
  const dataDir = path.join(dir, 'site');
  let site = await startSite(dataDir, ['--no-local-dp', '--no-local-sup']);
  let sup: SupProc | undefined;
  try {
    await configure(site, { 'wsyncmgr.scheduleSeconds': 0, 'wsyncmgr.retrySeconds': 0, 'wsyncmgr.pollMs': 50, 'wsyncmgr.pageSize': 20 });
    sup = await addSup(site, dir, 'sup1');
    await ok(site, ['sync', 'upstream', up.url]);
    await ok(site, ['sync', 'now']);
    // Kill the site while the site-database phase is writing pages.
    await waitFor('the site-database phase to be under way', async () => (await wsync(site)).some((l) => /^sync: SMS synchronizing updates, processed \d+ of 4000/.test(l) && !l.includes('4000 of 4000')));
    await site.kill('SIGKILL');

    const db = openDatabase(`sqlite:${path.join(dataDir, 'site.db')}`);
    try {
      const st = await getSyncStatus(db.db, 'CS1');
      assert.equal(st.contentVersion, 0, 'the content version did not move');
      assert.ok(st.lastSyncStartTime > st.lastSyncEndTime, 'the sync is recorded as started, not ended');
      assert.ok((await countUpdates(db.db)) > 0, 'some pages were written before the kill');
      assert.equal((await listUpdates(db.db, { atContentVersion: st.contentVersion, limit: 5000 })).length, 0, 'none of them is visible at the content version');
    } finally {
      await db.destroy();
    }

    // SELF.SYN is still there (deleted only once its sync ends); add FULL.SYN: one merged full sync completes it.
    const box = path.join(dataDir, 'inboxes', 'WSyncMgr.box');
    assert.ok(fs.existsSync(path.join(box, 'SELF.SYN')));
    await fsp.writeFile(path.join(box, 'FULL.SYN'), '');
    const before = (await wsync(site)).length;
    site = await startSite(dataDir, ['--no-local-dp', '--no-local-sup']);
    const lines = await waitFor('the merged sync to end', async () => {
      const l = (await wsync(site)).slice(before);
      return l.some((x) => x.startsWith('Sync time:')) ? l : undefined;
    });
    inOrder(lines, ['Found local sync request file FULL.SYN', 'Found local sync request file SELF.SYN', '2 sync requests are pending; they are merged into one full sync', 'Starting Sync (full)', 'STATMSG: ID=6702 ', 'new update source content version is 1']);
    assert.equal(statmsgs(lines, 6701), 1, 'one sync for two requests');
    const s = await status(site);
    assert.deepEqual([s.contentVersion, s.lastSyncResult], [1, 'succeeded']);
    assert.equal((JSON.parse(await ok(site, ['updates', 'list', '--json', '--limit', '5000'])) as { updates: unknown[] }).updates.length, 4000);
    assert.deepEqual((await fsp.readdir(box)).filter((f) => f.endsWith('.SYN')), []);
  } finally {
    await site.kill();
    await sup?.kill();
    await up.kill();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test("[US9][US10] the site's own update point; sync criteria keep updates out of the site database; superseded updates expire per the setting", async () => {
  const dir = await tempDir('wsync-criteria');
  const catalog = path.join(dir, 'catalog');
  await writeCatalog(catalog, 300, { perFile: 100 });
  const up = await startUpstreamProcess(catalog);
  const site = await startSite(path.join(dir, 'site'), ['--no-local-dp']);
  try {
    await configure(site, { 'wsyncmgr.scheduleSeconds': 0, 'wsyncmgr.pollMs': 50 });
    // Criteria may be set before the first sync, by GUID.
    let s = JSON.parse(await ok(site, ['sync', 'criteria', '--classification', SECURITY, '--json'])) as SyncStatusView;
    assert.deepEqual(s.criteria, { products: [], classifications: [SECURITY], languages: [] });
    await ok(site, ['sync', 'upstream', up.url]);
    await ok(site, ['sync', 'now']);
    let lines = await syncEnded(site, 1);
    inOrder(lines, ['Found active SUP local', 'STATMSG: ID=6704 ', 'STATMSG: ID=6705 ', '200 update(s) left out by the sync criteria', 'STATMSG: ID=6702 ']);
    assert.equal((JSON.parse(await ok(site, ['updates', 'list', '--json', '--limit', '5000'])) as { updates: unknown[] }).updates.length, 100);

    // No criteria (the next sync is a full one), and update 5001 superseding update 1; expiry at once.
    s = JSON.parse(await ok(site, ['sync', 'criteria', '--json'])) as SyncStatusView;
    assert.deepEqual(s.criteria, { products: [], classifications: [], languages: [] });
    await configure(site, { 'wsyncmgr.expireSupersededAfterDays': 0 });
    await fsp.writeFile(path.join(catalog, 'updates', 'extra.ndjson'), JSON.stringify(update(5001)) + '\n');
    const before = lines.length;
    await ok(site, ['sync', 'now']);
    lines = await syncEnded(site, 2);
    inOrder(lines, ['sync: SMS synchronizing updates, processed 301 of 301 items (100%)', 'Expired 1 superseded update(s) (superseded for more than 0 days)', 'STATMSG: ID=6702 '], before);
    s = await status(site);
    assert.deepEqual([s.contentVersion, s.expired, s.itemsChanged], [2, 1, 202]);
    const list = async (args: string[]) => (JSON.parse(await ok(site, ['updates', 'list', '--json', '--limit', '5000', ...args])) as { updates: { id: string }[] }).updates.map((u) => u.id);
    assert.equal((await list([])).length, 300, '301 stored, 1 expired');
    assert.deepEqual(await list(['--title', 'pkg-1 1.1-1']), []);
    assert.deepEqual(await list(['--title', 'pkg-1 1.5001-1']), [updateId(5001)]);
    assert.deepEqual(await list(['--superseded', 'yes']), [], 'the only superseded update expired');
  } finally {
    await site.kill();
    await up.kill();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

const haveAptLists = fs.existsSync('/usr/lib/apt/apt-helper') && fs.existsSync('/var/lib/apt/lists') && fs.readdirSync('/var/lib/apt/lists').some((n) => /_Packages(\.\w+)?$/.test(n));

test("[US1][US11] on this Debian/Ubuntu machine a first start syncs the machine's own apt lists by default", { skip: haveAptLists ? false : 'no apt lists on this machine' }, async () => {
  const dir = await tempDir('wsync-apt');
  const site = await startSite(path.join(dir, 'site'), ['--no-local-dp'], { CAIRN_NO_DEFAULT_UPSTREAM: '0' });
  try {
    const lines = await syncEnded(site, 1, 600_000);
    inOrder(lines, ['Wakeup for a scheduled regular sync', 'Found active SUP local', 'STATMSG: ID=6701 ', 'sync: update point synchronizing updates', 'STATMSG: ID=6705 ', 'STATMSG: ID=6702 ']);
    const s = await status(site);
    assert.equal(s.upstream, 'apt:/var/lib/apt/lists');
    assert.deepEqual([s.contentVersion, s.lastSyncResult, s.lastSyncTrigger], [1, 'succeeded', 'regular schedule']);
    assert.ok(s.itemsChanged > 100, `${s.itemsChanged} items`);
    const listed = JSON.parse(await ok(site, ['updates', 'list', '--json', '--limit', '10'])) as { updates: { title: string }[] };
    assert.equal(listed.updates.length, 10);
  } finally {
    await site.kill();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});
