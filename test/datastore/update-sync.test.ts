/** What migration 0006 adds for the update sync manager and the update points, on both engines. */
import { describe } from 'node:test';
import assert from 'node:assert/strict';
import { engineTest } from '../helpers/engines.ts';
import { MIGRATION_NAMES, migrateToLatest } from '../../src/datastore/migrate.ts';
import { pendingChanges } from '../../src/datastore/change-notifications.ts';
import { insertUpdatePoint, listUpdatePoints, recordUpdatePointSync } from '../../src/datastore/update-points.ts';
import {
  clearSyncNow,
  expireSuperseded,
  getSyncStatus,
  listUpdates,
  recordSyncStart,
  recordSyncSuccess,
  requestSyncNow,
  setSyncCriteria,
  setUpstreamSource,
  upsertCategoryPage,
  upsertUpdatePage,
} from '../../src/datastore/updates.ts';
import type { Category, Update } from '../../src/catalog/catalog.ts';

const PRODUCT = 'a0000000-0000-4000-8000-00000000000a';
const CLASS = 'cd5ffd1e-e932-4e3a-bf74-18bf0b1bbd83';
const categories: Category[] = [
  { id: PRODUCT, revision: 1, type: 'Product', name: 'Product A' },
  { id: CLASS, revision: 1, type: 'UpdateClassification', name: 'Updates' },
];
const id = (n: number): string => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
function update(n: number, supersedes: number[] = []): Update {
  return {
    id: id(n),
    revision: 1,
    title: `Update ${n}`,
    description: '',
    articleId: `KB${n}`,
    classification: CLASS,
    products: [PRODUCT],
    severity: 'Unspecified',
    cves: [],
    releaseDate: '2024-01-01',
    supersedes: supersedes.map(id),
    isApplicable: { kind: 'all', rules: [] },
    isInstalled: { kind: 'any', rules: [] },
  };
}

