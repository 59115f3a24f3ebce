/**
 * Migration 0010: a change counter for the management point's caches
 * (issue 4, part 9; docs/adr/0013-mp-caches.md).
 *
 * `ChangeCounters` holds one row per counter, `Name` and `Counter`. Row
 * `mp` is bumped by triggers, in the same transaction as the change, on
 * every table whose rows an MP caches:
 * - content location: `BoundaryGroups`, `Boundaries`,
 *   `BoundaryGroupSiteSystems`, `DistributionPoints` (names, URLs and
 *   priorities of DPs), `SiteControl` (`mp.locationFallback`) and
 *   `PkgStatus` (which DPs hold which package version);
 * - policy assignment lists: `Policy`, `PolicyAssignment`, `ResPolicyMap`.
 * An MP (in-process or remote, another process on the same database) reads
 * the row, one primary-key lookup, at the start of each request and drops
 * its caches when the value moved: a committed change is seen by the next
 * request, as ADR 0006 promises.
 *
 * One row rather than one per cache: on PostgreSQL each bump locks the row
 * until commit, and with two rows two transactions could take them in
 * opposite orders. SQLite has only row-level triggers (one bump per row
 * changed, in the writer's transaction); PostgreSQL gets statement-level
 * triggers, so a bulk insert into `ResPolicyMap` bumps once.
 *
 * Forward-only: never edit once landed; add a new migration instead.
 */
import { sql } from 'kysely';
import type { Kysely } from 'kysely';
import type { Engine } from '../engine.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations run against whatever the schema was then, not today's types
type AnyDb = Kysely<any>;

/** The tables whose changes bump the `mp` counter. */
export const MP_COUNTED_TABLES = ['BoundaryGroups', 'Boundaries', 'BoundaryGroupSiteSystems', 'DistributionPoints', 'SiteControl', 'PkgStatus', 'Policy', 'PolicyAssignment', 'ResPolicyMap'] as const;

export async function up(db: AnyDb, engine: Engine): Promise<void> {
  await db.schema
    .createTable('ChangeCounters')
    .addColumn('Name', 'text', (c) => c.primaryKey())
    .addColumn('Counter', 'bigint', (c) => c.notNull().defaultTo(0))
    .execute();
  await db.insertInto('ChangeCounters').values({ Name: 'mp', Counter: 1 }).execute();
  const bump = `UPDATE "ChangeCounters" SET "Counter" = "Counter" + 1 WHERE "Name" = 'mp'`;
  if (engine === 'postgres') {
    await sql
      .raw(
        `CREATE FUNCTION "ChangeCounters_mp_fn"() RETURNS trigger AS $$
         BEGIN
           ${bump};
           RETURN NULL;
         END $$ LANGUAGE plpgsql`,
      )
      .execute(db);
  }
  for (const table of MP_COUNTED_TABLES) {
    for (const op of ['INSERT', 'UPDATE', 'DELETE']) {
      const name = `${table}_${op.toLowerCase()}_mp_counter`;
      if (engine === 'sqlite') await sql.raw(`CREATE TRIGGER "${name}" AFTER ${op} ON "${table}" BEGIN ${bump}; END`).execute(db);
      else await sql.raw(`CREATE TRIGGER "${name}" AFTER ${op} ON "${table}" FOR EACH STATEMENT EXECUTE FUNCTION "ChangeCounters_mp_fn"()`).execute(db);
    }
  }
}
