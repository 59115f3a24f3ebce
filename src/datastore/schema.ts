/**
 * The site database's tables as TypeScript types, for Kysely. Table and column
 * names follow the seeds (spec 10, "Tables the seeds show") so that the
 * documented queries mean something to an administrator. Times are ISO 8601
 * text in UTC on both engines, so they sort and compare the same way.
 * Migration 0001 creates them; `test/datastore/` checks it on both engines.
 */
import type { Generated, Insertable, Selectable } from 'kysely';

export interface SitesTable {
  SiteCode: string;
  SiteName: string;
  ParentSiteCode: string | null;
}

/** Site control settings (the seeds' site control file), one row per setting. */
export interface SiteControlTable {
  Name: string;
  Value: string;
  LastModified: string;
}

export interface SMSPackagesTable {
  PkgID: string;
  Name: string;
  Description: Generated<string>;
  Source: string;
  SourceSite: string;
  StoredPkgPath: Generated<string>;
  StoredPkgVersion: Generated<number>;
  SourceVersion: Generated<number>;
  SourceDate: string;
  /** Size of the stored version in KB, as the seeds log it. */
  SourceSize: Generated<number>;
  SourceFileCount: Generated<number>;
  PackageType: Generated<number>;
  /** 1 high, 2 medium, 3 low. */
  Priority: Generated<number>;
  /** SHA-256 (algorithm 32780) of the stored version's definition. */
  Hash: Generated<string>;
  HashVersion: Generated<number>;
  UpdateMask: Generated<number>;
  /** 0 none, 1 update, 2 add, 3 delete. */
  Action: Generated<number>;
  /** Why the last processing failed, empty when it did not. */
  LastError: Generated<string>;
  CreatedTime: string;
}

export interface PkgServersTable {
  PkgID: string;
  NALPath: string;
  DPID: number;
  SiteCode: string;
  LastRefresh: string;
  RefreshTrigger: Generated<number>;
  UpdateMask: Generated<number>;
  /** 0 nothing pending, 1 update (with RefreshTrigger 1: redistribute), 2 add, 3 remove, 4 validate. */
  Action: Generated<number>;
}

/** Migration 0002: the last content validation of a package on a DP. */
export interface ContentValidationsTable {
  PkgID: string;
  NALPath: string;
  DPID: number;
  SourceVersion: number;
  ValidatedTime: string;
  Valid: number;
  Problems: Generated<string>;
}

export interface PkgNotificationTable {
  NotificationID: Generated<number>;
  PkgID: string;
  Priority: number;
  /** 1 update/refresh, 2 created, 4 DP added. */
  Type: number;
  TimeKey: string;
}

export interface PkgStatusTable {
  PkgStatusID: Generated<number>;
  ID: string;
  /** 1 site row, 2 DP row. */
  Type: number;
  SiteCode: string;
  /** The DP's NAL path for Type 2; empty for the site row. */
  PkgServer: string;
  SourceVersion: Generated<number>;
  Personality: Generated<number>;
  Location: Generated<string>;
  ShareName: Generated<string>;
  HTTPUrl: Generated<string>;
  SigURL: Generated<string>;
  /** REFERENCE.md: 0 none, 1 sent, 2 received, 3 installed, 4 retry, 5 failed, 6 removed, ... */
  Status: Generated<number>;
  State: Generated<number>;
  /** Why the DP is retrying or failed; empty otherwise. */
  LastError: Generated<string>;
  UpdateTime: string;
}

export interface DistributionPointsTable {
  DPID: Generated<number>;
  Name: string;
  NALPath: string;
  URL: string;
  SiteCode: string;
  IsPullDP: Generated<number>;
  IsPeerDP: Generated<number>;
  /** Lower sends first; default 200. */
  Priority: Generated<number>;
  /** The secret the site and the DP share to authenticate each other. */
  SharedKey: string;
  CreatedTime: string;
}

