/**
 * End to end, every package action of seed 001 on standard DPs (issue 3):
 * update with only changed files and changed blocks sent, corruption caught
 * by validation and repaired by redistribute, removal from one DP keeping
 * the files another package shares, delete, and the bad inputs around them.
 * A site and two DPs, each its own process on loopback; files are fetched
 * back over HTTP and compared by hash.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { addDp, api, cli, listFiles, readLog, startSite, tempDir, waitFor } from '../helpers/processes.ts';
import type { DpProc, SiteProc } from '../helpers/processes.ts';
import { CHUNKING } from '../../src/content-library/chunker.ts';

const run = promisify(execFile);
const KiB = 1024;
const MiB = 1024 * KiB;

interface DpRow {
  dp: string;
  status: number;
  state: string;
  version: number;
  contentUrl: string;
  lastError: string;
  validation: { valid: boolean; problems: string[]; version: number } | null;
}
interface StatusView {
  package: { packageId: string; storedVersion: number; sourceVersion: number; lastError: string; deleting: boolean };
  site: { status: number; version: number } | null;
  distributionPoints: DpRow[];
}
interface Msg {
  id: number;
  severity: string;
  istr: string[];
}

const sha = (b: string | Uint8Array): string => createHash('sha256').update(b).digest('hex').toUpperCase();

async function status(site: SiteProc, pkgId: string): Promise<StatusView> {
  return (await api<StatusView>(site, 'GET', `/api/v1/packages/${pkgId}/status`)).json;
}

async function waitForDps(site: SiteProc, pkgId: string, what: string, ok: (rows: Map<string, DpRow>) => boolean): Promise<Map<string, DpRow>> {
  return waitFor(what, async () => {
    const rows = new Map((await status(site, pkgId)).distributionPoints.map((d) => [d.dp, d]));
    return ok(rows) ? rows : undefined;
  });
}

async function messages(site: SiteProc, pkgId: string): Promise<Msg[]> {
  return (await api<{ statusMessages: Msg[] }>(site, 'GET', `/api/v1/status-messages?package=${pkgId}`)).json.statusMessages;
}

/** Downloads every file of `source` from the DP with curl and compares hashes. */
async function checkDownloads(dp: DpProc, pkgId: string, source: string): Promise<void> {
  for (const rel of await listFiles(source)) {
    const url = `${dp.url}/SMS_DP_SMSPKG$/${pkgId}/${rel.split('/').map(encodeURIComponent).join('/')}`;
    const { stdout } = await run('curl', ['-sS', '--fail', '-o', '-', url], { encoding: 'buffer', maxBuffer: 64 * MiB });
    assert.equal(sha(stdout), sha(await fsp.readFile(path.join(source, rel))), `${rel} from ${path.basename(dp.dataDir)}`);
  }
}

async function httpStatus(url: string): Promise<number> {
  return (await fetch(url)).status;
}

function dpFile(dp: DpProc, hash: string): string {
  return path.join(dp.dataDir, 'ContentLib', 'FileLib', hash.slice(0, 4), hash);
}

