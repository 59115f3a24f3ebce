/**
 * SQL for the update catalog (`CI_CategoryInstances`, `CI_ConfigurationItems`,
 * `CI_ConfigurationItemCategories`) and the site's sync status
 * (`Update_SyncStatus`). The import (src/catalog/catalog-import.ts) decides
 * what to sync; this file only reads and writes rows.
 *
 * Idempotence: an item is identified by its GUID; a page write inserts new
 * items, replaces an item whose incoming revision is higher than the stored
 * one, and leaves every other item alone, so the same page written twice
 * changes nothing the second time. Each page is one transaction that also adds
 * its changed count to `Update_SyncStatus.PendingChanges`, so a sync killed
 * between pages still bumps the content version when the next sync finishes
 * (seed 004: the content version moves only when a phase completes).
 */
import { randomUUID } from 'node:crypto';
import type { ExpressionBuilder, Kysely, Transaction } from 'kysely';
import type { Category, Update } from '../catalog/catalog.ts';
import type { Database } from './schema.ts';
import { nowIso } from './time.ts';

type Db = Kysely<Database> | Transaction<Database>;

/** Ours: the CIType_ID of a software update. */
export const CI_TYPE_SOFTWARE_UPDATE = 1;
/** Rows per INSERT: well under SQLite's and PostgreSQL's limits on bound parameters. */
const ROWS_PER_INSERT = 200;
/** IDs per `IN (…)` list. */
const IDS_PER_QUERY = 500;

