/**
 * The update point's own catalog store: a SQLite database in its data folder
 * (`sup.db`, the site database's schema, of which only the catalog tables and
 * `Update_SyncStatus` are used), filled by the same import as the site's
 * (`src/catalog/catalog-import.ts`), and served page by page over the
 * upstream protocol. Always SQLite, whatever engine the site uses: the store
 * belongs to the update point, not to the site.
 *
 * Anchors are `<catalogId>-<contentVersion>` (the catalog ID is made once and
 * kept in `sup.json`). "Changed since A" is "rows whose ContentVersion is in
 * (A, B]", B being the store's published content version: rows of a sync in
 * progress (above B) are never served, so nobody sees half a catalog. Pages
 * are ordered by a stable row key (`CI_ID` for updates, `rowid` for
 * categories) that is the cursor.
 */
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { openDatabase } from '../datastore/engine.ts';
import type { SiteDatabase } from '../datastore/engine.ts';
import { migrateToLatest } from '../datastore/migrate.ts';
import { getSyncStatus } from '../datastore/updates.ts';
import { CairnError } from '../shared/errors.ts';
import { formatAnchor, isCatalogId } from '../upstream/protocol.ts';
import type { Anchor, ChangesReply, ItemKind } from '../upstream/protocol.ts';

/** The site code the store's own `Update_SyncStatus` row is kept under. */
export const SUP_STORE_SITE = 'SUP';

export interface CatalogStore {
  readonly database: SiteDatabase;
  readonly catalogId: string;
  contentVersion(): Promise<number>;
  changes(given: Anchor | undefined): Promise<ChangesReply>;
  /** A page as JSON text: `{"items":[…],"cursor":…}`. */
  page(kind: ItemKind, since: number, until: number, cursor: number, limit: number): Promise<string>;
  close(): Promise<void>;
}

export async function openCatalogStore(dataDir: string): Promise<CatalogStore> {
  fs.mkdirSync(dataDir, { recursive: true });
  const jsonFile = path.join(dataDir, 'sup.json');
  let catalogId = '';
  try {
    catalogId = (JSON.parse(fs.readFileSync(jsonFile, 'utf8')) as { catalogId?: string }).catalogId ?? '';
  } catch {
    // A new store.
  }
  if (!isCatalogId(catalogId)) {
    catalogId = randomBytes(8).toString('hex');
    fs.writeFileSync(`${jsonFile}.tmp`, JSON.stringify({ catalogId }, null, 2) + '\n');
    fs.renameSync(`${jsonFile}.tmp`, jsonFile);
  }
  const database = openDatabase(`sqlite:${path.join(dataDir, 'sup.db')}`);
  await migrateToLatest(database.db, database.engine);
  const db = database.db;
  const contentVersion = async (): Promise<number> => (await getSyncStatus(db, SUP_STORE_SITE)).contentVersion;

  return {
    database,
    catalogId,
    contentVersion,
    async changes(given) {
      const until = await contentVersion();
      const full = !given || given.catalogId !== catalogId || given.seq > until;
      const since = full ? 0 : given.seq;
      const count = async (table: 'CI_CategoryInstances' | 'CI_ConfigurationItems'): Promise<number> => {
        const r = await db.selectFrom(table).select((eb) => eb.fn.countAll<number>().as('n')).where('ContentVersion', '>', since).where('ContentVersion', '<=', until).executeTakeFirstOrThrow();
        return Number(r.n);
      };
      return { catalogId, full, anchor: formatAnchor({ catalogId, seq: until }), categories: await count('CI_CategoryInstances'), updates: await count('CI_ConfigurationItems'), rejected: 0 };
    },
    async page(kind, since, until, cursor, limit) {
      if (until > (await contentVersion())) throw new CairnError('CAIRN_CATALOG_CHANGED', `content version ${until} is not published on this update point; sync again`);
      let items: string[];
      let keys: number[];
      if (kind === 'updates') {
        const rows = await db
          .selectFrom('CI_ConfigurationItems')
          .select(['CI_ID', 'Digest'])
          .where('ContentVersion', '>', since)
          .where('ContentVersion', '<=', until)
          .where('CI_ID', '>', cursor)
          .orderBy('CI_ID')
          .limit(limit + 1)
          .execute();
        keys = rows.map((r) => Number(r.CI_ID));
        items = rows.map((r) => r.Digest);
      } else {
        const rows = await db
          .selectFrom('CI_CategoryInstances')
          .select([sql<number>`rowid`.as('k'), 'CategoryInstance_UniqueID', 'CategoryTypeName', 'CategoryInstanceName', 'ParentCategoryInstance_UniqueID', 'RevisionNumber'])
          .where('ContentVersion', '>', since)
          .where('ContentVersion', '<=', until)
          .where(sql<number>`rowid`, '>', cursor)
          .orderBy(sql`rowid`)
          .limit(limit + 1)
          .execute();
        keys = rows.map((r) => Number(r.k));
        items = rows.map((r) =>
          JSON.stringify({ id: r.CategoryInstance_UniqueID, revision: Number(r.RevisionNumber), type: r.CategoryTypeName, name: r.CategoryInstanceName, ...(r.ParentCategoryInstance_UniqueID ? { parent: r.ParentCategoryInstance_UniqueID } : {}) }),
        );
      }
      const more = items.length > limit;
      if (more) items.pop();
      const next = more ? keys[limit - 1]! : null;
      return `{"items":[${items.join(',')}],"cursor":${next === null ? 'null' : `"${next}"`}}`;
    },
    close: () => database.destroy(),
  };
}
