/**
 * Software-update compliance in the site database (migration 0007), on both
 * engines: the state system's topic 500 rule into `Update_ComplianceStatus`,
 * update groups and deployments, and every summarisation task's SQL checked
 * against a direct count over the per-client rows.
 */
import { describe } from 'node:test';
import { sql } from 'kysely';
import assert from 'node:assert/strict';
import { engineTest } from '../helpers/engines.ts';
import { MIGRATION_NAMES, migrateToLatest } from '../../src/datastore/migrate.ts';
import { storeStateRecords } from '../../src/datastore/state-messages.ts';
import { insertClient } from '../../src/datastore/clients.ts';
import { insertCollection, replaceCollectionMembers } from '../../src/datastore/collections.ts';
import {
  addUpdateGroupMembers,
  countSiteClients,
  deleteAgedStatus,
  evaluateAssignments,
  insertUpdateDeployment,
  insertUpdateGroup,
  listSummaryTasks,
  migrateUpdateStatus,
  readDeploymentSummary,
  readGroupSummary,
  readUpdateSummaries,
  summarizeUpdateGroups,
  summarizeUpdateStatus,
  SUMMARY_TASKS,
} from '../../src/datastore/compliance.ts';
import type { StateRecord } from '../../src/shared/state-report.ts';
import type { SiteDatabase } from '../../src/datastore/engine.ts';

const U = (n: number) => `e0000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
const C = (n: number) => `GUID:00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

function rec(client: number, update: string, state: number, serial: number, minute: number, topicType: 500 | 501 = 500): StateRecord {
  return { clientId: C(client), netbiosName: `PC${client}`, messageTime: `2026-11-22T07:${String(minute).padStart(2, '0')}:00.000Z`, serialNumber: serial, topicType, topicId: update, idType: 3, user: '', userSid: '', stateId: state, criticality: 0, userFlags: 0, userParams: [] };
}

async function store(d: SiteDatabase, records: StateRecord[]): Promise<void> {
  await d.db.transaction().execute((trx) => storeStateRecords(trx, records, new Date().toISOString()));
}

async function catalog(d: SiteDatabase, ids: string[]): Promise<void> {
  const now = new Date().toISOString();
  for (const id of ids) {
    await d.db
      .insertInto('CI_ConfigurationItems')
      .values({ CI_UniqueID: id, CIType_ID: 1, RevisionNumber: 1, Title: `update ${id.slice(-2)}`, ArticleID: '', Classification: 'c', Severity: '', ReleaseDate: now, Digest: '{}', ContentVersion: 1, DateCreated: now, DateLastModified: now })
      .execute();
  }
}

const client = (n: number) => ({ clientId: C(n), name: `PC${n}`, publicKey: 'PEM', fingerprint: 'FP', ipAddresses: [`10.0.0.${n}`], osFamily: 'linux', osVersion: '6.1', agentVersion: '0.1.0' });

async function statusOf(d: SiteDatabase): Promise<string[]> {
  const rows = await d.db.selectFrom('Update_ComplianceStatus').select(['ClientID', 'CI_UniqueID', 'Status', 'SerialNumber']).orderBy('ClientID').orderBy('CI_UniqueID').execute();
  return rows.map((r) => `${r.ClientID.slice(-1)} ${r.CI_UniqueID.slice(-1)} ${r.Status} #${Number(r.SerialNumber)}`);
}

/** The counts straight from the per-client rows, for comparing with the summary. */
async function directCounts(d: SiteDatabase, update: string): Promise<number[]> {
  const rows = await d.db.selectFrom('Update_ComplianceStatus').select('Status').where('CI_UniqueID', '=', update).execute();
  const by = (s: number) => rows.filter((r) => r.Status === s).length;
  const clients = await countSiteClients(d.db);
  return [by(2), by(3), by(1), clients - by(1) - by(2) - by(3)];
}

