/**
 * End to end on PostgreSQL: the same site, with CAIRN_DATABASE_URL naming a
 * fresh PostgreSQL database, creates and distributes a package. Skipped when
 * CAIRN_TEST_PG_URL is not set (required in CI, see .ci/run).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import fsp from 'node:fs/promises';
import pg from 'pg';
import { createPgDatabase } from '../helpers/engines.ts';
import { api, cli, freePort, makeTree, startDp, startSite, tempDir, waitFor } from '../helpers/processes.ts';

const base = process.env.CAIRN_TEST_PG_URL;
const required = process.env.CAIRN_REQUIRE_PG === '1';

test('[CD1.1][CD1.10][CD2.6][CD2.15] a site on PostgreSQL creates a package and distributes it to a DP', { skip: !base && !required ? 'set CAIRN_TEST_PG_URL to run on PostgreSQL' : false }, async () => {
  assert.ok(base, 'CAIRN_REQUIRE_PG=1 but CAIRN_TEST_PG_URL is not set');
  const scratch = await createPgDatabase(base);
  const work = await tempDir('pg');
  const procs: { kill(): Promise<void> }[] = [];
  try {
    const source = path.join(work, 'source');
    await makeTree(source, 3 * 1024 * 1024);
    const site = await startSite(path.join(work, 'site'), ['--no-local-dp'], { CAIRN_DATABASE_URL: scratch.url });
    procs.push(site);
    assert.match(site.output(), /database:\s+postgres:\/\/cairn:\*\*\*@/);
    const port = await freePort();
    const key = (await cli(site, ['dp', 'add', '--name', 'pgdp', '--url', `http://127.0.0.1:${port}`])).stdout.trim();
    procs.push(await startDp(path.join(work, 'pgdp'), port, key, 'pgdp'));
    const pkgId = (await cli(site, ['package', 'create', '--name', 'On PostgreSQL', '--source', source])).stdout.trim();
    assert.match(pkgId, /^CS1[0-9A-F]{5}$/);
    assert.equal((await cli(site, ['package', 'distribute', pkgId, '--dp', 'pgdp'])).code, 0);
    await waitFor('installed', async () => {
      const s = (await api<{ distributionPoints: { status: number; version: number }[] }>(site, 'GET', `/api/v1/packages/${pkgId}/status`)).json;
      return s.distributionPoints[0]?.status === 3 && s.distributionPoints[0].version === 1;
    });
    const check = new pg.Client({ connectionString: scratch.url });
    await check.connect();
    try {
      const ids = await waitFor('2330 stored in PostgreSQL', async () => {
        const msgs = await check.query(
          `SELECT "MessageID" FROM "StatusMessages" m WHERE EXISTS (SELECT 1 FROM "StatusMessageAttributes" a WHERE a."RecordID" = m."RecordID" AND a."AttributeID" = 400 AND a."AttributeValue" = $1) ORDER BY "Time", "RecordID"`,
          [pkgId],
        );
        const got = msgs.rows.map((r: { MessageID: number }) => r.MessageID);
        return got.includes(2330) ? got : undefined;
      });
      assert.deepEqual(ids, [2300, 2376, 2301, 2342, 2357, 8200, 8210, 2330]);
    } finally {
      await check.end();
    }
  } finally {
    for (const p of procs.reverse()) await p.kill();
    await scratch.drop();
    await fsp.rm(work, { recursive: true, force: true });
  }
});
