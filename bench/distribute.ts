/**
 * Benchmark: distribute a 1 GiB tree (1,000 small files and a few large
 * ones) to one DP on loopback, and compare with `cp -r` of the same tree
 * measured in the same run. Prints seconds and MB/s; not a test, never gates
 * CI. Usage: `npm run bench:distribute [-- --mib 1024]`.
 *
 * What is timed: from `cairn admin package distribute` to the DP's
 * PkgStatus reaching 3 (installed): the transfer manager's uploads, the DP's
 * hashing and library work, the .STA round trip. The snapshot into the site's
 * library (package create) is timed and printed separately.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { addDp, api, cli, startSite, tempDir, waitFor } from '../test/helpers/processes.ts';
import { makeBenchTree } from './tree.ts';

const run = promisify(execFile);
const args = process.argv.slice(2);
const mib = Number(args[args.indexOf('--mib') + 1] ?? 1024) || 1024;
const totalBytes = mib * 1024 * 1024;

const fmt = (s: number) => s.toFixed(2);
const rate = (bytes: number, s: number) => (bytes / 1e6 / s).toFixed(1);

const work = await tempDir('bench');
try {
  const source = path.join(work, 'source');
  const bytes = await makeBenchTree(source, totalBytes);
  process.stdout.write(`tree: ${(bytes / 1048576).toFixed(0)} MiB in ${1000 + 4} files, ${os.cpus().length} cores, Node ${process.version}\n`);

  // Baseline: cp -r of the same tree, page cache warm for both (the tree was just written).
  let t = performance.now();
  await run('cp', ['-r', source, path.join(work, 'cp-copy')]);
  await run('sync');
  const cpSeconds = (performance.now() - t) / 1000;
  await fsp.rm(path.join(work, 'cp-copy'), { recursive: true });
  await run('sync');

  const site = await startSite(path.join(work, 'site'), ['--no-local-dp']);
  const dp = await addDp(site, path.join(work, 'dp'), 'bench');
  try {
    t = performance.now();
    const pkgId = (await cli(site, ['package', 'create', '--name', 'Bench', '--source', source])).stdout.trim();
    await waitFor('the snapshot', async () => (await api<{ storedVersion: number }>(site, 'GET', `/api/v1/packages/${pkgId}`)).json.storedVersion === 1, 1_800_000);
    const snapSeconds = (performance.now() - t) / 1000;
    await run('sync');

    t = performance.now();
    await cli(site, ['package', 'distribute', pkgId, '--dp', 'bench']);
    await waitFor('installed', async () => {
      const s = (await api<{ distributionPoints: { status: number }[] }>(site, 'GET', `/api/v1/packages/${pkgId}/status`)).json;
      return s.distributionPoints[0]?.status === 3;
    }, 1_800_000);
    await run('sync');
    const distSeconds = (performance.now() - t) / 1000;

    process.stdout.write(`cp -r (+sync)            ${fmt(cpSeconds)} s  ${rate(bytes, cpSeconds)} MB/s\n`);
    process.stdout.write(`snapshot (package create) ${fmt(snapSeconds)} s  ${rate(bytes, snapSeconds)} MB/s\n`);
    process.stdout.write(`distribute to one DP (+sync) ${fmt(distSeconds)} s  ${rate(bytes, distSeconds)} MB/s\n`);
    process.stdout.write(`distribute / cp -r       ${(distSeconds / cpSeconds).toFixed(2)}x (target: at most 2x)\n`);
  } finally {
    await site.kill();
    await dp.kill();
  }
} finally {
  await fsp.rm(work, { recursive: true, force: true });
}
