/**
 * SQL for boundaries (`BoundaryGroups`, `Boundaries`,
 * `BoundaryGroupSiteSystems`), migration 0005, and the DPs that hold a
 * package version (`PkgStatus`), for content location. The MP's location
 * service decides the order; this file only reads and writes rows.
 */
import type { Kysely, Transaction } from 'kysely';
import type { Database } from './schema.ts';
import { PKG_STATUS, PKG_STATUS_TYPE } from './enums.ts';
import { nowIso } from './time.ts';

type Db = Kysely<Database> | Transaction<Database>;

export const BOUNDARY_TYPES = ['subnet', 'range'] as const;
export type BoundaryType = (typeof BOUNDARY_TYPES)[number];

export async function insertBoundaryGroup(db: Db, name: string): Promise<{ GroupID: number; Name: string }> {
  const r = await db.insertInto('BoundaryGroups').values({ Name: name, CreatedTime: nowIso() }).returning(['GroupID', 'Name']).executeTakeFirstOrThrow();
  return { GroupID: Number(r.GroupID), Name: r.Name };
}

export async function findBoundaryGroup(db: Db, name: string): Promise<{ GroupID: number; Name: string } | undefined> {
  const r = await db.selectFrom('BoundaryGroups').select(['GroupID', 'Name']).where((eb) => eb(eb.fn('lower', ['Name']), '=', name.toLowerCase())).executeTakeFirst();
  return r ? { GroupID: Number(r.GroupID), Name: r.Name } : undefined;
}

export async function addBoundary(db: Db, groupId: number, type: BoundaryType, value: string): Promise<boolean> {
  const r = await db
    .insertInto('Boundaries')
    .values({ GroupID: groupId, BoundaryType: type, Value: value, CreatedTime: nowIso() })
    .onConflict((oc) => oc.columns(['GroupID', 'BoundaryType', 'Value']).doNothing())
    .executeTakeFirst();
  return Number(r.numInsertedOrUpdatedRows ?? 0) > 0;
}

export async function addBoundaryGroupDp(db: Db, groupId: number, dpId: number): Promise<boolean> {
  const r = await db
    .insertInto('BoundaryGroupSiteSystems')
    .values({ GroupID: groupId, DPID: dpId })
    .onConflict((oc) => oc.columns(['GroupID', 'DPID']).doNothing())
    .executeTakeFirst();
  return Number(r.numInsertedOrUpdatedRows ?? 0) > 0;
}

export interface BoundaryGroupView {
  readonly name: string;
  readonly boundaries: { type: BoundaryType; value: string }[];
  /** DP names. */
  readonly distributionPoints: string[];
}

export async function listBoundaryGroups(db: Db): Promise<(BoundaryGroupView & { groupId: number; dpIds: number[] })[]> {
  const groups = await db.selectFrom('BoundaryGroups').select(['GroupID', 'Name']).orderBy('Name').execute();
  const bounds = await db.selectFrom('Boundaries').select(['GroupID', 'BoundaryType', 'Value']).orderBy('BoundaryID').execute();
  const dps = await db
    .selectFrom('BoundaryGroupSiteSystems as s')
    .innerJoin('DistributionPoints as d', 'd.DPID', 's.DPID')
    .select(['s.GroupID', 'd.DPID', 'd.Name'])
    .orderBy('d.Priority')
    .orderBy('d.Name')
    .execute();
  return groups.map((g) => ({
    groupId: Number(g.GroupID),
    name: g.Name,
    boundaries: bounds.filter((b) => Number(b.GroupID) === Number(g.GroupID)).map((b) => ({ type: b.BoundaryType as BoundaryType, value: b.Value })),
    distributionPoints: dps.filter((d) => Number(d.GroupID) === Number(g.GroupID)).map((d) => d.Name),
    dpIds: dps.filter((d) => Number(d.GroupID) === Number(g.GroupID)).map((d) => Number(d.DPID)),
  }));
}

export interface HoldingDp {
  readonly dpId: number;
  readonly name: string;
  readonly url: string;
  readonly priority: number;
}

/** The query of {@link dpsHoldingPackage}, unexecuted (the MP's cache compiles it once: src/mp/mp-cache.ts). */
export function dpsHoldingPackageQuery(db: Db, pkgId: string, version: number) {
  return db
    .selectFrom('PkgStatus as s')
    .innerJoin('DistributionPoints as d', 'd.NALPath', 's.PkgServer')
    .select(['d.DPID', 'd.Name', 'd.URL', 'd.Priority'])
    .where('s.ID', '=', pkgId)
    .where('s.Type', '=', PKG_STATUS_TYPE.dp)
    .where('s.Status', '=', PKG_STATUS.installed)
    .where('s.SourceVersion', '=', version)
    .orderBy('d.Priority')
    .orderBy('d.Name');
}

/** A row of {@link dpsHoldingPackageQuery} as a {@link HoldingDp}. */
export function toHoldingDp(r: { DPID: number; Name: string; URL: string; Priority: number }): HoldingDp {
  return { dpId: Number(r.DPID), name: r.Name, url: r.URL, priority: Number(r.Priority) };
}

/** DPs whose `PkgStatus` row shows the package installed at exactly `version`, by DP priority then name. */
export async function dpsHoldingPackage(db: Db, pkgId: string, version: number): Promise<HoldingDp[]> {
  return (await dpsHoldingPackageQuery(db, pkgId, version).execute()).map(toHoldingDp);
}
