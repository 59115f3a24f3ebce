/**
 * The distribution-point service: registering a DP (its URL and a new shared
 * key) and listing DPs. The key is shown once, to the administrator who adds
 * the DP, and given to `cairn dp --key`.
 */
import { CairnError } from '../../shared/errors.ts';
import { findDistributionPoint, insertDistributionPoint, listDistributionPoints } from '../../datastore/distribution-points.ts';
import { DEFAULT_DP_PRIORITY } from '../../datastore/enums.ts';
import type { DistributionPointRow } from '../../datastore/schema.ts';
import { newSharedKey } from '../../dp/protocol.ts';
import { nalPath } from '../site-paths.ts';
import type { SiteContext } from '../site-context.ts';

export const DP_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export interface DpView {
  readonly name: string;
  readonly url: string;
  readonly nalPath: string;
  readonly siteCode: string;
  readonly priority: number;
  readonly pull: boolean;
  readonly created: string;
}

export function dpView(d: DistributionPointRow): DpView {
  return { name: d.Name, url: d.URL, nalPath: d.NALPath, siteCode: d.SiteCode, priority: d.Priority, pull: d.IsPullDP === 1, created: d.CreatedTime };
}

export function normaliseDpUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new CairnError('CAIRN_DP_URL_INVALID', raw);
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.username || u.password || u.search || u.hash) throw new CairnError('CAIRN_DP_URL_INVALID', raw);
  return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, '')}`;
}

export async function addDistributionPoint(ctx: SiteContext, input: { name: string; url: string; priority?: number; key?: string }): Promise<{ dp: DpView; key: string }> {
  if (!DP_NAME_RE.test(input.name)) throw new CairnError('CAIRN_REQUEST_INVALID', `DP name ${JSON.stringify(input.name)} must be 1-63 letters, digits, '.', '_' or '-'`);
  const url = normaliseDpUrl(input.url);
  if ((await findDistributionPoint(ctx.db, { name: input.name })) || (await findDistributionPoint(ctx.db, { url }))) throw new CairnError('CAIRN_DP_EXISTS', `${input.name} (${url})`);
  const key = input.key ?? newSharedKey();
  const row = await insertDistributionPoint(ctx.db, {
    Name: input.name,
    NALPath: nalPath(input.name, ctx.siteCode),
    URL: url,
    SiteCode: ctx.siteCode,
    SharedKey: key,
    Priority: input.priority ?? DEFAULT_DP_PRIORITY,
  });
  return { dp: dpView(row), key };
}

export async function listDpViews(ctx: SiteContext): Promise<DpView[]> {
  return (await listDistributionPoints(ctx.db)).map(dpView);
}