describe('update sync in the site database (migration 0006)', () => {
  engineTest('migration 0006 applies on a database at 0004 holding updates, and fills the supersedence from their digests', async (d) => {
    await migrateToLatest(d.db, d.engine, '0004-update-catalog');
    await d.db.insertInto('Update_SyncStatus').values({ SiteCode: 'CS1', UpdateSource_UniqueID: '11111111-1111-4111-8111-111111111111', SyncNow: null }).execute();
    await upsertCategoryPage(d.db, 'CS1', categories, 1);
    // Written with 0004's columns only: the page writer of today also fills the 0006 table, so insert raw rows.
    const now = new Date().toISOString();
    for (const u of [update(1), update(2, [1]), update(3, [1, 2])]) {
      await d.db
        .insertInto('CI_ConfigurationItems')
        .values({ CI_UniqueID: u.id, CIType_ID: 1, RevisionNumber: 1, Title: u.title, ArticleID: u.articleId, Classification: u.classification, Severity: u.severity, ReleaseDate: u.releaseDate, Digest: JSON.stringify(u), ContentVersion: 1, DateCreated: now, DateLastModified: now })
        .execute();
    }
    const applied = await migrateToLatest(d.db, d.engine);
    assert.ok(applied.includes('0006-update-sync'));
    assert.ok(MIGRATION_NAMES.includes('0006-update-sync'));
    const tables = (await d.db.introspection.getTables()).map((t) => t.name);
    for (const t of ['UpdatePoints', 'CI_UpdateSupersedence']) assert.ok(tables.includes(t), `${t} exists`);
    const links = await d.db.selectFrom('CI_UpdateSupersedence').selectAll().orderBy('CI_UniqueID').orderBy('Superseded_UniqueID').execute();
    assert.deepEqual(links.map((l) => [l.CI_UniqueID, l.Superseded_UniqueID]), [[id(2), id(1)], [id(3), id(1)], [id(3), id(2)]]);
    const s = await getSyncStatus(d.db, 'CS1');
    assert.deepEqual([s.upstreamSource, s.lastSyncKind, s.lastSyncRejected, s.criteria.products.length], ['', '', 0, 0]);
  });

  engineTest('SyncNow and a moved content version become change notifications for the DB monitor; clearing SyncNow and a no-change sync do not', async (d) => {
    await migrateToLatest(d.db, d.engine);
    const s = await getSyncStatus(d.db, 'CS1');
    await requestSyncNow(d.db, 'CS1', 'SELF');
    await clearSyncNow(d.db, 'CS1');
    await requestSyncNow(d.db, 'CS1', 'FULL');
    await recordSyncStart(d.db, 'CS1');
    await recordSyncSuccess(d.db, 'CS1', { sourceUrl: 'http://up', anchor: 'a', itemsChanged: 0 });
    await upsertCategoryPage(d.db, 'CS1', categories, 1);
    await recordSyncSuccess(d.db, 'CS1', { sourceUrl: 'http://up', anchor: 'b', itemsChanged: 2 });
    const rows = await pendingChanges(d.db);
    assert.deepEqual(
      rows.map((r) => [r.TableName, r.Operation, r.TriggerName, r.KeyValue]),
      [
        ['Update_SyncStatus', 'UPDATE', 'SyncNotif_WSyncMgr', 'SELF'],
        ['Update_SyncStatus', 'UPDATE', 'SyncNotif_WSyncMgr', 'FULL'],
        ['Update_SyncStatus', 'UPDATE', 'UpdateSourceNotif_PolicyPv', s.updateSourceId],
      ],
    );
    assert.equal((await getSyncStatus(d.db, 'CS1')).contentVersion, 1);
  });

  engineTest('superseded updates expire once their superseder is older than the cutoff, in the next content version; the superseded filter', async (d) => {
    await migrateToLatest(d.db, d.engine);
    await recordSyncStart(d.db, 'CS1');
    await upsertCategoryPage(d.db, 'CS1', categories, 1);
    await upsertUpdatePage(d.db, 'CS1', [update(1), update(2, [1]), update(3), update(4, [99])], 1);
    await recordSyncSuccess(d.db, 'CS1', { sourceUrl: 'u', anchor: 'a', itemsChanged: 6 });
    assert.deepEqual((await listUpdates(d.db, { superseded: true })).map((u) => u.id), [id(1)]);
    assert.deepEqual((await listUpdates(d.db, { superseded: false })).map((u) => u.id), [id(2), id(3), id(4)], 'superseding an update the site does not hold supersedes nothing');

    // The superseder was stored just now: a cutoff before that expires nothing.
    assert.equal(await expireSuperseded(d.db, 'CS1', '2000-01-01T00:00:00.000Z', 2), 0);
    assert.equal(await expireSuperseded(d.db, 'CS1', new Date(Date.now() + 1000).toISOString(), 2), 1);
    assert.equal((await getSyncStatus(d.db, 'CS1')).pendingChanges, 1, 'expiry is a change of the next content version');
    assert.deepEqual((await listUpdates(d.db, {})).map((u) => u.id), [id(2), id(3), id(4)]);
    assert.equal(await expireSuperseded(d.db, 'CS1', new Date(Date.now() + 1000).toISOString(), 2), 0, 'idempotent');
    // A higher revision of the expired update is current again.
    await upsertUpdatePage(d.db, 'CS1', [{ ...update(1), revision: 2 }], 2);
    assert.deepEqual((await listUpdates(d.db, {})).map((u) => [u.id, u.revision]), [[id(1), 2], [id(2), 1], [id(3), 1], [id(4), 1]]);
  });

  engineTest('update points keep their install order; upstream, criteria (which clear the anchor) and sync outcomes are stored', async (d) => {
    await migrateToLatest(d.db, d.engine);
    await insertUpdatePoint(d.db, { name: 'sup-b', url: 'http://b', key: 'k1', siteCode: 'CS1' });
    const a = await insertUpdatePoint(d.db, { name: 'sup-a', url: 'http://a', key: 'k2', siteCode: 'CS1' });
    await recordUpdatePointSync(d.db, a.SUPID, { ok: true, contentVersion: 7 });
    const list = await listUpdatePoints(d.db, 'CS1');
    assert.deepEqual(list.map((p) => [p.Name, Number(p.ContentVersion), p.LastSyncResult]), [['sup-b', 0, ''], ['sup-a', 7, 'succeeded']]);
    await assert.rejects(insertUpdatePoint(d.db, { name: 'sup-b', url: 'http://c', key: 'k', siteCode: 'CS1' }));

    await recordSyncStart(d.db, 'CS1');
    await recordSyncSuccess(d.db, 'CS1', { sourceUrl: 'u', anchor: 'anchor-1', itemsChanged: 0 });
    assert.equal((await setUpstreamSource(d.db, 'CS1', 'apt:/var/lib/apt/lists')).upstreamSource, 'apt:/var/lib/apt/lists');
    const c = await setSyncCriteria(d.db, 'CS1', { products: [PRODUCT], classifications: [], languages: ['en'] });
    assert.deepEqual(c.criteria, { products: [PRODUCT], classifications: [], languages: ['en'] });
    assert.equal(c.anchor, '', 'new criteria make the next sync a full one');
    assert.deepEqual((await setSyncCriteria(d.db, 'CS1', { products: [], classifications: [], languages: [] })).criteria, { products: [], classifications: [], languages: [] });
  });
});
