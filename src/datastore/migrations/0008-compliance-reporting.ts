/**
 * Migration 0008: an index on `Update_ComplianceStatus` by update (issue 6,
 * parts 6, 7 and 11).
 *
 * Migration 0007 kept the table to its primary key (client, update) so the
 * state system's topic 500 upserts stay cheap. Three readers need the rows by
 * update instead:
 * - the update status summarizer groups by update: with the index, SQLite
 *   reads it in order instead of sorting 10 million rows;
 * - the update group status summarizer joins a group's updates to their
 *   states: with the index it reads only those updates' rows (without it,
 *   SQLite compared every row with every member: 50 s for a group of 100
 *   updates over 10 million rows, bench/summarize.ts);
 * - `cairn admin compliance --update ID` lists the clients per state.
 * (update, state, client) covers all three: the index alone answers them.
 * On SQLite the table is WITHOUT ROWID, so the index holds the primary key
 * anyway; on PostgreSQL the column list makes index-only scans possible.
 * The cost is one more B-tree entry per upsert (docs/performance.md,
 * "Summarisation").
 *
 * Forward-only: never edit once landed; add a new migration instead.
 */
import type { Kysely } from 'kysely';
import type { Engine } from '../engine.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations run against whatever the schema was then, not today's types
type AnyDb = Kysely<any>;

export async function up(db: AnyDb, _engine: Engine): Promise<void> {
  await db.schema.createIndex('Update_ComplianceStatus_update').on('Update_ComplianceStatus').columns(['CI_UniqueID', 'Status', 'ClientID']).execute();
}