describe('package lifecycle on standard DPs', () => {
  let work: string;
  let site: SiteProc;
  const dps = new Map<string, DpProc>();
  let srcA = '';
  let srcB = '';
  let pkgA = '';
  let pkgB = '';
  const sharedBytes = 'a file both packages hold\n'.repeat(100);

  before(async () => {
    work = await tempDir('e2e-life');
    srcA = path.join(work, 'source-a');
    srcB = path.join(work, 'source-b');
    await fsp.mkdir(path.join(srcA, 'small'), { recursive: true });
    for (let i = 0; i < 100; i += 1) await fsp.writeFile(path.join(srcA, 'small', `f${String(i).padStart(3, '0')}.dat`), randomBytes(4 * KiB));
    await fsp.writeFile(path.join(srcA, 'big.bin'), randomBytes(8 * MiB));
    await fsp.writeFile(path.join(srcA, 'shared.txt'), sharedBytes);
    await fsp.mkdir(srcB, { recursive: true });
    await fsp.writeFile(path.join(srcB, 'shared.txt'), sharedBytes);
    await fsp.writeFile(path.join(srcB, 'b-only.txt'), 'only in B\n');

    site = await startSite(path.join(work, 'site'), ['--no-local-dp']);
    for (const name of ['dp1', 'dp2']) dps.set(name, await addDp(site, path.join(work, name), name));
    const a = await cli(site, ['package', 'create', '--name', 'Package A', '--source', srcA]);
    const b = await cli(site, ['package', 'create', '--name', 'Package B', '--source', srcB]);
    assert.equal(a.code + b.code, 0, a.stderr + b.stderr);
    pkgA = a.stdout.trim();
    pkgB = b.stdout.trim();
    assert.equal((await cli(site, ['package', 'distribute', pkgA, '--dp', 'dp1', '--dp', 'dp2'])).code, 0);
    assert.equal((await cli(site, ['package', 'distribute', pkgB, '--dp', 'dp1'])).code, 0);
    await waitForDps(site, pkgA, 'A installed on both DPs', (r) => r.get('dp1')?.status === 3 && r.get('dp2')?.status === 3);
    await waitForDps(site, pkgB, 'B installed on dp1', (r) => r.get('dp1')?.status === 3);
  });

  after(async () => {
    await site?.kill();
    for (const dp of dps.values()) await dp.kill();
    if (work) await fsp.rm(work, { recursive: true, force: true });
  });

  test('[CD4.1][CD4.2][CD4.3][CD4.5][CD4.6] update sends only changed files and changed blocks; removed files leave the DPs', async () => {
    // 1% of the small files changed, one removed, one added, two 256 KiB regions of the large file rewritten.
    const changedSmall = path.join(srcA, 'small', 'f042.dat');
    await fsp.writeFile(changedSmall, randomBytes(4 * KiB));
    const removedRel = 'small/f077.dat';
    const removedHash = sha(await fsp.readFile(path.join(srcA, removedRel)));
    await fsp.rm(path.join(srcA, removedRel));
    await fsp.writeFile(path.join(srcA, 'small', 'new.dat'), randomBytes(4 * KiB));
    const big = await fsp.readFile(path.join(srcA, 'big.bin'));
    randomBytes(256 * KiB).copy(big, 1 * MiB);
    randomBytes(256 * KiB).copy(big, 6 * MiB);
    await fsp.writeFile(path.join(srcA, 'big.bin'), big);
    const changedBytes = 4 * KiB + 4 * KiB + 512 * KiB;

    const upd = await cli(site, ['package', 'update', pkgA]);
    assert.equal(upd.code, 0, upd.stderr);
    assert.match(upd.stdout, new RegExp(`Updating ${pkgA} to source version 2`));
    const rows = await waitForDps(site, pkgA, 'version 2 on both DPs', (r) => r.get('dp1')?.version === 2 && r.get('dp2')?.version === 2 && r.get('dp1')?.status === 3 && r.get('dp2')?.status === 3);
    assert.equal(rows.get('dp1')?.state, 'installed');

    const distmgr = await readLog(site.dataDir, 'distmgr');
    for (const line of [
      `Processing package ${pkgA} (SourceVersion:2;StoredVersion:1)`,
      `Start updating package ${pkgA}...`,
      `The source of the package ${pkgA} has changed.`,
      `StoredPkgVersion (2) of package ${pkgA}.`,
    ]) assert.ok(distmgr.includes(line), `distmgr.log lacks: ${line}`);
    const ids = (await messages(site, pkgA)).map((m) => m.id);
    const afterUpdate = ids.slice(ids.lastIndexOf(2300));
    assert.deepEqual(afterUpdate.filter((id) => [2300, 2376, 2311, 2301].includes(id)), [2300, 2376, 2311, 2301]);
    assert.equal(afterUpdate.filter((id) => id === 2357).length, 2, 'one transfer job per DP');

    const xfer = await readLog(site.dataDir, 'PkgXferMgr');
    const sends = [...xfer.matchAll(/Sending completed successfully \((\d+) files, (\d+) bytes sent; (\d+) as chunks, (\d+) chunks sent/g)].slice(-2);
    assert.equal(sends.length, 2);
    for (const [, files, bytes, chunked, chunks] of sends) {
      assert.equal(Number(files), 3, 'the changed small file, the new file and big.bin');
      assert.equal(Number(chunked), 1, 'big.bin travels as its changed chunks');
      assert.ok(Number(chunks) >= 2 && Number(chunks) < 40, `${chunks} chunks sent`);
      // Close to the changed bytes: the few chunks round each changed region, plus bundle headers; not the 8 MiB file.
      assert.ok(Number(bytes) >= changedBytes - 4 * KiB && Number(bytes) <= changedBytes + 8 * CHUNKING.maxSize + 8 * KiB, `${bytes} bytes sent for ${changedBytes} changed`);
    }
    for (const dp of dps.values()) {
      await checkDownloads(dp, pkgA, srcA);
      assert.equal(await httpStatus(`${dp.url}/SMS_DP_SMSPKG$/${pkgA}/${removedRel}`), 404);
      // The DP removes the superseded version after it answers (ADR 0009, amendment 3): its files go soon after.
      await waitFor('the removed file to leave the DP library', async () => !fs.existsSync(dpFile(dp, removedHash)));
      const sig = await fetch(`${dp.url}/SMS_DP_SMSSIG$/${pkgA}.2`);
      assert.equal(sig.status, 200);
      const body = (await sig.json()) as { format: string; signatures: { hash: string }[] };
      assert.equal(body.format, 'cairn-signatures/2');
      assert.deepEqual(body.signatures.map((s) => s.hash), [sha(big)]);
      const dpLog = await waitFor('the DP to log the removal', async () => {
        const text = await readLog(dp.dataDir, 'SMSDPProv');
        return text.includes(`Removed content '${pkgA}.1' of package '${pkgA}' (superseded by '${pkgA}.2')`) ? text : undefined;
      });
      assert.match(dpLog, new RegExp(`Added file ${sha(big)} for content ${pkgA}\\.2 to the content library as \\d+ chunks`));
    }
  });

  test('[CD2.12] a DP that never had the old version gets a changed large file whole, not as extents of a file it lacks', async () => {
    const dp3 = await addDp(site, path.join(work, 'dp3'), 'dp3');
    dps.set('dp3', dp3);
    const big = await fsp.readFile(path.join(srcA, 'big.bin'));
    assert.equal((await cli(site, ['package', 'distribute', pkgA, '--dp', 'dp3'])).code, 0);
    await waitForDps(site, pkgA, 'A installed on dp3', (r) => r.get('dp3')?.status === 3 && r.get('dp3')?.version === 2);
    const xfer = await readLog(site.dataDir, 'PkgXferMgr');
    assert.match(xfer, /dp3 lacks file [0-9A-F]{64} that 'big\.bin' shares bytes with; sending it whole\./);
    // Stored whole on dp3: its FileLib entry is the bytes, not a manifest.
    assert.ok((await fsp.readFile(dpFile(dp3, sha(big)))).equals(big));
    await checkDownloads(dp3, pkgA, srcA);
  });

  test('[CD4.2][CD4.6] the quick check finds an edit that kept size and modification time (inode, change time); update --verify-all finds one a version recorded without them misses', async () => {
    const all = (r: Map<string, DpRow>, v: number): boolean => ['dp1', 'dp2', 'dp3'].every((d) => r.get(d)?.version === v && r.get(d)?.status === 3);
    const sameTime = async (rel: string): Promise<void> => {
      const file = path.join(srcA, rel);
      const st = await fsp.stat(file);
      await fsp.writeFile(file, randomBytes(st.size));
      await fsp.utimes(file, st.atime, st.mtime);
    };
    const v0 = (await status(site, pkgA)).package.storedVersion;
    await sameTime('small/f020.dat');
    assert.equal((await cli(site, ['package', 'update', pkgA])).code, 0);
    await waitForDps(site, pkgA, `version ${v0 + 1} on every DP`, (r) => all(r, v0 + 1));
    for (const dp of dps.values()) await checkDownloads(dp, pkgA, srcA);

    // A version snapshotted before inode and change time were kept has no source index: size, time and mode decide.
    await fsp.rm(path.join(site.dataDir, 'ContentLib', 'SigLib', `${pkgA}.${v0 + 1}.source.json`));
    const oldHash = sha(await fsp.readFile(path.join(srcA, 'small', 'f021.dat')));
    await sameTime('small/f021.dat');
    assert.equal((await cli(site, ['package', 'update', pkgA])).code, 0);
    await waitForDps(site, pkgA, `version ${v0 + 2} on every DP`, (r) => all(r, v0 + 2));
    const listing = (await (await fetch(`${dps.get('dp1')!.url}/SMS_DP_SMSPKG$/${pkgA}/`)).json()) as { files: { path: string; hash: string }[] };
    assert.equal(listing.files.find((f) => f.path === 'small/f021.dat')?.hash, oldHash, 'the quick check kept the old bytes');

    const upd = await cli(site, ['package', 'update', pkgA, '--verify-all']);
    assert.equal(upd.code, 0, upd.stderr);
    assert.match(upd.stdout, /every file re-hashed/);
    await waitForDps(site, pkgA, `version ${v0 + 3} on every DP`, (r) => all(r, v0 + 3));
    for (const dp of dps.values()) await checkDownloads(dp, pkgA, srcA);
    const distmgr = await readLog(site.dataDir, 'distmgr');
    assert.ok(distmgr.includes(`Re-hashing every file of package ${pkgA} (update --verify-all): the quick check is off for this snapshot`));
    assert.match(distmgr, /Read all \d+ files \(\d+ bytes\); 1 of them changed although their size, times, inode and mode had not/);
    assert.ok(distmgr.includes(`File small/f021.dat of package ${pkgA} changed although its size, times and mode did not; found by --verify-all`));
    assert.match(await readLog(site.dataDir, 'SMSProv'), new RegExp(`POST /api/v1/packages/${pkgA}/update: 200, refreshing the source of ${pkgA} \\(source version ${v0 + 3}, every file re-hashed\\)`));
    // The marker is gone once the snapshot is recorded: the next update uses the quick check again.
    assert.equal(fs.existsSync(path.join(site.dataDir, 'inboxes', 'distmgr.box', `${pkgA}.VFY`)), false);
  });

  test('[CD5.1][CD5.2] validation catches a damaged and a lost file; redistribute repairs them', async () => {
    const dp2 = dps.get('dp2')!;
    const damaged = sha(await fsp.readFile(path.join(srcA, 'small', 'f010.dat')));
    const lost = sha(await fsp.readFile(path.join(srcA, 'small', 'f011.dat')));
    await fsp.writeFile(dpFile(dp2, damaged), randomBytes(4 * KiB));
    await fsp.rm(dpFile(dp2, lost));

    assert.equal((await cli(site, ['package', 'validate', pkgA, '--dp', 'dp2'])).code, 0);
    const bad = await waitForDps(site, pkgA, 'dp2 invalid', (r) => r.get('dp2')?.validation?.valid === false);
    const row = bad.get('dp2')!;
    assert.equal(row.status, 5);
    assert.equal(row.state, 'failed');
    assert.match(row.lastError, /small\/f010\.dat: hash mismatch/);
    assert.match(row.lastError, /small\/f011\.dat: missing/);
    // Status messages reach the database through the status manager's inbox, a moment after the DP's row.
    let failedMsg: Awaited<ReturnType<typeof messages>>[number] | undefined;
    await waitFor('status message 2383', async () => (failedMsg = (await messages(site, pkgA)).find((m) => m.id === 2383)) !== undefined);
    assert.equal(failedMsg?.severity, 'E');
    assert.match(failedMsg?.istr[2] ?? '', /f010\.dat: hash mismatch/);

    assert.equal((await cli(site, ['package', 'validate', pkgA, '--dp', 'dp1'])).code, 0);
    await waitForDps(site, pkgA, 'dp1 valid', (r) => r.get('dp1')?.validation?.valid === true);
    await waitFor('status message 2384', async () => (await messages(site, pkgA)).some((m) => m.id === 2384));

    const redist = await cli(site, ['package', 'redistribute', pkgA, '--dp', 'dp2']);
    assert.equal(redist.code, 0, redist.stderr);
    await waitForDps(site, pkgA, 'dp2 installed again', (r) => r.get('dp2')?.status === 3);
    const xfer = await readLog(site.dataDir, 'PkgXferMgr');
    assert.match(xfer, /Redistribute=1, Related=/);
    assert.match(xfer, /Sending completed successfully \(\d+ files, \d+ bytes sent; \d+ as chunks/);
    assert.match(await readLog(dp2.dataDir, 'SMSDPProv'), new RegExp(`Rewrote file ${damaged}`));

    assert.equal((await cli(site, ['package', 'validate', pkgA, '--dp', 'dp2'])).code, 0);
    await waitForDps(site, pkgA, 'dp2 valid', (r) => r.get('dp2')?.validation?.valid === true && r.get('dp2')?.status === 3);
    await checkDownloads(dp2, pkgA, srcA);
  });

  test('removing package A from a DP keeps the files package B shares with it there; a DP the package is not on is an error', async () => {
    const dp1 = dps.get('dp1')!;
    const notOn = await cli(site, ['package', 'remove', pkgB, '--dp', 'dp2']);
    assert.notEqual(notOn.code, 0);
    assert.match(notOn.stderr, /CAIRN_PACKAGE_NOT_ON_DP/);

    const onlyA = sha(await fsp.readFile(path.join(srcA, 'small', 'f000.dat')));
    const rm = await cli(site, ['package', 'remove', pkgA, '--dp', 'dp1']);
    assert.equal(rm.code, 0, rm.stderr);
    const rows = await waitForDps(site, pkgA, 'A removed from dp1', (r) => r.get('dp1')?.status === 6);
    assert.equal(rows.get('dp1')?.state, 'removed');
    assert.equal(rows.get('dp2')?.status, 3);
    assert.equal(await httpStatus(`${dp1.url}/SMS_DP_SMSPKG$/${pkgA}/shared.txt`), 404);
    assert.equal(fs.existsSync(dpFile(dp1, onlyA)), false);
    assert.equal(fs.existsSync(dpFile(dp1, sha(sharedBytes))), true, 'B still uses shared.txt');
    await checkDownloads(dp1, pkgB, srcB);
  });

  test('deleting package A removes it from every DP, then the package itself', async () => {
    const dp2 = dps.get('dp2')!;
    // The site keeps every stored version of a package until it is deleted.
    const stored = (await status(site, pkgA)).package.storedVersion;
    const del = await cli(site, ['package', 'delete', pkgA]);
    assert.equal(del.code, 0, del.stderr);
    await waitFor('package A gone', async () => (await api(site, 'GET', `/api/v1/packages/${pkgA}`)).status === 404);
    assert.equal(await httpStatus(`${dp2.url}/SMS_DP_SMSPKG$/${pkgA}/big.bin`), 404);
    const st = await cli(site, ['package', 'status', pkgA]);
    assert.notEqual(st.code, 0);
    assert.match(st.stderr, /CAIRN_PACKAGE_NOT_FOUND/);
    assert.match(await readLog(site.dataDir, 'distmgr'), new RegExp(`Deleted package ${pkgA}: ${stored} content\\(s\\)`));
  });

  test('[CD4.2] an update whose source cannot be read fails with 2306 and 2302, and the DP keeps serving the previous version; a vanished source is refused at once', async () => {
    const fifo = path.join(srcB, 'a pipe');
    await run('mkfifo', [fifo]);
    const upd = await cli(site, ['package', 'update', pkgB]);
    assert.equal(upd.code, 0, upd.stderr);
    const msgs = await waitFor('2302 for B', async () => {
      const m = await messages(site, pkgB);
      return m.some((x) => x.id === 2302) ? m : undefined;
    });
    assert.ok(msgs.some((m) => m.id === 2306 && m.severity === 'E'));
    const st = await status(site, pkgB);
    assert.match(st.package.lastError, /a pipe/);
    assert.equal(st.package.storedVersion, 1);
    assert.equal(st.distributionPoints.find((d) => d.dp === 'dp1')?.version, 1);
    await fsp.rm(fifo);
    await checkDownloads(dps.get('dp1')!, pkgB, srcB);

    await fsp.rm(srcB, { recursive: true });
    const gone = await cli(site, ['package', 'update', pkgB]);
    assert.notEqual(gone.code, 0);
    assert.match(gone.stderr, /CAIRN_PACKAGE_SOURCE_MISSING/);
  });
});
