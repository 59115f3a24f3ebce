/**
 * Benchmark: the scanner (issue 6, item 11, first half). Not a test; never gates CI.
 * Usage: `npm run bench:scan [-- --updates 60000] [-- --packages 2000] [-- --rounds 3] [-- --clients 200]`.
 *
 * 1. Generates a catalog of N updates (default 60,000): N/3 packages with
 *    three versions each (1.0-1, 1.1-1, 1.2-1), each version superseding the
 *    older ones, package rules as the apt source makes them; a tenth of the
 *    packages are `Architecture: all`. Serves it with a real `cairn upstream`
 *    process, and syncs a real `cairn sup` process from it (the update point
 *    the scans read, on loopback).
 * 2. A machine with P installed packages (default 2,000) of the catalog:
 *    85 % at the newest version (installed), 10 % at the middle one and 5 %
 *    below all three (required): about the shares of this Debian machine
 *    (588 installed and 106 upgradable of its 710 packages).
 * 3. Each round, in the same process and next to each other:
 *    - baseline: `apt list --upgradable` on this machine (its real lists and
 *      dpkg database, about 63,000 versions against about 700 packages);
 *    - cold scan: a new scanner with an empty cache folder: downloads the
 *      whole catalog from the update point, validates, stores, evaluates;
 *    - restart scan: a new scanner on the same cache folder (an agent
 *      restart): reads the catalog back from disk, evaluates;
 *    - warm scan: the same scanner again (the catalog in memory);
 *    - C clients: C more machines (each with its own inventory) scanned
 *      against the cached catalog, one after the other: per-client cost in a
 *      simulation process.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createScanner } from '../src/agent/scan/scanner.ts';
import type { ScanRequest, ScanResult } from '../src/agent/scan/types.ts';
import type { InstalledPackage, Machine } from '../src/catalog/rules.ts';
import { createComponentLog } from '../src/shared/cmtrace-log.ts';
import { createSupClient } from '../src/sup/sup-client.ts';
import { categories, product, SECURITY, startSupProcess, startUpstreamProcess, UPDATES } from '../test/helpers/catalog.ts';
import { tempDir, waitFor } from '../test/helpers/processes.ts';

const run = promisify(execFile);
const args = process.argv.slice(2);
const argOf = (name: string, d: number): number => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) || d : d);
const updates = argOf('--updates', 60000);
const packages = argOf('--packages', 2000);
const rounds = argOf('--rounds', 3);
const clients = argOf('--clients', 200);
const pkgCount = Math.ceil(updates / 3);
const VERSIONS = ['1.0-1', '1.1-1', '1.2-1'];
const uid = (n: number): string => `b0000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
const archOf = (p: number): string => (p % 10 === 3 ? 'all' : 'amd64');

async function writeCatalog(dir: string): Promise<void> {
  await fsp.mkdir(path.join(dir, 'updates'), { recursive: true });
  await fsp.writeFile(path.join(dir, 'categories.ndjson'), categories().map((c) => JSON.stringify(c)).join('\n') + '\n');
  const out = fs.createWriteStream(path.join(dir, 'updates', 'all.ndjson'));
  for (let n = 0; n < updates; n += 1) {
    const p = Math.floor(n / 3);
    const v = n % 3;
    const name = `bench-pkg-${p}`;
    const arch = archOf(p);
    const version = VERSIONS[v]!;
    const rule = (op: 'lt' | 'ge') => ({ kind: 'package', name, arch, installed: true, version: { op, value: version } });
    const line = JSON.stringify({
      id: uid(n),
      revision: 1,
      title: `${name} ${version} (${arch})`,
      description: `Brings ${name} to ${version}.`,
      articleId: `${name}_${version}`,
      classification: p % 4 === 0 ? SECURITY : UPDATES,
      products: [product(p % 4)],
      releaseDate: '2024-06-01',
      supersedes: Array.from({ length: v }, (_, k) => uid(n - v + k)),
      isApplicable: rule('lt'),
      isInstalled: rule('ge'),
    });
    if (!out.write(line + '\n')) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}

/** A machine of `packages` catalog packages; `salt` varies which and at which version. */
function machine(salt: number): Machine {
  const list: InstalledPackage[] = [];
  const stride = Math.max(1, Math.floor(pkgCount / packages));
  for (let i = 0; i < packages; i += 1) {
    const p = (i * stride + salt) % pkgCount;
    const r = (i * 7919 + salt * 104729) % 100;
    const version = r < 85 ? VERSIONS[2]! : r < 95 ? VERSIONS[1]! : '0.9-1';
    list.push({ name: `bench-pkg-${p}`, arch: archOf(p), version });
  }
  return { os: { family: 'debian', version: '12' }, facts: { architecture: 'amd64', hostname: `bench-${salt}` }, packages: list };
}

