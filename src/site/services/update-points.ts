/**
 * The software update point service: registering an update point (its URL
 * and a new key the site signs its control calls with) and listing the
 * site's update points in install order. The key is shown once, to the
 * administrator who adds the update point, and given to `cairn sup --key`.
 */
import { CairnError } from '../../shared/errors.ts';
import { newSharedKey } from '../../dp/protocol.ts';
import { findUpdatePoint, insertUpdatePoint, listUpdatePoints } from '../../datastore/update-points.ts';
import type { UpdatePointRow } from '../../datastore/update-points.ts';
import type { SiteContext } from '../site-context.ts';

export const SUP_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export interface UpdatePointView {
  readonly name: string;
  readonly url: string;
  /** 1 for the first installed (syncs from upstream); the others are replicas of it. */
  readonly installOrder: number;
  readonly role: 'primary' | 'replica';
  readonly contentVersion: number;
  readonly lastSyncTime: string;
  readonly lastSyncResult: string;
  readonly lastSyncError: string;
  readonly added: string;
}

export function updatePointViews(rows: readonly UpdatePointRow[]): UpdatePointView[] {
  return rows.map((r, i) => ({
    name: r.Name,
    url: r.URL,
    installOrder: i + 1,
    role: i === 0 ? 'primary' : 'replica',
    contentVersion: Number(r.ContentVersion),
    lastSyncTime: r.LastSyncTime,
    lastSyncResult: r.LastSyncResult,
    lastSyncError: r.LastSyncError,
    added: r.DateAdded,
  }));
}

export function normaliseSupUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new CairnError('CAIRN_SUP_URL_INVALID', raw.slice(0, 200));
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.username || u.password || u.search || u.hash) throw new CairnError('CAIRN_SUP_URL_INVALID', raw.slice(0, 200));
  return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, '')}`;
}

export async function addUpdatePoint(ctx: SiteContext, input: { name: string; url: string; key?: string }): Promise<{ sup: UpdatePointView; key: string }> {
  if (!SUP_NAME_RE.test(input.name)) throw new CairnError('CAIRN_REQUEST_INVALID', `update point name ${JSON.stringify(input.name.slice(0, 80))} must be 1-63 letters, digits, '.', '_' or '-'`);
  const url = normaliseSupUrl(input.url);
  if ((await findUpdatePoint(ctx.db, { name: input.name })) || (await findUpdatePoint(ctx.db, { url }))) throw new CairnError('CAIRN_SUP_EXISTS', `${input.name} (${url})`);
  const key = input.key ?? newSharedKey();
  await insertUpdatePoint(ctx.db, { name: input.name, url, key, siteCode: ctx.siteCode });
  const views = updatePointViews(await listUpdatePoints(ctx.db, ctx.siteCode));
  return { sup: views.find((v) => v.name === input.name)!, key };
}

export async function listUpdatePointViews(ctx: SiteContext): Promise<UpdatePointView[]> {
  return updatePointViews(await listUpdatePoints(ctx.db, ctx.siteCode));
}
