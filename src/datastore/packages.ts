/**
 * SQL for packages (`SMSPackages`), their notifications (`PkgNotification`)
 * and package servers (`PkgServers`). Decisions live in the services and
 * components; this file only reads and writes rows.
 */
import type { Kysely, Transaction } from 'kysely';
import type { Database, PackageRow, PkgServerRow } from './schema.ts';
import { ACTION, NOTIFICATION_TYPE } from './enums.ts';
import { nowIso } from './time.ts';

type Db = Kysely<Database> | Transaction<Database>;

/**
 * The next ID of a site object from its own sequence: site code + 5 hex
 * digits (spec 10, e.g. `CS10001E`). Package and collection IDs are made so.
 */
export async function nextSiteObjectId(trx: Db, sequence: string, siteCode: string): Promise<string> {
  const seq = `${sequence}:${siteCode}`;
  await trx.insertInto('IdSequences').values({ Name: seq, NextValue: 1 }).onConflict((oc) => oc.column('Name').doNothing()).execute();
  // One atomic UPDATE … RETURNING, so two creators never get the same ID on either engine.
  const row = await trx
    .updateTable('IdSequences')
    .set((eb) => ({ NextValue: eb('NextValue', '+', 1) }))
    .where('Name', '=', seq)
    .returning('NextValue')
    .executeTakeFirstOrThrow();
  const n = Number(row.NextValue) - 1;
  return `${siteCode}${n.toString(16).toUpperCase().padStart(5, '0')}`;
}

/** Next package ID (spec 10, e.g. `CS10001E`). */
export function nextPackageId(trx: Db, siteCode: string): Promise<string> {
  return nextSiteObjectId(trx, 'PkgID', siteCode);
}

export async function insertPackage(trx: Db, p: { PkgID: string; Name: string; Description: string; Source: string; SourceSite: string; Priority: number }): Promise<void> {
  const now = nowIso();
  await trx
    .insertInto('SMSPackages')
    .values({ ...p, SourceVersion: 1, StoredPkgVersion: 0, SourceDate: now, Action: ACTION.add, UpdateMask: 0, CreatedTime: now })
    .execute();
}

export async function insertNotification(trx: Db, pkgId: string, type: number, priority = 2): Promise<void> {
  await trx.insertInto('PkgNotification').values({ PkgID: pkgId, Priority: priority, Type: type, TimeKey: nowIso() }).execute();
}

export async function getPackage(db: Db, pkgId: string): Promise<PackageRow | undefined> {
  return db.selectFrom('SMSPackages').selectAll().where('PkgID', '=', pkgId).executeTakeFirst();
}

export async function listPackages(db: Db): Promise<PackageRow[]> {
  return db.selectFrom('SMSPackages').selectAll().orderBy('PkgID').execute();
}

/** Records a stored version after a snapshot (flow 1 step 4). */
export async function recordStoredVersion(
  db: Db,
  pkgId: string,
  v: { version: number; sizeKb: number; fileCount: number; hash: string; storedPath: string },
): Promise<void> {
  await db
    .updateTable('SMSPackages')
    .set({ StoredPkgVersion: v.version, SourceSize: v.sizeKb, SourceFileCount: v.fileCount, Hash: v.hash, StoredPkgPath: v.storedPath, Action: ACTION.none, UpdateMask: 0, LastError: '' })
    .where('PkgID', '=', pkgId)
    .execute();
}

export async function recordPackageError(db: Db, pkgId: string, reason: string): Promise<void> {
  await db.updateTable('SMSPackages').set({ LastError: reason }).where('PkgID', '=', pkgId).execute();
}

export async function pendingNotificationIds(db: Db, pkgId: string): Promise<number[]> {
  const rows = await db.selectFrom('PkgNotification').select('NotificationID').where('PkgID', '=', pkgId).execute();
  return rows.map((r) => Number(r.NotificationID));
}

export async function deleteNotifications(db: Db, ids: readonly number[]): Promise<void> {
  if (ids.length) await db.deleteFrom('PkgNotification').where('NotificationID', 'in', [...ids]).execute();
}

/** Adds a DP to a package (AddDistributionPoints): Action 2 and a type 4 notification (flow 2 step 1). */
export async function addPackageServer(trx: Db, pkgId: string, dp: { DPID: number; NALPath: string; SiteCode: string }): Promise<void> {
  await trx
    .insertInto('PkgServers')
    .values({ PkgID: pkgId, NALPath: dp.NALPath, DPID: dp.DPID, SiteCode: dp.SiteCode, LastRefresh: nowIso(), RefreshTrigger: 0, UpdateMask: 0, Action: ACTION.add })
    .onConflict((oc) => oc.columns(['PkgID', 'NALPath']).doUpdateSet({ Action: ACTION.add, RefreshTrigger: 0 }))
    .execute();
  await insertNotification(trx, pkgId, NOTIFICATION_TYPE.dpAdded);
}

export async function packageServersWithWork(db: Db, pkgId: string): Promise<PkgServerRow[]> {
  return db.selectFrom('PkgServers').selectAll().where('PkgID', '=', pkgId).where('Action', '<>', ACTION.none).orderBy('NALPath').execute();
}

