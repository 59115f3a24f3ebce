/**
 * Benchmark: update a package on one DP (issue 3). A 1 GiB tree (the
 * distribute benchmark's) is created and distributed in full, timed; then 1%
 * of the files are rewritten and four 1 MiB regions of one large file are
 * changed, the package is updated, and the time to the DP's PkgStatus showing
 * version 2 installed is printed next to the full distribute's, with the bytes
 * sent (from PkgXferMgr.log) next to the bytes changed. Both times run from
 * the admin API call (what the CLI sends, without its process start).
 * Not a test, never gates CI. Usage: `npm run bench:update [-- --mib 1024] [-- --keep]`.
 *
 * Targets (issue 3): bytes sent at most 1.1x bytes changed (signatures
 * counted apart); update time at most 10% of the full distribute.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { addDp, api, cli, readLog, startSite, tempDir, waitFor } from '../test/helpers/processes.ts';
import { makeBenchTree } from './tree.ts';
import { untilIdle } from './cpu.ts';

const run = promisify(execFile);
const args = process.argv.slice(2);
const mib = Number(args[args.indexOf('--mib') + 1] ?? 1024) || 1024;
const MiB = 1024 * 1024;

const fmt = (s: number) => s.toFixed(2);

async function apiOk(site: { url: string; token: string }, route: string, body: unknown): Promise<void> {
  const r = await api(site, 'POST', route, body);
  if (r.status !== 200) throw new Error(`${route} answered ${r.status}: ${JSON.stringify(r.json)}`);
}

/**
 * Polls `package status` until the DP shows `version` installed. Every 20 ms:
 * the test helpers' 100 ms would add up to 0.1 s to an update that should
 * take 0.4 s. The log-derived phases below do not depend on it.
 */
