/**
 * End to end, when things go wrong: an unreachable DP, a site killed in the
 * middle of a distribution, and bad input at the admin API and the CLI.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import fsp from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { openDatabase } from '../../src/datastore/engine.ts';
import { migrateToLatest } from '../../src/datastore/migrate.ts';
import { writeSetting } from '../../src/datastore/site-control.ts';
import { afterTests, api, cli, freePort, listFiles, makeTree, readLog, sha256File, startDp, startSite, tempDir, waitFor } from '../helpers/processes.ts';

const run = promisify(execFile);

interface StatusView {
  package: { storedVersion: number; lastError: string };
  distributionPoints: { dp: string; status: number; state: string; version: number; lastError: string }[];
}
interface Msg {
  id: number;
  severity: string;
  istr: string[];
}

const { cleanups, track } = afterTests();

async function prepared(prefix: string, settings: Record<string, number> = {}): Promise<string> {
  const work = await tempDir(prefix);
  cleanups.push(() => fsp.rm(work, { recursive: true, force: true }));
  const dataDir = path.join(work, 'site');
  // Test set-up: fast retries, written through the datastore before the site starts.
  const db = openDatabase(`sqlite:${path.join(dataDir, 'site.db')}`);
  await migrateToLatest(db.db, db.engine);
  for (const [k, v] of Object.entries(settings)) await writeSetting(db.db, k as Parameters<typeof writeSetting>[1], v);
  await db.destroy();
  return work;
}

describe('resilience', () => {
  test('[CD2.10][CD2.14][CD2.15] an unreachable DP shows as retrying, is retried with backoff, and completes when it comes back', async () => {
    const work = await prepared('retry', { 'pkgxfermgr.retryBaseMs': 300, 'components.rescanMs': 300 });
    const source = path.join(work, 'source');
    await makeTree(source, 2 * 1024 * 1024);
    const site = track(await startSite(path.join(work, 'site'), ['--no-local-dp']));
    const port = await freePort();
    const key = (await cli(site, ['dp', 'add', '--name', 'late', '--url', `http://127.0.0.1:${port}`])).stdout.trim();
    const pkgId = (await cli(site, ['package', 'create', '--name', 'Retry me', '--source', source])).stdout.trim();
    assert.equal((await cli(site, ['package', 'distribute', pkgId, '--dp', 'late'])).code, 0);

    const retrying = await waitFor('the DP to show as retrying', async () => {
      const s = (await api<StatusView>(site, 'GET', `/api/v1/packages/${pkgId}/status`)).json;
      const d = s.distributionPoints[0];
      return d && d.status === 4 ? d : undefined;
    });
    assert.equal(retrying.state, 'retrying');
    assert.match(retrying.lastError, /CAIRN_DP_UNREACHABLE/);
    await waitFor('a second attempt', async () => /attempt 2\/30/.test(await readLog(site.dataDir, 'PkgXferMgr')));
    const warned = (await api<{ statusMessages: Msg[] }>(site, 'GET', `/api/v1/status-messages?package=${pkgId}&id=2391`)).json.statusMessages;
    assert.ok(warned.length >= 1 && warned[0]!.severity === 'W', '2391 raised as a warning');

    const dp = track(await startDp(path.join(work, 'late'), port, key, 'late'));
    const done = await waitFor('the DP to be installed', async () => {
      const s = (await api<StatusView>(site, 'GET', `/api/v1/packages/${pkgId}/status`)).json;
      return s.distributionPoints[0]?.status === 3 ? s.distributionPoints[0] : undefined;
    });
    assert.equal(done.lastError, '');
    const body = await fetch(`${dp.url}/SMS_DP_SMSPKG$/${pkgId}/readme%20with%20spaces.txt`);
    assert.equal(await body.text(), 'hello, distribution point\n');
  });

  test('[CD2.6][CD2.9][CD2.10][CD2.12][CD2.15] a site killed during distribution restarts and finishes with nothing duplicated', async () => {
    const work = await prepared('crash', { 'components.rescanMs': 300, 'pkgxfermgr.filesInParallel': 1 });
    const source = path.join(work, 'source');
    await makeTree(source, 200 * 1024 * 1024);
    const siteDir = path.join(work, 'site');
    let site = track(await startSite(siteDir, ['--no-local-dp']));
    const port = await freePort();
    const key = (await cli(site, ['dp', 'add', '--name', 'dpx', '--url', `http://127.0.0.1:${port}`])).stdout.trim();
    const dp = track(await startDp(path.join(work, 'dpx'), port, key, 'dpx'));
    const pkgId = (await cli(site, ['package', 'create', '--name', 'Crash me', '--source', source])).stdout.trim();
    assert.equal((await cli(site, ['package', 'distribute', pkgId, '--dp', 'dpx'])).code, 0);

    // Kill the site while the transfer manager is sending files.
    await waitFor('sending to start', async () => /Sending file '/.test(await readLog(siteDir, 'PkgXferMgr')));
    await site.kill('SIGKILL');
    const before = await readLog(siteDir, 'PkgXferMgr');
    assert.doesNotMatch(before, /Finished sending SWD package/, 'the site was killed before the send finished');

    site = track(await startSite(siteDir, ['--no-local-dp']));
    await waitFor('the DP to be installed after restart', async () => {
      const s = (await api<StatusView>(site, 'GET', `/api/v1/packages/${pkgId}/status`)).json;
      return s.distributionPoints[0]?.status === 3;
    });

    const db = openDatabase(`sqlite:${path.join(siteDir, 'site.db')}`);
    try {
      const jobs = await db.db.selectFrom('DistributionJobs').selectAll().where('PkgID', '=', pkgId).execute();
      assert.equal(jobs.length, 1, 'one transfer job, resumed rather than recreated');
      assert.equal(jobs[0]!.State, 5);
      const rows = await db.db.selectFrom('PkgStatus').selectAll().where('ID', '=', pkgId).execute();
      assert.equal(rows.filter((r) => r.Type === 2).length, 1);
      const done = await waitFor('2330 stored', async () => {
        const m = await db.db.selectFrom('StatusMessages').select('MessageID').where('MessageID', 'in', [2330, 8200]).execute();
        return m.some((x) => x.MessageID === 2330) ? m : undefined;
      });
      assert.equal(done.filter((m) => m.MessageID === 2330).length, 1, 'one 2330');
      assert.equal(done.filter((m) => m.MessageID === 8200).length, 1, 'one 8200');
    } finally {
      await db.destroy();
    }
    // The DP holds each distinct file once and serves the large file intact.
    const fileLib = (await listFiles(path.join(dp.dataDir, 'ContentLib', 'FileLib'))).filter((f) => !f.endsWith('.INI') && !f.startsWith('.'));
    assert.equal(fileLib.length, (await listFiles(source)).length - 1);
    const temps = (await fsp.readdir(path.join(dp.dataDir, 'SMS_DP$'))).filter((f) => f.endsWith('.temp'));
    assert.deepEqual(temps, []);
    const res = await fetch(`${dp.url}/SMS_DP_SMSPKG$/${pkgId}/large%20file.bin`);
    const target = path.join(work, 'large.bin');
    await fsp.writeFile(target, Buffer.from(await res.arrayBuffer()));
    assert.equal(await sha256File(target), await sha256File(path.join(source, 'large file.bin')));
  });

  test('[CD2.14][CD2.15] a DP out of disk space fails the distribution with the reason and status message 2328', async (t) => {
    const work = await prepared('full', { 'components.rescanMs': 300 });
    const dpDir = path.join(work, 'small-dp');
    await fsp.mkdir(dpDir);
    try {
      await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dpDir]);
    } catch (err) {
      t.skip(`cannot mount a small tmpfs here (${(err as Error).message.split('\n')[0]})`);
      return;
    }
    cleanups.push(async () => {
      await run('umount', ['-l', dpDir]).catch(() => undefined);
    });
    const source = path.join(work, 'source');
    await makeTree(source, 4 * 1024 * 1024);
    const site = track(await startSite(path.join(work, 'site'), ['--no-local-dp']));
    const port = await freePort();
    const key = (await cli(site, ['dp', 'add', '--name', 'tiny', '--url', `http://127.0.0.1:${port}`])).stdout.trim();
    track(await startDp(dpDir, port, key, 'tiny'));
    const pkgId = (await cli(site, ['package', 'create', '--name', 'Too big', '--source', source])).stdout.trim();
    assert.equal((await cli(site, ['package', 'distribute', pkgId, '--dp', 'tiny'])).code, 0);
    const failed = await waitFor('the DP to fail', async () => {
      const s = (await api<StatusView>(site, 'GET', `/api/v1/packages/${pkgId}/status`)).json;
      return s.distributionPoints[0]?.status === 5 ? s.distributionPoints[0] : undefined;
    });
    assert.equal(failed.state, 'failed');
    assert.match(failed.lastError, /CAIRN_DP_DISK_FULL/);
    const m = await waitFor('2328', async () => {
      const r = (await api<{ statusMessages: Msg[] }>(site, 'GET', `/api/v1/status-messages?package=${pkgId}&id=2328`)).json.statusMessages;
      return r.length ? r : undefined;
    });
    assert.equal(m[0]!.severity, 'E');
    assert.match(m[0]!.istr[2]!, /CAIRN_DP_DISK_FULL/);
  });

  test('bad input gets a clear error code and changes nothing', async () => {
    const work = await prepared('bad');
    const site = track(await startSite(path.join(work, 'site'), ['--no-local-dp']));

    const missing = await cli(site, ['package', 'create', '--name', 'Nope', '--source', path.join(work, 'does-not-exist')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /CAIRN_PACKAGE_SOURCE_MISSING/);
    assert.equal((await api<{ packages: unknown[] }>(site, 'GET', '/api/v1/packages')).json.packages.length, 0, 'no package was created');

    const unknownPkg = await cli(site, ['package', 'status', 'CS1FFFFF']);
    assert.equal(unknownPkg.code, 1);
    assert.match(unknownPkg.stderr, /CAIRN_PACKAGE_NOT_FOUND/);

    await fsp.mkdir(path.join(work, 'ok'));
    await fsp.writeFile(path.join(work, 'ok', 'a.txt'), 'a');
    const pkgId = (await cli(site, ['package', 'create', '--name', 'Fine', '--source', path.join(work, 'ok')])).stdout.trim();
    const unknownDp = await cli(site, ['package', 'distribute', pkgId, '--dp', 'ghost']);
    assert.equal(unknownDp.code, 1);
    assert.match(unknownDp.stderr, /CAIRN_DP_NOT_FOUND/);

    const noToken = await fetch(`${site.url}/api/v1/packages`);
    assert.equal(noToken.status, 401);
    assert.equal(((await noToken.json()) as { code: string }).code, 'CAIRN_AUTH_MISSING');
    const badToken = await fetch(`${site.url}/api/v1/packages`, { headers: { authorization: 'Bearer wrong' } });
    assert.equal(badToken.status, 401);
    assert.match(await readLog(site.dataDir, 'SMSProv'), /Audit: refused GET \/api\/v1\/packages from 127\.0\.0\.1: CAIRN_AUTH_INVALID/);

    const badUrl = await cli(site, ['dp', 'add', '--name', 'x', '--url', 'ftp://example']);
    assert.match(badUrl.stderr, /CAIRN_DP_URL_INVALID/);

    // A source whose symlink leads outside it: the package fails with a reason and a status message.
    const evil = path.join(work, 'evil');
    await fsp.mkdir(evil);
    await fsp.writeFile(path.join(evil, 'fine.txt'), 'fine');
    await fsp.symlink('/etc/passwd', path.join(evil, 'passwd'));
    const evilId = (await cli(site, ['package', 'create', '--name', 'Evil', '--source', evil])).stdout.trim();
    const failed = await waitFor('the package to fail', async () => {
      const p = (await api<{ lastError: string }>(site, 'GET', `/api/v1/packages/${evilId}`)).json;
      return p.lastError ? p : undefined;
    });
    assert.match(failed.lastError, /CAIRN_PACKAGE_SOURCE_ESCAPES/);
    const m = await waitFor('2302', async () => {
      const r = (await api<{ statusMessages: Msg[] }>(site, 'GET', `/api/v1/status-messages?package=${evilId}&id=2302`)).json.statusMessages;
      return r.length ? r : undefined;
    });
    assert.equal(m[0]!.severity, 'E');
    assert.match(m[0]!.istr.join(' '), /passwd/);

    // A source folder that vanished after the package was created: 2306 with the reason.
    const gone = path.join(work, 'gone');
    await fsp.mkdir(gone);
    const goneId = (await cli(site, ['package', 'create', '--name', 'Gone', '--source', gone])).stdout.trim();
    await fsp.rm(gone, { recursive: true });
    await waitFor('2306', async () => {
      const r = (await api<{ statusMessages: Msg[] }>(site, 'GET', `/api/v1/status-messages?package=${goneId}&id=2306`)).json.statusMessages;
      return r.length ? r : undefined;
    }).catch(async () => {
      // The snapshot may have won the race with the delete; then the package is simply stored.
      const p = (await api<{ storedVersion: number }>(site, 'GET', `/api/v1/packages/${goneId}`)).json;
      assert.equal(p.storedVersion, 1);
    });
  });
});
