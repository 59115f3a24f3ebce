/**
 * Benchmark: ingest N state messages (default 1,000,000) from `.SMX` files
 * through the state system, and compare with a raw bulk insert of the same
 * rows into the same engine, measured in the same run. Prints messages per
 * second; not a test, never gates CI. Target (issue 4): ingestion at least
 * 25% of the raw rate.
 *
 * Usage: `npm run bench:state-messages [-- --count 1000000 --per-file 100 --engine sqlite|postgresql]`;
 * runs on SQLite, and on PostgreSQL too when CAIRN_TEST_PG_URL is set
 * (`--engine` runs one of them only).
 *
 * The files: one `Report` per file from one client with `--per-file`
 * messages (a client's reporting cycle sends its messages in bulk), each
 * message a different (client, topic) so every one becomes a latest state.
 * Writing the files is not timed.
 *
 * What is timed:
 * - ingest: the state system draining its inbox with the site's default
 *   settings: listing, reading and parsing on worker threads, history
 *   insert, latest-state upsert with the rule, commit, file deletion;
 * - raw: the same rows, already in memory, inserted into `StateMsgHistory`
 *   of a fresh database with plain multi-row INSERTs (1,000 rows each)
 *   through the same query layer, in transactions of the same size as the
 *   state system's batches.
 */
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pgTarget, sqliteTarget } from './engines.ts';
import type { Target } from './engines.ts';
import { migrateToLatest } from '../src/datastore/migrate.ts';
import { readSettings } from '../src/datastore/site-control.ts';
import { countStateRows } from '../src/datastore/state-messages.ts';
import { createContentLibrary } from '../src/content-library/content-library.ts';
import { sitePaths } from '../src/site/site-paths.ts';
import { StateSystem } from '../src/site/components/statesys/state-system.ts';
import type { SiteContext } from '../src/site/site-context.ts';
import { writeInboxFile } from '../src/shared/inbox.ts';
import { parseStateReport } from '../src/shared/state-report.ts';
import { intOption } from './options.ts';

const args = process.argv.slice(2);
const opt = (name: string, fallback: number): number => intOption(name, fallback, args);
const count = opt('--count', 1_000_000);
const perFile = opt('--per-file', 100);
const files = Math.ceil(count / perFile);

function report(file: number): string {
  const n = Math.min(perFile, count - file * perFile);
  const msgs: string[] = [];
  for (let i = 0; i < n; i += 1) {
    const minute = String(i % 60).padStart(2, '0');
    msgs.push(
      `<StateMessage MessageTime="202611220${(i / 60) % 10 | 0}${minute}00.000000+000" SerialNumber="${i + 1}"><Topic ID="${(i * 2654435761 >>> 0).toString(16).padStart(8, '0')}-b4f3-45fb-83d9-${String(i).padStart(12, '0')}" Type="500" IDType="3" User="" UserSID=""/><State ID="${i % 4}" Criticality="0"/><UserParameters Flags="0" Count="1"><Param>200</Param></UserParameters></StateMessage>`,
    );
  }
  return `<Report><ReportHeader><Identification><Machine><ClientInstalled>1</ClientInstalled><ClientType>1</ClientType><ClientID>GUID:${String(file).padStart(8, '0')}-CF56-41D1-A006-6330EFC39381</ClientID><ClientVersion>5.00.7958.1000</ClientVersion><NetBIOSName>PC${file}</NetBIOSName><CodePage>437</CodePage><SystemDefaultLCID>1033</SystemDefaultLCID><Priority>5</Priority></Machine></Identification><ReportDetails><ReportContent>State Message Data</ReportContent><ReportType>Full</ReportType><Date>20261122070000.000000+000</Date><Version>1.0</Version><Format>1.0</Format></ReportDetails></ReportHeader><ReportBody>${msgs.join('')}</ReportBody></Report>`;
}

