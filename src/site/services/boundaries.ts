/**
 * The boundaries service: boundary groups, their IPv4 subnets and ranges,
 * and their DPs (content location, src/mp/content-location.ts). Read by the
 * MP on every location request, so a change applies at once.
 */
import { CairnError } from '../../shared/errors.ts';
import { parseRange, parseSubnet } from '../../shared/ip-match.ts';
import { addBoundary, addBoundaryGroupDp, findBoundaryGroup, insertBoundaryGroup, listBoundaryGroups } from '../../datastore/boundaries.ts';
import type { BoundaryGroupView, BoundaryType } from '../../datastore/boundaries.ts';
import { findDistributionPoint } from '../../datastore/distribution-points.ts';
import type { SiteContext } from '../site-context.ts';

async function requireGroup(ctx: SiteContext, name: string): Promise<{ GroupID: number; Name: string }> {
  const g = await findBoundaryGroup(ctx.db, name);
  if (!g) throw new CairnError('CAIRN_BOUNDARY_GROUP_NOT_FOUND', name.slice(0, 80));
  return g;
}

export async function listBoundaryGroupViews(ctx: SiteContext): Promise<BoundaryGroupView[]> {
  return (await listBoundaryGroups(ctx.db)).map(({ name, boundaries, distributionPoints }) => ({ name, boundaries, distributionPoints }));
}

async function view(ctx: SiteContext, name: string): Promise<BoundaryGroupView> {
  return (await listBoundaryGroupViews(ctx)).find((g) => g.name.toLowerCase() === name.toLowerCase())!;
}

export async function createBoundaryGroup(ctx: SiteContext, name: string): Promise<BoundaryGroupView> {
  if (!name.trim() || name.length > 128) throw new CairnError('CAIRN_REQUEST_INVALID', 'a boundary group name has 1-128 characters');
  if (await findBoundaryGroup(ctx.db, name)) throw new CairnError('CAIRN_BOUNDARY_GROUP_EXISTS', name);
  await insertBoundaryGroup(ctx.db, name.trim());
  return view(ctx, name.trim());
}

export async function addBoundaryToGroup(ctx: SiteContext, group: string, type: string, value: string): Promise<{ group: BoundaryGroupView; added: boolean }> {
  const g = await requireGroup(ctx, group);
  if (type !== 'subnet' && type !== 'range') throw new CairnError('CAIRN_BOUNDARY_INVALID', `type ${type.slice(0, 40)} is not subnet or range`);
  const ok = type === 'subnet' ? parseSubnet(value) : parseRange(value);
  if (!ok) throw new CairnError('CAIRN_BOUNDARY_INVALID', value.slice(0, 80));
  const added = await addBoundary(ctx.db, g.GroupID, type as BoundaryType, type === 'range' ? value.replace(/\s+/g, '') : value.trim());
  return { group: await view(ctx, g.Name), added };
}

export async function addDpToGroup(ctx: SiteContext, group: string, dpName: string): Promise<{ group: BoundaryGroupView; added: boolean }> {
  const g = await requireGroup(ctx, group);
  const dp = await findDistributionPoint(ctx.db, { name: dpName });
  if (!dp) throw new CairnError('CAIRN_DP_NOT_FOUND', dpName.slice(0, 80));
  const added = await addBoundaryGroupDp(ctx.db, g.GroupID, Number(dp.DPID));
  return { group: await view(ctx, g.Name), added };
}
