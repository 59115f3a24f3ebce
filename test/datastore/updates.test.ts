/** The update catalog in the site database (migration 0004), on both engines. */
import { describe } from 'node:test';
import assert from 'node:assert/strict';
import { engineTest } from '../helpers/engines.ts';
import { MIGRATION_NAMES, migrateToLatest } from '../../src/datastore/migrate.ts';
import { countUpdates, getSyncStatus, listCategories, listUpdates, recordSyncFailure, recordSyncStart, recordSyncSuccess, upsertCategoryPage, upsertUpdatePage } from '../../src/datastore/updates.ts';
import type { Category, Update } from '../../src/catalog/catalog.ts';

const SECURITY = '0fa1201d-4330-4fa8-8ae9-b877473b6441';
const UPDATES = 'cd5ffd1e-e932-4e3a-bf74-18bf0b1bbd83';
const PRODUCT_A = 'a0000000-0000-4000-8000-00000000000a';
const PRODUCT_B = 'b0000000-0000-4000-8000-00000000000b';

const categories: Category[] = [
  { id: 'c0000000-0000-4000-8000-000000000001', revision: 1, type: 'Company', name: 'Contoso' },
  { id: PRODUCT_A, revision: 1, type: 'Product', name: 'Product A', parent: 'c0000000-0000-4000-8000-000000000001' },
  { id: PRODUCT_B, revision: 1, type: 'Product', name: 'Product B', parent: 'c0000000-0000-4000-8000-000000000001' },
  { id: SECURITY, revision: 1, type: 'UpdateClassification', name: 'Security Updates' },
  { id: UPDATES, revision: 1, type: 'UpdateClassification', name: 'Updates' },
];

function update(n: number, over: Partial<Update> = {}): Update {
  return {
    id: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
    revision: 1,
    title: `Update ${n}`,
    description: '',
    articleId: `KB${n}`,
    classification: n % 2 ? SECURITY : UPDATES,
    products: n % 3 ? [PRODUCT_A] : [PRODUCT_A, PRODUCT_B],
    severity: n % 2 ? 'Important' : 'Unspecified',
    cves: [],
    releaseDate: `2024-01-${String((n % 28) + 1).padStart(2, '0')}`,
    supersedes: [],
    isApplicable: { kind: 'package', name: 'openssl', installed: true, version: { op: 'lt', value: `3.0.${n}` } },
    isInstalled: { kind: 'package', name: 'openssl', installed: true, version: { op: 'ge', value: `3.0.${n}` } },
    ...over,
  };
}

