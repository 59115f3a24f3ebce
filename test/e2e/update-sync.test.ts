/**
 * Update catalog sync end to end: a real `cairn upstream` process serving a
 * catalog folder, imported into a fresh site database; then only the changes;
 * then nothing. Also the `cairn catalog import` command over apt lists.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { openDatabase } from '../../src/datastore/engine.ts';
import { migrateToLatest } from '../../src/datastore/migrate.ts';
import { getSyncStatus, listCategories, listUpdates } from '../../src/datastore/updates.ts';
import { importCatalog } from '../../src/catalog/catalog-import.ts';
import type { ImportProgress, RejectedItem } from '../../src/catalog/catalog-import.ts';
import { createUpstreamClient } from '../../src/catalog/upstream-client.ts';
import { ROOT, runCairn, tempDir } from '../helpers/processes.ts';
import { startUpstreamProcess, update, updateId, writeCatalog } from '../helpers/catalog.ts';

test('[US7][US9][US10] a full import from cairn upstream, then only the changes, then none: the content version moves only with changes', async () => {
  const dir = await tempDir('sync');
  const catalog = path.join(dir, 'catalog');
  await writeCatalog(catalog, 300, { perFile: 100 });
  const up = await startUpstreamProcess(catalog);
  const site = openDatabase(`sqlite:${path.join(dir, 'site', 'site.db')}`);
  try {
    await migrateToLatest(site.db, site.engine);
    const source = createUpstreamClient(up.url, { pageSize: 64 });
    const progress: ImportProgress[] = [];
    const rejected: RejectedItem[] = [];
    const run = () => importCatalog(site.db, source, { siteCode: 'CS1', onProgress: (p) => progress.push(p), onRejected: (r) => rejected.push(r) });

    // Full: categories, then updates, with the seed's progress lines.
    const first = await run();
    assert.equal(first.full, true);
    assert.deepEqual(first.categories, { processed: 8, inserted: 8, updated: 0, unchanged: 0, rejected: 0 });
    assert.deepEqual(first.updates, { processed: 300, inserted: 300, updated: 0, unchanged: 0, rejected: 0 });
    assert.equal(first.previousContentVersion, 0);
    assert.equal(first.contentVersion, 1);
    const lines = progress.filter((p) => p.phase === 'updates').map((p) => p.line);
    assert.match(lines[0]!, /^processed 64 of 300 items \(21%\), ETA in \d\d:\d\d:\d\d$/);
    assert.equal(lines.at(-1), 'processed 300 of 300 items (100%)');
    assert.deepEqual(progress.map((p) => p.phase), [...progress.filter((p) => p.phase === 'categories').map(() => 'categories'), ...lines.map(() => 'updates')], 'categories before updates');
    assert.equal((await listUpdates(site.db, { limit: 5000 })).length, 300);
    assert.equal((await listCategories(site.db, 'Product')).length, 4);

    // Change the catalog: a new revision of update 5 (file replaced by rename), two new updates, one malformed.
    const file = path.join(catalog, 'updates', '0000001.ndjson');
    const text = (await fsp.readFile(file, 'utf8')).replace(JSON.stringify(update(5)), JSON.stringify(update(5, 2)));
    await fsp.writeFile(`${file}.tmp`, text);
    await fsp.rename(`${file}.tmp`, file);
    await fsp.writeFile(path.join(catalog, 'updates', 'extra.ndjson'), [update(1001), update(1002), { ...update(1003), isApplicable: { kind: 'package', name: 'x', installed: true, version: { op: 'lt', value: 'not-a-version' } } }].map((u) => JSON.stringify(u)).join('\n') + '\n');
    progress.length = 0;
    const second = await run();
    assert.equal(second.full, false);
    assert.deepEqual(second.categories, { processed: 0, inserted: 0, updated: 0, unchanged: 0, rejected: 0 });
    assert.deepEqual(second.updates, { processed: 4, inserted: 2, updated: 1, unchanged: 0, rejected: 1 }, 'only the changes travel');
    assert.deepEqual(rejected.map((r) => [r.id, r.code]), [[updateId(1003), 'CAIRN_CATALOG_RULE_INVALID']]);
    assert.equal(second.contentVersion, 2);
    const five = (await listUpdates(site.db, { articleId: 'CSA-5' }))[0]!;
    assert.equal(five.revision, 2);
    assert.equal(five.contentVersion, 2);
    assert.equal((await listUpdates(site.db, { limit: 5000 })).length, 302);
    assert.equal((await listUpdates(site.db, { limit: 5000, atContentVersion: 1 })).length, 299, 'the new revision and the new updates belong to version 2');

    // No change: nothing travels and the content version stays.
    const third = await run();
    assert.equal(third.updates.processed, 0);
    assert.equal(third.itemsChanged, 0);
    assert.equal(third.contentVersion, 2);
    const status = await getSyncStatus(site.db, 'CS1');
    assert.equal(status.lastSyncResult, 'succeeded');
    assert.equal(status.contentVersion, 2);
    assert.equal(status.syncAlert, false);
    assert.match(up.output(), /Catalog re-read: 2 file\(s\) changed, 4 item\(s\) new or changed/);

    // The upstream goes away: the sync fails, the alert is raised, the catalog and content version stay.
    await up.kill();
    await assert.rejects(run(), (e: { code?: string }) => e.code === 'CAIRN_UPSTREAM_UNREACHABLE');
    const failed = await getSyncStatus(site.db, 'CS1');
    assert.equal(failed.lastSyncResult, 'failed');
    assert.match(failed.lastSyncError, /CAIRN_UPSTREAM_UNREACHABLE/);
    assert.equal(failed.syncAlert, true);
    assert.equal(failed.contentVersion, 2);
    assert.equal(failed.anchor, status.anchor);
  } finally {
    await up.kill();
    await site.destroy();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

const cairn = (args: string[]) => runCairn(args);

test('cairn catalog import --apt imports apt lists into a site database once, and a re-import changes nothing', { skip: fs.existsSync('/usr/lib/apt/apt-helper') ? false : 'apt-helper is not installed' }, async () => {
  const dir = await tempDir('apt-import');
  try {
    const fixtures = path.join(ROOT, 'test', 'fixtures', 'apt');
    const first = await cairn(['catalog', 'import', '--apt', fixtures, '--data', dir, '--json']);
    assert.equal(first.code, 0, first.stderr);
    const r1 = JSON.parse(first.stdout) as { itemsChanged: number; contentVersion: number; updates: { rejected: number } };
    assert.equal(r1.itemsChanged, 8 + 11);
    assert.equal(r1.updates.rejected, 2);
    assert.equal(r1.contentVersion, 1);
    assert.match(first.stderr, /sync: synchronizing updates, processed 13 of 13 items \(100%\)\n/);
    assert.match(first.stderr, /rejected updates broken\/amd64\/abc: CAIRN_CATALOG_UPDATE_INVALID/);
    const second = await cairn(['catalog', 'import', '--apt', fixtures, '--data', dir, '--json']);
    const r2 = JSON.parse(second.stdout) as { itemsChanged: number; contentVersion: number };
    assert.deepEqual([r2.itemsChanged, r2.contentVersion], [0, 1]);
    const bad = await cairn(['catalog', 'import', '--data', dir]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /CAIRN_REQUEST_INVALID/);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});
