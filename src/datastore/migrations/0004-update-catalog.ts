/**
 * Migration 0004: the update catalog as configuration items (spec 20, "Update
 * metadata lives in the site database as configuration items") and the
 * site's sync status (`Update_SyncStatus`, seed 004). Table names follow the
 * product's (`CI_ConfigurationItems`, `CI_CategoryInstances`); the columns are
 * ours where the seeds show none, and say so in `schema.ts`.
 * Forward-only: never edit once landed; add a new migration instead.
 */
import type { Kysely } from 'kysely';
import type { Engine } from '../engine.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations run against whatever the schema was then, not today's types
type AnyDb = Kysely<any>;

export async function up(db: AnyDb, engine: Engine): Promise<void> {
  await db.schema
    .createTable('CI_CategoryInstances')
    .addColumn('CategoryInstance_UniqueID', 'varchar(36)', (c) => c.primaryKey())
    .addColumn('CategoryTypeName', 'text', (c) => c.notNull())
    .addColumn('CategoryInstanceName', 'text', (c) => c.notNull())
    .addColumn('ParentCategoryInstance_UniqueID', 'varchar(36)')
    .addColumn('RevisionNumber', 'integer', (c) => c.notNull())
    .addColumn('ContentVersion', 'integer', (c) => c.notNull())
    .addColumn('DateLastModified', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('CI_ConfigurationItems')
    .addColumn('CI_ID', engine === 'sqlite' ? 'integer' : 'bigserial', (c) => (engine === 'sqlite' ? c.primaryKey().autoIncrement() : c.primaryKey()))
    .addColumn('CI_UniqueID', 'varchar(36)', (c) => c.notNull().unique())
    .addColumn('CIType_ID', 'integer', (c) => c.notNull())
    .addColumn('RevisionNumber', 'integer', (c) => c.notNull())
    .addColumn('Title', 'text', (c) => c.notNull())
    .addColumn('ArticleID', 'text', (c) => c.notNull())
    .addColumn('Classification', 'varchar(36)', (c) => c.notNull())
    .addColumn('Severity', 'text', (c) => c.notNull())
    .addColumn('ReleaseDate', 'text', (c) => c.notNull())
    .addColumn('Digest', 'text', (c) => c.notNull())
    .addColumn('ContentVersion', 'integer', (c) => c.notNull())
    .addColumn('IsExpired', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('DateCreated', 'text', (c) => c.notNull())
    .addColumn('DateLastModified', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('CI_ConfigurationItems_Classification').on('CI_ConfigurationItems').columns(['Classification', 'ReleaseDate']).execute();
  await db.schema.createIndex('CI_ConfigurationItems_ContentVersion').on('CI_ConfigurationItems').column('ContentVersion').execute();

  await db.schema
    .createTable('CI_ConfigurationItemCategories')
    .addColumn('CI_UniqueID', 'varchar(36)', (c) => c.notNull())
    .addColumn('CategoryInstance_UniqueID', 'varchar(36)', (c) => c.notNull())
    .addPrimaryKeyConstraint('CI_ConfigurationItemCategories_pk', ['CI_UniqueID', 'CategoryInstance_UniqueID'])
    .execute();
  await db.schema.createIndex('CI_ConfigurationItemCategories_Category').on('CI_ConfigurationItemCategories').columns(['CategoryInstance_UniqueID', 'CI_UniqueID']).execute();

  await db.schema
    .createTable('Update_SyncStatus')
    .addColumn('SiteCode', 'varchar(3)', (c) => c.primaryKey())
    .addColumn('UpdateSource_UniqueID', 'varchar(36)', (c) => c.notNull())
    .addColumn('ContentVersion', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('SyncNow', 'text')
    .addColumn('SourceURL', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('Anchor', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('PendingChanges', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('LastSyncStartTime', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('LastSyncEndTime', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('LastSyncResult', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('LastSyncError', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('LastSyncItemsChanged', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('SyncAlert', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
}