const ms = (t: number): string => `${(performance.now() - t).toFixed(0)} ms`;
const rssMiB = (): number => Math.round(process.memoryUsage().rss / 1048576);

async function main(): Promise<void> {
  const dir = await tempDir('bench-scan');
  const catalogDir = path.join(dir, 'catalog');
  console.log(`Scan benchmark: ${updates} updates (${pkgCount} packages × 3 versions), machines of ${packages} packages, ${rounds} rounds; ${os.cpus().length} CPUs, load ${os.loadavg()[0]!.toFixed(1)}`);
  let t = performance.now();
  await writeCatalog(catalogDir);
  console.log(`catalog written: ${ms(t)}`);
  const up = await startUpstreamProcess(catalogDir);
  const key = 'k'.repeat(43);
  const sup = await startSupProcess(path.join(dir, 'sup'), key, 0, 'bench-sup');
  try {
    t = performance.now();
    const client = createSupClient({ url: sup.url, key });
    const { syncId } = await client.startSync(up.url, false);
    const done = await waitFor(
      'the update point sync',
      async () => {
        const st = await client.syncState();
        return st.syncId === syncId && st.state !== 'running' ? st : undefined;
      },
      1_800_000,
    );
    if (done.state !== 'succeeded') throw new Error(`sync failed: ${JSON.stringify(done.error)}`);
    const version = done.result!.contentVersion;
    console.log(`update point synced (setup, not a scan): ${done.result!.updates} updates, content version ${version}, ${ms(t)}`);

    const log = createComponentLog({ dir: path.join(dir, 'logs'), name: 'Scanner', component: 'Scanner' });
    const req = (m: Machine): ScanRequest => ({ updateSourceId: 'c2d17964-bbdd-4339-b9f3-12d7205b39cc', requiredContentVersion: version, location: { url: sup.url, serverName: 'bench-sup', contentVersion: version }, machine: m, log });
    const m0 = machine(0);
    const shares = (r: ScanResult): string => {
      const c = { required: 0, installed: 0, notRequired: 0, unknown: 0 };
      for (const u of r.updates) c[u.state] += 1;
      return `${c.required} required, ${c.installed} installed, ${c.notRequired} not required, ${r.pruned.length} pruned; evaluated ${r.evaluated} of ${r.total}`;
    };
    const rows: string[][] = [];
    for (let round = 1; round <= rounds; round += 1) {
      t = performance.now();
      const apt = fs.existsSync('/usr/bin/apt') ? await run('apt', ['list', '--upgradable'], { maxBuffer: 64 * 1024 * 1024 }) : undefined;
      const aptMs = performance.now() - t;
      const aptCount = apt ? apt.stdout.split('\n').filter((l) => l.includes('[upgradable from')).length : 0;

      const cacheDir = path.join(dir, `cache-${round}`);
      const rss0 = rssMiB();
      t = performance.now();
      const cold = await createScanner({ cacheDir, pageSize: 5000 }).scan(req(m0));
      const coldMs = performance.now() - t;
      const coldRss = rssMiB() - rss0;

      const restarted = createScanner({ cacheDir });
      t = performance.now();
      await restarted.scan(req(m0));
      const restartMs = performance.now() - t;

      t = performance.now();
      const warm = await restarted.scan(req(m0));
      const warmMs = performance.now() - t;

      t = performance.now();
      for (let c = 1; c <= clients; c += 1) await restarted.scan(req(machine(c)));
      const perClient = (performance.now() - t) / Math.max(1, clients);

      if (round === 1) console.log(`machine 0: ${shares(cold)}; apt: ${aptCount} upgradable on this machine`);
      if (shares(cold) !== shares(warm)) throw new Error('cold and warm scans disagree');
      rows.push([String(round), aptMs.toFixed(0), coldMs.toFixed(0), restartMs.toFixed(0), warmMs.toFixed(0), perClient.toFixed(1), String(coldRss), (os.loadavg()[0] ?? 0).toFixed(1)]);
      console.log(`round ${round}: ${rows.at(-1)!.join(' | ')}`);
    }
    const head = ['round', 'apt list --upgradable (ms)', 'cold scan (ms)', 'restart scan (ms)', 'warm scan (ms)', `per client, ${clients} clients (ms)`, 'RSS growth, cold (MiB)', 'load'];
    console.log(`\n| ${head.join(' | ')} |\n|${head.map(() => ' --- ').join('|')}|`);
    for (const r of rows) console.log(`| ${r.join(' | ')} |`);
  } finally {
    await sup.kill();
    await up.kill();
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

await main();
