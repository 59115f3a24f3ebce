/**
 * The summarisation tasks against a direct count, on both engines, over
 * randomized per-client states (a seeded PRNG, so a failure replays): some
 * clients never report, some report only some updates, some report without
 * registering, some are registered but pending. Every message reaches the
 * database through the state system's real path (`.SMX` files in its inbox,
 * drained by the component), in shuffled order with duplicates and stale
 * messages, so the per-client rows are whatever latest-wins made of them.
 *
 * The expected counts are computed here, in the test, from the rows read
 * back (and those rows are first checked against the latest message the test
 * sent per client and update): per update, per update group over the site's
 * clients, per deployment over its collection's members.
 */
import { describe } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import { engineTest } from '../helpers/engines.ts';
import { tempDir } from '../helpers/processes.ts';
import { migrateToLatest } from '../../src/datastore/migrate.ts';
import { readSettings } from '../../src/datastore/site-control.ts';
import { insertClient } from '../../src/datastore/clients.ts';
import { insertCollection, replaceCollectionMembers } from '../../src/datastore/collections.ts';
import {
  addUpdateGroupMembers,
  deleteAgedStatus,
  evaluateAssignments,
  insertUpdateDeployment,
  insertUpdateGroup,
  migrateUpdateStatus,
  readDeploymentSummary,
  readGroupSummary,
  readUpdateSummaries,
  summarizeUpdateGroups,
  summarizeUpdateStatus,
} from '../../src/datastore/compliance.ts';
import type { ComplianceCounts } from '../../src/datastore/compliance.ts';
import { createContentLibrary } from '../../src/content-library/content-library.ts';
import { sitePaths } from '../../src/site/site-paths.ts';
import { StateSystem } from '../../src/site/components/statesys/state-system.ts';
import { writeInboxFile } from '../../src/shared/inbox.ts';
import type { SiteDatabase } from '../../src/datastore/engine.ts';
import type { SiteContext } from '../../src/site/site-context.ts';

/** mulberry32: small, seeded, good enough to pick states. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SEED = 20261122;
const CLIENTS = 40;
const UPDATES = 14;
const U = (n: number) => `e0000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
const C = (n: number) => `GUID:00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
/** Clients 1–28 registered and approved, 29–32 registered but pending, 33–40 report without registering. */
const registration = (n: number): 'approved' | 'pending' | undefined => (n <= 28 ? 'approved' : n <= 32 ? 'pending' : undefined);

interface Msg {
  readonly client: number;
  readonly update: string;
  readonly state: number;
  readonly serial: number;
  /** Milliseconds since the epoch. */
  readonly time: number;
}

const wmi = (ms: number): string => {
  const d = new Date(ms).toISOString();
  return `${d.slice(0, 4)}${d.slice(5, 7)}${d.slice(8, 10)}${d.slice(11, 13)}${d.slice(14, 16)}${d.slice(17, 19)}.${d.slice(20, 23)}000+000`;
};

function report(client: number, msgs: readonly Msg[]): string {
  const body = msgs
    .map((m) => `<StateMessage MessageTime="${wmi(m.time)}" SerialNumber="${m.serial}"><Topic ID="${m.update}" Type="500" IDType="3" User="" UserSID=""/><State ID="${m.state}" Criticality="0"/><UserParameters Flags="0" Count="0"></UserParameters></StateMessage>`)
    .join('');
  return `<Report><ReportHeader><Identification><Machine><ClientID>${C(client)}</ClientID><NetBIOSName>PC${client}</NetBIOSName><Priority>5</Priority></Machine></Identification><ReportDetails><ReportContent>State Message Data</ReportContent></ReportDetails></ReportHeader><ReportBody>${body}</ReportBody></Report>`;
}

