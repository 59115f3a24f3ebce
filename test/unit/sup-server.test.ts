/**
 * The software update point role over loopback HTTP: signed control calls
 * (sync, status) with the site's client, a sync joined rather than run
 * twice, and the catalog served anonymously over the upstream protocol,
 * incrementally by content version (what replicas, child sites and clients'
 * scans read).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { startUpstream } from '../../src/upstream/upstream-server.ts';
import { startSup } from '../../src/sup/sup-server.ts';
import { createSupClient } from '../../src/sup/sup-client.ts';
import type { SupClient } from '../../src/sup/sup-client.ts';
import type { SupSyncState } from '../../src/sup/protocol.ts';
import { createUpstreamClient } from '../../src/catalog/upstream-client.ts';
import type { CatalogChanges } from '../../src/catalog/catalog-source.ts';
import { tempDir, waitFor } from '../helpers/processes.ts';
import { update, updateId, writeCatalog } from '../helpers/catalog.ts';

async function ids(c: CatalogChanges): Promise<{ categories: number; updates: string[] }> {
  let categories = 0;
  const updates: string[] = [];
  for await (const page of c.categoryPages()) categories += page.length;
  for await (const page of c.updatePages()) for (const it of page) if (it.ok) updates.push(it.value.id);
  return { categories, updates };
}

const finished = (client: SupClient, syncId: string): Promise<SupSyncState> =>
  waitFor('the update point sync to end', async () => {
    const st = await client.syncState();
    assert.equal(st.syncId, syncId);
    return st.state === 'running' ? undefined : st;
  });

test('an update point syncs when the site asks (joined, not run twice) and serves its catalog by content version to anyone', async () => {
  const dir = await tempDir('sup');
  const catalog = path.join(dir, 'catalog');
  await writeCatalog(catalog, 250, { perFile: 100 });
  const up = await startUpstream({ catalogDir: catalog, port: 0 });
  const key = 'k'.repeat(43);
  const sup = await startSup({ dataDir: path.join(dir, 'sup'), key, name: 'sup1', port: 0, pageSize: 40 });
  try {
    const client = createSupClient({ url: sup.url, key });
    const before = await client.status();
    assert.deepEqual([before.name, before.contentVersion, before.upstream], ['sup1', 0, '']);

    const [a, b] = await Promise.all([client.startSync(up.url, false), client.startSync(up.url, false)]);
    assert.equal(a.syncId, b.syncId, 'a second request while a sync runs joins it');
    const done = await finished(client, a.syncId);
    assert.equal(done.state, 'succeeded');
    assert.deepEqual([done.result!.itemsChanged, done.result!.contentVersion, done.result!.rejected], [258, 1, 0]);

    // Clients, replicas and child sites read the catalog anonymously, over the upstream protocol, in pages.
    const reader = createUpstreamClient(sup.url, { pageSize: 40 });
    const full = await reader.changesSince('');
    assert.equal(full.full, true);
    assert.match(full.anchor, new RegExp(`^${before.catalogId}-1$`));
    const all = await ids(full);
    assert.equal(all.categories, 8);
    assert.equal(new Set(all.updates).size, 250);
    assert.deepEqual(await ids(await reader.changesSince(full.anchor)), { categories: 0, updates: [] }, 'nothing changed since content version 1');
    const version = (await (await fetch(`${sup.url}/sup/v1/version`)).json()) as { contentVersion: number };
    assert.equal(version.contentVersion, 1);

    // A change upstream reaches the update point's next content version; a scan at version 1 gets only it.
    await fsp.writeFile(path.join(catalog, 'updates', 'extra.ndjson'), JSON.stringify(update(900)) + '\n');
    const again = await finished(client, (await client.startSync(up.url, false)).syncId);
    assert.deepEqual([again.result!.itemsChanged, again.result!.contentVersion], [1, 2]);
    const since = await reader.changesSince(full.anchor);
    assert.equal(since.full, false);
    assert.deepEqual(await ids(since), { categories: 0, updates: [updateId(900)] });

    // The control calls need the key; the answer proves the update point holds it.
    const unsigned = await fetch(`${sup.url}/sup/v1/status`);
    assert.equal(unsigned.status, 401);
    await assert.rejects(createSupClient({ url: sup.url, key: 'x'.repeat(43) }).status(), (e: { code?: string }) => e.code === 'CAIRN_SUP_AUTH_FAILED');
    await assert.rejects(createSupClient({ url: up.url, key }).status(), (e: { code?: string }) => e.code === 'CAIRN_SUP_AUTH_FAILED', 'an answer without the proof is not trusted');

    // Neither the site nor the update point names an upstream: the sync fails with the reason.
    const none = await finished(client, (await client.startSync('', false)).syncId);
    assert.equal(none.state, 'failed');
    assert.equal(none.error?.code, 'CAIRN_SYNC_NO_UPSTREAM');
    assert.equal((await client.status()).contentVersion, 2, 'a failed sync leaves the content version');
  } finally {
    await sup.close();
    await up.close();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});
