/**
 * Update-point location at the MP (spec 30, section 2, step 3; the seed's
 * `MP_GetWSUSServerLocations`): which of the site's software update points
 * a client may scan against, for an update source at a content version.
 *
 * The rule (docs/adr/0010-scan-agent.md): update points are not members of
 * boundary groups (those list DPs), so boundaries decide only whether the
 * client is served at all. A client is in the site when one of its addresses
 * falls in any boundary of any boundary group, or when the site has no
 * boundaries at all; a client outside every boundary is served only when
 * `mp.locationFallback` is 1 (the default), as content location does. A
 * served client gets every update point of the site whose stored content
 * version (`UpdatePoints.ContentVersion`, set by each sync) is at least the
 * requested one, in install order (SUPID): the first installed syncs first,
 * so it is the one most likely to be current.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../datastore/schema.ts';
import { listBoundaryGroups } from '../datastore/boundaries.ts';
import { listUpdatePoints } from '../datastore/update-points.ts';
import { parseRange, parseSubnet, spanHas } from '../shared/ip-match.ts';
import type { WsusLocationRecord, WsusLocationRequest } from '../shared/wsus-location.ts';

export interface UpdatePointLocationResult {
  readonly records: WsusLocationRecord[];
  /** The boundary groups one of the client's addresses falls in. */
  readonly groups: string[];
  /** How the client was judged: inside a boundary, no boundaries on the site, outside (served by fallback or not). */
  readonly reach: 'boundary' | 'no-boundaries' | 'fallback' | 'outside';
  /** Update points left out because they hold an older content version: `name (version)`. */
  readonly tooOld: string[];
}

function serverName(url: string, name: string): string {
  try {
    return new URL(url).hostname || name;
  } catch {
    return name;
  }
}

export async function locateUpdatePoints(db: Kysely<Database>, siteCode: string, q: WsusLocationRequest, fallback: boolean): Promise<UpdatePointLocationResult> {
  const addresses = q.ipAddresses.map((a) => a.address);
  const all = await listBoundaryGroups(db);
  const groups = all.filter((g) =>
    g.boundaries.some((b) => {
      const span = b.type === 'subnet' ? parseSubnet(b.value) : parseRange(b.value);
      return span !== undefined && spanHas(span, addresses);
    }),
  );
  const anyBoundary = all.some((g) => g.boundaries.length > 0);
  const reach = groups.length ? 'boundary' : !anyBoundary ? 'no-boundaries' : fallback ? 'fallback' : 'outside';
  if (reach === 'outside') return { records: [], groups: [], reach, tooOld: [] };
  const points = await listUpdatePoints(db, siteCode);
  const records: WsusLocationRecord[] = [];
  const tooOld: string[] = [];
  for (const p of points) {
    const version = Number(p.ContentVersion);
    if (version >= q.version) records.push({ url: p.URL.replace(/\/+$/, ''), serverName: serverName(p.URL, p.Name), version });
    else tooOld.push(`${p.Name} (${version})`);
  }
  return { records, groups: groups.map((g) => g.name), reach, tooOld };
}
