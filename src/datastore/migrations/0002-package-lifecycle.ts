/**
 * Migration 0002: what the package lifecycle (issue 3) adds — the result of
 * each content validation per package and DP, read by `package status` and
 * by the validation schedule. Forward-only: never edit once landed.
 */
import type { Kysely } from 'kysely';
import type { Engine } from '../engine.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations run against whatever the schema was then, not today's types
type AnyDb = Kysely<any>;

export async function up(db: AnyDb, _engine: Engine): Promise<void> {
  await db.schema
    .createTable('ContentValidations')
    .addColumn('PkgID', 'varchar(8)', (c) => c.notNull())
    .addColumn('NALPath', 'text', (c) => c.notNull())
    .addColumn('DPID', 'bigint', (c) => c.notNull())
    .addColumn('SourceVersion', 'integer', (c) => c.notNull())
    /** ISO 8601 time of the last validation that finished. */
    .addColumn('ValidatedTime', 'text', (c) => c.notNull())
    .addColumn('Valid', 'integer', (c) => c.notNull())
    /** What failed, one problem per line; empty when valid. */
    .addColumn('Problems', 'text', (c) => c.notNull().defaultTo(''))
    .addPrimaryKeyConstraint('ContentValidations_pk', ['PkgID', 'NALPath'])
    .execute();
}
