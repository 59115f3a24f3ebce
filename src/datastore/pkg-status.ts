/** SQL for per-site and per-DP package status (`PkgStatus`). */
import type { Kysely, Transaction } from 'kysely';
import type { Database, PkgStatusRow } from './schema.ts';
import { PKG_STATUS_TYPE } from './enums.ts';
import { nowIso } from './time.ts';

type Db = Kysely<Database> | Transaction<Database>;

export interface PkgStatusChange {
  readonly Status: number;
  readonly SourceVersion?: number;
  readonly Location?: string;
  readonly HTTPUrl?: string;
  readonly SigURL?: string;
  readonly LastError?: string;
  readonly State?: number;
}

/** Creates or updates one status row; the unique key is (ID, Type, SiteCode, PkgServer). */
export async function upsertPkgStatus(db: Db, key: { ID: string; Type: number; SiteCode: string; PkgServer: string }, change: PkgStatusChange): Promise<void> {
  const now = nowIso();
  const values = { ...key, ...change, UpdateTime: now };
  await db
    .insertInto('PkgStatus')
    .values(values)
    .onConflict((oc) => oc.columns(['ID', 'Type', 'SiteCode', 'PkgServer']).doUpdateSet({ ...change, UpdateTime: now }))
    .execute();
}

/** The key of a package's site row (Type 1). */
export function siteStatusKey(pkgId: string, siteCode: string): { ID: string; Type: number; SiteCode: string; PkgServer: string } {
  return { ID: pkgId, Type: PKG_STATUS_TYPE.site, SiteCode: siteCode, PkgServer: '' };
}

export async function listPkgStatus(db: Db, pkgId: string): Promise<PkgStatusRow[]> {
  return db.selectFrom('PkgStatus').selectAll().where('ID', '=', pkgId).orderBy('Type').orderBy('PkgServer').execute();
}
