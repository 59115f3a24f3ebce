/**
 * Migration 0005: the management point and the policy provider (issue 4,
 * parts 1, 2 and 5; docs/adr/0005-mp-client-protocol.md and
 * docs/adr/0006-mp-server.md). Table names follow the product's where the
 * seeds show them (`Policy`, `PolicyAssignment`, `ResPolicyMap`,
 * `SettingsPolicy`, `Collections`); the others are named in the same spirit.
 *
 * - `ClientRegistration`: one row per registered client: its client ID
 *   (`GUID:…`), a numeric `ResourceID` (what `ResPolicyMap` and
 *   `CollectionMembers` point at, like the product's resource IDs), its name,
 *   Ed25519 public key (SPKI PEM) and fingerprint, IP addresses (JSON list),
 *   OS, agent version, approval (`approved`, `pending`, `revoked`) and times.
 * - `Policy`: a policy body as the clients download it: ID (`{guid}`),
 *   version (`N.00`), category, the exact body bytes (JSON text), their
 *   SHA-256 (hex upper, algorithm 32780), the site's Ed25519 signature over
 *   them, and `SourceCRC` (a hash of the body without its ID and version, so
 *   the policy provider bumps the version only when the content changes).
 * - `PolicyAssignment`: which policy (and version) an assignment delivers,
 *   `PADBID` numeric as in the seed, and the collection it targets (null for
 *   the site-wide ones: ClientSettings, UpdateSource).
 * - `ResPolicyMap`: which resource (client) gets which assignment.
 * - `SettingsPolicy`: the site-wide policies by `SourceType`
 *   (`ClientSettings`, `UpdateSource`), as in seed 002's query.
 * - `Collections` (with "All Clients" `SMS00001`), `CollectionRules` (direct
 *   member, IP range, subnet, name pattern) and `CollectionMembers` (the
 *   materialised membership the policy provider evaluates).
 * - `ContentDeployments`: a package made available to a collection, with the
 *   policy and assignment the policy provider built for it.
 * - `BoundaryGroups`, `Boundaries` (IPv4 subnets and ranges) and
 *   `BoundaryGroupSiteSystems` (the DPs of a group).
 * - `ManagementPoints`: remote MPs and the key their file dispatch signs with.
 * - Topic type 901 (ours, content deployment) in `SR_TopicTypes` and its
 *   states in `SR_StateNames` (ADR 0005).
 *
 * Forward-only: never edit once landed; add a new migration instead.
 */
import type { ColumnDataType, ColumnDefinitionBuilder, Kysely } from 'kysely';
import type { Engine } from '../engine.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations run against whatever the schema was then, not today's types
type AnyDb = Kysely<any>;