async function ingest(target: Target, work: string): Promise<number> {
  const { db, drop } = await target.open();
  try {
    await migrateToLatest(db.db, db.engine);
    const paths = sitePaths(path.join(work, `site-${target.name}`));
    process.stdout.write(`  writing ${files} .SMX files of ${perFile} messages...\n`);
    for (let f = 0; f < files; f += 1) await writeInboxFile(paths.statesysIncoming, `${String(f).padStart(9, '0')}.SMX`, report(f));
    const settings = await readSettings(db.db);
    const ctx: SiteContext = Object.freeze({ db: db.db, engine: db.engine, paths, siteCode: 'CS1', settings, library: createContentLibrary(paths.contentLibrary), wake: { dbmon: () => undefined } });
    let records = 0;
    let invalid = 0;
    const sys = new StateSystem(ctx, {
      onBatch: (b) => {
        records += b.records;
        invalid += b.invalidRecords;
      },
    });
    const t0 = process.hrtime.bigint();
    await sys.drain();
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    await sys.stop();
    const latest = await countStateRows(db.db, 'StateMsg');
    if (records !== count || invalid !== 0 || latest !== count) throw new Error(`ingest stored ${latest} of ${count} (records ${records}, invalid ${invalid})`);
    return seconds;
  } finally {
    await drop();
  }
}

async function raw(target: Target): Promise<number> {
  const { db, drop } = await target.open();
  try {
    await migrateToLatest(db.db, db.engine);
    const received = new Date().toISOString();
    const rows = [];
    for (let f = 0; f < files; f += 1) {
      for (const r of parseStateReport(report(f)).records) {
        rows.push({ ClientID: r.clientId, TopicType: r.topicType, TopicID: r.topicId, StateID: r.stateId, Criticality: r.criticality, SerialNumber: r.serialNumber, MessageTime: r.messageTime, NetBIOSName: r.netbiosName, IDType: r.idType, UserName: r.user, UserSID: r.userSid, UserFlags: r.userFlags, UserParams: JSON.stringify(r.userParams), ReceivedTime: received });
      }
    }
    const perTransaction = (await readSettings(db.db))['statesys.batchSize'] * perFile;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < rows.length; i += perTransaction) {
      const chunk = rows.slice(i, i + perTransaction);
      await db.db.transaction().execute(async (trx) => {
        for (let j = 0; j < chunk.length; j += 1000) await trx.insertInto('StateMsgHistory').values(chunk.slice(j, j + 1000)).execute();
      });
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    if ((await countStateRows(db.db, 'StateMsgHistory')) !== count) throw new Error('raw insert lost rows');
    return seconds;
  } finally {
    await drop();
  }
}

const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'cairn-bench-state-'));
try {
  process.stdout.write(`state messages: ${count} in ${files} files of ${perFile}; ${os.availableParallelism()} cores, Node ${process.version}\n`);
  const only = args.includes('--engine') ? args[args.indexOf('--engine') + 1] : undefined;
  const targets = [sqliteTarget(work), ...(process.env.CAIRN_TEST_PG_URL ? [pgTarget(process.env.CAIRN_TEST_PG_URL)] : [])].filter((t) => only === undefined || t.name.toLowerCase() === only.toLowerCase());
  for (const t of targets) {
    process.stdout.write(`${t.name}:\n`);
    const ingestS = await ingest(t, work);
    const rawS = await raw(t);
    const ingestRate = count / ingestS;
    const rawRate = count / rawS;
    process.stdout.write(`  ingest (state system, .SMX files): ${ingestS.toFixed(1)} s, ${Math.round(ingestRate)} messages/s\n`);
    process.stdout.write(`  raw bulk insert of the same rows:  ${rawS.toFixed(1)} s, ${Math.round(rawRate)} rows/s\n`);
    process.stdout.write(`  ingest / raw: ${((ingestRate / rawRate) * 100).toFixed(0)}% (target >= 25%)\n`);
  }
} finally {
  await fsp.rm(work, { recursive: true, force: true });
}
