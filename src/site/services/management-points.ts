/**
 * The management points service: registering a remote MP (`cairn admin mp
 * add NAME`) gives it a key its file dispatch signs with (HMAC, like a DP's;
 * docs/adr/0006-mp-server.md). The key is shown once and stored in
 * `ManagementPoints.SharedKey`.
 */
import { CairnError } from '../../shared/errors.ts';
import { newSharedKey } from '../../dp/protocol.ts';
import { findManagementPoint, insertManagementPoint, listManagementPoints } from '../../datastore/management-points.ts';
import type { SiteContext } from '../site-context.ts';

export interface MpView {
  readonly name: string;
  readonly createdTime: string;
  readonly lastSeenTime: string;
}

export async function addManagementPoint(ctx: SiteContext, name: string): Promise<{ mp: MpView; key: string }> {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(name)) throw new CairnError('CAIRN_REQUEST_INVALID', 'an MP name has 1-64 letters, digits, . _ -');
  if (await findManagementPoint(ctx.db, name)) throw new CairnError('CAIRN_MP_EXISTS', name);
  const key = newSharedKey();
  const row = await insertManagementPoint(ctx.db, name, key);
  return { mp: { name: row.Name, createdTime: row.CreatedTime, lastSeenTime: row.LastSeenTime }, key };
}

export async function listMpViews(ctx: SiteContext): Promise<MpView[]> {
  return (await listManagementPoints(ctx.db)).map((r) => ({ name: r.Name, createdTime: r.CreatedTime, lastSeenTime: r.LastSeenTime }));
}
