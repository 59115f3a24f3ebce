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
import fsp from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { openDatabase } from '../datastore/engine.ts';
import type { SiteDatabase } from '../datastore/engine.ts';
import { migrateToLatest } from '../datastore/migrate.ts';
import { getSyncStatus } from '../datastore/updates.ts';
import { CairnError } from '../shared/errors.ts';
import { formatAnchor, isCatalogId } from '../upstream/protocol.ts';
import { buildPage, indexRaw } from './catalog-pack.ts';
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
  /**
   * A page of updates as a scanner reads it (`catalog-pack.ts`): built once
   * per (since, until, cursor, limit) and kept under `<data>/pages/`, then
   * served as bytes. `next` is the following page's cursor, null after the last.
   */
  builtPage(since: number, until: number, cursor: number, limit: number): Promise<BuiltPage>;
  /** Builds every page of (since, until] in pages of `limit` ahead of the scanners that will ask; returns how many. */
  prebuild(since: number, until: number, limit: number): Promise<number>;
  close(): Promise<void>;
}

export interface BuiltPage {
  readonly bytes: Buffer;
  readonly sha256: string;
  readonly next: number | null;
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

  // Built pages: files under <data>/pages/<until>/, indexed in memory (a restarted update point builds again).
  const pagesDir = path.join(dataDir, 'pages');
  fs.rmSync(pagesDir, { recursive: true, force: true });
  const built = new Map<string, Promise<{ file: string; sha256: string; next: number | null }>>();
  let pagesUntil = -1;

  async function updateRows(since: number, until: number, cursor: number, limit: number): Promise<{ keys: number[]; items: string[] }> {
    const rows = await db
      .selectFrom('CI_ConfigurationItems')
      .select(['CI_ID', 'Digest'])
      .where('ContentVersion', '>', since)
      .where('ContentVersion', '<=', until)
      .where('CI_ID', '>', cursor)
      .orderBy('CI_ID')
      .limit(limit + 1)
      .execute();
    return { keys: rows.map((r) => Number(r.CI_ID)), items: rows.map((r) => r.Digest) };
  }

  function build(since: number, until: number, cursor: number, limit: number): Promise<{ file: string; sha256: string; next: number | null }> {
    if (until !== pagesUntil) {
      // A new content version: the pages of older ones are not asked for any more (a client paging an older one gets them built again).
      if (until > pagesUntil) {
        for (const k of built.keys()) if (!k.startsWith(`${until}/`)) built.delete(k);
        const keep = String(until);
        for (const d of fs.existsSync(pagesDir) ? fs.readdirSync(pagesDir) : []) if (d !== keep) fs.rmSync(path.join(pagesDir, d), { recursive: true, force: true });
        pagesUntil = until;
      }
    }
    const key = `${until}/${since}-${limit}-${cursor}`;
    let p = built.get(key);
    if (!p) {
      p = (async () => {
        const { keys, items } = await updateRows(since, until, cursor, limit);
        const more = items.length > limit;
        if (more) items.pop();
        const next = more ? keys[limit - 1]! : null;
        const parts: { entry: NonNullable<ReturnType<typeof indexRaw>>; body: string }[] = [];
        for (const text of items) {
          let raw: unknown;
          try {
            raw = JSON.parse(text);
          } catch {
            raw = undefined;
          }
          // Rows were validated when they were imported; one with no usable ID (never expected) is left out, as a client would drop it.
          const entry = indexRaw(raw);
          if (entry) parts.push({ entry, body: text });
        }
        const bytes = buildPage(parts);
        const dir = path.join(pagesDir, String(until));
        await fsp.mkdir(dir, { recursive: true });
        const file = path.join(dir, `${since}-${limit}-${cursor}.ndjson`);
        await fsp.writeFile(`${file}.tmp`, bytes);
        await fsp.rename(`${file}.tmp`, file);
        return { file, sha256: createHash('sha256').update(bytes).digest('hex'), next };
      })();
      p.catch(() => built.delete(key));
      built.set(key, p);
    }
    return p;
  }

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
        ({ keys, items } = await updateRows(since, until, cursor, limit));
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
    async builtPage(since, until, cursor, limit) {
      if (until > (await contentVersion())) throw new CairnError('CAIRN_CATALOG_CHANGED', `content version ${until} is not published on this update point; sync again`);
      const b = await build(since, until, cursor, limit);
      let bytes: Buffer;
      try {
        bytes = await fsp.readFile(b.file);
      } catch {
        // Removed by a newer content version's pages between the build and the read: build it again.
        built.delete(`${until}/${since}-${limit}-${cursor}`);
        const again = await build(since, until, cursor, limit);
        return { bytes: await fsp.readFile(again.file), sha256: again.sha256, next: again.next };
      }
      return { bytes, sha256: b.sha256, next: b.next };
    },
    async prebuild(since, until, limit) {
      let cursor: number | null = 0;
      let n = 0;
      while (cursor !== null) {
        cursor = (await build(since, until, cursor, limit)).next;
        n += 1;
      }
      return n;
    },
    close: () => database.destroy(),
  };
}