export interface DistributionJobsTable {
  JobID: Generated<number>;
  DPID: number;
  PkgID: string;
  PackageVersion: number;
  /** REFERENCE.md: 0 pending, 1 ready, 2 started, 3 in progress, 4 pending restart, 5 complete, 6 failed, 7 canceled. */
  State: Generated<number>;
  /** 1 distribute/update, 2 redistribute. */
  Action: Generated<number>;
  SendAction: Generated<string>;
  CreationTime: string;
  LastUpdateTime: string;
  /** When a job in State 4 may be tried again. */
  RestartTime: Generated<string>;
  RetryCount: Generated<number>;
  LastError: Generated<string>;
}

/** The queue the triggers fill and the DB notification monitor drains. */
export interface ChangeNotificationsTable {
  ChangeID: Generated<number>;
  TableName: string;
  Operation: string;
  TriggerName: string;
  KeyValue: string;
  Created: string;
}

export interface StatusMessagesTable {
  RecordID: Generated<number>;
  MessageID: number;
  Severity: string;
  Level: string;
  Source: string;
  Component: string;
  MachineName: string;
  SiteCode: string;
  ProcessID: number;
  ThreadID: number;
  Time: string;
  /** `<svf file>#<index>`: makes a re-read `.SVF` insert nothing twice. */
  DedupKey: string;
}

export interface StatusMessageInsStrsTable {
  RecordID: number;
  InsStrIndex: number;
  InsStrValue: string;
}

export interface StatusMessageAttributesTable {
  RecordID: number;
  AttributeID: number;
  AttributeValue: string;
}

export interface IdSequencesTable {
  Name: string;
  NextValue: number;
}

/**
 * Migration 0004: the update catalog as configuration items (spec 20) and the
 * sync status. A row's `ContentVersion` is the content version of the update
 * source in which it first appears as it is now: rows above the site's
 * `Update_SyncStatus.ContentVersion` belong to a sync that has not finished.
 */
export interface CICategoryInstancesTable {
  CategoryInstance_UniqueID: string;
  /** Company, ProductFamily, Product or UpdateClassification. */
  CategoryTypeName: string;
  CategoryInstanceName: string;
  ParentCategoryInstance_UniqueID: string | null;
  RevisionNumber: number;
  ContentVersion: number;
  DateLastModified: string;
}

export interface CIConfigurationItemsTable {
  CI_ID: Generated<number>;
  /** The update's GUID. */
  CI_UniqueID: string;
  /** Ours: 1 software update (the only type so far). */
  CIType_ID: number;
  RevisionNumber: number;
  Title: string;
  ArticleID: string;
  /** GUID of the UpdateClassification category. */
  Classification: string;
  Severity: string;
  ReleaseDate: string;
  /** The whole validated update as JSON (the product's "SDM package digest"), rules included. */
  Digest: string;
  ContentVersion: number;
  IsExpired: Generated<number>;
  DateCreated: string;
  DateLastModified: string;
}

/** Which products (categories) each update belongs to. */
export interface CIConfigurationItemCategoriesTable {
  CI_UniqueID: string;
  CategoryInstance_UniqueID: string;
}

/** One row per site (seed 004). Columns besides SiteCode and SyncNow are ours. */
export interface UpdateSyncStatusTable {
  SiteCode: string;
  UpdateSource_UniqueID: string;
  ContentVersion: Generated<number>;
  /** 'SELF' when the admin API asked for a sync (seed 004), null otherwise. */
  SyncNow: string | null;
  /** The upstream the anchor belongs to. */
  SourceURL: Generated<string>;
  /** The upstream's anchor after the last completed sync; empty for none. */
  Anchor: Generated<string>;
  /** Items changed by pages already committed but not yet counted in a content version. */
  PendingChanges: Generated<number>;
  LastSyncStartTime: Generated<string>;
  LastSyncEndTime: Generated<string>;
  /** '', 'succeeded' or 'failed'. */
  LastSyncResult: Generated<string>;
  LastSyncError: Generated<string>;
  LastSyncItemsChanged: Generated<number>;
  /** 1 while the sync-failure alert is raised. */
  SyncAlert: Generated<number>;
  /** Migration 0006: the upstream the first update point syncs from: `http(s)://…`, `apt:<folder>`, or '' (the update point's own). */
  UpstreamSource: Generated<string>;
  /** Migration 0006: JSON `{ products, classifications, languages }` (SyncCriteria in sync-status.ts); '' for all. */
  SyncCriteria: Generated<string>;
  /** Migration 0006: 'delta' or 'full'. */
  LastSyncKind: Generated<string>;
  /** Migration 0006: 'schedule', 'retry', 'local request' (SyncNow or a hand-dropped file), 'parent request', 'restart'. */
  LastSyncTrigger: Generated<string>;
  /** Migration 0006: malformed items rejected by the last sync (both phases). */
  LastSyncRejected: Generated<number>;
  /** Migration 0006: superseded updates the last sync expired. */
  LastSyncExpired: Generated<number>;
}

