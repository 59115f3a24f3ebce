/**
 * Benchmark: update catalog sync (issue 5, item 9). Not a test; never gates CI.
 * Usage: `npm run bench:sync [-- --updates 60000] [-- --apt /var/lib/apt/lists]`.
 *
 * 1. Generates a catalog of N updates (default 60,000) in the catalog folder
 *    format and serves it with a real `cairn upstream` process.
 * 2. Baseline, measured in the same run: a raw bulk insert of the same
 *    updates (read the NDJSON, JSON.parse, one prepared INSERT per row, 1,000
 *    rows per transaction) into a fresh SQLite database, no validation, no
 *    HTTP, no links — the floor for "put these rows in SQLite".
 * 3. `cairn catalog import --from <upstream>` into a fresh site database;
 *    then again with no change.
 * 4. `cairn catalog import --apt` of this machine's apt lists; then again
 *    with no change. Baseline: `apt-helper cat-file` of the same lists.
 *
 * 5. The update sync manager's whole path (issue 5, part 4): a real `cairn
 *    start` (its own update point in-process) told to sync from the same
 *    upstream with `cairn admin sync now`: the update point imports from
 *    upstream, then the site database from the update point. Then again with
 *    no change. Timed from the request to the sync's 6702 in wsyncmgr.log.
 *
 * Each import runs in its own process, which reports its import time and its
 * peak RSS (`maxRSS`); the upstream's and the site's peak RSS are read from
 * /proc (VmHWM).
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import SQLite from 'better-sqlite3';
import { forEachLine } from '../src/upstream/catalog-index.ts';
import { CAIRN_BIN, cli, readLog, startSite, tempDir, waitFor } from '../test/helpers/processes.ts';
import { startUpstreamProcess, writeCatalog } from '../test/helpers/catalog.ts';

const run = promisify(execFile);
const args = process.argv.slice(2);
const argOf = (name: string): string | undefined => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const count = Number(argOf('--updates') ?? 60000) || 60000;
const aptDir = argOf('--apt') ?? '/var/lib/apt/lists';

interface Report {
  seconds: number;
  peakRssMiB: number;
  itemsChanged: number;
  contentVersion: number;
  updates: { processed: number; rejected: number };
  categories: { processed: number };
}

async function importOnce(dataDir: string, from: string[]): Promise<Report & { wall: number }> {
  const t = performance.now();
  const child = spawn(process.execPath, [CAIRN_BIN, 'catalog', 'import', ...from, '--data', dataDir, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const code = await new Promise<number>((resolve) => child.once('exit', (c) => resolve(c ?? -1)));
  if (code !== 0) throw new Error(`import failed (${code}): ${err}`);
  return { ...(JSON.parse(out) as Report), wall: (performance.now() - t) / 1000 };
}

function vmHwmMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

/** The baseline: raw rows into SQLite as fast as better-sqlite3 goes. Runs in its own process (`--baseline`). */
async function baseline(catalog: string, dbFile: string): Promise<void> {
  const t = performance.now();
  const db = new SQLite(dbFile);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.exec('CREATE TABLE CI (CI_UniqueID TEXT PRIMARY KEY, RevisionNumber INTEGER, Title TEXT, Classification TEXT, Digest TEXT)');
  const insert = db.prepare('INSERT INTO CI VALUES (?, ?, ?, ?, ?)');
  let batch: { id: string; revision: number; title: string; classification: string; raw: string }[] = [];
  const flush = db.transaction((rows: typeof batch) => {
    for (const r of rows) insert.run(r.id, r.revision, r.title, r.classification, r.raw);
  });
  let n = 0;
  for (const f of (await fsp.readdir(path.join(catalog, 'updates'))).sort()) {
    await forEachLine(path.join(catalog, 'updates', f), (line) => {
      const raw = line.toString('utf8');
      if (!raw.trim()) return;
      const u = JSON.parse(raw) as { id: string; revision: number; title: string; classification: string };
      batch.push({ id: u.id, revision: u.revision, title: u.title, classification: u.classification, raw });
      n += 1;
      if (batch.length >= 1000) {
        flush(batch);
        batch = [];
      }
    });
  }
  flush(batch);
  db.close();
  process.stdout.write(JSON.stringify({ rows: n, seconds: (performance.now() - t) / 1000, peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024) }) + '\n');
}

if (args[0] === '--baseline') {
  await baseline(args[1]!, args[2]!);
  process.exit(0);
}

