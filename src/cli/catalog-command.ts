/**
 * `cairn catalog import`: a small internal command that runs the catalog
 * import (src/catalog/catalog-import.ts) once against a site's database,
 * from a `cairn upstream` URL or a folder of apt lists. It is what the
 * update sync manager will do in its site-database phase; until that
 * component exists it lets an administrator (and `bench/sync.ts`) run an
 * import by hand. It never runs while a site is syncing the same database
 * by other means: nothing here takes a lock.
 */
import fs from 'node:fs';
import { createAptSource } from '../catalog/apt-source.ts';
import { importCatalog } from '../catalog/catalog-import.ts';
import type { ImportResult } from '../catalog/catalog-import.ts';
import { createUpstreamClient } from '../catalog/upstream-client.ts';
import { openDatabase } from '../datastore/engine.ts';
import { migrateToLatest } from '../datastore/migrate.ts';
import { CairnError } from '../shared/errors.ts';
import { sitePaths } from '../site/site-paths.ts';

export interface CatalogImportOptions {
  readonly data: string;
  readonly from?: string;
  readonly apt?: string;
  readonly full?: boolean;
  readonly json?: boolean;
  readonly pageSize?: number;
}

export type CatalogImportReport = ImportResult & { readonly seconds: number; readonly peakRssMiB: number };

export async function runCatalogImport(o: CatalogImportOptions): Promise<CatalogImportReport> {
  if (!o.from === !o.apt) throw new CairnError('CAIRN_REQUEST_INVALID', 'give exactly one of --from URL and --apt DIR');
  const paths = sitePaths(o.data);
  let saved: { siteCode?: string; databaseUrl?: string } = {};
  try {
    saved = JSON.parse(fs.readFileSync(paths.siteJson, 'utf8')) as typeof saved;
  } catch {
    // No site.json yet: a fresh data folder, as `cairn start` would make it.
  }
  fs.mkdirSync(paths.data, { recursive: true });
  const database = openDatabase(process.env.CAIRN_DATABASE_URL ?? saved.databaseUrl ?? `sqlite:${paths.sqlite}`);
  try {
    await migrateToLatest(database.db, database.engine);
    const pageSize = o.pageSize ? { pageSize: o.pageSize } : {};
    const source = o.from ? createUpstreamClient(o.from, pageSize) : createAptSource(o.apt!, pageSize);
    const out = (s: string): void => {
      (o.json ? process.stderr : process.stdout).write(s + '\n');
    };
    const t0 = performance.now();
    const result = await importCatalog(database.db, source, {
      siteCode: (saved.siteCode ?? 'CS1').toUpperCase(),
      full: o.full ?? false,
      onPhase: (phase, total) => out(`sync: synchronizing ${phase} from ${source.url} (${total} changed)`),
      onProgress: (p) => out(`sync: synchronizing ${p.phase}, ${p.line}`),
      onRejected: (r) => out(`sync: rejected ${r.phase} ${r.id}: ${r.code}: ${r.reason}`),
    });
    const report = { ...result, seconds: (performance.now() - t0) / 1000, peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024) };
    if (o.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    else out(`updated ${result.itemsChanged} items in the site database, new update source content version is ${result.contentVersion} (${report.seconds.toFixed(1)} s)`);
    return report;
  } finally {
    await database.destroy();
  }
}
