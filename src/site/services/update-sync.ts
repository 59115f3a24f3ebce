/**
 * The update sync service: what the admin API does for `cairn admin sync …`
 * and `cairn admin updates list`. A sync is asked for the way the seed does
 * it (`Update_SyncStatus.SyncNow`, turned into `SELF.SYN`/`FULL.SYN` by the
 * DB monitor); the status, upstream and criteria are the site's
 * `Update_SyncStatus` row; the update list shows only the published catalog
 * (rows of a sync in progress are above the content version, never shown).
 */
import { normaliseSourceSpec } from '../../catalog/source-spec.ts';
import { findCategory, getSyncStatus, listUpdates, requestSyncNow, setSyncCriteria, setUpstreamSource } from '../../datastore/updates.ts';
import type { StoredUpdate, SyncCriteria } from '../../datastore/updates.ts';
import { CairnError } from '../../shared/errors.ts';
import type { SiteContext } from '../site-context.ts';
import { listUpdatePointViews } from './update-points.ts';
import type { UpdatePointView } from './update-points.ts';

export interface SyncStatusView {
  readonly siteCode: string;
  readonly updateSourceId: string;
  readonly contentVersion: number;
  readonly lastSyncStartTime: string;
  readonly lastSyncEndTime: string;
  /** '', 'succeeded' or 'failed'. */
  readonly lastSyncResult: string;
  readonly lastSyncError: string;
  readonly lastSyncKind: string;
  readonly lastSyncTrigger: string;
  readonly itemsChanged: number;
  readonly rejected: number;
  readonly expired: number;
  /** True while the sync-failure alert is raised. */
  readonly alert: boolean;
  /** A sync is asked for and not yet picked up by the DB monitor. */
  readonly syncRequested: string | null;
  readonly upstream: string;
  readonly criteria: SyncCriteria;
  readonly updatePoints: readonly UpdatePointView[];
}

export async function syncStatusView(ctx: SiteContext): Promise<SyncStatusView> {
  const s = await getSyncStatus(ctx.db, ctx.siteCode);
  return {
    siteCode: s.siteCode,
    updateSourceId: s.updateSourceId,
    contentVersion: s.contentVersion,
    lastSyncStartTime: s.lastSyncStartTime,
    lastSyncEndTime: s.lastSyncEndTime,
    lastSyncResult: s.lastSyncResult,
    lastSyncError: s.lastSyncError,
    lastSyncKind: s.lastSyncKind,
    lastSyncTrigger: s.lastSyncTrigger,
    itemsChanged: s.lastSyncItemsChanged,
    rejected: s.lastSyncRejected,
    expired: s.lastSyncExpired,
    alert: s.syncAlert,
    syncRequested: s.syncNow,
    upstream: s.upstreamSource,
    criteria: s.criteria,
    updatePoints: await listUpdatePointViews(ctx),
  };
}

/** SyncNow (seed 004): sets `Update_SyncStatus.SyncNow`, which the DB monitor turns into `SELF.SYN` or `FULL.SYN`. */
export async function requestSync(ctx: SiteContext, full: boolean): Promise<{ requested: 'SELF' | 'FULL' }> {
  const requested = full ? 'FULL' : 'SELF';
  await requestSyncNow(ctx.db, ctx.siteCode, requested);
  ctx.wake.dbmon();
  return { requested };
}

/** Sets the site's upstream: a URL, `apt:<folder>`, or 'none' (the first update point's own). */
export async function changeUpstream(ctx: SiteContext, spec: string): Promise<SyncStatusView> {
  const value = spec === 'none' ? 'none' : normaliseSourceSpec(spec);
  if (!value) throw new CairnError('CAIRN_SYNC_UPSTREAM_INVALID', 'give a URL, apt:<folder> or none');
  await setUpstreamSource(ctx.db, ctx.siteCode, value);
  return syncStatusView(ctx);
}

async function categoryIds(ctx: SiteContext, values: unknown, type: string, what: string): Promise<string[]> {
  if (values === undefined) return [];
  if (!Array.isArray(values) || !values.every((v) => typeof v === 'string' && v)) throw new CairnError('CAIRN_REQUEST_INVALID', `${what} must be a list of names or GUIDs`);
  const out: string[] = [];
  for (const v of values as string[]) {
    const c = await findCategory(ctx.db, v, type);
    // A GUID the site does not hold yet is accepted: criteria may be set before the first sync.
    if (!c && /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(v)) out.push(v.toLowerCase());
    else if (!c) throw new CairnError('CAIRN_REQUEST_INVALID', `${what}: no ${type} category is named ${JSON.stringify(v.slice(0, 80))} (sync once first, or give its GUID)`);
    else out.push(c.id);
  }
  return [...new Set(out)];
}

/** Sets the sync criteria (names or GUIDs of products and classifications; language codes). The next sync is a full one. */
export async function changeCriteria(ctx: SiteContext, input: { products?: unknown; classifications?: unknown; languages?: unknown }): Promise<SyncStatusView> {
  const languages = input.languages === undefined ? [] : input.languages;
  if (!Array.isArray(languages) || !languages.every((l) => typeof l === 'string' && /^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$/.test(l))) throw new CairnError('CAIRN_REQUEST_INVALID', 'languages must be a list of language codes such as en or pt-BR');
  const criteria: SyncCriteria = {
    products: await categoryIds(ctx, input.products, 'Product', 'products'),
    classifications: await categoryIds(ctx, input.classifications, 'UpdateClassification', 'classifications'),
    languages: languages as string[],
  };
  await setSyncCriteria(ctx.db, ctx.siteCode, criteria);
  return syncStatusView(ctx);
}

export interface UpdateListQuery {
  readonly classification?: string;
  readonly product?: string;
  readonly title?: string;
  readonly superseded?: string;
  readonly limit?: string;
}

/** The published catalog, filtered; classification and product by name or GUID. */
export async function listUpdateViews(ctx: SiteContext, q: UpdateListQuery): Promise<{ contentVersion: number; updates: StoredUpdate[] }> {
  const status = await getSyncStatus(ctx.db, ctx.siteCode);
  const byName = async (v: string | undefined, type: string): Promise<string | undefined> => {
    if (!v) return undefined;
    const c = await findCategory(ctx.db, v, type);
    if (!c) throw new CairnError('CAIRN_REQUEST_INVALID', `no ${type} category is named ${JSON.stringify(v.slice(0, 80))}`);
    return c.id;
  };
  if (q.superseded !== undefined && !['yes', 'no', 'true', 'false'].includes(q.superseded)) throw new CairnError('CAIRN_REQUEST_INVALID', 'superseded must be yes or no');
  const limit = q.limit === undefined ? 1000 : Number(q.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 100000) throw new CairnError('CAIRN_REQUEST_INVALID', 'limit must be 1-100000');
  const classification = await byName(q.classification, 'UpdateClassification');
  const product = await byName(q.product, 'Product');
  const updates = await listUpdates(ctx.db, {
    atContentVersion: status.contentVersion,
    limit,
    ...(classification ? { classification } : {}),
    ...(product ? { product } : {}),
    ...(q.title ? { title: q.title } : {}),
    ...(q.superseded !== undefined ? { superseded: q.superseded === 'yes' || q.superseded === 'true' } : {}),
  });
  return { contentVersion: status.contentVersion, updates };
}