function shuffle<T>(rand: () => number, xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i -= 1) {
    const j = Math.floor(rand() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

/**
 * Per (client, update) 0–3 messages with rising serials and times (30% of
 * pairs get none); states 0–3 with required and installed the most common.
 * Returns every message and the latest per pair.
 */
function generate(rand: () => number, base: number): { all: Msg[]; latest: Map<string, Msg> } {
  const all: Msg[] = [];
  const latest = new Map<string, Msg>();
  const pick = () => {
    const x = rand();
    return x < 0.05 ? 0 : x < 0.35 ? 1 : x < 0.65 ? 2 : 3;
  };
  for (let c = 1; c <= CLIENTS; c += 1) {
    // Every fifth client of the first 30 never reports at all.
    if (c % 5 === 0 && c <= 30) continue;
    let serial = 100;
    for (let u = 1; u <= UPDATES; u += 1) {
      if (rand() < 0.3) continue;
      const n = 1 + Math.floor(rand() * 3);
      for (let i = 0; i < n; i += 1) {
        serial += 1 + Math.floor(rand() * 3);
        const m = { client: c, update: U(u), state: pick(), serial, time: base + serial * 1000 };
        all.push(m);
        latest.set(`${c} ${U(u)}`, m);
      }
    }
  }
  return { all, latest };
}

async function withStateSystem(d: SiteDatabase, fn: (deliver: (msgs: readonly Msg[], perFile: number) => Promise<void>) => Promise<void>): Promise<void> {
  const dir = await tempDir('compliance-random');
  const paths = sitePaths(dir);
  const ctx: SiteContext = Object.freeze({ db: d.db, engine: d.engine, paths, siteCode: 'CS1', settings: await readSettings(d.db), library: createContentLibrary(paths.contentLibrary), wake: { dbmon: () => undefined } });
  const sys = new StateSystem(ctx);
  let file = 0;
  try {
    await fn(async (msgs, perFile) => {
      // One report per client per file, `perFile` messages at most, in the order given.
      for (let i = 0; i < msgs.length; ) {
        const client = msgs[i]!.client;
        const chunk: Msg[] = [];
        while (i < msgs.length && msgs[i]!.client === client && chunk.length < perFile) chunk.push(msgs[i++]!);
        file += 1;
        await writeInboxFile(paths.statesysIncoming, `${String(file).padStart(6, '0')}.SMX`, report(client, chunk));
      }
      await sys.drain();
    });
  } finally {
    await sys.stop();
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

type Row = { client: string; update: string; status: number };

async function rows(d: SiteDatabase): Promise<Row[]> {
  const r = await d.db.selectFrom('Update_ComplianceStatus').select(['ClientID', 'CI_UniqueID', 'Status']).execute();
  return r.map((x) => ({ client: x.ClientID, update: x.CI_UniqueID, status: Number(x.Status) }));
}

/** Compliance of one client for a set of updates, straight from the rules in the issue. */
function clientCompliance(states: ReadonlyMap<string, number>, client: string, updates: readonly string[]): 'compliant' | 'nonCompliant' | 'unknown' {
  const s = updates.map((u) => states.get(`${client} ${u}`));
  if (s.some((x) => x === 2)) return 'nonCompliant';
  if (s.every((x) => x === 1 || x === 3)) return 'compliant';
  return 'unknown';
}

function direct(states: ReadonlyMap<string, number>, population: readonly string[], updates: readonly string[]): ComplianceCounts {
  const out = { compliant: 0, nonCompliant: 0, unknown: 0, total: population.length };
  for (const c of population) out[clientCompliance(states, c, updates)] += 1;
  return out;
}

const counts = (s: ComplianceCounts | undefined) => s && { compliant: s.compliant, nonCompliant: s.nonCompliant, unknown: s.unknown, total: s.total };

describe('summaries equal a direct count over randomized per-client states', () => {
  engineTest('[UC24][UC26][UC27] per update, per update group and per deployment; duplicate and stale messages through the state system change nothing', async (d) => {
    await migrateToLatest(d.db, d.engine);
    const rand = prng(SEED);
    const now = new Date().toISOString();
    // The catalog: updates 1–12 live, 13 expired (still summarised while clients report it), 14 only reported (not in the catalog), 15 in the catalog with no state at all.
    for (const n of [...Array.from({ length: UPDATES - 1 }, (_, i) => i + 1), UPDATES + 1]) {
      await d.db
        .insertInto('CI_ConfigurationItems')
        .values({ CI_UniqueID: U(n), CIType_ID: 1, RevisionNumber: 1, Title: `update ${n}`, ArticleID: '', Classification: 'c', Severity: '', ReleaseDate: now, Digest: '{}', ContentVersion: 1, IsExpired: n === 13 ? 1 : 0, DateCreated: now, DateLastModified: now })
        .execute();
    }
    const resource = new Map<number, number>();
    for (let n = 1; n <= CLIENTS; n += 1) {
      const status = registration(n);
      if (!status) continue;
      const r = await insertClient(d.db, { clientId: C(n), name: `PC${n}`, publicKey: 'PEM', fingerprint: `FP${n}`, ipAddresses: [`10.0.0.${n}`], osFamily: 'linux', osVersion: '6.1', agentVersion: '0.1.0' }, status);
      resource.set(n, Number(r.ResourceID));
    }

    const base = Date.now() - 3_600_000;
    const { all, latest } = generate(rand, base);
    // Shuffled within each client (reports arrive out of order), every message sent once, then a fifth of them again.
    const byClient = new Map<number, Msg[]>();
    for (const m of all) byClient.set(m.client, [...(byClient.get(m.client) ?? []), m]);
    const first = [...byClient.values()].flatMap((ms) => shuffle(rand, [...ms]));
    await withStateSystem(d, async (deliver) => {
      await deliver(first, 7);
      await deliver(
        all.filter(() => rand() < 0.2),
        5,
      );

      // The rows are the latest message per client and update: latest wins.
      const stored = await rows(d);
      assert.deepEqual(new Map(stored.map((r) => [`${Number(r.client.slice(-12))} ${r.update}`, r.status])), new Map([...latest].map(([k, m]) => [k, m.state])));
      assert.ok(stored.some((r) => r.status === 0) && stored.some((r) => r.status === 1) && stored.some((r) => r.status === 2) && stored.some((r) => r.status === 3), 'every state occurs');

      // Groups: a random half of the live updates, all of them, and none. Deployments: the first group to two random collections.
      const live = Array.from({ length: 12 }, (_, i) => U(i + 1));
      const groupUpdates = [live.filter(() => rand() < 0.5), [...live, U(13), U(14), U(15)], []];
      const groups: { id: number; updates: string[] }[] = [];
      for (const [i, ids] of groupUpdates.entries()) {
        const g = (await insertUpdateGroup(d.db, `Group ${i}`))!;
        if (ids.length) await addUpdateGroupMembers(d.db, g.AuthListID, ids);
        groups.push({ id: g.AuthListID, updates: ids });
      }
      const deployments: { id: number; updates: string[]; members: string[] }[] = [];
      for (const [i, g] of [groups[0]!, groups[1]!].entries()) {
        const members = [...resource.entries()].filter(() => rand() < 0.6);
        const col = await insertCollection(d.db, { CollectionID: `CS10000${i + 1}`, Name: `Collection ${i}` });
        await replaceCollectionMembers(d.db, col.CollectionID, new Set(), new Set(members.map(([, r]) => r)));
        const { row } = await insertUpdateDeployment(d.db, { DeploymentID: `{d0000000-0000-4000-8000-00000000000${i}}`, AuthListID: g.id, CollectionID: col.CollectionID });
        deployments.push({ id: row.AssignmentID, updates: g.updates, members: members.map(([n]) => C(n)) });
      }

      const check = async (label: string) => {
        // Every task, as the component runs them: one transaction each.
        const t = new Date().toISOString();
        assert.equal(await d.db.transaction().execute((trx) => migrateUpdateStatus(trx)), 0, `${label}: Update_ComplianceStatus is level with StateMsg`);
        assert.equal(await d.db.transaction().execute((trx) => deleteAgedStatus(trx, new Date(Date.now() - 90 * 86_400_000).toISOString())), 0);
        assert.equal(await d.db.transaction().execute((trx) => summarizeUpdateStatus(trx, t)), UPDATES + 1);
        assert.equal(await d.db.transaction().execute((trx) => summarizeUpdateGroups(trx, t)), groups.length);
        assert.equal(await d.db.transaction().execute((trx) => evaluateAssignments(trx, t)), deployments.length);

        const stored = await rows(d);
        const states = new Map(stored.map((r) => [`${r.client} ${r.update}`, r.status]));
        const approved = [...resource.keys()].filter((n) => registration(n) === 'approved').map(C);
        const population = [...new Set([...approved, ...stored.map((r) => r.client)])];
        const summaries = await readUpdateSummaries(d.db);
        assert.deepEqual(
          summaries.map((s) => s.updateId),
          Array.from({ length: UPDATES + 1 }, (_, i) => U(i + 1)),
          `${label}: every catalog update, the expired one and the reported-only one`,
        );
        for (const s of summaries) {
          const of = (st: number) => stored.filter((r) => r.update === s.updateId && r.status === st).length;
          const expected = { required: of(2), installed: of(3), notRequired: of(1), unknown: population.length - of(1) - of(2) - of(3), total: population.length };
          assert.deepEqual({ required: s.required, installed: s.installed, notRequired: s.notRequired, unknown: s.unknown, total: s.total }, expected, `${label}: update ${s.updateId}`);
        }
        for (const g of groups) assert.deepEqual(counts(await readGroupSummary(d.db, g.id)), g.updates.length ? direct(states, population, g.updates) : { compliant: population.length, nonCompliant: 0, unknown: 0, total: population.length }, `${label}: group ${g.id}`);
        for (const dep of deployments) assert.deepEqual(counts(await readDeploymentSummary(d.db, dep.id)), direct(states, dep.members, dep.updates), `${label}: deployment ${dep.id}`);
        return { summaries, groups: await Promise.all(groups.map((g) => readGroupSummary(d.db, g.id))) };
      };
      const before = await check('after the first delivery');
      // Non-trivial: the groups and deployments are not all one outcome.
      assert.ok(before.groups[0]!.nonCompliant > 0 && before.groups[0]!.unknown > 0, JSON.stringify(before.groups[0]));

      // Every message again (duplicates), and a stale message for each latest one: an older serial with another state.
      const stale = [...latest.values()].map((m) => ({ ...m, serial: m.serial - 1, state: (m.state + 1) % 4, time: m.time - 1000 }));
      // And a message with a newer serial but an older time, which the rule also refuses.
      const olderTime = [...latest.values()].map((m) => ({ ...m, serial: m.serial + 1000, state: (m.state + 2) % 4, time: m.time - 60_000 }));
      await deliver(shuffle(rand, [...all, ...stale, ...olderTime]).sort((a, b) => a.client - b.client), 9);
      const after = await check('after duplicates and stale messages');
      const strip = (s: typeof before.summaries) => s.map(({ summaryTime: _t, ...rest }) => rest);
      assert.deepEqual(strip(after.summaries), strip(before.summaries));

      // A newer message does move the counts, by exactly that client.
      const target = [...latest.values()].find((m) => m.state !== 2)!;
      await deliver([{ ...target, serial: target.serial + 5000, state: 2, time: target.time + 60_000 }], 1);
      const moved = await check('after one newer message');
      const was = before.summaries.find((s) => s.updateId === target.update)!;
      const now2 = moved.summaries.find((s) => s.updateId === target.update)!;
      assert.equal(now2.required, was.required + 1);
    });
  });
});
