/** SQL for distribution points (`DistributionPoints`). */
import type { Kysely, Transaction } from 'kysely';
import type { Database, DistributionPointRow } from './schema.ts';
import { nowIso } from './time.ts';

type Db = Kysely<Database> | Transaction<Database>;

export async function insertDistributionPoint(
  db: Db,
  dp: { Name: string; NALPath: string; URL: string; SiteCode: string; SharedKey: string; Priority: number },
): Promise<DistributionPointRow> {
  return db
    .insertInto('DistributionPoints')
    .values({ ...dp, IsPullDP: 0, IsPeerDP: 0, CreatedTime: nowIso() })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function findDistributionPoint(db: Db, by: { name?: string; url?: string; id?: number; nalPath?: string }): Promise<DistributionPointRow | undefined> {
  let q = db.selectFrom('DistributionPoints').selectAll();
  if (by.nalPath !== undefined) q = q.where('NALPath', '=', by.nalPath);
  if (by.name !== undefined) q = q.where('Name', '=', by.name);
  if (by.url !== undefined) q = q.where('URL', '=', by.url);
  if (by.id !== undefined) q = q.where('DPID', '=', by.id);
  return q.executeTakeFirst();
}

export async function listDistributionPoints(db: Db): Promise<DistributionPointRow[]> {
  return db.selectFrom('DistributionPoints').selectAll().orderBy('Name').execute();
}
