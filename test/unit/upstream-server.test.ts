/** The upstream catalog server and its client, over loopback HTTP: full, incremental and no-change syncs, bad input. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { startUpstream } from '../../src/upstream/upstream-server.ts';
import { createUpstreamClient } from '../../src/catalog/upstream-client.ts';
import type { CatalogChanges } from '../../src/catalog/catalog-source.ts';
import { tempDir } from '../helpers/processes.ts';
import { update, updateId, writeCatalog } from '../helpers/catalog.ts';

async function drain(c: CatalogChanges): Promise<{ categories: string[]; updates: string[]; bad: string[]; pages: number }> {
  const out = { categories: [] as string[], updates: [] as string[], bad: [] as string[], pages: 0 };
  for await (const page of c.categoryPages()) {
    for (const it of page) {
      if (it.ok) out.categories.push(it.value.id);
      else out.bad.push(`${it.id} ${it.code}`);
    }
  }
  for await (const page of c.updatePages()) {
    out.pages += 1;
    for (const it of page) {
      if (it.ok) out.updates.push(it.value.id);
      else out.bad.push(`${it.id} ${it.code}`);
    }
  }
  return out;
}

test('the upstream pages a full catalog, then only what changed since the anchor, then nothing', async () => {
  const dir = await tempDir('upstream');
  try {
    await writeCatalog(path.join(dir, 'catalog'), 250, { perFile: 100 });
    let up = await startUpstream({ catalogDir: path.join(dir, 'catalog'), stateDir: path.join(dir, 'state'), port: 0 });
    const client = createUpstreamClient(up.url, { pageSize: 40 });
    const full = await client.changesSince('');
    assert.equal(full.full, true);
    assert.deepEqual(full.totals, { categories: 8, updates: 250 });
    const first = await drain(full);
    assert.equal(first.updates.length, 250);
    assert.equal(new Set(first.updates).size, 250);
    assert.equal(first.pages, 7, '250 updates in pages of 40');
    assert.deepEqual(first.bad, []);

    // Change one update (new revision), add two, add a malformed one and a line that is not JSON.
    const file = path.join(dir, 'catalog', 'updates', '0000101.ndjson');
    const lines = (await fsp.readFile(file, 'utf8')).trim().split('\n');
    lines[5] = JSON.stringify(update(106, 2));
    await fsp.writeFile(file, lines.join('\n') + '\n');
    await fsp.writeFile(path.join(dir, 'catalog', 'updates', 'new.ndjson'), [update(900), update(901), { ...update(902), title: '' }].map((u) => JSON.stringify(u)).join('\n') + '\n{not json\n');
    const inc = await client.changesSince(full.anchor);
    assert.equal(inc.full, false);
    assert.deepEqual(inc.totals, { categories: 0, updates: 4 });
    assert.equal(inc.rejectedAtSource, 1);
    const second = await drain(inc);
    assert.deepEqual(second.updates.sort(), [updateId(106), updateId(900), updateId(901)].sort());
    assert.deepEqual(second.bad, [`${updateId(902)} CAIRN_CATALOG_UPDATE_INVALID`]);

    // The anchor survives a restart of the upstream: the change index is kept in the state folder.
    await up.close();
    up = await startUpstream({ catalogDir: path.join(dir, 'catalog'), stateDir: path.join(dir, 'state'), port: 0 });
    const none = await createUpstreamClient(up.url).changesSince(inc.anchor);
    assert.equal(none.full, false);
    assert.deepEqual(none.totals, { categories: 0, updates: 0 });
    assert.equal(none.anchor, inc.anchor);
    assert.deepEqual((await drain(none)).updates, []);
    // An anchor from another catalog gets everything.
    const other = await createUpstreamClient(up.url).changesSince('0123456789abcdef-5');
    assert.equal(other.full, true);
    assert.equal(other.totals.updates, 252 + 1);
    await up.close();
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test('the upstream rejects malformed anchors and limits with registry codes, and a dead upstream is unreachable', async () => {
  const dir = await tempDir('upstream');
  try {
    await writeCatalog(dir, 10);
    const up = await startUpstream({ catalogDir: dir, port: 0 });
    const get = async (route: string) => {
      const res = await fetch(`${up.url}${route}`);
      return { status: res.status, body: (await res.json()) as { code: string } };
    };
    assert.deepEqual(await get('/upstream/v1/changes?anchor=nope').then((r) => [r.status, r.body.code]), [400, 'CAIRN_CATALOG_ANCHOR_INVALID']);
    assert.deepEqual(await get('/upstream/v1/updates').then((r) => [r.status, r.body.code]), [400, 'CAIRN_CATALOG_ANCHOR_INVALID']);
    assert.deepEqual(await get('/upstream/v1/updates?until=0123456789abcdef-1').then((r) => [r.status, r.body.code]), [409, 'CAIRN_CATALOG_CHANGED']);
    const anchor = (await get('/upstream/v1/changes')).body as unknown as { anchor: string };
    assert.deepEqual(await get(`/upstream/v1/updates?until=${anchor.anchor}&limit=0`).then((r) => [r.status, r.body.code]), [400, 'CAIRN_REQUEST_INVALID']);
    assert.deepEqual(await get('/nothing').then((r) => [r.status, r.body.code]), [404, 'CAIRN_NOT_FOUND']);
    await up.close();
    await assert.rejects(createUpstreamClient(up.url).changesSince(''), (e: { code?: string }) => e.code === 'CAIRN_UPSTREAM_UNREACHABLE');
    await assert.rejects(startUpstream({ catalogDir: path.join(dir, 'missing'), port: 0 }), (e: { code?: string }) => e.code === 'CAIRN_CATALOG_FOLDER_INVALID');
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});
