/** SQL for the change-notification queue the triggers fill (see migration 0001). */
import type { Kysely, Selectable } from 'kysely';
import type { ChangeNotificationsTable, Database } from './schema.ts';

export type ChangeRow = Selectable<ChangeNotificationsTable>;

export async function pendingChanges(db: Kysely<Database>, limit = 500): Promise<ChangeRow[]> {
  return db.selectFrom('ChangeNotifications').selectAll().orderBy('ChangeID').limit(limit).execute();
}

export async function deleteChanges(db: Kysely<Database>, ids: readonly number[]): Promise<void> {
  if (ids.length) await db.deleteFrom('ChangeNotifications').where('ChangeID', 'in', [...ids]).execute();
}
