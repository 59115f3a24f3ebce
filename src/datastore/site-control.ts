/**
 * Site control settings (the seeds' site control file) stored in
 * `SiteControl`, one row per setting, and the typed view the components read.
 * Changed only through the admin API, which audits the change.
 */
import type { Kysely } from 'kysely';
import type { Database } from './schema.ts';
import { nowIso } from './time.ts';

/**
 * Component settings and their defaults. Defaults follow REFERENCE.md where it
 * gives one; the others are ours and say so.
 */
export const SETTING_DEFAULTS = {
  /** REFERENCE.md: distribution manager, 3 packages at once. */
  'distmgr.packageThreads': 3,
  /** REFERENCE.md: 5 threads (DPs) per package. */
  'distmgr.dpThreadsPerPackage': 5,
  /** Ours: package transfer manager sending threads (jobs at once). */
  'pkgxfermgr.sendingThreads': 3,
  /** Ours: files uploaded in parallel by one sending thread. */
  'pkgxfermgr.filesInParallel': 4,
  /** Ours: attempts before a job to an unreachable DP fails for good. */
  'pkgxfermgr.maxRetries': 30,
  /** Ours: unit of the retry delays (see RETRY_STEPS in the package transfer manager). */
  'pkgxfermgr.retryBaseMs': 10000,
  /** Ours: periodic rescan of every component, milliseconds. */
  'components.rescanMs': 2000,
  /** Ours: status manager batch size (files per transaction). */
  'statmgr.batchSize': 200,
  /** Ours (the product validates weekly by default): seconds between content validations of each package on each DP; 0 turns the schedule off. */
  'distmgr.validationIntervalSeconds': 604800,
  /** Ours: state system batch size (.SMX files per transaction). */
  'statesys.batchSize': 200,
  /** Ours: state system worker threads that parse .SMX files. */
  'statesys.parseThreads': 2,
  /** Ours (docs/adr/0006-mp-server.md): 1 approves a registering client at once, 0 leaves it pending for an administrator. Read on every registration. */
  'mp.autoApprove': 1,
  /** Ours: content location fallback. 1: after the DPs of the client's boundary groups, every other DP holding the content; 0: none. Read on every request. */
  'mp.locationFallback': 1,
  /** ADR 0005: the ClientSettings policy's values (seconds); the policy provider reads them on every pass. */
  'client.policyPollSeconds': 3600,
  'client.stateReportingSeconds': 900,
  'client.statusReportingSeconds': 900,
  /** REFERENCE.md: the first compliance scan falls at a random moment within 2 hours of a new UpdateSource policy (ADR 0010); 0: at once. */
  'client.scanWindowSeconds': 7200,
  /** The product's software update scan schedule, every 7 days, in seconds (ADR 0010). */
  'client.scanScheduleSeconds': 604800,
  /** The product's default sync schedule (every 7 days), in seconds; 0 turns scheduled syncs off. Read on every pass. */
  'wsyncmgr.scheduleSeconds': 604800,
  /** Ours: seconds after a failed sync before it is retried; 0 waits for the schedule. Read on every pass. */
  'wsyncmgr.retrySeconds': 3600,
  /** Ours: superseded updates expire this many days after the site stored the update superseding them (0: at the sync that brings it). */
  'wsyncmgr.expireSupersededAfterDays': 90,
  /** Ours: how often, in milliseconds, the sync manager asks an update point how its sync is going. */
  'wsyncmgr.pollMs': 500,
  /** Ours: items per page when the site database syncs from its update point. */
  'wsyncmgr.pageSize': 1000,
  /** REFERENCE.md, summarisation: hourly for the update status, update group status and assignment compliance tasks; 24 h for migrate update status and delete aged status. Seconds; 0 turns the schedule off. Read on every pass. */
  'summarizer.updateStatusSeconds': 3600,
  'summarizer.updateGroupStatusSeconds': 3600,
  'summarizer.assignmentComplianceSeconds': 3600,
  'summarizer.migrateUpdateStatusSeconds': 86400,
  'summarizer.deleteAgedStatusSeconds': 86400,
  /** Ours: delete aged status removes update state whose message time is older than this many days. */
  'summarizer.agedStatusDays': 90,
} as const;

export type SettingName = keyof typeof SETTING_DEFAULTS;
export type SiteSettings = { readonly [K in SettingName]: number };
export const SETTING_NAMES = Object.keys(SETTING_DEFAULTS) as SettingName[];

export async function readSettings(db: Kysely<Database>): Promise<SiteSettings> {
  const rows = await db.selectFrom('SiteControl').select(['Name', 'Value']).execute();
  const out: Record<string, number> = { ...SETTING_DEFAULTS };
  for (const r of rows) if (r.Name in SETTING_DEFAULTS && Number.isFinite(Number(r.Value))) out[r.Name] = Number(r.Value);
  return Object.freeze(out) as SiteSettings;
}

export async function writeSetting(db: Kysely<Database>, name: SettingName, value: number): Promise<void> {
  const now = nowIso();
  await db
    .insertInto('SiteControl')
    .values({ Name: name, Value: String(value), LastModified: now })
    .onConflict((oc) => oc.column('Name').doUpdateSet({ Value: String(value), LastModified: now }))
    .execute();
}

export async function ensureSite(db: Kysely<Database>, siteCode: string, siteName: string): Promise<void> {
  await db.insertInto('Sites').values({ SiteCode: siteCode, SiteName: siteName, ParentSiteCode: null }).onConflict((oc) => oc.column('SiteCode').doNothing()).execute();
}
