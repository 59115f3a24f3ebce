/** SQL for remote management points (`ManagementPoints`, migration 0005): their names and the keys their file dispatch signs with. */
import type { Kysely, Transaction } from 'kysely';
import type { Database, ManagementPointRow } from './schema.ts';
import { nowIso } from './time.ts';

type Db = Kysely<Database> | Transaction<Database>;

export async function insertManagementPoint(db: Db, name: string, key: string): Promise<ManagementPointRow> {
  return db.insertInto('ManagementPoints').values({ Name: name, SharedKey: key, CreatedTime: nowIso() }).returningAll().executeTakeFirstOrThrow();
}

export async function findManagementPoint(db: Db, name: string): Promise<ManagementPointRow | undefined> {
  return db.selectFrom('ManagementPoints').selectAll().where('Name', '=', name).executeTakeFirst();
}

export async function listManagementPoints(db: Db): Promise<ManagementPointRow[]> {
  return db.selectFrom('ManagementPoints').selectAll().orderBy('Name').execute();
}

export async function touchManagementPoint(db: Db, mpId: number): Promise<void> {
  await db.updateTable('ManagementPoints').set({ LastSeenTime: nowIso() }).where('MPID', '=', mpId).execute();
}
