/**
 * End to end, prestaged content (issue 3): a package exported to a file with
 * `cairn admin package export`, refused when truncated or tampered with,
 * loaded into a stopped DP's library with `cairn dp import`, and then
 * distributed to that DP with no file bytes sent.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { addDp, api, cli, listFiles, readLog, runCairn, startSite, tempDir, waitFor } from '../helpers/processes.ts';
import type { DpProc, SiteProc } from '../helpers/processes.ts';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex').toUpperCase();

/** `cairn dp import FILE --data DIR`, as an administrator runs it on the DP's machine. */
function dpImport(file: string, dataDir: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return runCairn(['dp', 'import', file, '--data', dataDir]);
}

describe('prestaged content', () => {
  let work: string;
  let site: SiteProc;
  let dp: DpProc | undefined;
  let source = '';
  let pkgId = '';

  before(async () => {
    work = await tempDir('e2e-prestage');
    source = path.join(work, 'source');
    await fsp.mkdir(path.join(source, 'sub'), { recursive: true });
    await fsp.writeFile(path.join(source, 'large.bin'), randomBytes(3 * 1024 * 1024));
    for (let i = 0; i < 10; i += 1) await fsp.writeFile(path.join(source, 'sub', `s${i}.txt`), `small ${i}\n`);
    await fsp.writeFile(path.join(source, 'empty'), '');
    site = await startSite(path.join(work, 'site'), ['--no-local-dp']);
    const created = await cli(site, ['package', 'create', '--name', 'Prestaged', '--source', source]);
    assert.equal(created.code, 0, created.stderr);
    pkgId = created.stdout.trim();
    await waitFor('stored', async () => (await api<{ storedVersion: number }>(site, 'GET', `/api/v1/packages/${pkgId}`)).json.storedVersion === 1);
  });

  after(async () => {
    await site?.kill();
    await dp?.kill();
    if (work) await fsp.rm(work, { recursive: true, force: true });
  });

  test('an exported file that is truncated or tampered with is refused and nothing is imported; the intact one imports, and a distribute then sends no file bytes', async () => {
    const file = path.join(work, `${pkgId}.pkgx`);
    const exp = await cli(site, ['package', 'export', pkgId, '--out', file, '--json']);
    assert.equal(exp.code, 0, exp.stderr);
    const exported = JSON.parse(exp.stdout) as { contentId: string; bytes: number; files: number };
    assert.equal(exported.contentId, `${pkgId}.1`);
    assert.equal(exported.bytes, (await fsp.stat(file)).size);
    assert.equal(exported.files, 12, 'ten small files, the large one and the empty one, each distinct');
    assert.match(await readLog(site.dataDir, 'SMSProv'), new RegExp(`exported ${pkgId}\\.1 as prestaged content`));

    const dpData = path.join(work, 'dp3');
    const bytes = await fsp.readFile(file);
    const truncated = path.join(work, 'truncated.pkgx');
    await fsp.writeFile(truncated, bytes.subarray(0, bytes.length - 1000));
    const tampered = path.join(work, 'tampered.pkgx');
    const copy = Buffer.from(bytes);
    copy[copy.length - 5000] = (copy[copy.length - 5000]! + 1) % 256;
    await fsp.writeFile(tampered, copy);
    for (const [bad, why] of [
      [truncated, /truncated/],
      [tampered, /tampered or damaged/],
    ] as const) {
      const r = await dpImport(bad, dpData);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /CAIRN_PRESTAGE_INVALID/);
      assert.match(r.stderr, why);
      const lib = path.join(dpData, 'ContentLib');
      const stored = fs.existsSync(path.join(lib, 'FileLib')) ? (await listFiles(path.join(lib, 'FileLib'))).filter((f) => !f.startsWith('.tmp')) : [];
      assert.deepEqual(stored, [], 'nothing imported');
    }

    const ok = await dpImport(file, dpData);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, new RegExp(`Imported content ${pkgId}\\.1 \\(12 files`));

    dp = await addDp(site, dpData, 'dp3');
    assert.equal((await cli(site, ['package', 'distribute', pkgId, '--dp', 'dp3'])).code, 0);
    await waitFor('installed on dp3', async () => {
      const s = (await api<{ distributionPoints: { dp: string; status: number }[] }>(site, 'GET', `/api/v1/packages/${pkgId}/status`)).json;
      return s.distributionPoints.some((d) => d.dp === 'dp3' && d.status === 3);
    });
    const xfer = await readLog(site.dataDir, 'PkgXferMgr');
    assert.match(xfer, /12 files already exist on dp3, 0 files to send \(0 bytes\)/);
    assert.match(xfer, /Sending completed successfully \(0 files, 0 bytes sent/);
    const large = await fetch(`${dp.url}/SMS_DP_SMSPKG$/${pkgId}/large.bin`);
    assert.equal(sha(Buffer.from(await large.arrayBuffer())), sha(await fsp.readFile(path.join(source, 'large.bin'))));
  });

  test('the validation schedule (a site setting) validates each installed package on each DP by itself, and catches a lost file', async () => {
    assert.ok(dp, 'the prestage test ran first');
    const set = await cli(site, ['settings', 'set', 'distmgr.validationIntervalSeconds', '1']);
    assert.equal(set.code, 0, set.stderr);
    assert.match(await readLog(site.dataDir, 'SMSProv'), /set distmgr\.validationIntervalSeconds to 1/);
    type Row = { dp: string; status: number; lastError: string; validation: { valid: boolean } | null };
    const rows = async (): Promise<Row[]> => (await api<{ distributionPoints: Row[] }>(site, 'GET', `/api/v1/packages/${pkgId}/status`)).json.distributionPoints;
    await waitFor('a scheduled validation', async () => (await rows()).some((r) => r.validation?.valid === true));
    assert.match(await readLog(site.dataDir, 'distmgr'), new RegExp(`Content validation of package ${pkgId} on \\S+ is due`));
    const lost = sha(await fsp.readFile(path.join(source, 'sub', 's3.txt')));
    await fsp.rm(path.join(dp.dataDir, 'ContentLib', 'FileLib', lost.slice(0, 4), lost));
    const bad = await waitFor('the lost file found', async () => (await rows()).find((r) => r.validation?.valid === false));
    assert.equal(bad.status, 5);
    assert.match(bad.lastError, /sub\/s3\.txt: missing/);
    assert.equal((await cli(site, ['settings', 'set', 'distmgr.validationIntervalSeconds', '0'])).code, 0);
    const unknown = await cli(site, ['settings', 'set', 'no.such.setting', '1']);
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /CAIRN_REQUEST_INVALID/);
  });
});
