/**
 * End to end: a standalone site and two distribution points, each its own
 * process on loopback. A package made from a generated tree is created,
 * distributed to both DPs, and every file is downloaded from each with curl.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import fsp from 'node:fs/promises';
import { addDp, api, cli, listFiles, makeTree, readLog, sha256File, startSite, tempDir, waitFor } from '../helpers/processes.ts';
import type { DpProc, SiteProc } from '../helpers/processes.ts';

const run = promisify(execFile);

interface StatusView {
  package: { packageId: string; storedVersion: number; fileCount: number; hash: string; lastError: string };
  site: { status: number; version: number } | null;
  distributionPoints: { dp: string; status: number; state: string; version: number; contentUrl: string; lastError: string }[];
}
interface Msg {
  id: number;
  component: string;
  istr: string[];
  attrs: { id: number; value: string }[];
}

describe('create a package and distribute it to two standard DPs', () => {
  let work: string;
  let site: SiteProc;
  const dps: DpProc[] = [];
  let pkgId = '';
  let source = '';

  before(async () => {
    work = await tempDir('e2e');
    source = path.join(work, 'source');
    await makeTree(source);
    site = await startSite(path.join(work, 'site'), ['--no-local-dp']);
    for (const name of ['dp1', 'dp2']) dps.push(await addDp(site, path.join(work, name), name));
  });

  after(async () => {
    await site?.kill();
    for (const dp of dps) await dp.kill();
    if (work) await fsp.rm(work, { recursive: true, force: true });
  });

  test('[CD1.1][CD1.2][CD1.3][CD1.4][CD1.5][CD1.6][CD1.7][CD1.8][CD1.9][CD1.10] creating a package snapshots its source into the content library', async () => {
    const created = await cli(site, ['package', 'create', '--name', 'Demo package', '--source', source]);
    assert.equal(created.code, 0, created.stderr);
    pkgId = created.stdout.trim();
    assert.match(pkgId, /^CS1[0-9A-F]{5}$/);

    const status = await waitFor('the package to be stored', async () => {
      const s = await api<StatusView>(site, 'GET', `/api/v1/packages/${pkgId}/status`);
      return s.json.package.storedVersion === 1 ? s.json : undefined;
    });
    const expectedFiles = await listFiles(source);
    assert.equal(status.package.fileCount, expectedFiles.length);
    assert.match(status.package.hash, /^[0-9A-F]{64}$/);
    assert.equal(status.site?.version, 1);

    const msgs = await waitFor('2301', async () => {
      const m = (await api<{ statusMessages: Msg[] }>(site, 'GET', `/api/v1/status-messages?package=${pkgId}`)).json.statusMessages;
      return m.some((x) => x.id === 2301) ? m : undefined;
    });
    assert.deepEqual(
      msgs.map((m) => m.id),
      [2300, 2376, 2301],
    );
    assert.deepEqual(msgs[0]!.istr.slice(0, 2), ['Demo package', pkgId]);

    const prov = await readLog(site.dataDir, 'SMSProv');
    assert.match(prov, new RegExp(`Audit: User admin \\(127\\.0\\.0\\.1\\) called POST /api/v1/packages: 201, created package ${pkgId}`));
    const dbmon = await readLog(site.dataDir, 'SMSDBMON');
    assert.match(dbmon, new RegExp(`RCV:INSERT on PkgNotification for PkgNotify_Add \\[${pkgId}\\]\\[\\d+\\]`));
    assert.match(dbmon, new RegExp(`SND:Dropped \\S+distmgr\\.box/${pkgId}\\.PKN \\[\\d+\\]`));
    const distmgr = await readLog(site.dataDir, 'distmgr');
    for (const line of [
      `Adding package '${pkgId}' to package processing queue.`,
      'Currently using 0 out of 3 allowed package processing threads.',
      `Processing package ${pkgId} (SourceVersion:1;StoredVersion:0)`,
      `Start adding package ${pkgId}...`,
      'Package action is 2, update mask is 0',
      `Taking package snapshot for package ${pkgId}`,
      `Writing package definition for ${pkgId}`,
      `Successfully created RDC signatures for package ${pkgId} version 1`,
      `The hash for algorithm 32780 is ${status.package.hash}`,
      'The RDC signature hash for algorithm 32780 is',
      `StoredPkgVersion (1) of package ${pkgId}. StoredPkgVersion in database is 1.`,
      `Exiting package processing thread for package ${pkgId}.`,
    ]) assert.ok(distmgr.includes(line), `distmgr.log lacks: ${line}`);
    const size = Number(/The size of package \S+, version 1 is (\d+) KBytes/.exec(distmgr)?.[1]);
    let total = 0;
    for (const f of expectedFiles) total += (await fsp.stat(path.join(source, f))).size;
    assert.equal(size, Math.ceil(total / 1024));
  });

  test('[CD2.1][CD2.2][CD2.3][CD2.4][CD2.5][CD2.6][CD2.7][CD2.8][CD2.9][CD2.10][CD2.11][CD2.12][CD2.13][CD2.14][CD2.15] distributing sends every file to both DPs, and curl gets each one back intact', async () => {
    assert.ok(pkgId, 'the package test ran first');
    const dist = await cli(site, ['package', 'distribute', pkgId, '--dp', 'dp1', '--dp', 'dp2']);
    assert.equal(dist.code, 0, dist.stderr);

    const status = await waitFor('both DPs installed', async () => {
      const s = (await api<StatusView>(site, 'GET', `/api/v1/packages/${pkgId}/status`)).json;
      return s.distributionPoints.length === 2 && s.distributionPoints.every((d) => d.status === 3) ? s : undefined;
    });
    const byName = new Map(status.distributionPoints.map((d) => [d.dp, d]));
    for (const dp of dps) {
      const row = byName.get(path.basename(dp.dataDir))!;
      assert.equal(row.state, 'installed');
      assert.equal(row.version, 1);
      assert.equal(row.contentUrl, `${dp.url}/SMS_DP_SMSPKG$/${pkgId}`);
    }

    // Every file from every DP, with curl, compared by SHA-256 with the source.
    const files = await listFiles(source);
    for (const dp of dps) {
      const out = path.join(work, `download-${dp.port}`);
      await fsp.mkdir(out, { recursive: true });
      for (const [i, rel] of files.entries()) {
        const url = `${dp.url}/SMS_DP_SMSPKG$/${pkgId}/${rel.split('/').map(encodeURIComponent).join('/')}`;
        const target = path.join(out, String(i));
        const { stdout } = await run('curl', ['-sS', '-o', target, '-w', '%{http_code}', url]);
        assert.equal(stdout, '200', `${url} answered ${stdout}`);
        assert.equal(await sha256File(target), await sha256File(path.join(source, rel)), `${rel} from ${dp.url}`);
      }
    }

    // Per DP, the status messages come in the seed's order.
    const msgs = await waitFor('2330 for both DPs', async () => {
      const m = (await api<{ statusMessages: Msg[] }>(site, 'GET', `/api/v1/status-messages?package=${pkgId}`)).json.statusMessages;
      return m.filter((x) => x.id === 2330).length === 2 ? m : undefined;
    });
    for (const dp of ['dp1', 'dp2']) {
      const mine = msgs.filter((m) => m.attrs.some((a) => a.id === 404 && a.value.includes(`\\\\${dp}\\`))).map((m) => m.id);
      assert.deepEqual(mine, [2342, 2357, 8200, 8210, 2330], `status messages for ${dp}`);
    }

    const xfer = await readLog(site.dataDir, 'PkgXferMgr');
    assert.match(xfer, new RegExp(`Found send request with ID \\d+, Package ${pkgId}, Version 1, Priority 2, Destination dp1, DPPriority 200`));
    assert.match(xfer, /Redistribute=0, Related=/);
    assert.match(xfer, new RegExp(`Sending status to Distribution manager for pkg ${pkgId}, version 1, status 0`));
    assert.match(xfer, new RegExp(`Finished sending SWD package ${pkgId} version 1 to distribution point dp2`));
    // Each DP's figures count every distinct file's bytes, whichever lane (a bundle, the large file) finished first.
    const distinct = new Map<string, number>();
    for (const rel of files) distinct.set(await sha256File(path.join(source, rel)), (await fsp.stat(path.join(source, rel))).size);
    const totalBytes = [...distinct.values()].reduce((n, x) => n + x, 0);
    const figures = [...xfer.matchAll(/Sending completed successfully \((\d+) files, (\d+) bytes sent/g)];
    assert.equal(figures.length, 2);
    for (const m of figures) {
      assert.equal(Number(m[1]), distinct.size);
      assert.ok(Number(m[2]) >= totalBytes && Number(m[2]) < totalBytes + 64 * 1024, `${m[2]} bytes sent for ${totalBytes} bytes of files`);
    }
    const distmgr = await readLog(site.dataDir, 'distmgr');
    assert.match(distmgr, new RegExp(`No action specified for the package ${pkgId}, however there may be package server changes.`));
    assert.match(distmgr, new RegExp(`Created package transfer job \\d+ to send package ${pkgId} to distribution point`));
    assert.match(distmgr, /All DP threads have finished for package/);
    assert.match(distmgr, /STA for regular DP/);
    const dpLog = await readLog(dps[0]!.dataDir, 'SMSDPProv');
    assert.ok(dpLog.includes(`Content '${pkgId}.1' for package '${pkgId}' has been successfully added to the content library`), 'DP log names the content');
    // The per-file records were written ahead of the files, before the content was added (ADR 0015), and no marker is left.
    const prepared = dpLog.indexOf(`Prepared the records of content '${pkgId}.1' for package '${pkgId}' (${files.length} files) while its files arrive`);
    assert.ok(prepared >= 0 && prepared < dpLog.indexOf(`Content '${pkgId}.1' for package '${pkgId}' has been successfully added`), 'records prepared before the content was added');
    assert.deepEqual((await fsp.readdir(path.join(dps[0]!.dataDir, 'ContentLib', 'DataLib'))).filter((n) => n.endsWith('.prepared')), []);

    // Identical files were stored once in each DP's library.
    const fileLib = path.join(dps[0]!.dataDir, 'ContentLib', 'FileLib');
    const stored = (await listFiles(fileLib)).filter((f) => !f.endsWith('.INI') && !f.startsWith('.'));
    assert.equal(stored.length, files.length - 1);
    // Inboxes are empty once the work is done.
    const box = path.join(site.dataDir, 'inboxes');
    assert.deepEqual((await listFiles(box)).filter((f) => /\.(PKN|STA|SVF)$/.test(f)), []);
  });

  test('a Range request gets exactly the bytes asked for', async () => {
    const url = `${dps[1]!.url}/SMS_DP_SMSPKG$/${pkgId}/large%20file.bin`;
    const target = path.join(work, 'range.bin');
    const { stdout } = await run('curl', ['-sS', '-r', '1048576-1048675', '-o', target, '-w', '%{http_code}', url]);
    assert.equal(stdout, '206');
    const got = await fsp.readFile(target);
    const whole = await fsp.open(path.join(source, 'large file.bin'), 'r');
    const want = Buffer.alloc(100);
    await whole.read(want, 0, 100, 1048576);
    await whole.close();
    assert.deepEqual(got, want);
  });
});
