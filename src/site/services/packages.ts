/**
 * The package service: what the admin API's package calls decide (the seeds'
 * SMS Provider methods). It validates input, writes rows in one transaction,
 * and wakes the DB monitor; the components do the rest.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { CairnError } from '../../shared/errors.ts';
import { writeInboxFile } from '../../shared/inbox.ts';
import {
  addPackageServer,
  getPackage,
  insertNotification,
  insertPackage,
  listPackages,
  listPackageServers,
  markPackageForDeletion,
  nextPackageId,
  refreshPackageSource,
  requestPackageServerAction,
} from '../../datastore/packages.ts';
import { findDistributionPoint } from '../../datastore/distribution-points.ts';
import { listPkgStatus } from '../../datastore/pkg-status.ts';
import { ACTION, NOTIFICATION_TYPE, PKG_STATUS_NAMES, PKG_STATUS_TYPE, PRIORITY } from '../../datastore/enums.ts';
import type { DistributionPointRow, PackageRow } from '../../datastore/schema.ts';
import type { SiteContext } from '../site-context.ts';

export const PACKAGE_ID_RE = /^[A-Z0-9]{3}[0-9A-F]{5}$/;

/** Checks that a source folder exists and can be listed, with the reason when not. */
export async function checkSourceFolder(source: string): Promise<string> {
  const abs = path.resolve(source);
  let st;
  try {
    st = await fsp.stat(abs);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new CairnError('CAIRN_PACKAGE_SOURCE_MISSING', abs);
    throw new CairnError('CAIRN_PACKAGE_SOURCE_UNREADABLE', `${abs}: ${code ?? (err as Error).message}`);
  }
  if (!st.isDirectory()) throw new CairnError('CAIRN_PACKAGE_SOURCE_UNREADABLE', `${abs} is not a folder`);
  try {
    await fsp.readdir(abs);
  } catch (err) {
    throw new CairnError('CAIRN_PACKAGE_SOURCE_UNREADABLE', `${abs}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return abs;
}

export interface CreatePackageInput {
  readonly name: string;
  readonly source: string;
  readonly description?: string;
  readonly priority?: keyof typeof PRIORITY;
}

/** Flow 1 step 1: the package row (SourceVersion 1) and a type 2 notification. */
export async function createPackage(ctx: SiteContext, input: CreatePackageInput): Promise<PackageRow> {
  const name = input.name.trim();
  if (!name || name.length > 255) throw new CairnError('CAIRN_PACKAGE_NAME_INVALID', JSON.stringify(input.name));
  const source = await checkSourceFolder(input.source);
  const priority = PRIORITY[input.priority ?? 'medium'];
  const pkgId = await ctx.db.transaction().execute(async (trx) => {
    const id = await nextPackageId(trx, ctx.siteCode);
    await insertPackage(trx, { PkgID: id, Name: name, Description: input.description ?? '', Source: source, SourceSite: ctx.siteCode, Priority: priority });
    await insertNotification(trx, id, NOTIFICATION_TYPE.created, priority);
    return id;
  });
  ctx.wake.dbmon();
  return (await getPackage(ctx.db, pkgId))!;
}

export async function requirePackage(ctx: SiteContext, pkgId: string): Promise<PackageRow> {
  if (!PACKAGE_ID_RE.test(pkgId)) throw new CairnError('CAIRN_PACKAGE_NOT_FOUND', pkgId);
  const pkg = await getPackage(ctx.db, pkgId);
  if (!pkg) throw new CairnError('CAIRN_PACKAGE_NOT_FOUND', pkgId);
  return pkg;
}

/** Flow 2 step 1 (AddDistributionPoints): one package-server row with Action 2 per DP. */
export async function distributePackage(ctx: SiteContext, pkgId: string, dpNames: readonly string[]): Promise<{ packageId: string; distributionPoints: string[] }> {
  if (!dpNames.length) throw new CairnError('CAIRN_REQUEST_INVALID', 'name at least one distribution point');
  const pkg = await requirePackage(ctx, pkgId);
  requireNotDeleting(pkg);
  const dps = await requireDps(ctx, dpNames);
  await ctx.db.transaction().execute(async (trx) => {
    for (const dp of dps) await addPackageServer(trx, pkg.PkgID, { DPID: Number(dp.DPID), NALPath: dp.NALPath, SiteCode: dp.SiteCode });
  });
  ctx.wake.dbmon();
  return { packageId: pkg.PkgID, distributionPoints: dps.map((d) => d.Name) };
}

/** Looks up DPs by name; every name must exist. */
async function requireDps(ctx: SiteContext, dpNames: readonly string[]): Promise<DistributionPointRow[]> {
  const dps: DistributionPointRow[] = [];
  for (const name of new Set(dpNames)) {
    const dp = await findDistributionPoint(ctx.db, { name });
    if (!dp) throw new CairnError('CAIRN_DP_NOT_FOUND', name);
    dps.push(dp);
  }
  return dps;
}

/** The package's servers among `dps` (all of them when `dps` is empty); a named DP the package is not on is an error. */
async function serversOf(ctx: SiteContext, pkg: PackageRow, dpNames: readonly string[]): Promise<string[]> {
  const servers = (await listPackageServers(ctx.db, pkg.PkgID)).filter((s) => s.Action !== ACTION.delete);
  if (!dpNames.length) return servers.map((s) => s.NALPath);
  const dps = await requireDps(ctx, dpNames);
  return dps.map((dp) => {
    if (!servers.some((s) => s.NALPath === dp.NALPath)) throw new CairnError('CAIRN_PACKAGE_NOT_ON_DP', `package ${pkg.PkgID} is not on ${dp.Name}`);
    return dp.NALPath;
  });
}

/** Refuses work on a package that is being deleted. */
function requireNotDeleting(pkg: PackageRow): void {
  if (pkg.Action === ACTION.delete) throw new CairnError('CAIRN_REQUEST_INVALID', `package ${pkg.PkgID} is being deleted`);
}

/**
 * Flow 4 step 1 (RefreshPkgSource): the next source version, which the
 * distribution manager snapshots and sends to every DP the package is on.
 * The source folder is checked first, so a vanished source is reported at
 * once and nothing changes; one that vanishes after this check fails in the
 * distribution manager (2306, 2302) and the DPs keep the version they have.
 */
export async function updatePackage(ctx: SiteContext, pkgId: string, opts: { readonly verifyAll?: boolean } = {}): Promise<{ packageId: string; sourceVersion: number; verifyAll: boolean }> {
  const pkg = await requirePackage(ctx, pkgId);
  requireNotDeleting(pkg);
  await checkSourceFolder(pkg.Source);
  // `--verify-all`: the distribution manager's next snapshot of this package re-hashes every file (the marker goes once that snapshot is recorded).
  if (opts.verifyAll) await writeInboxFile(ctx.paths.distmgrBox, verifyAllMarker(pkg.PkgID), `${new Date().toISOString()}\n`);
  const sourceVersion = await ctx.db.transaction().execute((trx) => refreshPackageSource(trx, pkg.PkgID, pkg.Priority));
  ctx.wake.dbmon();
  return { packageId: pkg.PkgID, sourceVersion, verifyAll: opts.verifyAll === true };
}

/** The inbox file in `distmgr.box` that asks for a snapshot without the quick check: `<PkgID>.VFY`. */
export function verifyAllMarker(pkgId: string): string {
  return `${pkgId}.VFY`;
}

/** Flow 5: a transfer job with Action 2 to each named DP, re-sending every file. */
export async function redistributePackage(ctx: SiteContext, pkgId: string, dpNames: readonly string[]): Promise<{ packageId: string; distributionPoints: string[] }> {
  if (!dpNames.length) throw new CairnError('CAIRN_REQUEST_INVALID', 'name at least one distribution point');
  const pkg = await requirePackage(ctx, pkgId);
  requireNotDeleting(pkg);
  const nalPaths = await serversOf(ctx, pkg, dpNames);
  await ctx.db.transaction().execute((trx) => requestPackageServerAction(trx, pkg.PkgID, nalPaths, ACTION.update, 1));
  ctx.wake.dbmon();
  return { packageId: pkg.PkgID, distributionPoints: [...new Set(dpNames)] };
}

/** Removes the package from the named DPs (package-server Action 3): "removal pending", then "removed". */
export async function removePackageFromDps(ctx: SiteContext, pkgId: string, dpNames: readonly string[]): Promise<{ packageId: string; distributionPoints: string[] }> {
  if (!dpNames.length) throw new CairnError('CAIRN_REQUEST_INVALID', 'name at least one distribution point');
  const pkg = await requirePackage(ctx, pkgId);
  const nalPaths = await serversOf(ctx, pkg, dpNames);
  await ctx.db.transaction().execute((trx) => requestPackageServerAction(trx, pkg.PkgID, nalPaths, ACTION.delete));
  ctx.wake.dbmon();
  return { packageId: pkg.PkgID, distributionPoints: [...new Set(dpNames)] };
}

/** Validates the package's content on the named DPs (every DP it is on when none is named). */
export async function validatePackage(ctx: SiteContext, pkgId: string, dpNames: readonly string[]): Promise<{ packageId: string; distributionPoints: string[] }> {
  const pkg = await requirePackage(ctx, pkgId);
  requireNotDeleting(pkg);
  const nalPaths = await serversOf(ctx, pkg, dpNames);
  if (!nalPaths.length) throw new CairnError('CAIRN_PACKAGE_NOT_ON_DP', `package ${pkg.PkgID} is not on any distribution point`);
  await ctx.db.transaction().execute((trx) => requestPackageServerAction(trx, pkg.PkgID, nalPaths, ACTION.validate));
  ctx.wake.dbmon();
  const names = await ctx.db.selectFrom('DistributionPoints').select(['Name', 'NALPath']).where('NALPath', 'in', nalPaths).orderBy('Name').execute();
  return { packageId: pkg.PkgID, distributionPoints: names.map((n) => n.Name) };
}

/** Deletes the package: removed from every DP first, then its rows and its content on the site. */
export async function deletePackage(ctx: SiteContext, pkgId: string): Promise<{ packageId: string; distributionPoints: number }> {
  const pkg = await requirePackage(ctx, pkgId);
  const servers = await listPackageServers(ctx.db, pkg.PkgID);
  await ctx.db.transaction().execute((trx) => markPackageForDeletion(trx, pkg.PkgID));
  ctx.wake.dbmon();
  return { packageId: pkg.PkgID, distributionPoints: servers.length };
}

export interface PackageView {
  readonly packageId: string;
  readonly name: string;
  readonly source: string;
  readonly sourceVersion: number;
  readonly storedVersion: number;
  readonly sizeKb: number;
  readonly fileCount: number;
  readonly hash: string;
  readonly priority: number;
  readonly lastError: string;
  /** True while a `package delete` is removing it from its DPs. */
  readonly deleting: boolean;
}

export function packageView(p: PackageRow): PackageView {
  return {
    packageId: p.PkgID,
    name: p.Name,
    source: p.Source,
    sourceVersion: p.SourceVersion,
    storedVersion: p.StoredPkgVersion,
    sizeKb: Number(p.SourceSize),
    fileCount: p.SourceFileCount,
    hash: p.Hash,
    priority: p.Priority,
    lastError: p.LastError,
    deleting: p.Action === ACTION.delete,
  };
}

export async function listPackageViews(ctx: SiteContext): Promise<PackageView[]> {
  return (await listPackages(ctx.db)).map(packageView);
}

export interface DpStatusView {
  readonly dp: string;
  readonly nalPath: string;
  readonly status: number;
  readonly state: string;
  readonly version: number;
  readonly contentUrl: string;
  readonly lastError: string;
  readonly updated: string;
  /** The last content validation on this DP, or null when never validated. */
  readonly validation: { readonly time: string; readonly version: number; readonly valid: boolean; readonly problems: string[] } | null;
}

export interface PackageStatusView {
  readonly package: PackageView;
  readonly site: { readonly status: number; readonly state: string; readonly version: number } | null;
  readonly distributionPoints: DpStatusView[];
}

/** `package status`: the site row and one row per DP, with state names. */
export async function packageStatus(ctx: SiteContext, pkgId: string): Promise<PackageStatusView> {
  const pkg = await requirePackage(ctx, pkgId);
  const rows = await listPkgStatus(ctx.db, pkg.PkgID);
  const dps = await ctx.db.selectFrom('DistributionPoints').select(['Name', 'NALPath']).execute();
  const nameOf = new Map(dps.map((d) => [d.NALPath, d.Name]));
  const site = rows.find((r) => r.Type === PKG_STATUS_TYPE.site);
  const validations = new Map((await ctx.db.selectFrom('ContentValidations').selectAll().where('PkgID', '=', pkg.PkgID).execute()).map((v) => [v.NALPath, v]));
  return {
    package: packageView(pkg),
    site: site ? { status: site.Status, state: PKG_STATUS_NAMES[site.Status] ?? String(site.Status), version: site.SourceVersion } : null,
    distributionPoints: rows
      .filter((r) => r.Type === PKG_STATUS_TYPE.dp)
      .map((r) => ({
        dp: nameOf.get(r.PkgServer) ?? r.PkgServer,
        nalPath: r.PkgServer,
        status: r.Status,
        state: PKG_STATUS_NAMES[r.Status] ?? String(r.Status),
        version: r.SourceVersion,
        contentUrl: r.HTTPUrl,
        lastError: r.LastError,
        updated: r.UpdateTime,
        validation: ((v) => (v ? { time: v.ValidatedTime, version: v.SourceVersion, valid: v.Valid === 1, problems: v.Problems ? v.Problems.split('\n') : [] } : null))(validations.get(r.PkgServer)),
      })),
  };
}
