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
import { parseRange, parseSubnet, spanHas } from '../shared/ip-match.ts';
import { PACKAGE_SHARE } from '../dp/protocol.ts';

export interface ContentLocation {
  readonly dpName: string;
  readonly url: string;
  readonly packageUrl: string;
  readonly boundaryGroup: string | null;
  readonly fallback: boolean;
}

export async function locateContent(db: Kysely<Database>, q: { packageId: string; version: number; ipAddresses: readonly string[] }, fallback: boolean): Promise<{ locations: ContentLocation[]; groups: string[] }> {
  const holding = await dpsHoldingPackage(db, q.packageId, q.version);
  if (!holding.length) return { locations: [], groups: [] };
  const groups = (await listBoundaryGroups(db)).filter((g) =>
    g.boundaries.some((b) => {
      const span = b.type === 'subnet' ? parseSubnet(b.value) : parseRange(b.value);
      return span !== undefined && spanHas(span, q.ipAddresses);
    }),
  );
  const groupOf = new Map<number, string>();
  for (const g of groups) for (const dp of g.dpIds) if (!groupOf.has(dp)) groupOf.set(dp, g.name);
  const base = (url: string) => url.replace(/\/+$/, '');
  const toLocation = (dp: (typeof holding)[number], group: string | null): ContentLocation => ({
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