/** Migration 0006: the site's update points; install order is `SUPID` ascending (the first syncs from upstream, the others are replicas). */
export interface UpdatePointsTable {
  SUPID: Generated<number>;
  Name: string;
  URL: string;
  /** The key the site signs its control calls to this update point with (never sent). */
  SharedKey: string;
  SiteCode: string;
  DateAdded: string;
  /** The update point's own content version after its last sync. */
  ContentVersion: Generated<number>;
  LastSyncTime: Generated<string>;
  LastSyncResult: Generated<string>;
  LastSyncError: Generated<string>;
}

/** Migration 0006: update `CI_UniqueID` supersedes update `Superseded_UniqueID`. */
export interface CIUpdateSupersedenceTable {
  CI_UniqueID: string;
  Superseded_UniqueID: string;
}

/** Migration 0010 (ADR 0013): a counter bumped by triggers, in the changing transaction. */
export interface ChangeCountersTable {
  Name: string;
  Counter: number;
}

export interface Database {
  Sites: SitesTable;
  SiteControl: SiteControlTable;
  SMSPackages: SMSPackagesTable;
  PkgServers: PkgServersTable;
  ContentValidations: ContentValidationsTable;
  PkgNotification: PkgNotificationTable;
  PkgStatus: PkgStatusTable;
  DistributionPoints: DistributionPointsTable;
  DistributionJobs: DistributionJobsTable;
  ChangeNotifications: ChangeNotificationsTable;
  StatusMessages: StatusMessagesTable;
  StatusMessageInsStrs: StatusMessageInsStrsTable;
  StatusMessageAttributes: StatusMessageAttributesTable;
  IdSequences: IdSequencesTable;
  StateMsg: StateMsgTable;
  StateMsgHistory: StateMsgTable;
  SR_TopicTypes: SRTopicTypesTable;
  SR_StateNames: SRStateNamesTable;
  CI_CategoryInstances: CICategoryInstancesTable;
  CI_ConfigurationItems: CIConfigurationItemsTable;
  CI_ConfigurationItemCategories: CIConfigurationItemCategoriesTable;
  Update_SyncStatus: UpdateSyncStatusTable;
  ClientRegistration: ClientRegistrationTable;
  Policy: PolicyTable;
  PolicyAssignment: PolicyAssignmentTable;
  ResPolicyMap: ResPolicyMapTable;
  SettingsPolicy: SettingsPolicyTable;
  Collections: CollectionsTable;
  CollectionRules: CollectionRulesTable;
  CollectionMembers: CollectionMembersTable;
  ContentDeployments: ContentDeploymentsTable;
  BoundaryGroups: BoundaryGroupsTable;
  Boundaries: BoundariesTable;
  BoundaryGroupSiteSystems: BoundaryGroupSiteSystemsTable;
  ManagementPoints: ManagementPointsTable;
  UpdatePoints: UpdatePointsTable;
  CI_UpdateSupersedence: CIUpdateSupersedenceTable;
  Update_ComplianceStatus: UpdateComplianceStatusTable;
  CI_AuthList: CIAuthListTable;
  CI_AuthListMembers: CIAuthListMembersTable;
  CI_UpdateDeployments: CIUpdateDeploymentsTable;
  Update_ComplianceSummary: UpdateComplianceSummaryTable;
  CI_AuthListSummary: ComplianceCountsTable & { AuthListID: number };
  Deployment_ComplianceSummary: ComplianceCountsTable & { AssignmentID: number };
  SR_SummaryTasks: SRSummaryTasksTable;
  /** Migration 0010 (ADR 0013): change counters; row `mp` moves with every change an MP caches. */
  ChangeCounters: ChangeCountersTable;
}