const work = await tempDir('bench-sync');
const rows: string[][] = [];
const row = (step: string, items: number, seconds: number, rss: string, note = ''): void => {
  rows.push([step, items.toLocaleString('en-US'), seconds.toFixed(2), Math.round(items / seconds).toLocaleString('en-US'), rss, note]);
};
try {
  const catalog = path.join(work, 'catalog');
  let t = performance.now();
  await writeCatalog(catalog, count, { perFile: 1000 });
  process.stdout.write(`catalog: ${count} updates written in ${((performance.now() - t) / 1000).toFixed(1)} s; ${os.cpus().length} cores, Node ${process.version}\n`);

  const base = JSON.parse((await run(process.execPath, ['--import', 'tsx', new URL(import.meta.url).pathname, '--baseline', catalog, path.join(work, 'baseline.db')], { maxBuffer: 1 << 20 })).stdout) as { rows: number; seconds: number; peakRssMiB: number };
  row('baseline: raw bulk insert of the same rows (better-sqlite3, no validation)', base.rows, base.seconds, `${base.peakRssMiB}`);

  t = performance.now();
  const up = await startUpstreamProcess(catalog, ['--state', path.join(work, 'upstream-state')]);
  const upStart = (performance.now() - t) / 1000;
  try {
    const full = await importOnce(path.join(work, 'site1'), ['--from', up.url]);
    const items = full.updates.processed + full.categories.processed;
    row('import from `cairn upstream`, full', items, full.seconds, `${full.peakRssMiB} (upstream ${vmHwmMiB(up.pid)})`, `${full.itemsChanged} changed, wall ${full.wall.toFixed(1)} s with process start`);
    const again = await importOnce(path.join(work, 'site1'), ['--from', up.url]);
    row('re-import from `cairn upstream`, no change', items, again.seconds, `${again.peakRssMiB}`, `${again.itemsChanged} changed, content version ${full.contentVersion} → ${again.contentVersion}`);
    process.stdout.write(`upstream: started and indexed ${count} updates in ${upStart.toFixed(1)} s (with process start)\n`);

    // The sync manager's path: upstream → the site's own update point → the site database.
    const site = await startSite(path.join(work, 'site3'), ['--no-local-dp']);
    try {
      const admin = async (a: string[]): Promise<void> => {
        const r = await cli(site, a);
        if (r.code !== 0) throw new Error(`cairn admin ${a.join(' ')}: ${r.stderr}`);
      };
      await admin(['settings', 'set', 'wsyncmgr.scheduleSeconds', '0']);
      await admin(['sync', 'upstream', up.url]);
      // The CMTrace time of a log line, in ms.
      const when = (line: string): number => {
        const m = /time="(\d\d):(\d\d):(\d\d)\.(\d{3})\+000" date="(\d\d)-(\d\d)-(\d{4})"/.exec(line)!;
        return Date.UTC(Number(m[7]), Number(m[5]) - 1, Number(m[6]), Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4]));
      };
      const syncOnce = async (n: number): Promise<{ seconds: number; changed: number }> => {
        await admin(['sync', 'now']);
        const line = await waitFor('the sync to end', async () => {
          const log = await readLog(site.dataDir, 'wsyncmgr');
          const ends = log.match(/Updated \d+ items in SMS database/g) ?? [];
          if (/STATMSG: ID=6703/.test(log)) throw new Error('the sync failed: see wsyncmgr.log');
          return ends.length >= n ? ends.at(-1) : undefined;
        }, 600_000);
        // From the sync's first log line to its last: the sync itself, not the CLI.
        const lines = (await readLog(site.dataDir, 'wsyncmgr')).split('\n');
        const start = lines.filter((l) => l.includes('[Starting Sync')).at(-1)!;
        const end = lines.filter((l) => l.includes('[Sync time:')).at(-1)!;
        return { seconds: (when(end) - when(start)) / 1000, changed: Number(/\d+/.exec(line)![0]) };
      };
      const first = await syncOnce(1);
      row('sync manager: `sync now`, update point from upstream then site database from update point', count + 8, first.seconds, `${vmHwmMiB(site.child.pid!)} (site + update point)`, `${first.changed} changed; two imports; from the sync's first log line to its last`);
      const second = await syncOnce(2);
      row('sync manager: `sync now`, no change', count + 8, second.seconds, `${vmHwmMiB(site.child.pid!)}`, `${second.changed} changed`);
    } finally {
      await site.kill();
    }
  } finally {
    await up.kill();
  }

  const lists = fs.existsSync(aptDir) ? (await fsp.readdir(aptDir)).filter((n) => /_Packages(\.\w+)?$/.test(n)) : [];
  if (!lists.length) process.stdout.write(`apt: no lists in ${aptDir}; skipped\n`);
  else {
    t = performance.now();
    let bytes = 0;
    for (const l of lists) bytes += (await run('/usr/lib/apt/apt-helper', ['cat-file', path.join(aptDir, l)], { maxBuffer: 1 << 30, encoding: 'buffer' })).stdout.length;
    const catSeconds = (performance.now() - t) / 1000;
    const apt = await importOnce(path.join(work, 'site2'), ['--apt', aptDir]);
    const items = apt.updates.processed + apt.categories.processed;
    row('baseline: `apt-helper cat-file` of the lists, once', items, catSeconds, '-', `${(bytes / 1048576).toFixed(0)} MiB of text in ${lists.length} list(s)`);
    row('import of this machine\'s apt lists', items, apt.seconds, `${apt.peakRssMiB}`, `${apt.itemsChanged} changed, ${apt.updates.rejected} malformed; two passes over the lists`);
    const aptAgain = await importOnce(path.join(work, 'site2'), ['--apt', aptDir]);
    row('re-import of the apt lists, no change', items, aptAgain.seconds, `${aptAgain.peakRssMiB}`, `${aptAgain.itemsChanged} changed`);
  }

  const header = ['step', 'items', 'seconds', 'items/s', 'peak RSS MiB', 'note'];
  process.stdout.write(['', `| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`), ''].join('\n'));
} finally {
  await fsp.rm(work, { recursive: true, force: true });
}
