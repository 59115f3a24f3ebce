/**
 * Benchmark: distribute a 1 GiB tree (1,000 small files and a few large
 * ones) to one DP on loopback, and compare with `cp -r` of the same tree
 * measured in the same run. Prints seconds and MB/s; not a test, never gates
 * CI. Usage: `npm run bench:distribute [-- --mib 1024] [--runs N] [--logs DIR]`.
 *
 * What is timed: from the admin API's distribute call (what `cairn admin
 * package distribute` sends, without the CLI's process start) to the DP's
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
import { cpuSeconds, cpuSince, untilIdle } from './cpu.ts';

const run = promisify(execFile);
const args = process.argv.slice(2);
const mib = Number(args[args.indexOf('--mib') + 1] ?? 1024) || 1024;
const totalBytes = mib * 1024 * 1024;
/** `--logs DIR`: copy the site's and the DP's logs there before cleaning up, to read the run's timeline. */
const logsOut = args.includes('--logs') ? args[args.indexOf('--logs') + 1] : undefined;
/** `--runs N`: repeat the baseline and the distribution (to a new DP each time) and compare the best of each, which a busy machine disturbs least. */
const runs = args.includes('--runs') ? Math.max(1, Number(args[args.indexOf('--runs') + 1]) || 1) : 1;

const fmt = (s: number) => s.toFixed(2);

const rate = (bytes: number, s: number) => (bytes / 1e6 / s).toFixed(1);

const work = await tempDir('bench');
try {
  const source = path.join(work, 'source');
  const bytes = await makeBenchTree(source, totalBytes);
  process.stdout.write(`tree: ${(bytes / 1048576).toFixed(0)} MiB in ${1000 + 4} files, ${os.cpus().length} cores, Node ${process.version}\n`);

  // Baseline: cp -r of the same tree, page cache warm for both (the tree was just written).
  const cpOnce = async (i: number): Promise<number> => {
    const t0 = performance.now();
    await run('cp', ['-r', source, path.join(work, `cp-copy-${i}`)]);
    await run('sync');
    // The copy stays until the end: deleting its 1,000 files here would slow the distribution that
    // follows, for reasons of the file system's own (performance.md, "inode allocation").
    return (performance.now() - t0) / 1000;
  };

  const site = await startSite(path.join(work, 'site'), ['--no-local-dp']);
  const dps: Awaited<ReturnType<typeof addDp>>[] = [];
  try {
    let t = performance.now();
    const pkgId = (await cli(site, ['package', 'create', '--name', 'Bench', '--source', source])).stdout.trim();
    await waitFor('the snapshot', async () => (await api<{ storedVersion: number }>(site, 'GET', `/api/v1/packages/${pkgId}`)).json.storedVersion === 1, 1_800_000);
    const snapSeconds = (performance.now() - t) / 1000;
    await run('sync');

    // Each run: the baseline, then a distribution to a new DP; the best of each is compared.
    const cpRuns: number[] = [];
    const distRuns: number[] = [];
    for (let i = 1; i <= runs; i++) {
      cpRuns.push(await cpOnce(i));
      const dp = await addDp(site, path.join(work, `dp${i}`), `bench${i}`);
      dps.push(dp);
      // The admin API call the CLI makes, without the CLI's process start (about 1.5 s with tsx).
      // A DP runs for months before it gets a package: its start (modules compiled, hash workers
      // loaded: about 1 s of CPU with tsx) is over before the timing starts, as it is in the field.
      await untilIdle(dp.child.pid);
      const cpu0 = [await cpuSeconds(site.child.pid), await cpuSeconds(dp.child.pid)];
      t = performance.now();
      const r = await api(site, 'POST', `/api/v1/packages/${pkgId}/distribute`, { distributionPoints: [`bench${i}`] });
      if (r.status !== 200) throw new Error(`distribute answered ${r.status}: ${JSON.stringify(r.json)}`);
      await waitFor('installed', async () => {
        const st = (await api<{ distributionPoints: { dp: string; status: number }[] }>(site, 'GET', `/api/v1/packages/${pkgId}/status`)).json;
        return st.distributionPoints.find((d) => d.dp === `bench${i}`)?.status === 3;
      }, 1_800_000);
      await run('sync');
      distRuns.push((performance.now() - t) / 1000);
      const cpu = [cpuSince(cpu0[0]!, await cpuSeconds(site.child.pid)), cpuSince(cpu0[1]!, await cpuSeconds(dp.child.pid))];
      process.stdout.write(
        `run ${i}: cp -r (+sync) ${fmt(cpRuns[i - 1]!)} s, distribute (+sync) ${fmt(distRuns[i - 1]!)} s, ratio ${(distRuns[i - 1]! / cpRuns[i - 1]!).toFixed(2)}x; CPU used: site ${cpu[0]}, DP ${cpu[1]}\n`,
      );
    }
    const cpSeconds = Math.min(...cpRuns);
    const distSeconds = Math.min(...distRuns);

    process.stdout.write(`cp -r (+sync)            ${fmt(cpSeconds)} s  ${rate(bytes, cpSeconds)} MB/s${runs > 1 ? ` (best of ${runs})` : ''}\n`);
    process.stdout.write(`snapshot (package create) ${fmt(snapSeconds)} s  ${rate(bytes, snapSeconds)} MB/s\n`);
    process.stdout.write(`distribute to one DP (+sync) ${fmt(distSeconds)} s  ${rate(bytes, distSeconds)} MB/s${runs > 1 ? ` (best of ${runs})` : ''}\n`);
    process.stdout.write(`distribute / cp -r       ${(distSeconds / cpSeconds).toFixed(2)}x (target: at most 2x)\n`);
  } finally {
    await site.kill();
    for (const dp of dps) await dp.kill();
    if (logsOut) {
      await fsp.cp(path.join(work, 'site', 'logs'), path.join(logsOut, 'site'), { recursive: true });
      for (let i = 1; i <= dps.length; i++) await fsp.cp(path.join(work, `dp${i}`, 'logs'), path.join(logsOut, `dp${i}`), { recursive: true });
    }
  }
} finally {
  await fsp.rm(work, { recursive: true, force: true });
}
