/**
 * Content location (ADR 0005, `POST /mp/v1/location/content`): which DPs
 * hold a package version and serve this client, best first.
 *
 * The rule (docs/adr/0006-mp-server.md): only DPs whose `PkgStatus` shows the
 * package installed at exactly the asked version; first those in a boundary
 * group one of the client's IPv4 addresses falls in (by DP priority, then
 * name), then, when `mp.locationFallback` is 1, every other DP holding it
 * (`fallback: true`); with 0, a client outside every boundary gets an empty
 * list.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../datastore/schema.ts';
import { dpsHoldingPackage, listBoundaryGroups } from '../datastore/boundaries.ts';
import type { HoldingDp } from '../datastore/boundaries.ts';
import { parseRange, parseSubnet, spanHas } from '../shared/ip-match.ts';
import type { Ipv4Span } from '../shared/ip-match.ts';
import { PACKAGE_SHARE } from '../dp/protocol.ts';

export interface ContentLocation {
  readonly dpName: string;
  readonly url: string;
  readonly packageUrl: string;
  readonly boundaryGroup: string | null;
  readonly fallback: boolean;
}

/** A boundary group as content location uses it: its spans parsed once (src/mp/mp-cache.ts caches them). */
export interface LocationGroup {
  readonly name: string;
  readonly spans: readonly Ipv4Span[];
  readonly dpIds: readonly number[];
}

export function toLocationGroups(groups: readonly { name: string; boundaries: readonly { type: string; value: string }[]; dpIds: readonly number[] }[]): LocationGroup[] {
  return groups.map((g) => ({
    name: g.name,
    spans: g.boundaries.map((b) => (b.type === 'subnet' ? parseSubnet(b.value) : parseRange(b.value))).filter((s): s is Ipv4Span => s !== undefined),
    dpIds: g.dpIds,
  }));
}

export async function locateContent(db: Kysely<Database>, q: { packageId: string; version: number; ipAddresses: readonly string[] }, fallback: boolean): Promise<{ locations: ContentLocation[]; groups: string[] }> {
  const holding = await dpsHoldingPackage(db, q.packageId, q.version);
  if (!holding.length) return { locations: [], groups: [] };
  return locateAmong(holding, toLocationGroups(await listBoundaryGroups(db)), q, fallback);
}

/** The rule above, on rows already read: the DPs holding the version and every boundary group (in name order). */
export function locateAmong(holding: readonly HoldingDp[], allGroups: readonly LocationGroup[], q: { packageId: string; ipAddresses: readonly string[] }, fallback: boolean): { locations: ContentLocation[]; groups: string[] } {
  if (!holding.length) return { locations: [], groups: [] };
  const groups = allGroups.filter((g) => g.spans.some((span) => spanHas(span, q.ipAddresses)));
  const groupOf = new Map<number, string>();
  for (const g of groups) for (const dp of g.dpIds) if (!groupOf.has(dp)) groupOf.set(dp, g.name);
  const base = (url: string) => url.replace(/\/+$/, '');
  const toLocation = (dp: HoldingDp, group: string | null): ContentLocation => ({
    dpName: dp.name,
    url: base(dp.url),
    packageUrl: `${base(dp.url)}/${PACKAGE_SHARE}/${q.packageId}/`,
    boundaryGroup: group,
    fallback: group === null,
  });
  const inBoundary = holding.filter((dp) => groupOf.has(dp.dpId)).map((dp) => toLocation(dp, groupOf.get(dp.dpId)!));
  const rest = fallback ? holding.filter((dp) => !groupOf.has(dp.dpId)).map((dp) => toLocation(dp, null)) : [];
  return { locations: [...inBoundary, ...rest], groups: groups.map((g) => g.name) };
}
