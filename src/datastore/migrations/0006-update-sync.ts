/**
 * Migration 0006: what the update sync manager and the software update point
 * role add (issue 5, parts 3–5; seed 004):
 *
 * - `UpdatePoints`: the site's update points in install order (`SUPID`
 *   ascending), with the key the site signs its control calls with. The
 *   product keeps this list in the site control file; ours is a table.
 * - `Update_SyncStatus` gains the configured upstream, the sync criteria
 *   (JSON, kept at the top-level site) and what the last sync was (kind,
 *   trigger, malformed items rejected, superseded updates expired).
 * - `CI_UpdateSupersedence`: which update supersedes which, so that expiry
 *   and the "superseded" filter are SQL, not a scan of every digest. Filled
 *   here from the digests already stored.
 * - Two triggers on `Update_SyncStatus` the DB monitor drains: `SyncNow` set
 *   (`SyncNotif_WSyncMgr` → `SELF.SYN` / `FULL.SYN`), and the content version
 *   moved (`UpdateSourceNotif_PolicyPv` → `{UpdateSourceID}.STN`).
 *
 * Forward-only: never edit once landed; add a new migration instead.
 */
import { sql } from 'kysely';
import type { Kysely } from 'kysely';
import type { Engine } from '../engine.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations run against whatever the schema was then, not today's types
type AnyDb = Kysely<any>;

const BACKFILL_BATCH = 1000;

export async function up(db: AnyDb, engine: Engine): Promise<void> {
  await db.schema
    .createTable('UpdatePoints')
    .addColumn('SUPID', engine === 'sqlite' ? 'integer' : 'bigserial', (c) => (engine === 'sqlite' ? c.primaryKey().autoIncrement() : c.primaryKey()))
    .addColumn('Name', 'text', (c) => c.notNull().unique())
    .addColumn('URL', 'text', (c) => c.notNull().unique())
    .addColumn('SharedKey', 'text', (c) => c.notNull())
    .addColumn('SiteCode', 'varchar(3)', (c) => c.notNull())
    .addColumn('DateAdded', 'text', (c) => c.notNull())
    .addColumn('ContentVersion', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('LastSyncTime', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('LastSyncResult', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('LastSyncError', 'text', (c) => c.notNull().defaultTo(''))
    .execute();

  await db.schema.alterTable('Update_SyncStatus').addColumn('UpstreamSource', 'text', (c) => c.notNull().defaultTo('')).execute();
  await db.schema.alterTable('Update_SyncStatus').addColumn('SyncCriteria', 'text', (c) => c.notNull().defaultTo('')).execute();
  await db.schema.alterTable('Update_SyncStatus').addColumn('LastSyncKind', 'text', (c) => c.notNull().defaultTo('')).execute();
  await db.schema.alterTable('Update_SyncStatus').addColumn('LastSyncTrigger', 'text', (c) => c.notNull().defaultTo('')).execute();
  await db.schema.alterTable('Update_SyncStatus').addColumn('LastSyncRejected', 'integer', (c) => c.notNull().defaultTo(0)).execute();
  await db.schema.alterTable('Update_SyncStatus').addColumn('LastSyncExpired', 'integer', (c) => c.notNull().defaultTo(0)).execute();

  await db.schema
    .createTable('CI_UpdateSupersedence')
    .addColumn('CI_UniqueID', 'varchar(36)', (c) => c.notNull())
    .addColumn('Superseded_UniqueID', 'varchar(36)', (c) => c.notNull())
    .addPrimaryKeyConstraint('CI_UpdateSupersedence_pk', ['CI_UniqueID', 'Superseded_UniqueID'])
    .execute();
  await db.schema.createIndex('CI_UpdateSupersedence_Superseded').on('CI_UpdateSupersedence').columns(['Superseded_UniqueID', 'CI_UniqueID']).execute();

  // Backfill from the digests already stored, in batches so memory stays bounded.
  let after = 0;
  for (;;) {
    const rows = (await db.selectFrom('CI_ConfigurationItems').select(['CI_ID', 'CI_UniqueID', 'Digest']).where('CI_ID', '>', after).orderBy('CI_ID').limit(BACKFILL_BATCH).execute()) as { CI_ID: number; CI_UniqueID: string; Digest: string }[];
    if (!rows.length) break;
    after = Number(rows.at(-1)!.CI_ID);
    const links: { CI_UniqueID: string; Superseded_UniqueID: string }[] = [];
    for (const r of rows) {
      let supersedes: unknown;
      try {
        supersedes = (JSON.parse(r.Digest) as { supersedes?: unknown }).supersedes;
      } catch {
        supersedes = undefined;
      }
      if (Array.isArray(supersedes)) for (const s of new Set(supersedes)) if (typeof s === 'string') links.push({ CI_UniqueID: r.CI_UniqueID, Superseded_UniqueID: s });
    }
    for (let i = 0; i < links.length; i += 300) await db.insertInto('CI_UpdateSupersedence').values(links.slice(i, i + 300)).onConflict((oc) => oc.doNothing()).execute();
  }

  const triggers = [
    // Seed 004: "RCV: UPDATE on Update_SyncStatus for SyncNotif_WSyncMgr [SELF][47788]".
    { name: 'SyncNotif_WSyncMgr', column: 'SyncNow', when: `NEW."SyncNow" IS NOT NULL`, key: `NEW."SyncNow"` },
    // Spec 30, section 1, step 2: the content version moved → `{UpdateSourceID}.STN` for the policy provider.
    { name: 'UpdateSourceNotif_PolicyPv', column: 'ContentVersion', when: `NEW."ContentVersion" <> OLD."ContentVersion"`, key: `NEW."UpdateSource_UniqueID"` },
  ];
  for (const t of triggers) {
    if (engine === 'sqlite') {
      await sql
        .raw(
          `CREATE TRIGGER "${t.name}" AFTER UPDATE OF "${t.column}" ON "Update_SyncStatus" WHEN ${t.when} BEGIN
             INSERT INTO "ChangeNotifications" ("TableName", "Operation", "TriggerName", "KeyValue", "Created")
             VALUES ('Update_SyncStatus', 'UPDATE', '${t.name}', ${t.key}, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
           END`,
        )
        .execute(db);
    } else {
      await sql
        .raw(
          `CREATE FUNCTION "${t.name}_fn"() RETURNS trigger AS $$
           BEGIN
             INSERT INTO "ChangeNotifications" ("TableName", "Operation", "TriggerName", "KeyValue", "Created")
             VALUES ('Update_SyncStatus', 'UPDATE', '${t.name}', ${t.key}, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'));
             PERFORM pg_notify('cairn_changes', '${t.name}');
             RETURN NEW;
           END $$ LANGUAGE plpgsql`,
        )
        .execute(db);
      await sql.raw(`CREATE TRIGGER "${t.name}" AFTER UPDATE OF "${t.column}" ON "Update_SyncStatus" FOR EACH ROW WHEN (${t.when}) EXECUTE FUNCTION "${t.name}_fn"()`).execute(db);
    }
  }
}