export async function up(db: AnyDb, engine: Engine): Promise<void> {
  const idType: ColumnDataType = engine === 'sqlite' ? 'integer' : 'bigserial';
  const id = () => (c: ColumnDefinitionBuilder) => (engine === 'sqlite' ? c.primaryKey().autoIncrement() : c.primaryKey());

  await db.schema
    .createTable('ClientRegistration')
    .addColumn('ResourceID', idType, id())
    .addColumn('ClientID', 'text', (c) => c.notNull().unique())
    .addColumn('NetBIOSName', 'text', (c) => c.notNull())
    .addColumn('PublicKey', 'text', (c) => c.notNull())
    .addColumn('KeyFingerprint', 'text', (c) => c.notNull())
    .addColumn('IPAddresses', 'text', (c) => c.notNull().defaultTo('[]'))
    .addColumn('OSFamily', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('OSVersion', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('AgentVersion', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('ApprovalStatus', 'text', (c) => c.notNull())
    .addColumn('RegisteredTime', 'text', (c) => c.notNull())
    .addColumn('ApprovedTime', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('LastSeenTime', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('ClientRegistration_Name').on('ClientRegistration').column('NetBIOSName').execute();

  await db.schema
    .createTable('Policy')
    .addColumn('PolicyID', 'varchar(38)', (c) => c.primaryKey())
    .addColumn('Version', 'text', (c) => c.notNull())
    .addColumn('Category', 'text', (c) => c.notNull())
    .addColumn('Body', 'text', (c) => c.notNull())
    .addColumn('BodyHash', 'text', (c) => c.notNull())
    .addColumn('HashAlgId', 'integer', (c) => c.notNull().defaultTo(32780))
    .addColumn('BodySignature', 'text', (c) => c.notNull())
    .addColumn('SourceCRC', 'text', (c) => c.notNull())
    .addColumn('LastModified', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('PolicyAssignment')
    .addColumn('PADBID', idType, id())
    .addColumn('PolicyAssignmentID', 'varchar(38)', (c) => c.notNull().unique())
    .addColumn('PolicyID', 'varchar(38)', (c) => c.notNull().references('Policy.PolicyID'))
    .addColumn('Version', 'text', (c) => c.notNull())
    .addColumn('CollectionID', 'varchar(8)')
    .addColumn('LastModified', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('ResPolicyMap')
    .addColumn('ResourceID', 'bigint', (c) => c.notNull())
    .addColumn('PADBID', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('ResPolicyMap_pk', ['ResourceID', 'PADBID'])
    .execute();
  await db.schema.createIndex('ResPolicyMap_PADBID').on('ResPolicyMap').column('PADBID').execute();

  await db.schema
    .createTable('SettingsPolicy')
    .addColumn('SourceID', 'varchar(3)', (c) => c.notNull())
    .addColumn('SourceType', 'text', (c) => c.notNull())
    .addColumn('PolicyID', 'varchar(38)', (c) => c.notNull())
    .addColumn('PolicyAssignmentID', 'varchar(38)', (c) => c.notNull())
    .addColumn('PADBID', 'bigint', (c) => c.notNull())
    /** What the policy was last built from (UpdateSource: the content version). */
    .addColumn('SourceCRC', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('SettingsPolicy_pk', ['SourceID', 'SourceType'])
    .execute();

  await db.schema
    .createTable('Collections')
    .addColumn('CollectionID', 'varchar(8)', (c) => c.primaryKey())
    .addColumn('Name', 'text', (c) => c.notNull().unique())
    .addColumn('Comment', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('MemberCount', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('CreatedTime', 'text', (c) => c.notNull())
    .addColumn('LastChangeTime', 'text', (c) => c.notNull())
    .addColumn('LastEvaluatedTime', 'text', (c) => c.notNull().defaultTo(''))
    .execute();

  await db.schema
    .createTable('CollectionRules')
    .addColumn('RuleID', idType, id())
    .addColumn('CollectionID', 'varchar(8)', (c) => c.notNull().references('Collections.CollectionID'))
    /** `direct` (Value: client ID), `iprange` (`A-B`), `subnet` (CIDR), `name` (glob over the client's name). */
    .addColumn('RuleType', 'text', (c) => c.notNull())
    .addColumn('Value', 'text', (c) => c.notNull())
    .addColumn('CreatedTime', 'text', (c) => c.notNull())
    .addUniqueConstraint('CollectionRules_unique', ['CollectionID', 'RuleType', 'Value'])
    .execute();

  await db.schema
    .createTable('CollectionMembers')
    .addColumn('CollectionID', 'varchar(8)', (c) => c.notNull())
    .addColumn('ResourceID', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('CollectionMembers_pk', ['CollectionID', 'ResourceID'])
    .execute();

  await db.schema
    .createTable('ContentDeployments')
    .addColumn('DeploymentID', 'varchar(38)', (c) => c.primaryKey())
    .addColumn('PkgID', 'varchar(8)', (c) => c.notNull().references('SMSPackages.PkgID'))
    .addColumn('CollectionID', 'varchar(8)', (c) => c.notNull().references('Collections.CollectionID'))
    .addColumn('PolicyID', 'varchar(38)', (c) => c.notNull())
    .addColumn('PolicyAssignmentID', 'varchar(38)', (c) => c.notNull())
    /** The PADBID once the policy provider built the policy; null before. */
    .addColumn('PADBID', 'bigint')
    /** The content the policy was last built from (`<ContentID>/<hash>`); empty before. */
    .addColumn('SourceCRC', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('CreatedTime', 'text', (c) => c.notNull())
    .addUniqueConstraint('ContentDeployments_unique', ['PkgID', 'CollectionID'])
    .execute();

  await db.schema
    .createTable('BoundaryGroups')
    .addColumn('GroupID', idType, id())
    .addColumn('Name', 'text', (c) => c.notNull().unique())
    .addColumn('CreatedTime', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('Boundaries')
    .addColumn('BoundaryID', idType, id())
    .addColumn('GroupID', 'bigint', (c) => c.notNull().references('BoundaryGroups.GroupID'))
    /** `subnet` (CIDR) or `range` (`A-B`), IPv4. */
    .addColumn('BoundaryType', 'text', (c) => c.notNull())
    .addColumn('Value', 'text', (c) => c.notNull())
    .addColumn('CreatedTime', 'text', (c) => c.notNull())
    .addUniqueConstraint('Boundaries_unique', ['GroupID', 'BoundaryType', 'Value'])
    .execute();

  await db.schema
    .createTable('BoundaryGroupSiteSystems')
    .addColumn('GroupID', 'bigint', (c) => c.notNull().references('BoundaryGroups.GroupID'))
    .addColumn('DPID', 'bigint', (c) => c.notNull().references('DistributionPoints.DPID'))
    .addPrimaryKeyConstraint('BoundaryGroupSiteSystems_pk', ['GroupID', 'DPID'])
    .execute();

  await db.schema
    .createTable('ManagementPoints')
    .addColumn('MPID', idType, id())
    .addColumn('Name', 'text', (c) => c.notNull().unique())
    .addColumn('SharedKey', 'text', (c) => c.notNull())
    .addColumn('CreatedTime', 'text', (c) => c.notNull())
    .addColumn('LastSeenTime', 'text', (c) => c.notNull().defaultTo(''))
    .execute();

  const now = new Date().toISOString();
  await db.insertInto('Collections').values({ CollectionID: 'SMS00001', Name: 'All Clients', Comment: 'Every approved client of the site', MemberCount: 0, CreatedTime: now, LastChangeTime: now, LastEvaluatedTime: '' }).execute();

  await db.insertInto('SR_TopicTypes').values({ TopicType: 901, TopicTypeName: 'Content deployment' }).execute();
  await db
    .insertInto('SR_StateNames')
    .values([
      { TopicType: 901, StateID: 1, StateName: 'Downloading' },
      { TopicType: 901, StateID: 2, StateName: 'Downloaded and verified' },
      { TopicType: 901, StateID: 3, StateName: 'Failed' },
    ])
    .execute();
}
