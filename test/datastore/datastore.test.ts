/** The site database on both engines: migrations, triggers, and each feature's SQL. */
import { describe } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { engineTest } from '../helpers/engines.ts';
import { MIGRATION_NAMES, migrateToLatest } from '../../src/datastore/migrate.ts';
import {
  addPackageServer,
  deletePackageRows,
  getPackage,
  insertNotification,
  insertPackage,
  listPackageServers,
  markPackageForDeletion,
  markPackageServersForUpdate,
  nextPackageId,
  packageServersWithWork,
  pendingNotificationIds,
  recordValidation,
  refreshPackageSource,
  requestPackageServerAction,
  resetPackageServer,
} from '../../src/datastore/packages.ts';
import { insertDistributionPoint } from '../../src/datastore/distribution-points.ts';
import { cancelOlderJobs, insertJob, runnableJobs, setJobState } from '../../src/datastore/distribution-jobs.ts';
import { deleteChanges, pendingChanges } from '../../src/datastore/change-notifications.ts';
import { insertStatusMessage, queryStatusMessages } from '../../src/datastore/status-messages.ts';
import { listPkgStatus, upsertPkgStatus } from '../../src/datastore/pkg-status.ts';
import { readSettings, writeSetting, SETTING_DEFAULTS } from '../../src/datastore/site-control.ts';
import type { SiteDatabase } from '../../src/datastore/engine.ts';
import type { StatusMessage } from '../../src/shared/status-message.ts';

async function ready(d: SiteDatabase): Promise<void> {
  await migrateToLatest(d.db, d.engine);
}

async function seedPackage(d: SiteDatabase, priority = 2): Promise<string> {
  return d.db.transaction().execute(async (trx) => {
    const id = await nextPackageId(trx, 'CS1');
    await insertPackage(trx, { PkgID: id, Name: `pkg ${id}`, Description: '', Source: '/src', SourceSite: 'CS1', Priority: priority });
    return id;
  });
}

async function seedDp(d: SiteDatabase, name: string, priority = 200) {
  return insertDistributionPoint(d.db, { Name: name, NALPath: `nal-${name}`, URL: `http://127.0.0.1/${name}`, SiteCode: 'CS1', SharedKey: 'k', Priority: priority });
}

