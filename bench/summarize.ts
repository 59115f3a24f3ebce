/**
 * Benchmark: the update status summarizer over 10,000 clients × 1,000
 * updates of per-client state (issue 6, part 11), next to a single SQL
 * aggregate over the same rows measured in the same run. Not a test, never
 * gates CI. Target: summarisation within 2× the raw aggregate, on SQLite and
 * on PostgreSQL.
 *
 * Usage: `npm run bench:summarize [-- --clients 10000 --updates 1000 --runs 3]`;
 * runs on SQLite, and on PostgreSQL too when CAIRN_TEST_PG_URL is set (in its
 * own scratch database, dropped at the end).
 *
 * The database is migrated to 0007, loaded, then migrated to the latest
 * (0008 builds the by-update index over the loaded rows, as on an upgrade;
 * its time is printed). The rows are loaded in bulk, NOT through the state system: one
 * `INSERT … SELECT` per slice of clients, generated inside the database from
 * a fixed hash of (client, update), so loading 10 million rows takes a minute
 * or two instead of hours. Loading is not timed. The mix, per (client,
 * update): 4% no row at all (unknown because silent), 1% state 0, required
 * 0–30% depending on the update, 25% installed, the rest not required. Of
 * the clients, 50 report without being registered, and 50 more are
 * registered and approved but never report (unknown for every update).
 *
 * What is timed, `--runs` times each, alternating, after one untimed warm-up
 * of each so both read from a warm cache:
 * - summarizer: the component's real task (`Summarizer.runOnDemand`, one
 *   transaction: count the clients in scope, aggregate, rewrite
 *   `Update_ComplianceSummary`, record the run in `SR_SummaryTasks`);
 * - aggregate: `SELECT CI_UniqueID, count(*) FILTER (WHERE Status = …) …
 *   GROUP BY CI_UniqueID` over `Update_ComplianceStatus`, rows fetched.
 * The update group status summarizer (one group of 100 updates) and the
 * assignment compliance evaluator (that group deployed to a collection of
 * every registered client) are timed once each for information. The summary
 * is checked against the aggregate (every count, every update) before any
 * figure is printed.
 */
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { pgTarget, sqliteTarget } from './engines.ts';
import type { Target } from './engines.ts';
import type { SiteDatabase } from '../src/datastore/engine.ts';
import { migrateToLatest } from '../src/datastore/migrate.ts';
import { readSettings } from '../src/datastore/site-control.ts';
import { addUpdateGroupMembers, insertUpdateDeployment, insertUpdateGroup, readUpdateSummaries } from '../src/datastore/compliance.ts';
import type { SummaryTaskName } from '../src/datastore/compliance.ts';
import { insertCollection, replaceCollectionMembers } from '../src/datastore/collections.ts';
import { createContentLibrary } from '../src/content-library/content-library.ts';
import { sitePaths } from '../src/site/site-paths.ts';
import { Summarizer } from '../src/site/components/summarizer/summarizer.ts';
import type { SiteContext } from '../src/site/site-context.ts';
import { intOption } from './options.ts';

const args = process.argv.slice(2);
const opt = (name: string, fallback: number): number => intOption(name, fallback, args);
const clients = opt('--clients', 10_000);
const updates = opt('--updates', 1000);
const runs = opt('--runs', 3);
/** Clients 0 … UNREGISTERED-1 report without registering; clients `clients` … `clients`+SILENT-1 are registered and never report. */
const UNREGISTERED = Math.min(50, clients);
const SILENT = 50;
const CLIENTS_PER_STATEMENT = 250;

const clientId = (engine: string, col: string) => (engine === 'sqlite' ? sql.raw(`printf('GUID:%08d-0000-4000-8000-000000000000', ${col})`) : sql.raw(`'GUID:' || lpad(${col}::text, 8, '0') || '-0000-4000-8000-000000000000'`));
const updateId = (engine: string, col: string) => (engine === 'sqlite' ? sql.raw(`printf('e0000000-0000-4000-8000-%012d', ${col})`) : sql.raw(`'e0000000-0000-4000-8000-' || lpad(${col}::text, 12, '0')`));
/** Integer rows lo … hi-1 as a table `name(n)`. */
const series = (engine: string, name: string, lo: number, hi: number) =>
  engine === 'sqlite'
    ? sql.raw(`${name}(n) as (select ${lo} union all select n + 1 from ${name} where n + 1 < ${hi})`)
    : sql.raw(`${name}(n) as (select g::bigint from generate_series(${lo}, ${hi - 1}) g)`);

