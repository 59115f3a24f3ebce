/**
 * Migration 0007: software-update compliance on the site (issue 6, parts 5
 * and 6; spec 30, sections 4 and 5).
 *
 * - `Update_ComplianceStatus`: the latest detection state (topic type 500)
 *   per (client, update): `Status` 0 unknown, 1 not required, 2 required,
 *   3 installed, with the serial number and message time of the message that
 *   set it (the state system applies the same latest-wins rule as for
 *   `StateMsg`) and when the site received it. A client with no row for an
 *   update counts as unknown.
 * - `CI_AuthList` (update groups, the product's name) and
 *   `CI_AuthListMembers` (the updates of a group).
 * - `CI_UpdateDeployments`: an update group deployed to a collection (the
 *   product's "assignment"). `DeploymentID` is `{guid}`; `AssignmentID` a
 *   number the admin CLI can type.
 * - Summaries the summarisation tasks write: `Update_ComplianceSummary` (per
 *   update), `CI_AuthListSummary` (per update group), and
 *   `Deployment_ComplianceSummary` (per deployment).
 * - `SR_SummaryTasks`: each summary task with its schedule and last run (the
 *   seed's `vSR_SummaryTasks`).
 *
 * Forward-only: never edit once landed; add a new migration instead.
 */
import { sql } from 'kysely';
import type { ColumnDataType, ColumnDefinitionBuilder, Kysely } from 'kysely';
import type { Engine } from '../engine.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations run against whatever the schema was then, not today's types
type AnyDb = Kysely<any>;

/** Task names as the product's log shows them, and their schedules (REFERENCE.md, "summarisation"). Literal on purpose. */
const TASKS: readonly [string, number][] = [
  ['Update Status Summarizer', 3600],
  ['Update Group Status Summarizer', 3600],
  ['Assignment Compliance Evaluator', 3600],
  ['Migrate Update Status', 86400],
  ['Delete Aged Status', 86400],
];

export async function up(db: AnyDb, engine: Engine): Promise<void> {
  const idType: ColumnDataType = engine === 'sqlite' ? 'integer' : 'bigserial';
  const id = () => (c: ColumnDefinitionBuilder) => (engine === 'sqlite' ? c.primaryKey().autoIncrement() : c.primaryKey());

  await db.schema
    .createTable('Update_ComplianceStatus')
    .addColumn('ClientID', 'text', (c) => c.notNull())
    .addColumn('CI_UniqueID', 'text', (c) => c.notNull())
    .addColumn('Status', 'integer', (c) => c.notNull())
    .addColumn('SerialNumber', 'bigint', (c) => c.notNull())
    .addColumn('MessageTime', 'text', (c) => c.notNull())
    .addColumn('LastStatusTime', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('Update_ComplianceStatus_pk', ['ClientID', 'CI_UniqueID'])
    // The state system writes a row per topic 500 message: one B-tree and no other index keeps that cheap
    // (bench/state-messages.ts). The summarizers read the whole table in one pass, which needs no index.
    .$call((t) => (engine === 'sqlite' ? t.modifyEnd(sql`without rowid`) : t))
    .execute();

  await db.schema
    .createTable('CI_AuthList')
    .addColumn('AuthListID', idType, id())
    .addColumn('Name', 'text', (c) => c.notNull().unique())
    .addColumn('CreatedTime', 'text', (c) => c.notNull())
    .addColumn('LastModified', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('CI_AuthListMembers')
    .addColumn('AuthListID', 'bigint', (c) => c.notNull().references('CI_AuthList.AuthListID'))
    .addColumn('CI_UniqueID', 'text', (c) => c.notNull())
    .addColumn('AddedTime', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('CI_AuthListMembers_pk', ['AuthListID', 'CI_UniqueID'])
    .execute();

  await db.schema
    .createTable('CI_UpdateDeployments')
    .addColumn('AssignmentID', idType, id())
    .addColumn('DeploymentID', 'varchar(38)', (c) => c.notNull().unique())
    .addColumn('AuthListID', 'bigint', (c) => c.notNull().references('CI_AuthList.AuthListID'))
    .addColumn('CollectionID', 'varchar(8)', (c) => c.notNull().references('Collections.CollectionID'))
    .addColumn('CreatedTime', 'text', (c) => c.notNull())
    .addUniqueConstraint('CI_UpdateDeployments_unique', ['AuthListID', 'CollectionID'])
    .execute();

  await db.schema
    .createTable('Update_ComplianceSummary')
    .addColumn('CI_UniqueID', 'text', (c) => c.primaryKey())
    .addColumn('NumRequired', 'integer', (c) => c.notNull())
    .addColumn('NumInstalled', 'integer', (c) => c.notNull())
    .addColumn('NumNotRequired', 'integer', (c) => c.notNull())
    .addColumn('NumUnknown', 'integer', (c) => c.notNull())
    .addColumn('NumTotal', 'integer', (c) => c.notNull())
    .addColumn('SummaryTime', 'text', (c) => c.notNull())
    .execute();

  for (const [table, key, keyType] of [
    ['CI_AuthListSummary', 'AuthListID', 'bigint'],
    ['Deployment_ComplianceSummary', 'AssignmentID', 'bigint'],
  ] as const) {
    await db.schema
      .createTable(table)
      .addColumn(key, keyType, (c) => c.primaryKey())
      .addColumn('NumCompliant', 'integer', (c) => c.notNull())
      .addColumn('NumNonCompliant', 'integer', (c) => c.notNull())
      .addColumn('NumUnknown', 'integer', (c) => c.notNull())
      .addColumn('NumTotal', 'integer', (c) => c.notNull())
      .addColumn('SummaryTime', 'text', (c) => c.notNull())
      .execute();
  }

  await db.schema
    .createTable('SR_SummaryTasks')
    .addColumn('TaskName', 'text', (c) => c.primaryKey())
    /** The schedule the task last ran with (the live value is a site setting). */
    .addColumn('ScheduleSeconds', 'integer', (c) => c.notNull())
    .addColumn('LastRunStart', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('LastRunEnd', 'text', (c) => c.notNull().defaultTo(''))
    /** `success`, `failed`, or empty before the first run. */
    .addColumn('LastRunResult', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('LastRunError', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('LastRowsTouched', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('LastDurationMs', 'integer', (c) => c.notNull().defaultTo(0))
    /** `schedule` or `on demand`. */
    .addColumn('LastTrigger', 'text', (c) => c.notNull().defaultTo(''))
    .execute();
  await db.insertInto('SR_SummaryTasks').values(TASKS.map(([TaskName, ScheduleSeconds]) => ({ TaskName, ScheduleSeconds }))).execute();
}