describe('site database', () => {
  engineTest('migration 0001 creates every table the flows use and a second run does nothing', async (d) => {
    const applied = await migrateToLatest(d.db, d.engine);
    assert.deepEqual(applied, MIGRATION_NAMES);
    assert.deepEqual(await migrateToLatest(d.db, d.engine), []);
    const tables = (await d.db.introspection.getTables()).map((t) => t.name);
    for (const t of ['Sites', 'SiteControl', 'SMSPackages', 'PkgServers', 'PkgNotification', 'PkgStatus', 'DistributionPoints', 'DistributionJobs', 'ChangeNotifications', 'StatusMessages', 'StatusMessageInsStrs', 'StatusMessageAttributes']) {
      assert.ok(tables.includes(t), `${t} exists`);
    }
  });

  engineTest('triggers record a notification insert and a job insert for the DB monitor', async (d) => {
    await ready(d);
    const pkg = await seedPackage(d);
    const dp = await seedDp(d, 'dp1');
    await insertNotification(d.db, pkg, 2);
    await insertJob(d.db, { DPID: Number(dp.DPID), PkgID: pkg, PackageVersion: 1, Action: 1 });
    const changes = await pendingChanges(d.db);
    assert.deepEqual(
      changes.map((c) => [c.TableName, c.TriggerName, c.KeyValue]),
      [
        ['PkgNotification', 'PkgNotify_Add', pkg],
        ['DistributionJobs', 'DistributionJob_Creation', pkg],
      ],
    );
    assert.match(changes[0]!.Created, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    await deleteChanges(d.db, changes.map((c) => Number(c.ChangeID)));
    assert.equal((await pendingChanges(d.db)).length, 0);
  });

  engineTest('package IDs are the site code and five hex digits, never reused, even when created at once', async (d) => {
    await ready(d);
    const ids = await Promise.all(Array.from({ length: 20 }, () => seedPackage(d)));
    assert.equal(new Set(ids).size, 20);
    for (const id of ids) assert.match(id, /^CS1[0-9A-F]{5}$/);
    assert.ok(ids.includes('CS100001') && ids.includes('CS100014'));
    const p = await getPackage(d.db, 'CS100001');
    assert.equal(p?.SourceVersion, 1);
    assert.equal(p?.StoredPkgVersion, 0);
    assert.equal(p?.Action, 2);
  });

  engineTest('a package server added with Action 2 is reset by the DP thread, and a removal is not', async (d) => {
    await ready(d);
    const pkg = await seedPackage(d);
    const dp = await seedDp(d, 'dp1');
    await addPackageServer(d.db, pkg, { DPID: Number(dp.DPID), NALPath: dp.NALPath, SiteCode: 'CS1' });
    assert.equal((await pendingNotificationIds(d.db, pkg)).length, 1);
    assert.equal((await packageServersWithWork(d.db, pkg)).length, 1);
    await resetPackageServer(d.db, pkg, dp.NALPath);
    assert.equal((await packageServersWithWork(d.db, pkg)).length, 0);
    await d.db.updateTable('PkgServers').set({ Action: 3 }).execute();
    await resetPackageServer(d.db, pkg, dp.NALPath);
    assert.equal((await packageServersWithWork(d.db, pkg))[0]?.Action, 3);
  });

  engineTest('runnable jobs come by package priority then DP priority, and a restart waits for its time', async (d) => {
    await ready(d);
    const low = await seedPackage(d, 3);
    const high = await seedPackage(d, 1);
    const slow = await seedDp(d, 'slow', 300);
    const fast = await seedDp(d, 'fast', 100);
    const j1 = await insertJob(d.db, { DPID: Number(slow.DPID), PkgID: low, PackageVersion: 1, Action: 1 });
    const j2 = await insertJob(d.db, { DPID: Number(slow.DPID), PkgID: high, PackageVersion: 1, Action: 1 });
    const j3 = await insertJob(d.db, { DPID: Number(fast.DPID), PkgID: high, PackageVersion: 1, Action: 1 });
    assert.deepEqual((await runnableJobs(d.db)).map((j) => Number(j.JobID)), [j3, j2, j1]);
    await setJobState(d.db, j3, 4, { RestartTime: '2999-01-01T00:00:00.000Z' });
    await setJobState(d.db, j2, 3);
    assert.deepEqual((await runnableJobs(d.db)).map((j) => Number(j.JobID)), [j1]);
    assert.deepEqual((await runnableJobs(d.db, { orphansToo: true })).map((j) => Number(j.JobID)), [j2, j1]);
    assert.deepEqual((await runnableJobs(d.db, { now: '3000-01-01T00:00:00.000Z' })).map((j) => Number(j.JobID)), [j3, j1]);
    const v2 = await insertJob(d.db, { DPID: Number(slow.DPID), PkgID: low, PackageVersion: 2, Action: 1 });
    await cancelOlderJobs(d.db, low, Number(slow.DPID), 2);
    const states = await d.db.selectFrom('DistributionJobs').select(['JobID', 'State']).where('PkgID', '=', low).orderBy('JobID').execute();
    assert.deepEqual(states.map((s) => [Number(s.JobID), s.State]), [[j1, 7], [v2, 0]]);
  });

  engineTest('a status message is stored once with its insertion strings and attributes, and found by package', async (d) => {
    await ready(d);
    const msg: StatusMessage = {
      id: 2330,
      severity: 'I',
      level: 'M',
      source: 'SMS Server',
      component: 'SMS_DISTRIBUTION_MANAGER',
      machine: 'host',
      site: 'CS1',
      pid: 1,
      tid: 2,
      time: '2026-01-01T00:00:00.000Z',
      istr: ['CS100001', 'nal'],
      attrs: [
        { id: 400, value: 'CS100001' },
        { id: 404, value: 'nal' },
      ],
    };
    assert.equal(await insertStatusMessage(d.db, msg, 'a.SVF#0'), true);
    assert.equal(await insertStatusMessage(d.db, msg, 'a.SVF#0'), false);
    await insertStatusMessage(d.db, { ...msg, id: 2300, attrs: [{ id: 400, value: 'CS100002' }] }, 'b.SVF#0');
    const found = await queryStatusMessages(d.db, { packageId: 'CS100001' });
    assert.equal(found.length, 1);
    assert.deepEqual(found[0]!.istr, ['CS100001', 'nal']);
    assert.deepEqual([...found[0]!.attrs].sort((a, b) => a.id - b.id), msg.attrs);
    assert.equal((await queryStatusMessages(d.db, { messageId: 2300 })).length, 1);
  });

  engineTest('a package status row is created once and then updated in place', async (d) => {
    await ready(d);
    const key = { ID: 'CS100001', Type: 2, SiteCode: 'CS1', PkgServer: 'nal' };
    await upsertPkgStatus(d.db, key, { Status: 0 });
    await upsertPkgStatus(d.db, key, { Status: 3, SourceVersion: 1, HTTPUrl: 'http://dp/SMS_DP_SMSPKG$/CS100001' });
    const rows = await listPkgStatus(d.db, 'CS100001');
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.Status, 3);
    assert.equal(rows[0]!.HTTPUrl, 'http://dp/SMS_DP_SMSPKG$/CS100001');
  });

  engineTest('settings default from REFERENCE.md and can be changed', async (d) => {
    await ready(d);
    assert.equal((await readSettings(d.db))['distmgr.packageThreads'], SETTING_DEFAULTS['distmgr.packageThreads']);
    assert.equal(SETTING_DEFAULTS['distmgr.packageThreads'], 3);
    assert.equal(SETTING_DEFAULTS['distmgr.dpThreadsPerPackage'], 5);
    await writeSetting(d.db, 'distmgr.packageThreads', 7);
    await writeSetting(d.db, 'distmgr.packageThreads', 8);
    assert.equal((await readSettings(d.db))['distmgr.packageThreads'], 8);
    const n = await sql<{ n: number }>`select count(*) as n from ${sql.table('SiteControl')}`.execute(d.db);
    assert.equal(Number(n.rows[0]!.n), 1);
  });

  engineTest('migration 0002 adds ContentValidations on a database at 0001, keeping its rows', async (d) => {
    assert.deepEqual(await migrateToLatest(d.db, d.engine, '0001-initial'), ['0001-initial']);
    const pkg = await seedPackage(d);
    // Every later migration applies, 0002 among them.
    assert.deepEqual(await migrateToLatest(d.db, d.engine), MIGRATION_NAMES.slice(1));
    assert.ok(MIGRATION_NAMES.includes('0002-package-lifecycle'));
    assert.equal((await getPackage(d.db, pkg))?.PkgID, pkg);
    const dp = await seedDp(d, 'dp1');
    await recordValidation(d.db, { PkgID: pkg, NALPath: dp.NALPath, DPID: Number(dp.DPID), SourceVersion: 1, Valid: false, Problems: 'a: missing' });
    await recordValidation(d.db, { PkgID: pkg, NALPath: dp.NALPath, DPID: Number(dp.DPID), SourceVersion: 2, Valid: true, Problems: '' });
    const rows = await d.db.selectFrom('ContentValidations').selectAll().execute();
    assert.deepEqual(rows.map((r) => [r.PkgID, r.SourceVersion, r.Valid, r.Problems]), [[pkg, 2, 1, '']]);
  });

  engineTest('package actions: refresh bumps the source version, servers get update, redistribute, removal and validation, and deletion clears every row', async (d) => {
    await ready(d);
    const pkg = await seedPackage(d);
    const dp1 = await seedDp(d, 'dp1');
    const dp2 = await seedDp(d, 'dp2');
    for (const dp of [dp1, dp2]) await addPackageServer(d.db, pkg, { DPID: Number(dp.DPID), NALPath: dp.NALPath, SiteCode: 'CS1' });
    for (const dp of [dp1, dp2]) await resetPackageServer(d.db, pkg, dp.NALPath);
    assert.equal((await packageServersWithWork(d.db, pkg)).length, 0);

    assert.equal(await refreshPackageSource(d.db, pkg, 2), 2);
    assert.equal(await refreshPackageSource(d.db, pkg, 2), 3);
    const refreshed = await getPackage(d.db, pkg);
    assert.deepEqual([refreshed?.Action, refreshed?.UpdateMask], [1, 32]);

    await markPackageServersForUpdate(d.db, pkg);
    assert.deepEqual((await packageServersWithWork(d.db, pkg)).map((s) => [s.NALPath, s.Action]), [[dp1.NALPath, 1], [dp2.NALPath, 1]]);
    for (const dp of [dp1, dp2]) await resetPackageServer(d.db, pkg, dp.NALPath);

    const before = (await pendingNotificationIds(d.db, pkg)).length;
    await requestPackageServerAction(d.db, pkg, [dp1.NALPath], 1, 1);
    await requestPackageServerAction(d.db, pkg, [dp2.NALPath], 3);
    // A pending removal is not turned into anything else.
    await requestPackageServerAction(d.db, pkg, [dp2.NALPath], 4);
    assert.equal((await pendingNotificationIds(d.db, pkg)).length, before + 3);
    assert.deepEqual((await listPackageServers(d.db, pkg)).map((s) => [s.NALPath, s.Action, s.RefreshTrigger]), [[dp1.NALPath, 1, 1], [dp2.NALPath, 3, 0]]);

    await markPackageForDeletion(d.db, pkg);
    assert.equal((await getPackage(d.db, pkg))?.Action, 3);
    assert.deepEqual((await listPackageServers(d.db, pkg)).map((s) => s.Action), [3, 3]);
    await upsertPkgStatus(d.db, { ID: pkg, Type: 2, SiteCode: 'CS1', PkgServer: dp1.NALPath }, { Status: 6 });
    await recordValidation(d.db, { PkgID: pkg, NALPath: dp1.NALPath, DPID: Number(dp1.DPID), SourceVersion: 1, Valid: true, Problems: '' });
    await insertJob(d.db, { DPID: Number(dp1.DPID), PkgID: pkg, PackageVersion: 1, Action: 3 });
    await d.db.transaction().execute((trx) => deletePackageRows(trx, pkg));
    assert.equal(await getPackage(d.db, pkg), undefined);
    assert.deepEqual(await listPackageServers(d.db, pkg), []);
    assert.deepEqual(await listPkgStatus(d.db, pkg), []);
    assert.equal((await d.db.selectFrom('ContentValidations').selectAll().execute()).length, 0);
    assert.equal((await d.db.selectFrom('DistributionJobs').selectAll().where('PkgID', '=', pkg).execute()).length, 0);
  });
});
