/**
 * End to end, many packages to many DPs at once (issue 3, "concurrency and
 * priority"): six packages of mixed priority to two DPs in one go, one of
 * them updated while it is being distributed. Everything ends installed at
 * the newest version, the logs show the configured limits were kept (package
 * threads, sending threads), and no DP is left on an older version.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { addDp, api, cli, listFiles, readLog, startSite, tempDir, waitFor } from '../helpers/processes.ts';
import type { DpProc, SiteProc } from '../helpers/processes.ts';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex').toUpperCase();

interface DpRow {
  dp: string;
  status: number;
  version: number;
}

/** The largest number of threads running at once, from "start" and "end" lines carrying the thread ID in CMTrace's thread attribute. */
function maxOverlap(log: string, start: RegExp, end: RegExp): number {
  let running = 0;
  let max = 0;
  for (const line of log.split('\n')) {
    if (start.test(line)) max = Math.max(max, ++running);
    else if (end.test(line)) running -= 1;
  }
  return max;
}

describe('many packages to many DPs at once', () => {
  let work: string;
  let site: SiteProc;
  const dps: DpProc[] = [];
  const packages: { id: string; source: string; priority: string }[] = [];

  before(async () => {
    work = await tempDir('e2e-many');
    site = await startSite(path.join(work, 'site'), ['--no-local-dp']);
    for (const name of ['dp1', 'dp2']) dps.push(await addDp(site, path.join(work, name), name));
    const priorities = ['low', 'high', 'medium', 'low', 'high', 'medium'];
    for (let i = 0; i < 6; i += 1) {
      const source = path.join(work, `src${i}`);
      await fsp.mkdir(source, { recursive: true });
      await fsp.writeFile(path.join(source, 'payload.bin'), randomBytes(i === 0 ? 24 * 1024 * 1024 : 2 * 1024 * 1024));
      for (let j = 0; j < 20; j += 1) await fsp.writeFile(path.join(source, `f${j}.txt`), `package ${i} file ${j}\n`);
      const created = await cli(site, ['package', 'create', '--name', `Many ${i}`, '--source', source, '--priority', priorities[i]!]);
      assert.equal(created.code, 0, created.stderr);
      packages.push({ id: created.stdout.trim(), source, priority: priorities[i]! });
    }
    for (const p of packages) {
      await waitFor(`${p.id} stored`, async () => (await api<{ storedVersion: number }>(site, 'GET', `/api/v1/packages/${p.id}`)).json.storedVersion === 1);
    }
  });

  after(async () => {
    await site?.kill();
    for (const dp of dps) await dp.kill();
    if (work) await fsp.rm(work, { recursive: true, force: true });
  });

  test('[CD4.3] six packages to two DPs within the thread limits, one updated mid-distribution, all end on their newest version', async () => {
    for (const p of packages) {
      const r = await cli(site, ['package', 'distribute', p.id, '--dp', 'dp1', '--dp', 'dp2']);
      assert.equal(r.code, 0, r.stderr);
    }
    // An update queued while the first package may still be on its way to the DPs.
    const first = packages[0]!;
    const newPayload = randomBytes(24 * 1024 * 1024);
    await fsp.writeFile(path.join(first.source, 'payload.bin'), newPayload);
    await fsp.writeFile(path.join(first.source, 'added.txt'), 'version 2\n');
    const upd = await cli(site, ['package', 'update', first.id]);
    assert.equal(upd.code, 0, upd.stderr);

    for (const p of packages) {
      const want = p === first ? 2 : 1;
      await waitFor(`${p.id} at version ${want} on both DPs`, async () => {
        const rows = (await api<{ distributionPoints: DpRow[] }>(site, 'GET', `/api/v1/packages/${p.id}/status`)).json.distributionPoints;
        return rows.length === 2 && rows.every((r) => r.status === 3 && r.version === want);
      });
    }
    for (const dp of dps) {
      for (const p of packages) {
        for (const rel of await listFiles(p.source)) {
          const res = await fetch(`${dp.url}/SMS_DP_SMSPKG$/${p.id}/${rel}`);
          assert.equal(res.status, 200, `${p.id}/${rel}`);
          assert.equal(sha(Buffer.from(await res.arrayBuffer())), sha(await fsp.readFile(path.join(p.source, rel))), `${p.id}/${rel} on ${path.basename(dp.dataDir)}`);
        }
      }
      // Only the newest version of the updated package is left in the DP's library.
      const dataLib = await fsp.readdir(path.join(dp.dataDir, 'ContentLib', 'DataLib'));
      assert.ok(dataLib.includes(`${first.id}.2.INI`));
      assert.ok(!dataLib.includes(`${first.id}.1.INI`), `${first.id}.1 left on ${path.basename(dp.dataDir)}`);
      assert.ok(!fs.existsSync(path.join(dp.dataDir, 'ContentLib', 'DataLib', `${first.id}.1.json`)));
    }

    const distmgr = await readLog(site.dataDir, 'distmgr');
    const used = [...distmgr.matchAll(/Currently using (\d+) out of (\d+) allowed package processing threads\./g)];
    assert.ok(used.length >= 6);
    for (const [, n, max] of used) assert.ok(Number(n) < Number(max), `a package thread started with ${n} of ${max} in use`);
    const xfer = await readLog(site.dataDir, 'PkgXferMgr');
    const sending = maxOverlap(xfer, /Sending thread starting for Job/, /Sending thread complete|The job has failed|Will retry at/);
    assert.ok(sending >= 1 && sending <= 3, `${sending} sending threads at once (limit 3)`);
    // Every found send request names its package priority; high-priority packages were among those sent.
    const found = [...xfer.matchAll(/Found send request with ID \d+, Package (\S+), Version \d+, Priority (\d)/g)];
    for (const p of packages) {
      const expected = { high: '1', medium: '2', low: '3' }[p.priority];
      assert.ok(found.some(([, id, prio]) => id === p.id && prio === expected), `${p.id} sent with priority ${expected}`);
    }
  });
});