/** The DP thread's reset of its package-server row (seed 001, step 9-3), except removals. */
export async function resetPackageServer(trx: Db, pkgId: string, nalPath: string): Promise<void> {
  await trx
    .updateTable('PkgServers')
    .set({ UpdateMask: 0, Action: ACTION.none, RefreshTrigger: 0, LastRefresh: nowIso() })
    .where('PkgID', '=', pkgId)
    .where('NALPath', '=', nalPath)
    .where('Action', '<>', ACTION.delete)
    .execute();
}

export async function getPackageServer(db: Db, pkgId: string, nalPath: string): Promise<PkgServerRow | undefined> {
  return db.selectFrom('PkgServers').selectAll().where('PkgID', '=', pkgId).where('NALPath', '=', nalPath).executeTakeFirst();
}

export async function listPackageServers(db: Db, pkgId: string): Promise<PkgServerRow[]> {
  return db.selectFrom('PkgServers').selectAll().where('PkgID', '=', pkgId).orderBy('NALPath').execute();
}

/**
 * Asks for an action on package servers (redistribute, remove, validate):
 * sets Action (and RefreshTrigger 1 for a redistribute) on the named rows,
 * leaving a pending removal alone, and adds a type 1 notification.
 */
export async function requestPackageServerAction(trx: Db, pkgId: string, nalPaths: readonly string[], action: number, refreshTrigger = 0): Promise<void> {
  if (!nalPaths.length) return;
  await trx
    .updateTable('PkgServers')
    .set({ Action: action, RefreshTrigger: refreshTrigger, LastRefresh: nowIso() })
    .where('PkgID', '=', pkgId)
    .where('NALPath', 'in', [...nalPaths])
    .where('Action', '<>', ACTION.delete)
    .execute();
  await insertNotification(trx, pkgId, NOTIFICATION_TYPE.update);
}

/** After a new stored version (flow 4 step 3): every DP the package is on, with nothing else pending, gets an update. */
export async function markPackageServersForUpdate(trx: Db, pkgId: string): Promise<void> {
  await trx.updateTable('PkgServers').set({ Action: ACTION.update, LastRefresh: nowIso() }).where('PkgID', '=', pkgId).where('Action', '=', ACTION.none).execute();
}

export async function deletePackageServer(trx: Db, pkgId: string, nalPath: string): Promise<void> {
  await trx.deleteFrom('PkgServers').where('PkgID', '=', pkgId).where('NALPath', '=', nalPath).execute();
}

/** RefreshPkgSource (flow 4 step 1): the next source version, Action 1, update mask 32, a type 1 notification. */
export async function refreshPackageSource(trx: Db, pkgId: string, priority: number): Promise<number> {
  const row = await trx
    .updateTable('SMSPackages')
    .set((eb) => ({ SourceVersion: eb('SourceVersion', '+', 1), SourceDate: nowIso(), Action: ACTION.update, UpdateMask: 32 }))
    .where('PkgID', '=', pkgId)
    .returning('SourceVersion')
    .executeTakeFirstOrThrow();
  await insertNotification(trx, pkgId, NOTIFICATION_TYPE.update, priority);
  return row.SourceVersion;
}

/** Marks the package for deletion (Action 3) and every package server for removal, with a notification. */
export async function markPackageForDeletion(trx: Db, pkgId: string): Promise<void> {
  await trx.updateTable('SMSPackages').set({ Action: ACTION.delete }).where('PkgID', '=', pkgId).execute();
  await trx.updateTable('PkgServers').set({ Action: ACTION.delete, LastRefresh: nowIso() }).where('PkgID', '=', pkgId).execute();
  await insertNotification(trx, pkgId, NOTIFICATION_TYPE.update);
}

/** The last step of deleting a package: every row that names it. */
export async function deletePackageRows(trx: Db, pkgId: string): Promise<void> {
  await trx.deleteFrom('PkgServers').where('PkgID', '=', pkgId).execute();
  await trx.deleteFrom('PkgStatus').where('ID', '=', pkgId).execute();
  await trx.deleteFrom('ContentValidations').where('PkgID', '=', pkgId).execute();
  await trx.deleteFrom('DistributionJobs').where('PkgID', '=', pkgId).execute();
  await trx.deleteFrom('SMSPackages').where('PkgID', '=', pkgId).execute();
}

export async function recordValidation(trx: Db, v: { PkgID: string; NALPath: string; DPID: number; SourceVersion: number; Valid: boolean; Problems: string }): Promise<void> {
  const values = { ...v, Valid: v.Valid ? 1 : 0, ValidatedTime: nowIso() };
  await trx
    .insertInto('ContentValidations')
    .values(values)
    .onConflict((oc) => oc.columns(['PkgID', 'NALPath']).doUpdateSet({ DPID: values.DPID, SourceVersion: values.SourceVersion, Valid: values.Valid, Problems: values.Problems, ValidatedTime: values.ValidatedTime }))
    .execute();
}