async function waitInstalled(site: { url: string; token: string }, pkgId: string, version: number): Promise<void> {
  const deadline = Date.now() + 1_800_000;
  for (;;) {
    const s = (await api<{ distributionPoints: { status: number; version: number }[] }>(site, 'GET', `/api/v1/packages/${pkgId}/status`)).json;
    if (s.distributionPoints[0]?.status === 3 && s.distributionPoints[0]?.version === version) return;
    if (Date.now() > deadline) throw new Error(`gave up waiting for version ${version} installed`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const work = await tempDir('bench-update');
try {
  const source = path.join(work, 'source');
  const bytes = await makeBenchTree(source, mib * MiB);
  process.stdout.write(`tree: ${(bytes / MiB).toFixed(0)} MiB in 1004 files, ${os.cpus().length} cores, Node ${process.version}\n`);
  const site = await startSite(path.join(work, 'site'), ['--no-local-dp']);
  const dp = await addDp(site, path.join(work, 'dp'), 'bench');
  try {
    const pkgId = (await cli(site, ['package', 'create', '--name', 'Bench', '--source', source])).stdout.trim();
    await waitFor('the snapshot', async () => (await api<{ storedVersion: number }>(site, 'GET', `/api/v1/packages/${pkgId}`)).json.storedVersion === 1, 1_800_000);
    await run('sync');
    // The DP's start (modules and hash workers loaded through tsx, about 1 s of CPU) is over before the timing, as in the field.
    await untilIdle(dp.child.pid);
    let t = performance.now();
    // The admin API calls the CLI makes, without the CLI's process start (about 1.5 s with tsx), for both timings.
    await apiOk(site, `/api/v1/packages/${pkgId}/distribute`, { distributionPoints: ['bench'] });
    await waitInstalled(site, pkgId, 1);
    await run('sync');
    const fullSeconds = (performance.now() - t) / 1000;

    // 1% of the files: ten small files rewritten with new bytes of the same size.
    let changed = 0;
    for (let i = 0; i < 1000; i += 100) {
      const file = path.join(source, `folder-${i % 10}`, `small-${i}.dat`);
      const size = (await fsp.stat(file)).size;
      await fsp.writeFile(file, randomBytes(size));
      changed += size;
    }
    // And four 1 MiB regions of one large file.
    const large = await fsp.open(path.join(source, 'large-0.bin'), 'r+');
    const largeSize = (await large.stat()).size;
    for (let r = 1; r <= 4; r += 1) {
      await large.write(randomBytes(MiB), 0, MiB, Math.floor((largeSize / 5) * r));
      changed += MiB;
    }
    await large.close();

    const before = (await readLog(site.dataDir, 'PkgXferMgr')).length;
    t = performance.now();
    await apiOk(site, `/api/v1/packages/${pkgId}/update`, {});
    await waitInstalled(site, pkgId, 2);
    const updateNoSyncSeconds = (performance.now() - t) / 1000;
    await run('sync');
    const updateSeconds = (performance.now() - t) / 1000;
    const log = (await readLog(site.dataDir, 'PkgXferMgr')).slice(before);
    const m = /Sending completed successfully \((\d+) files, (\d+) bytes sent; (\d+) as chunks, (\d+) chunks sent, (\d+) bytes of manifests; (\d+) bytes of signatures\)/.exec(log);
    if (!m) throw new Error('no "Sending completed" line for the update in PkgXferMgr.log');
    const [, files, sent, chunked, chunks, manifestBytes, sigBytes] = m.map(Number) as number[];

    // Where the update's time went, from the CMTrace times of the component logs.
    const at = (text: string, needle: string): number | undefined => {
      const line = text.split('\n').find((l) => l.includes(needle));
      const m = line ? /time="(\d\d):(\d\d):(\d\d\.\d{3})/.exec(line) : null;
      return m ? (Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3])) : undefined;
    };
    const distAll = await readLog(site.dataDir, 'distmgr');
    const distLog = distAll.split(`Start updating package ${pkgId}`)[1] ?? '';
    const provLog = (await readLog(site.dataDir, 'SMSProv')).split(`/api/v1/packages/${pkgId}/distribute`).slice(-1)[0] ?? '';
    const dpLog = (await readLog(dp.dataDir, 'SMSDPProv')).split(`Content '${pkgId}.1' for package '${pkgId}' has been successfully added`).slice(-1)[0] ?? '';
    const dpLast = (text: string, needle: string): number | undefined => at(text.split('\n').reverse().join('\n'), needle);
    const statusLog = distLog;
    const apiAt = at(provLog, 'Processed method RefreshPkgSource');
    // Where the update's time went (admin API call to the DP's PkgStatus row), from the component logs' times.
    const phases: [string, number | undefined, number | undefined][] = [
      ['admin API to distmgr', apiAt, at(distLog, 'Taking package snapshot')],
      ['snapshot (read + hash)', at(distLog, 'Taking package snapshot'), at(distLog, 'Writing package definition')],
      ['site addContent', at(distLog, 'Adding these contents'), at(distLog, 'The source of the package')],
      ['job to sending thread', at(distLog, 'StoredPkgVersion (2)'), at(log, 'Sending thread starting')],
      ['DP chunks stored', at(log, 'Sending thread starting'), dpLast(dpLog, 'chunk(s) for content')],
      ['DP manifest adopted', dpLast(dpLog, 'chunk(s) for content'), at(dpLog, 'to the content library as')],
      ['DP addContent', at(log, 'Sent the signatures'), at(dpLog, 'has been successfully added')],
      ['DP answer to PkgStatus', at(log, 'Finished the follow-up actions'), at(statusLog, 'Successfully updated the package server status')],
      ['transfer (sending thread)', at(log, 'Sending thread starting'), at(log, 'Sending thread complete')],
      ['API call to PkgStatus', apiAt, at(statusLog, 'Successfully updated the package server status')],
    ];
    for (const [name, a, b] of phases) if (a !== undefined && b !== undefined) process.stdout.write(`  ${name.padEnd(26)}${fmt(b - a)} s\n`);

    process.stdout.write(`full distribute (+sync)     ${fmt(fullSeconds)} s\n`);
    process.stdout.write(`update (+sync)              ${fmt(updateSeconds)} s  (${((updateSeconds / fullSeconds) * 100).toFixed(1)}% of the full distribute; target at most 10%)\n`);
    process.stdout.write(`update (to PkgStatus)       ${fmt(updateNoSyncSeconds)} s  (${((updateNoSyncSeconds / fullSeconds) * 100).toFixed(1)}%; without the final sync, which flushes the whole machine's dirty pages)\n`);
    process.stdout.write(`load average                ${os.loadavg().map((l) => l.toFixed(2)).join(', ')}\n`);
    process.stdout.write(`bytes changed               ${changed}\n`);
    process.stdout.write(`bytes sent                  ${sent} in ${files} files (${chunked} as ${chunks} chunks): ${(sent! / changed).toFixed(3)}x the bytes changed (target at most 1.1x)\n`);
    process.stdout.write(`manifests, signatures sent  ${manifestBytes} + ${sigBytes} bytes\n`);
  } finally {
    await site.kill();
    await dp.kill();
  }
} finally {
  // `--keep` leaves the site's and the DP's folders (and logs) for a look at where the time went.
  if (args.includes('--keep')) process.stdout.write(`kept ${work}\n`);
  else await fsp.rm(work, { recursive: true, force: true });
}
