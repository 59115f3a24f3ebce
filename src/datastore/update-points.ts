/**
 * SQL for the site's software update points (`UpdatePoints`, migration
 * 0006). Install order is `SUPID` ascending: the first is the one that syncs
 * from upstream, every other one is a replica of it (seed 004, "the first
 * installed update point syncs first"). Decisions live in
 * `src/site/services/update-points.ts`.
 */
import type { Kysely, Selectable } from 'kysely';
import type { Database, UpdatePointsTable } from './schema.ts';
import { nowIso } from './time.ts';

export type UpdatePointRow = Selectable<UpdatePointsTable>;

/** The site's update points, first installed first. */
export async function listUpdatePoints(db: Kysely<Database>, siteCode: string): Promise<UpdatePointRow[]> {
  return db.selectFrom('UpdatePoints').selectAll().where('SiteCode', '=', siteCode).orderBy('SUPID').execute();
}

export async function findUpdatePoint(db: Kysely<Database>, by: { name?: string; url?: string }): Promise<UpdatePointRow | undefined> {
  let q = db.selectFrom('UpdatePoints').selectAll();
  if (by.name !== undefined) q = q.where('Name', '=', by.name);
  if (by.url !== undefined) q = q.where('URL', '=', by.url);
  return q.executeTakeFirst();
}

export async function insertUpdatePoint(db: Kysely<Database>, sup: { name: string; url: string; key: string; siteCode: string }): Promise<UpdatePointRow> {
  await db.insertInto('UpdatePoints').values({ Name: sup.name, URL: sup.url, SharedKey: sup.key, SiteCode: sup.siteCode, DateAdded: nowIso() }).execute();
  return (await findUpdatePoint(db, { name: sup.name }))!;
}

export async function setUpdatePointUrl(db: Kysely<Database>, supId: number, url: string): Promise<void> {
  await db.updateTable('UpdatePoints').set({ URL: url }).where('SUPID', '=', supId).execute();
}

/** Records the outcome of an update point's sync (phase 1 or a replica's). */
export async function recordUpdatePointSync(db: Kysely<Database>, supId: number, outcome: { ok: true; contentVersion: number } | { ok: false; error: string }): Promise<void> {
  await db
    .updateTable('UpdatePoints')
    .set(outcome.ok ? { LastSyncTime: nowIso(), LastSyncResult: 'succeeded', LastSyncError: '', ContentVersion: outcome.contentVersion } : { LastSyncTime: nowIso(), LastSyncResult: 'failed', LastSyncError: outcome.error })
    .where('SUPID', '=', supId)
    .execute();
}