async function load(d: SiteDatabase): Promise<number> {
  const { db, engine } = d;
  const now = '2026-11-22T07:00:00.000Z';
  const recursive = sql.raw(engine === 'sqlite' ? 'with recursive' : 'with');
  await sql`insert into "CI_ConfigurationItems" ("CI_UniqueID", "CIType_ID", "RevisionNumber", "Title", "ArticleID", "Classification", "Severity", "ReleaseDate", "Digest", "ContentVersion", "DateCreated", "DateLastModified")
    ${recursive} ${series(engine, 'u', 0, updates)}
    select ${updateId(engine, 'n')}, 1, 1, 'bench update', '', 'c', '', ${now}, '{}', 1, ${now}, ${now} from u`.execute(db);
  await sql`insert into "ClientRegistration" ("ClientID", "NetBIOSName", "PublicKey", "KeyFingerprint", "IPAddresses", "OSFamily", "OSVersion", "AgentVersion", "ApprovalStatus", "RegisteredTime", "ApprovedTime", "LastSeenTime")
    ${recursive} ${series(engine, 'c', UNREGISTERED, clients + SILENT)}
    select ${clientId(engine, 'n')}, 'PC' || n, 'PEM', 'FP' || n, '[]', 'linux', '6.1', '0.1.0', 'approved', ${now}, ${now}, ${now} from c`.execute(db);
  // h in 0..999 from (client, update); the required share depends on the update (0–30%).
  const h = sql.raw(`(((c.n * 1103515245 + u.n * 12345 + c.n * u.n * 2654435761) % 2147483647) % 1000)`);
  const req = sql.raw(`(50 + (u.n * 37) % 300)`);
  for (let lo = 0; lo < clients; lo += CLIENTS_PER_STATEMENT) {
    const hi = Math.min(clients, lo + CLIENTS_PER_STATEMENT);
    await sql`insert into "Update_ComplianceStatus" ("ClientID", "CI_UniqueID", "Status", "SerialNumber", "MessageTime", "LastStatusTime")
      ${recursive} ${series(engine, 'c', lo, hi)}, ${series(engine, 'u', 0, updates)}
      select ${clientId(engine, 'c.n')}, ${updateId(engine, 'u.n')},
             case when ${h} < 50 then 0 when ${h} < ${req} then 2 when ${h} < ${req} + 250 then 3 else 1 end,
             u.n + 1, ${now}, ${now}
      from c cross join u
      where ${h} >= 40
      order by c.n, u.n`.execute(db);
    if (hi % 2500 === 0 || hi === clients) process.stdout.write(`  loaded ${hi} of ${clients} clients\n`);
  }
  if (engine === 'postgres') await sql`vacuum analyze`.execute(db);
  const r = await sql<{ n: number }>`select count(*) as n from "Update_ComplianceStatus"`.execute(db);
  return Number(r.rows[0]!.n);
}

interface AggRow {
  readonly CI_UniqueID: string;
  readonly req: number;
  readonly inst: number;
  readonly notreq: number;
}

async function aggregate(d: SiteDatabase): Promise<AggRow[]> {
  const r = await sql<AggRow>`
    select "CI_UniqueID", count(*) filter (where "Status" = 2) as req, count(*) filter (where "Status" = 3) as inst, count(*) filter (where "Status" = 1) as notreq
    from "Update_ComplianceStatus" group by "CI_UniqueID"`.execute(d.db);
  return r.rows;
}

const seconds = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;

async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t0 = process.hrtime.bigint();
  const v = await fn();
  return [seconds(t0), v];
}