describe('update catalog in the site database', () => {
  engineTest('migration 0004 applies on top of a database already at 0001 and creates the catalog tables', async (d) => {
    assert.deepEqual(await migrateToLatest(d.db, d.engine, '0001-initial'), ['0001-initial']);
    // Every later migration applies, 0004 among them.
    assert.deepEqual(await migrateToLatest(d.db, d.engine), MIGRATION_NAMES.slice(1));
    assert.ok(MIGRATION_NAMES.includes('0004-update-catalog'));
    const tables = (await d.db.introspection.getTables()).map((t) => t.name);
    for (const t of ['CI_CategoryInstances', 'CI_ConfigurationItems', 'CI_ConfigurationItemCategories', 'Update_SyncStatus']) assert.ok(tables.includes(t), `${t} exists`);
  });

  engineTest('a page of updates is written once: the same page again changes nothing, a higher revision replaces', async (d) => {
    await migrateToLatest(d.db, d.engine);
    const start = await recordSyncStart(d.db, 'CS1');
    assert.equal(start.contentVersion, 0);
    assert.match(start.updateSourceId, /^[0-9a-f-]{36}$/);
    assert.deepEqual(await upsertCategoryPage(d.db, 'CS1', categories, 1), { inserted: 5, updated: 0, unchanged: 0 });
    const page = Array.from({ length: 450 }, (_, i) => update(i + 1));
    assert.deepEqual(await upsertUpdatePage(d.db, 'CS1', page, 1), { inserted: 450, updated: 0, unchanged: 0 });
    assert.deepEqual(await upsertUpdatePage(d.db, 'CS1', page, 1), { inserted: 0, updated: 0, unchanged: 450 });
    assert.equal(await countUpdates(d.db), 450);
    assert.equal((await getSyncStatus(d.db, 'CS1')).pendingChanges, 455);

    const done = await recordSyncSuccess(d.db, 'CS1', { sourceUrl: 'http://up', anchor: 'a1', itemsChanged: 455 });
    assert.equal(done.contentVersion, 1);
    assert.equal(done.pendingChanges, 0);
    assert.equal(done.anchor, 'a1');
    assert.equal(done.lastSyncResult, 'succeeded');

    // Revision 2 of update 7 (now in product B only) replaces revision 1; revision 1 of update 8 again is ignored;
    // a page repeating an ID keeps its highest revision.
    const r2 = update(7, { revision: 2, title: 'Update 7 (re-released)', products: [PRODUCT_B] });
    const res = await upsertUpdatePage(d.db, 'CS1', [update(7), r2, update(8), update(451)], 2);
    assert.deepEqual(res, { inserted: 1, updated: 1, unchanged: 1 });
    const seven = (await listUpdates(d.db, { articleId: 'KB7' }))[0]!;
    assert.equal(seven.revision, 2);
    assert.equal(seven.title, 'Update 7 (re-released)');
    assert.equal(seven.contentVersion, 2);
    assert.deepEqual(seven.isApplicable, update(7).isApplicable);
    assert.equal((await listUpdates(d.db, { product: PRODUCT_B, title: 're-released' })).length, 1);
    const older = await upsertUpdatePage(d.db, 'CS1', [update(7)], 2);
    assert.deepEqual(older, { inserted: 0, updated: 0, unchanged: 1 }, 'a lower revision never replaces a higher one');
    // Visible at content version 1: the new update 451 is not, until the sync completes.
    assert.equal((await listUpdates(d.db, { atContentVersion: 1, limit: 10000 })).length, 449);
    assert.equal((await recordSyncSuccess(d.db, 'CS1', { sourceUrl: 'http://up', anchor: 'a2', itemsChanged: 2 })).contentVersion, 2);
    assert.equal((await listUpdates(d.db, { atContentVersion: 2, limit: 10000 })).length, 451);
  });

  engineTest('updates are listed by classification, product, severity and title', async (d) => {
    await migrateToLatest(d.db, d.engine);
    await recordSyncStart(d.db, 'CS1');
    await upsertCategoryPage(d.db, 'CS1', categories, 1);
    await upsertUpdatePage(d.db, 'CS1', Array.from({ length: 30 }, (_, i) => update(i + 1)), 1);
    assert.equal((await listUpdates(d.db, { classification: SECURITY })).length, 15);
    assert.equal((await listUpdates(d.db, { product: PRODUCT_B })).length, 10);
    assert.equal((await listUpdates(d.db, { product: PRODUCT_A, severity: 'Important' })).length, 15);
    assert.deepEqual((await listUpdates(d.db, { title: 'UPDATE 2' })).map((u) => u.articleId).sort(), ['KB2', 'KB20', 'KB21', 'KB22', 'KB23', 'KB24', 'KB25', 'KB26', 'KB27', 'KB28', 'KB29']);
    const pageOne = await listUpdates(d.db, { limit: 10 });
    const pageTwo = await listUpdates(d.db, { limit: 10, offset: 10 });
    assert.equal(new Set([...pageOne, ...pageTwo].map((u) => u.id)).size, 20);
    assert.deepEqual((await listCategories(d.db, 'UpdateClassification')).map((c) => c.name), ['Security Updates', 'Updates']);
  });

  engineTest('a failed sync raises the alert and keeps the content version and anchor; pending changes count at the next success', async (d) => {
    await migrateToLatest(d.db, d.engine);
    await recordSyncStart(d.db, 'CS1');
    await upsertCategoryPage(d.db, 'CS1', categories, 1);
    await recordSyncSuccess(d.db, 'CS1', { sourceUrl: 'http://up', anchor: 'a1', itemsChanged: 5 });
    await recordSyncStart(d.db, 'CS1');
    await upsertUpdatePage(d.db, 'CS1', [update(1)], 2);
    const failed = await recordSyncFailure(d.db, 'CS1', 'CAIRN_UPSTREAM_UNREACHABLE: connection refused');
    assert.equal(failed.syncAlert, true);
    assert.equal(failed.contentVersion, 1);
    assert.equal(failed.anchor, 'a1');
    assert.equal(failed.pendingChanges, 1);
    // The retry finds update 1 already stored (unchanged), yet the version still moves: its change was never counted.
    await recordSyncStart(d.db, 'CS1');
    assert.deepEqual(await upsertUpdatePage(d.db, 'CS1', [update(1)], 2), { inserted: 0, updated: 0, unchanged: 1 });
    const ok = await recordSyncSuccess(d.db, 'CS1', { sourceUrl: 'http://up', anchor: 'a2', itemsChanged: 0 });
    assert.equal(ok.contentVersion, 2);
    assert.equal(ok.syncAlert, false);
    // And a sync with nothing pending leaves it.
    assert.equal((await recordSyncSuccess(d.db, 'CS1', { sourceUrl: 'http://up', anchor: 'a2', itemsChanged: 0 })).contentVersion, 2);
  });
});