export type PackageRow = Selectable<SMSPackagesTable>;
export type NewPackageRow = Insertable<SMSPackagesTable>;
export type DistributionPointRow = Selectable<DistributionPointsTable>;
export type DistributionJobRow = Selectable<DistributionJobsTable>;
export type PkgStatusRow = Selectable<PkgStatusTable>;
export type PkgServerRow = Selectable<PkgServersTable>;

export type ContentValidationRow = Selectable<ContentValidationsTable>;
/**
 * Migration 0003 (state system): the latest state per (client, topic type,
 * topic ID) in `StateMsg`, every valid message once in `StateMsgHistory`
 * (same columns), and the friendly names.
 */
export interface StateMsgTable {
  ClientID: string;
  TopicType: number;
  TopicID: string;
  StateID: number;
  Criticality: Generated<number>;
  SerialNumber: number;
  /** When the client raised the message (ISO 8601 UTC). */
  MessageTime: string;
  NetBIOSName: Generated<string>;
  IDType: Generated<number>;
  UserName: Generated<string>;
  UserSID: Generated<string>;
  UserFlags: Generated<number>;
  /** JSON list of the UserParameters' Param strings. */
  UserParams: Generated<string>;
  /** When the state system stored it (ISO 8601 UTC). */
  ReceivedTime: string;
}

export interface SRTopicTypesTable {
  TopicType: number;
  TopicTypeName: string;
}

export interface SRStateNamesTable {
  TopicType: number;
  StateID: number;
  StateName: string;
}

export type StateMsgRow = Selectable<StateMsgTable>;

/**
 * Migration 0005 (management point and policy provider; the migration's
 * comment describes each table).
 */
export interface ClientRegistrationTable {
  ResourceID: Generated<number>;
  /** `GUID:<UUID upper case>`. */
  ClientID: string;
  NetBIOSName: string;
  /** Ed25519 SPKI PEM. */
  PublicKey: string;
  /** SHA-256 of the DER public key, hex upper. */
  KeyFingerprint: string;
  /** JSON list of IPv4/IPv6 addresses as the client last reported them. */
  IPAddresses: Generated<string>;
  OSFamily: Generated<string>;
  OSVersion: Generated<string>;
  AgentVersion: Generated<string>;
  /** `approved`, `pending` or `revoked`. */
  ApprovalStatus: string;
  RegisteredTime: string;
  ApprovedTime: Generated<string>;
  LastSeenTime: string;
}

export interface PolicyTable {
  /** `{guid}`, lower case as in the seeds. */
  PolicyID: string;
  /** `N.00`. */
  Version: string;
  /** `ClientSettings`, `ContentDeployment`, `UpdateSource`. */
  Category: string;
  /** The exact body bytes (JSON text) clients download and the signature covers. */
  Body: string;
  /** SHA-256 of Body, hex upper (algorithm 32780). */
  BodyHash: string;
  HashAlgId: Generated<number>;
  /** base64url Ed25519 signature of the site signing key over Body. */
  BodySignature: string;
  /** Hash of the body without its ID and version: the version moves only when this does. */
  SourceCRC: string;
  LastModified: string;
}

export interface PolicyAssignmentTable {
  PADBID: Generated<number>;
  PolicyAssignmentID: string;
  PolicyID: string;
  Version: string;
  /** The collection it targets; null for site-wide assignments (every approved client). */
  CollectionID: string | null;
  LastModified: string;
}