async function bench(target: Target, work: string): Promise<void> {
  const { db: d, drop } = await target.open();
  try {
    // Load at 0007 (the primary key only), then let migration 0008 build its index over the loaded rows, as an upgrade would.
    await migrateToLatest(d.db, d.engine, '0007-compliance');
    process.stdout.write(`${target.name}: loading ${clients} clients × ${updates} updates (bulk INSERT … SELECT, not through the state system)\n`);
    const [loadS, rows] = await timed(() => load(d));
    process.stdout.write(`  ${rows} Update_ComplianceStatus rows in ${loadS.toFixed(1)} s (not part of the figures)\n`);
    const [migrateS, applied] = await timed(() => migrateToLatest(d.db, d.engine));
    if (d.engine === 'postgres') await sql`vacuum analyze "Update_ComplianceStatus"`.execute(d.db);
    process.stdout.write(`  migrations ${applied.join(', ') || '(none)'} over those rows: ${migrateS.toFixed(1)} s\n`);

    const paths = sitePaths(path.join(work, `site-${target.name}`));
    await fsp.mkdir(paths.logs, { recursive: true });
    const settings = await readSettings(d.db);
    const ctx: SiteContext = Object.freeze({ db: d.db, engine: d.engine, paths, siteCode: 'CS1', settings, library: createContentLibrary(paths.contentLibrary), wake: { dbmon: () => undefined } });
    const summarizer = new Summarizer(ctx);
    const run = async (task: SummaryTaskName) => {
      const [r] = await summarizer.runOnDemand([task]);
      if (!r || r.result !== 'success') throw new Error(`${task} failed: ${r?.error}`);
      return r.rowsTouched;
    };

    // Warm-up, and the check: the summary equals the aggregate, the unknowns are the clients in scope minus the counted.
    const agg = await aggregate(d);
    await run('Update Status Summarizer');
    const inScope = clients + SILENT;
    const byId = new Map(agg.map((a) => [a.CI_UniqueID, a]));
    const summaries = await readUpdateSummaries(d.db);
    if (summaries.length !== updates) throw new Error(`${summaries.length} summaries for ${updates} updates`);
    for (const s of summaries) {
      const a = byId.get(s.updateId);
      const [req, inst, notreq] = [Number(a?.req ?? 0), Number(a?.inst ?? 0), Number(a?.notreq ?? 0)];
      if (s.required !== req || s.installed !== inst || s.notRequired !== notreq || s.unknown !== inScope - req - inst - notreq || s.total !== inScope) {
        throw new Error(`summary of ${s.updateId} ${JSON.stringify(s)} disagrees with the aggregate ${JSON.stringify(a)} over ${inScope} clients`);
      }
    }
    process.stdout.write(`  check: ${summaries.length} update summaries equal the aggregate (${inScope} clients in scope)\n`);

    for (let i = 1; i <= runs; i += 1) {
      const [aggS] = await timed(() => aggregate(d));
      const [sumS, n] = await timed(() => run('Update Status Summarizer'));
      process.stdout.write(`  run ${i}: update status summarizer ${sumS.toFixed(2)} s (${n} rows); raw aggregate ${aggS.toFixed(2)} s; ratio ${(sumS / aggS).toFixed(2)} (target <= 2)\n`);
    }

    // The other two tasks over the same rows, once each, for information.
    const g = (await insertUpdateGroup(d.db, 'Bench group'))!;
    await addUpdateGroupMembers(d.db, g.AuthListID, summaries.slice(0, 100).map((s) => s.updateId));
    const col = await insertCollection(d.db, { CollectionID: 'CS100001', Name: 'All registered' });
    const members = (await d.db.selectFrom('ClientRegistration').select('ResourceID').execute()).map((r) => Number(r.ResourceID));
    await replaceCollectionMembers(d.db, col.CollectionID, new Set(), new Set(members));
    await insertUpdateDeployment(d.db, { DeploymentID: '{b0000000-0000-4000-8000-000000000001}', AuthListID: g.AuthListID, CollectionID: col.CollectionID });
    const [groupS] = await timed(() => run('Update Group Status Summarizer'));
    const [assignS] = await timed(() => run('Assignment Compliance Evaluator'));
    process.stdout.write(`  update group status summarizer (1 group of 100 updates): ${groupS.toFixed(2)} s; assignment compliance evaluator (that group to ${members.length} clients): ${assignS.toFixed(2)} s\n`);
    await summarizer.stop();
  } finally {
    await drop();
  }
}

const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'cairn-bench-summarize-'));
try {
  process.stdout.write(`summarize: ${clients} clients × ${updates} updates; ${os.cpus()[0]?.model ?? 'cpu'}, ${os.availableParallelism()} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}\n`);
  const targets = [sqliteTarget(work), ...(process.env.CAIRN_TEST_PG_URL ? [pgTarget(process.env.CAIRN_TEST_PG_URL)] : [])];
  for (const t of targets) await bench(t, work);
} finally {
  await fsp.rm(work, { recursive: true, force: true });
}