export interface PageResult {
  readonly inserted: number;
  readonly updated: number;
  readonly unchanged: number;
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Keeps the highest revision of each ID in a page (an upstream may repeat an item). */
function latestById<T extends { id: string; revision: number }>(items: readonly T[]): T[] {
  const byId = new Map<string, T>();
  for (const it of items) {
    const seen = byId.get(it.id);
    if (!seen || it.revision > seen.revision) byId.set(it.id, it);
  }
  return [...byId.values()];
}

async function storedRevisions(trx: Db, table: 'CI_ConfigurationItems' | 'CI_CategoryInstances', ids: readonly string[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const part of chunks(ids, IDS_PER_QUERY)) {
    if (table === 'CI_ConfigurationItems') {
      const rows = await trx.selectFrom('CI_ConfigurationItems').select(['CI_UniqueID as id', 'RevisionNumber as rev']).where('CI_UniqueID', 'in', part).execute();
      for (const r of rows) out.set(r.id, Number(r.rev));
    } else {
      const rows = await trx.selectFrom('CI_CategoryInstances').select(['CategoryInstance_UniqueID as id', 'RevisionNumber as rev']).where('CategoryInstance_UniqueID', 'in', part).execute();
      for (const r of rows) out.set(r.id, Number(r.rev));
    }
  }
  return out;
}

async function addPending(trx: Db, siteCode: string, changed: number): Promise<void> {
  if (!changed) return;
  await trx
    .updateTable('Update_SyncStatus')
    .set((eb) => ({ PendingChanges: eb('PendingChanges', '+', changed) }))
    .where('SiteCode', '=', siteCode)
    .execute();
}

/**
 * Writes one page of categories in one transaction. `contentVersion` is the
 * version the changes will appear in (the site's current one plus one).
 */
export async function upsertCategoryPage(db: Kysely<Database>, siteCode: string, page: readonly Category[], contentVersion: number): Promise<PageResult> {
  const items = latestById(page);
  return db.transaction().execute(async (trx) => {
    const stored = await storedRevisions(trx, 'CI_CategoryInstances', items.map((c) => c.id));
    const now = nowIso();
    const row = (c: Category) => ({
      CategoryInstance_UniqueID: c.id,
      CategoryTypeName: c.type,
      CategoryInstanceName: c.name,
      ParentCategoryInstance_UniqueID: c.parent ?? null,
      RevisionNumber: c.revision,
      ContentVersion: contentVersion,
      DateLastModified: now,
    });
    const fresh = items.filter((c) => !stored.has(c.id));
    const newer = items.filter((c) => stored.has(c.id) && c.revision > stored.get(c.id)!);
    for (const part of chunks(fresh, ROWS_PER_INSERT)) await trx.insertInto('CI_CategoryInstances').values(part.map(row)).execute();
    for (const c of newer) {
      const { CategoryInstance_UniqueID: _id, ...set } = row(c);
      await trx.updateTable('CI_CategoryInstances').set(set).where('CategoryInstance_UniqueID', '=', c.id).execute();
    }
    await addPending(trx, siteCode, fresh.length + newer.length);
    return { inserted: fresh.length, updated: newer.length, unchanged: items.length - fresh.length - newer.length };
  });
}

/** Writes one page of updates in one transaction; see `upsertCategoryPage`. */
export async function upsertUpdatePage(db: Kysely<Database>, siteCode: string, page: readonly Update[], contentVersion: number): Promise<PageResult> {
  const items = latestById(page);
  return db.transaction().execute(async (trx) => {
    const stored = await storedRevisions(trx, 'CI_ConfigurationItems', items.map((u) => u.id));
    const now = nowIso();
    const row = (u: Update) => ({
      CI_UniqueID: u.id,
      CIType_ID: CI_TYPE_SOFTWARE_UPDATE,
      RevisionNumber: u.revision,
      Title: u.title,
      ArticleID: u.articleId,
      Classification: u.classification,
      Severity: u.severity,
      ReleaseDate: u.releaseDate,
      Digest: JSON.stringify(u),
      ContentVersion: contentVersion,
      DateCreated: now,
      DateLastModified: now,
    });
    const fresh = items.filter((u) => !stored.has(u.id));
    const newer = items.filter((u) => stored.has(u.id) && u.revision > stored.get(u.id)!);
    for (const part of chunks(fresh, ROWS_PER_INSERT)) await trx.insertInto('CI_ConfigurationItems').values(part.map(row)).execute();
    for (const u of newer) {
      const { CI_UniqueID: _id, DateCreated: _created, ...set } = row(u);
      // A new revision of an expired update is current again until expiry looks at it anew.
      await trx.updateTable('CI_ConfigurationItems').set({ ...set, IsExpired: 0 }).where('CI_UniqueID', '=', u.id).execute();
    }
    for (const part of chunks(newer.map((u) => u.id), IDS_PER_QUERY)) {
      await trx.deleteFrom('CI_ConfigurationItemCategories').where('CI_UniqueID', 'in', part).execute();
      await trx.deleteFrom('CI_UpdateSupersedence').where('CI_UniqueID', 'in', part).execute();
    }
    const links = [...fresh, ...newer].flatMap((u) => [...new Set(u.products)].map((p) => ({ CI_UniqueID: u.id, CategoryInstance_UniqueID: p })));
    for (const part of chunks(links, ROWS_PER_INSERT * 3)) await trx.insertInto('CI_ConfigurationItemCategories').values(part).execute();
    const supersedence = [...fresh, ...newer].flatMap((u) => [...new Set(u.supersedes)].map((s) => ({ CI_UniqueID: u.id, Superseded_UniqueID: s })));
    for (const part of chunks(supersedence, ROWS_PER_INSERT * 3)) await trx.insertInto('CI_UpdateSupersedence').values(part).execute();
    await addPending(trx, siteCode, fresh.length + newer.length);
    return { inserted: fresh.length, updated: newer.length, unchanged: items.length - fresh.length - newer.length };
  });
}

export interface UpdateFilter {
  /** GUID of an UpdateClassification category. */
  readonly classification?: string;
  /** GUID of a Product category. */
  readonly product?: string;
  readonly severity?: string;
  readonly articleId?: string;
  /** Case-insensitive substring of the title (`%` and `_` are LIKE wildcards). */
  readonly title?: string;
  /** Only updates visible at this content version (default: any stored row). */
  readonly atContentVersion?: number;
  /** true: only updates superseded by an update the site holds; false: only those not superseded. */
  readonly superseded?: boolean;
  readonly limit?: number;
  readonly offset?: number;
}

/** A stored update: the validated update plus where and when it was stored. */
export type StoredUpdate = Update & { readonly contentVersion: number; readonly dateLastModified: string };

/** Updates matching `filter`, ordered by release date then ID. */
export async function listUpdates(db: Db, filter: UpdateFilter = {}): Promise<StoredUpdate[]> {
  let q = db.selectFrom('CI_ConfigurationItems as ci').select(['ci.Digest', 'ci.ContentVersion', 'ci.DateLastModified']).where('ci.IsExpired', '=', 0);
  if (filter.classification) q = q.where('ci.Classification', '=', filter.classification.toLowerCase());
  if (filter.severity) q = q.where('ci.Severity', '=', filter.severity);
  if (filter.articleId) q = q.where('ci.ArticleID', '=', filter.articleId);
  if (filter.title) q = q.where((eb) => eb(eb.fn('lower', ['ci.Title']), 'like', `%${filter.title!.toLowerCase()}%`));
  if (filter.atContentVersion !== undefined) q = q.where('ci.ContentVersion', '<=', filter.atContentVersion);
  if (filter.superseded !== undefined) {
    const by = (eb: ExpressionBuilder<Database & { ci: Database['CI_ConfigurationItems'] }, 'ci'>) =>
      eb.exists(eb.selectFrom('CI_UpdateSupersedence as s').innerJoin('CI_ConfigurationItems as b', 'b.CI_UniqueID', 's.CI_UniqueID').select('s.CI_UniqueID').whereRef('s.Superseded_UniqueID', '=', 'ci.CI_UniqueID'));
    q = filter.superseded ? q.where((eb) => by(eb)) : q.where((eb) => eb.not(by(eb)));
  }
  if (filter.product) {
    const product = filter.product.toLowerCase();
    q = q.where((eb) =>
      eb.exists(eb.selectFrom('CI_ConfigurationItemCategories as l').select('l.CI_UniqueID').whereRef('l.CI_UniqueID', '=', 'ci.CI_UniqueID').where('l.CategoryInstance_UniqueID', '=', product)),
    );
  }
  const rows = await q
    .orderBy('ci.ReleaseDate')
    .orderBy('ci.CI_UniqueID')
    .limit(filter.limit ?? 1000)
    .offset(filter.offset ?? 0)
    .execute();
  return rows.map((r) => ({ ...(JSON.parse(r.Digest) as Update), contentVersion: Number(r.ContentVersion), dateLastModified: r.DateLastModified }));
}

export async function countUpdates(db: Db): Promise<number> {
  const r = await db.selectFrom('CI_ConfigurationItems').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
  return Number(r.n);
}

export async function listCategories(db: Db, type?: string): Promise<Category[]> {
  let q = db.selectFrom('CI_CategoryInstances').selectAll();
  if (type) q = q.where('CategoryTypeName', '=', type);
  const rows = await q.orderBy('CategoryTypeName').orderBy('CategoryInstanceName').execute();
  return rows.map((r) => ({
    id: r.CategoryInstance_UniqueID,
    revision: Number(r.RevisionNumber),
    type: r.CategoryTypeName as Category['type'],
    name: r.CategoryInstanceName,
    ...(r.ParentCategoryInstance_UniqueID ? { parent: r.ParentCategoryInstance_UniqueID } : {}),
  }));
}

export interface SyncStatus {
  readonly siteCode: string;
  readonly updateSourceId: string;
  readonly contentVersion: number;
  readonly syncNow: string | null;
  readonly sourceUrl: string;
  readonly anchor: string;
  readonly pendingChanges: number;
  readonly lastSyncStartTime: string;
  readonly lastSyncEndTime: string;
  readonly lastSyncResult: string;
  readonly lastSyncError: string;
  readonly lastSyncItemsChanged: number;
  readonly syncAlert: boolean;
  readonly upstreamSource: string;
  readonly criteria: SyncCriteria;
  readonly lastSyncKind: string;
  readonly lastSyncTrigger: string;
  readonly lastSyncRejected: number;
  readonly lastSyncExpired: number;
}

/**
 * Which updates the top-level site syncs into its database (seed 004: "criteria
 * specified … only at the top-level site"). An empty list means "all". Products
 * and classifications are category GUIDs. Languages are kept for catalogs that
 * carry them; the catalog format has no language yet, so they select nothing.
 */
export interface SyncCriteria {
  readonly products: readonly string[];
  readonly classifications: readonly string[];
  readonly languages: readonly string[];
}

export const NO_CRITERIA: SyncCriteria = Object.freeze({ products: [], classifications: [], languages: [] });

function parseCriteria(text: string): SyncCriteria {
  if (!text) return NO_CRITERIA;
  try {
    const o = JSON.parse(text) as Partial<SyncCriteria>;
    const list = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
    return { products: list(o.products), classifications: list(o.classifications), languages: list(o.languages) };
  } catch {
    return NO_CRITERIA;
  }
}

/** The site's sync status, creating its row (with a new update source GUID) on first use. */
export async function getSyncStatus(db: Db, siteCode: string): Promise<SyncStatus> {
  await db
    .insertInto('Update_SyncStatus')
    .values({ SiteCode: siteCode, UpdateSource_UniqueID: randomUUID(), SyncNow: null })
    .onConflict((oc) => oc.column('SiteCode').doNothing())
    .execute();
  const r = await db.selectFrom('Update_SyncStatus').selectAll().where('SiteCode', '=', siteCode).executeTakeFirstOrThrow();
  return {
    siteCode: r.SiteCode,
    updateSourceId: r.UpdateSource_UniqueID,
    contentVersion: Number(r.ContentVersion),
    syncNow: r.SyncNow,
    sourceUrl: r.SourceURL,
    anchor: r.Anchor,
    pendingChanges: Number(r.PendingChanges),
    lastSyncStartTime: r.LastSyncStartTime,
    lastSyncEndTime: r.LastSyncEndTime,
    lastSyncResult: r.LastSyncResult,
    lastSyncError: r.LastSyncError,
    lastSyncItemsChanged: Number(r.LastSyncItemsChanged),
    syncAlert: Number(r.SyncAlert) === 1,
    upstreamSource: r.UpstreamSource,
    criteria: parseCriteria(r.SyncCriteria),
    lastSyncKind: r.LastSyncKind,
    lastSyncTrigger: r.LastSyncTrigger,
    lastSyncRejected: Number(r.LastSyncRejected),
    lastSyncExpired: Number(r.LastSyncExpired),
  };
}

/** Records the start of a sync (and, when given, its kind and trigger) and returns the status it starts from. */
export async function recordSyncStart(db: Kysely<Database>, siteCode: string, what: { kind?: string; trigger?: string } = {}): Promise<SyncStatus> {
  await getSyncStatus(db, siteCode);
  await db
    .updateTable('Update_SyncStatus')
    .set({ LastSyncStartTime: nowIso(), ...(what.kind ? { LastSyncKind: what.kind } : {}), ...(what.trigger ? { LastSyncTrigger: what.trigger } : {}) })
    .where('SiteCode', '=', siteCode)
    .execute();
  return getSyncStatus(db, siteCode);
}

/**
 * Completes a sync in one transaction: moves the content version by one when
 * changes are pending (from this sync or an earlier one that did not finish),
 * stores the new anchor, clears the alert. Returns the status after.
 */
export async function recordSyncSuccess(db: Kysely<Database>, siteCode: string, done: { sourceUrl: string; anchor: string; itemsChanged: number; rejected?: number; expired?: number }): Promise<SyncStatus> {
  await db.transaction().execute(async (trx) => {
    const r = await trx.selectFrom('Update_SyncStatus').select(['ContentVersion', 'PendingChanges']).where('SiteCode', '=', siteCode).executeTakeFirstOrThrow();
    const bump = Number(r.PendingChanges) > 0 ? 1 : 0;
    await trx
      .updateTable('Update_SyncStatus')
      .set({
        ContentVersion: Number(r.ContentVersion) + bump,
        PendingChanges: 0,
        SourceURL: done.sourceUrl,
        Anchor: done.anchor,
        LastSyncEndTime: nowIso(),
        LastSyncResult: 'succeeded',
        LastSyncError: '',
        LastSyncItemsChanged: done.itemsChanged,
        LastSyncRejected: done.rejected ?? 0,
        LastSyncExpired: done.expired ?? 0,
        SyncAlert: 0,
      })
      .where('SiteCode', '=', siteCode)
      .execute();
  });
  return getSyncStatus(db, siteCode);
}

/** Records the end of a whole sync (after its replicas) and the malformed items both phases rejected. */
export async function recordSyncEnd(db: Kysely<Database>, siteCode: string, done: { rejected: number }): Promise<void> {
  await db.updateTable('Update_SyncStatus').set({ LastSyncEndTime: nowIso(), LastSyncRejected: done.rejected }).where('SiteCode', '=', siteCode).execute();
}

/** Records a failed sync: the alert is raised; the content version and anchor stay as they were. */
export async function recordSyncFailure(db: Kysely<Database>, siteCode: string, reason: string): Promise<SyncStatus> {
  await db.updateTable('Update_SyncStatus').set({ LastSyncEndTime: nowIso(), LastSyncResult: 'failed', LastSyncError: reason, SyncAlert: 1 }).where('SiteCode', '=', siteCode).execute();
  return getSyncStatus(db, siteCode);
}

/** Forgets the anchor, so the next sync is a full one (`FULL.SYN`, or a new upstream). */
export async function clearSyncAnchor(db: Db, siteCode: string): Promise<void> {
  await db.updateTable('Update_SyncStatus').set({ Anchor: '' }).where('SiteCode', '=', siteCode).execute();
}

/**
 * Expires the updates superseded by an update the site has held since
 * `cutoff` or earlier (ISO time), in one transaction: `IsExpired = 1`, and the
 * row moves to `contentVersion` (the version the sync in progress will
 * publish), counted in `PendingChanges`. Returns how many were expired.
 */
export async function expireSuperseded(db: Kysely<Database>, siteCode: string, cutoff: string, contentVersion: number): Promise<number> {
  return db.transaction().execute(async (trx) => {
    const r = await trx
      .updateTable('CI_ConfigurationItems')
      .set({ IsExpired: 1, ContentVersion: contentVersion, DateLastModified: nowIso() })
      .where('IsExpired', '=', 0)
      .where((eb) =>
        eb.exists(
          eb
            .selectFrom('CI_UpdateSupersedence as s')
            .innerJoin('CI_ConfigurationItems as b', 'b.CI_UniqueID', 's.CI_UniqueID')
            .select('s.CI_UniqueID')
            .whereRef('s.Superseded_UniqueID', '=', 'CI_ConfigurationItems.CI_UniqueID')
            .where('b.DateCreated', '<=', cutoff)
            .where('b.IsExpired', '=', 0),
        ),
      )
      .executeTakeFirst();
    const n = Number(r.numUpdatedRows);
    await addPending(trx, siteCode, n);
    return n;
  });
}

/** Asks the DB monitor for a sync (seed 004: `update Update_SyncStatus set SyncNow = 'SELF'`); `FULL` for a full one. */
export async function requestSyncNow(db: Kysely<Database>, siteCode: string, kind: 'SELF' | 'FULL'): Promise<void> {
  await getSyncStatus(db, siteCode);
  await db.updateTable('Update_SyncStatus').set({ SyncNow: kind }).where('SiteCode', '=', siteCode).execute();
}

/** Clears the request once its `.SYN` is in the inbox (seed 004: `set SyncNow = null`). */
export async function clearSyncNow(db: Db, siteCode: string): Promise<void> {
  await db.updateTable('Update_SyncStatus').set({ SyncNow: null }).where('SiteCode', '=', siteCode).execute();
}

/** Sets the upstream the site's first update point syncs from; a new upstream means a full sync next (its anchors are not ours). */
export async function setUpstreamSource(db: Kysely<Database>, siteCode: string, source: string): Promise<SyncStatus> {
  await getSyncStatus(db, siteCode);
  await db.updateTable('Update_SyncStatus').set({ UpstreamSource: source }).where('SiteCode', '=', siteCode).execute();
  return getSyncStatus(db, siteCode);
}

/**
 * Sets the sync criteria. Updates left out before were never stored, so the
 * anchor is cleared: the next sync is a full one and brings them in.
 */
export async function setSyncCriteria(db: Kysely<Database>, siteCode: string, criteria: SyncCriteria): Promise<SyncStatus> {
  await getSyncStatus(db, siteCode);
  const none = !criteria.products.length && !criteria.classifications.length && !criteria.languages.length;
  await db.updateTable('Update_SyncStatus').set({ SyncCriteria: none ? '' : JSON.stringify(criteria), Anchor: '' }).where('SiteCode', '=', siteCode).execute();
  return getSyncStatus(db, siteCode);
}

/** The category with this name (case-insensitive) or GUID, if any. */
export async function findCategory(db: Db, nameOrId: string, type?: string): Promise<Category | undefined> {
  const all = await listCategories(db, type);
  const key = nameOrId.toLowerCase();
  return all.find((c) => c.id === key) ?? all.find((c) => c.name.toLowerCase() === key);
}