export interface ResPolicyMapTable {
  ResourceID: number;
  PADBID: number;
}

export interface SettingsPolicyTable {
  /** The site code. */
  SourceID: string;
  /** `ClientSettings` or `UpdateSource`. */
  SourceType: string;
  PolicyID: string;
  PolicyAssignmentID: string;
  PADBID: number;
  SourceCRC: string;
}

export interface CollectionsTable {
  CollectionID: string;
  Name: string;
  Comment: Generated<string>;
  MemberCount: Generated<number>;
  CreatedTime: string;
  LastChangeTime: string;
  LastEvaluatedTime: Generated<string>;
}

export interface CollectionRulesTable {
  RuleID: Generated<number>;
  CollectionID: string;
  /** `direct`, `iprange`, `subnet` or `name`. */
  RuleType: string;
  Value: string;
  CreatedTime: string;
}

export interface CollectionMembersTable {
  CollectionID: string;
  ResourceID: number;
}

export interface ContentDeploymentsTable {
  DeploymentID: string;
  PkgID: string;
  CollectionID: string;
  PolicyID: string;
  PolicyAssignmentID: string;
  PADBID: number | null;
  SourceCRC: Generated<string>;
  CreatedTime: string;
}

export interface BoundaryGroupsTable {
  GroupID: Generated<number>;
  Name: string;
  CreatedTime: string;
}

export interface BoundariesTable {
  BoundaryID: Generated<number>;
  GroupID: number;
  /** `subnet` or `range`. */
  BoundaryType: string;
  Value: string;
  CreatedTime: string;
}

export interface BoundaryGroupSiteSystemsTable {
  GroupID: number;
  DPID: number;
}

export interface ManagementPointsTable {
  MPID: Generated<number>;
  Name: string;
  SharedKey: string;
  CreatedTime: string;
  LastSeenTime: Generated<string>;
}

export type ClientRow = Selectable<ClientRegistrationTable>;
export type PolicyRow = Selectable<PolicyTable>;
export type CollectionRow = Selectable<CollectionsTable>;
export type CollectionRuleRow = Selectable<CollectionRulesTable>;
export type ContentDeploymentRow = Selectable<ContentDeploymentsTable>;
export type ManagementPointRow = Selectable<ManagementPointsTable>;

/** Migration 0007 (compliance; the migration's comment describes each table). */
export interface UpdateComplianceStatusTable {
  ClientID: string;
  CI_UniqueID: string;
  /** Topic type 500: 0 unknown, 1 not required, 2 required, 3 installed. */
  Status: number;
  SerialNumber: number;
  MessageTime: string;
  LastStatusTime: string;
}

export interface CIAuthListTable {
  AuthListID: Generated<number>;
  Name: string;
  CreatedTime: string;
  LastModified: string;
}

export interface CIAuthListMembersTable {
  AuthListID: number;
  CI_UniqueID: string;
  AddedTime: string;
}

export interface CIUpdateDeploymentsTable {
  AssignmentID: Generated<number>;
  DeploymentID: string;
  AuthListID: number;
  CollectionID: string;
  CreatedTime: string;
}

export interface UpdateComplianceSummaryTable {
  CI_UniqueID: string;
  NumRequired: number;
  NumInstalled: number;
  NumNotRequired: number;
  NumUnknown: number;
  NumTotal: number;
  SummaryTime: string;
}

export interface ComplianceCountsTable {
  NumCompliant: number;
  NumNonCompliant: number;
  NumUnknown: number;
  NumTotal: number;
  SummaryTime: string;
}

export interface SRSummaryTasksTable {
  TaskName: string;
  ScheduleSeconds: number;
  LastRunStart: Generated<string>;
  LastRunEnd: Generated<string>;
  LastRunResult: Generated<string>;
  LastRunError: Generated<string>;
  LastRowsTouched: Generated<number>;
  LastDurationMs: Generated<number>;
  LastTrigger: Generated<string>;
}
