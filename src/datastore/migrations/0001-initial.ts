/**
 * Migration 0001: the tables of flows 1 and 2 (spec 10) and the change
 * notification triggers the DB notification monitor drains.
 * Forward-only: never edit once landed; add a new migration instead.
 */
import { sql } from 'kysely';
import type { ColumnDataType, ColumnDefinitionBuilder, Kysely } from 'kysely';
import type { Engine } from '../engine.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations run against whatever the schema was then, not today's types
type AnyDb = Kysely<any>;

export async function up(db: AnyDb, engine: Engine): Promise<void> {
  const idType: ColumnDataType = engine === 'sqlite' ? 'integer' : 'bigserial';
  const id = () => (c: ColumnDefinitionBuilder) => (engine === 'sqlite' ? c.primaryKey().autoIncrement() : c.primaryKey());

  await db.schema
    .createTable('Sites')
    .addColumn('SiteCode', 'varchar(3)', (c) => c.primaryKey())
    .addColumn('SiteName', 'text', (c) => c.notNull())
    .addColumn('ParentSiteCode', 'varchar(3)')
    .execute();

  await db.schema
    .createTable('SiteControl')
    .addColumn('Name', 'text', (c) => c.primaryKey())
    .addColumn('Value', 'text', (c) => c.notNull())
    .addColumn('LastModified', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('IdSequences')
    .addColumn('Name', 'text', (c) => c.primaryKey())
    .addColumn('NextValue', 'bigint', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('SMSPackages')
    .addColumn('PkgID', 'varchar(8)', (c) => c.primaryKey())
    .addColumn('Name', 'text', (c) => c.notNull())
    .addColumn('Description', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('Source', 'text', (c) => c.notNull())
    .addColumn('SourceSite', 'varchar(3)', (c) => c.notNull())
    .addColumn('StoredPkgPath', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('StoredPkgVersion', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('SourceVersion', 'integer', (c) => c.notNull().defaultTo(1))
    .addColumn('SourceDate', 'text', (c) => c.notNull())
    .addColumn('SourceSize', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('SourceFileCount', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('PackageType', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('Priority', 'integer', (c) => c.notNull().defaultTo(2))
    .addColumn('Hash', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('HashVersion', 'integer', (c) => c.notNull().defaultTo(2))
    .addColumn('UpdateMask', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('Action', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('LastError', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('CreatedTime', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('DistributionPoints')
    .addColumn('DPID', idType, id())
    .addColumn('Name', 'text', (c) => c.notNull().unique())
    .addColumn('NALPath', 'text', (c) => c.notNull().unique())
    .addColumn('URL', 'text', (c) => c.notNull().unique())
    .addColumn('SiteCode', 'varchar(3)', (c) => c.notNull())
    .addColumn('IsPullDP', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('IsPeerDP', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('Priority', 'integer', (c) => c.notNull().defaultTo(200))
    .addColumn('SharedKey', 'text', (c) => c.notNull())
    .addColumn('CreatedTime', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('PkgServers')
    .addColumn('PkgID', 'varchar(8)', (c) => c.notNull().references('SMSPackages.PkgID'))
    .addColumn('NALPath', 'text', (c) => c.notNull())
    .addColumn('DPID', 'bigint', (c) => c.notNull().references('DistributionPoints.DPID'))
    .addColumn('SiteCode', 'varchar(3)', (c) => c.notNull())
    .addColumn('LastRefresh', 'text', (c) => c.notNull())
    .addColumn('RefreshTrigger', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('UpdateMask', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('Action', 'integer', (c) => c.notNull().defaultTo(0))
    .addPrimaryKeyConstraint('PkgServers_pk', ['PkgID', 'NALPath'])
    .execute();

  await db.schema
    .createTable('PkgNotification')
    .addColumn('NotificationID', idType, id())
    .addColumn('PkgID', 'varchar(8)', (c) => c.notNull())
    .addColumn('Priority', 'integer', (c) => c.notNull())
    .addColumn('Type', 'integer', (c) => c.notNull())
    .addColumn('TimeKey', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('PkgNotification_PkgID').on('PkgNotification').column('PkgID').execute();

  await db.schema
    .createTable('PkgStatus')
    .addColumn('PkgStatusID', idType, id())
    .addColumn('ID', 'varchar(8)', (c) => c.notNull())
    .addColumn('Type', 'integer', (c) => c.notNull())
    .addColumn('SiteCode', 'varchar(3)', (c) => c.notNull())
    .addColumn('PkgServer', 'text', (c) => c.notNull())
    .addColumn('SourceVersion', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('Personality', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('Location', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('ShareName', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('HTTPUrl', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('SigURL', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('Status', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('State', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('LastError', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('UpdateTime', 'text', (c) => c.notNull())
    .addUniqueConstraint('PkgStatus_unique', ['ID', 'Type', 'SiteCode', 'PkgServer'])
    .execute();

  await db.schema
    .createTable('DistributionJobs')
    .addColumn('JobID', idType, id())
    .addColumn('DPID', 'bigint', (c) => c.notNull().references('DistributionPoints.DPID'))
    .addColumn('PkgID', 'varchar(8)', (c) => c.notNull().references('SMSPackages.PkgID'))
    .addColumn('PackageVersion', 'integer', (c) => c.notNull())
    .addColumn('State', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('Action', 'integer', (c) => c.notNull().defaultTo(1))
    .addColumn('SendAction', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('CreationTime', 'text', (c) => c.notNull())
    .addColumn('LastUpdateTime', 'text', (c) => c.notNull())
    .addColumn('RestartTime', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('RetryCount', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('LastError', 'text', (c) => c.notNull().defaultTo(''))
    .execute();
  await db.schema.createIndex('DistributionJobs_State').on('DistributionJobs').columns(['State', 'PkgID']).execute();

  await db.schema
    .createTable('ChangeNotifications')
    .addColumn('ChangeID', idType, id())
    .addColumn('TableName', 'text', (c) => c.notNull())
    .addColumn('Operation', 'text', (c) => c.notNull())
    .addColumn('TriggerName', 'text', (c) => c.notNull())
    .addColumn('KeyValue', 'text', (c) => c.notNull())
    .addColumn('Created', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('StatusMessages')
    .addColumn('RecordID', idType, id())
    .addColumn('MessageID', 'integer', (c) => c.notNull())
    .addColumn('Severity', 'varchar(1)', (c) => c.notNull())
    .addColumn('Level', 'varchar(1)', (c) => c.notNull())
    .addColumn('Source', 'text', (c) => c.notNull())
    .addColumn('Component', 'text', (c) => c.notNull())
    .addColumn('MachineName', 'text', (c) => c.notNull())
    .addColumn('SiteCode', 'varchar(3)', (c) => c.notNull())
    .addColumn('ProcessID', 'integer', (c) => c.notNull())
    .addColumn('ThreadID', 'integer', (c) => c.notNull())
    .addColumn('Time', 'text', (c) => c.notNull())
    .addColumn('DedupKey', 'text', (c) => c.notNull().unique())
    .execute();
  await db.schema.createIndex('StatusMessages_Component').on('StatusMessages').columns(['Component', 'Time']).execute();

  await db.schema
    .createTable('StatusMessageInsStrs')
    .addColumn('RecordID', 'bigint', (c) => c.notNull().references('StatusMessages.RecordID'))
    .addColumn('InsStrIndex', 'integer', (c) => c.notNull())
    .addColumn('InsStrValue', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('StatusMessageInsStrs_pk', ['RecordID', 'InsStrIndex'])
    .execute();

  await db.schema
    .createTable('StatusMessageAttributes')
    .addColumn('RecordID', 'bigint', (c) => c.notNull().references('StatusMessages.RecordID'))
    .addColumn('AttributeID', 'integer', (c) => c.notNull())
    .addColumn('AttributeValue', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('StatusMessageAttributes_Value').on('StatusMessageAttributes').columns(['AttributeID', 'AttributeValue']).execute();

  // Triggers: each change the components must hear about becomes a row in
  // ChangeNotifications; the DB notification monitor turns rows into inbox
  // files (spec 10, flow 1 step 2 and flow 2 step 5). Trigger names follow
  // the seed's SMSDBMON lines.
  const triggers = [
    { name: 'PkgNotify_Add', table: 'PkgNotification', key: 'PkgID' },
    { name: 'DistributionJob_Creation', table: 'DistributionJobs', key: 'PkgID' },
  ];
  for (const t of triggers) {
    if (engine === 'sqlite') {
      await sql
        .raw(
          `CREATE TRIGGER "${t.name}" AFTER INSERT ON "${t.table}" BEGIN
             INSERT INTO "ChangeNotifications" ("TableName", "Operation", "TriggerName", "KeyValue", "Created")
             VALUES ('${t.table}', 'INSERT', '${t.name}', NEW."${t.key}", strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
           END`,
        )
        .execute(db);
    } else {
      await sql
        .raw(
          `CREATE FUNCTION "${t.name}_fn"() RETURNS trigger AS $$
           BEGIN
             INSERT INTO "ChangeNotifications" ("TableName", "Operation", "TriggerName", "KeyValue", "Created")
             VALUES ('${t.table}', 'INSERT', '${t.name}', NEW."${t.key}", to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'));
             PERFORM pg_notify('cairn_changes', '${t.name}');
             RETURN NEW;
           END $$ LANGUAGE plpgsql`,
        )
        .execute(db);
      await sql.raw(`CREATE TRIGGER "${t.name}" AFTER INSERT ON "${t.table}" FOR EACH ROW EXECUTE FUNCTION "${t.name}_fn"()`).execute(db);
    }
  }
}