describe('compliance in the site database (migrations 0007 and 0008)', () => {
  engineTest('migration 0007 applies on a database at 0006 holding topic 500 states; Migrate Update Status brings them into Update_ComplianceStatus', async (d) => {
    assert.deepEqual(await migrateToLatest(d.db, d.engine, '0006-update-sync'), MIGRATION_NAMES.slice(0, 6));
    const now = new Date().toISOString();
    // A state stored before 0007 existed, written with 0003's columns.
    await d.db
      .insertInto('StateMsg')
      .values({ ClientID: C(1), TopicType: 500, TopicID: U(1), StateID: 2, Criticality: 0, SerialNumber: 5, MessageTime: '2026-11-22T07:00:00.000Z', NetBIOSName: 'PC1', IDType: 3, UserName: '', UserSID: '', UserFlags: 0, UserParams: '[]', ReceivedTime: now })
      .execute();
    assert.deepEqual(await migrateToLatest(d.db, d.engine, '0007-compliance'), ['0007-compliance']);
    assert.deepEqual(
      (await listSummaryTasks(d.db)).map((t) => [t.TaskName, t.ScheduleSeconds, t.LastRunResult]),
      SUMMARY_TASKS.map((t, i) => [t, i < 3 ? 3600 : 86400, '']),
    );
    assert.deepEqual(await statusOf(d), []);
    assert.equal(await d.db.transaction().execute((trx) => migrateUpdateStatus(trx)), 1);
    assert.deepEqual(await statusOf(d), ['1 1 2 #5']);
    // Level already: nothing to do.
    assert.equal(await d.db.transaction().execute((trx) => migrateUpdateStatus(trx)), 0);
  });

  engineTest('migration 0008 applies on a database at 0007 holding compliance rows: the rows stay, the update index exists, and the summaries read through it agree', async (d) => {
    assert.deepEqual(await migrateToLatest(d.db, d.engine, '0007-compliance'), MIGRATION_NAMES.slice(0, 7));
    await store(d, [rec(1, U(1), 2, 1, 1), rec(1, U(2), 3, 2, 1), rec(2, U(1), 1, 1, 1), rec(3, U(2), 0, 1, 1)]);
    const before = await statusOf(d);
    // Every later migration follows (0010 landed after 0008).
    assert.deepEqual(await migrateToLatest(d.db, d.engine), MIGRATION_NAMES.slice(7));
    assert.equal(MIGRATION_NAMES[7], '0008-compliance-reporting');
    assert.deepEqual(await statusOf(d), before);
    const indexes =
      d.engine === 'sqlite'
        ? (await sql<{ name: string }>`select name from sqlite_master where type = 'index' and tbl_name = 'Update_ComplianceStatus'`.execute(d.db)).rows.map((r) => r.name)
        : (await sql<{ name: string }>`select indexname as name from pg_indexes where tablename = 'Update_ComplianceStatus'`.execute(d.db)).rows.map((r) => r.name);
    assert.ok(indexes.includes('Update_ComplianceStatus_update'), indexes.join(', '));
    await catalog(d, [U(1), U(2)]);
    assert.equal(await d.db.transaction().execute((trx) => summarizeUpdateStatus(trx, new Date().toISOString())), 2);
    assert.deepEqual(
      (await readUpdateSummaries(d.db)).map((s) => [s.required, s.installed, s.notRequired, s.unknown, s.total]),
      [
        [1, 0, 1, 1, 3],
        [0, 1, 0, 2, 3],
      ],
    );
  });

  engineTest('[UC24] topic 500 keeps the latest state per client and update (older serial or time never wins); 501 and unknown 500 states stay out', async (d) => {
    await migrateToLatest(d.db, d.engine);
    // Client 1, update 1: 20 (installed) then 18 (required): 18 must not win.
    await store(d, [rec(1, U(1), 3, 20, 5)]);
    await store(d, [rec(1, U(1), 2, 18, 3)]);
    // Client 1, update 2: 31 and 30 in one batch, then 32 with an older time: 31 stays.
    await store(d, [rec(1, U(2), 1, 31, 6), rec(1, U(2), 2, 30, 4)]);
    await store(d, [rec(1, U(2), 2, 32, 1)]);
    // Client 2: a scan state (501) and a 500 state outside 0-3.
    await store(d, [rec(2, 'scan', 3, 1, 1, 501), rec(2, U(1), 7, 2, 1)]);
    // A replay changes nothing.
    await store(d, [rec(1, U(1), 3, 20, 5)]);
    assert.deepEqual(await statusOf(d), ['1 1 3 #20', '1 2 1 #31']);
    const latest = await d.db.selectFrom('StateMsg').select(['ClientID', 'TopicType', 'StateID']).where('ClientID', '=', C(2)).orderBy('TopicType').execute();
    assert.deepEqual(latest.map((r) => [r.TopicType, r.StateID]), [[500, 7], [501, 3]]);
    // A newer message moves it.
    await store(d, [rec(1, U(1), 2, 21, 9)]);
    assert.deepEqual(await statusOf(d), ['1 1 2 #21', '1 2 1 #31']);
  });

  engineTest('[UC26][UC27] summaries: per update counts equal a direct count; update group and deployment compliance; clients with no state are unknown', async (d) => {
    await migrateToLatest(d.db, d.engine);
    await catalog(d, [U(1), U(2), U(3)]);
    // Five approved clients; client 6 is pending and never reports; client 7 reports without registering.
    const res: number[] = [];
    for (let n = 1; n <= 6; n += 1) res.push(Number((await insertClient(d.db, client(n), n === 6 ? 'pending' : 'approved')).ResourceID));
    await store(d, [
      rec(1, U(1), 2, 1, 1), rec(1, U(2), 3, 2, 1), rec(1, U(3), 1, 3, 1), // non-compliant (U1 required)
      rec(2, U(1), 3, 1, 1), rec(2, U(2), 1, 2, 1), // U3 unknown → group unknown
      rec(3, U(1), 3, 1, 1), rec(3, U(2), 3, 2, 1), rec(3, U(3), 0, 3, 1), // U3 state 0 → unknown
      rec(4, U(1), 1, 1, 1), rec(4, U(2), 1, 2, 1), rec(4, U(3), 3, 3, 1), // compliant
      // client 5: no state at all
      rec(7, U(1), 2, 1, 1), // unregistered reporter
    ]);
    const now = new Date().toISOString();
    assert.equal(await countSiteClients(d.db), 6);
    assert.equal(await d.db.transaction().execute((trx) => summarizeUpdateStatus(trx, now)), 3);
    const summaries = await readUpdateSummaries(d.db);
    assert.deepEqual(
      summaries.map((s) => [s.updateId, s.required, s.installed, s.notRequired, s.unknown, s.total]),
      [
        [U(1), 2, 2, 1, 1, 6],
        [U(2), 0, 2, 2, 2, 6],
        [U(3), 0, 1, 1, 4, 6],
      ],
    );
    for (const s of summaries) assert.deepEqual([s.required, s.installed, s.notRequired, s.unknown], await directCounts(d, s.updateId));

    const g = (await insertUpdateGroup(d.db, 'Patch Tuesday'))!;
    assert.equal(await insertUpdateGroup(d.db, 'Patch Tuesday'), undefined);
    assert.equal(await addUpdateGroupMembers(d.db, g.AuthListID, [U(1), U(2), U(3)]), 3);
    assert.equal(await addUpdateGroupMembers(d.db, g.AuthListID, [U(1)]), 0);
    const empty = (await insertUpdateGroup(d.db, 'Empty'))!;
    assert.equal(await d.db.transaction().execute((trx) => summarizeUpdateGroups(trx, now)), 2);
    const { summaryTime: _t, ...group } = (await readGroupSummary(d.db, g.AuthListID))!;
    // Non-compliant: clients 1 and 7; compliant: 4; unknown: 2, 3, 5.
    assert.deepEqual(group, { compliant: 1, nonCompliant: 2, unknown: 3, total: 6 });
    assert.equal((await readGroupSummary(d.db, empty.AuthListID))!.compliant, 6);

    // A collection of clients 1, 2, 4 and 5 (client 7 is not a member).
    const col = await insertCollection(d.db, { CollectionID: 'CS100001', Name: 'Servers' });
    await replaceCollectionMembers(d.db, col.CollectionID, new Set(), new Set([res[0]!, res[1]!, res[3]!, res[4]!]));
    const { row: dep, created } = await insertUpdateDeployment(d.db, { DeploymentID: '{d0000000-0000-4000-8000-000000000001}', AuthListID: g.AuthListID, CollectionID: col.CollectionID });
    assert.ok(created);
    assert.equal((await insertUpdateDeployment(d.db, { DeploymentID: '{other}', AuthListID: g.AuthListID, CollectionID: col.CollectionID })).created, false);
    assert.equal(await d.db.transaction().execute((trx) => evaluateAssignments(trx, now)), 1);
    const { summaryTime: _d, ...depSummary } = (await readDeploymentSummary(d.db, dep.AssignmentID))!;
    assert.deepEqual(depSummary, { compliant: 1, nonCompliant: 1, unknown: 2, total: 4 });

    // Client 1 installs U1: the next evaluation of that one deployment counts it compliant.
    await store(d, [rec(1, U(1), 3, 9, 30)]);
    assert.equal(await d.db.transaction().execute((trx) => evaluateAssignments(trx, now, dep.AssignmentID)), 1);
    const after = (await readDeploymentSummary(d.db, dep.AssignmentID))!;
    assert.deepEqual([after.compliant, after.nonCompliant, after.unknown], [2, 0, 2]);

    // [UC27] on demand for one update group: only that group's summary is rewritten.
    const later = new Date(Date.parse(now) + 1000).toISOString();
    assert.equal(await d.db.transaction().execute((trx) => summarizeUpdateGroups(trx, later, g.AuthListID)), 1);
    const one = (await readGroupSummary(d.db, g.AuthListID))!;
    assert.deepEqual([one.compliant, one.nonCompliant, one.unknown, one.total, one.summaryTime], [2, 1, 3, 6, later]);
    assert.equal((await readGroupSummary(d.db, empty.AuthListID))!.summaryTime, now);
    assert.equal(await d.db.transaction().execute((trx) => summarizeUpdateGroups(trx, later, 9999)), 0);
  });

  engineTest('[UC28] delete aged status removes update state older than the cutoff from the compliance table, latest states and history', async (d) => {
    await migrateToLatest(d.db, d.engine);
    await store(d, [rec(1, U(1), 2, 1, 1), rec(1, 'scan', 3, 2, 1, 501), rec(2, U(1), 3, 1, 50)]);
    const removed = await d.db.transaction().execute((trx) => deleteAgedStatus(trx, '2026-11-22T07:30:00.000Z'));
    // Client 1: compliance row, two latest states, two history rows.
    assert.equal(removed, 5);
    assert.deepEqual(await statusOf(d), ['2 1 3 #1']);
  });
});
