/**
 * The compliance scan tests' hand-checked fixture and set-up (issue 6; used
 * by test/e2e/compliance-scan.test.ts and compliance-faults.test.ts): a
 * catalog folder served by a real `cairn upstream`, a real site with its MP,
 * real `cairn sup` update points, a facts file of three simulated clients,
 * and the states each client must end up with.
 *
 * The fixture (hand-checked; the expected states are written out below):
 * 1 openssl 3.0.5-1 (superseded by 2, so pruned everywhere), 2 openssl
 * 3.0.11-1, 3 curl 7.88.1-10+deb12u5, 4 nginx 1.22.0-1, 5 postgresql-15
 * 15.2-1, 6 jq with contradictory rules (unknown where jq is installed),
 * 7 zlib1g (installed nowhere). WEB-1 has openssl 3.0.1-1, curl 7.88.1-10,
 * nginx 1.22.0-1 and jq; DB-1 openssl 3.0.11-1 and postgresql-15 15.1-1;
 * BARE-1 nothing. Content version 2 (`addUpdate8`) adds 8, curl
 * 7.88.1-10+deb12u8, which supersedes 3 (`EXPECTED2`).
 */
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { AgentUpdatesView } from '../../src/cli/agent-updates.ts';
import { api, cli, freePort, runCairn, startSite, tempDir, waitFor } from './processes.ts';
import type { Proc, SiteProc } from './processes.ts';
import { categories, product, SECURITY, startSupProcess, startUpstreamProcess, updateId } from './catalog.ts';
import type { SupProc, UpstreamProc } from './catalog.ts';

const pkgRule = (name: string, op: 'lt' | 'ge', version: string) => ({ kind: 'package', name, installed: true, version: { op, value: version } });

export function fixtureUpdate(n: number, pkg: string, version: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: updateId(n),
    revision: 1,
    title: `${pkg} ${version}`,
    description: `Brings ${pkg} to ${version}.`,
    articleId: `FIX-${n}`,
    classification: SECURITY,
    products: [product(0)],
    severity: 'Important',
    cves: [],
    releaseDate: '2025-01-01',
    supersedes: [],
    isApplicable: pkgRule(pkg, 'lt', version),
    isInstalled: pkgRule(pkg, 'ge', version),
    ...extra,
  };
}

export const FIXTURE = [
  fixtureUpdate(1, 'openssl', '3.0.5-1'),
  fixtureUpdate(2, 'openssl', '3.0.11-1', { supersedes: [updateId(1)] }),
  fixtureUpdate(3, 'curl', '7.88.1-10+deb12u5'),
  fixtureUpdate(4, 'nginx', '1.22.0-1'),
  fixtureUpdate(5, 'postgresql-15', '15.2-1'),
  // Contradictory: both rules hold wherever jq is installed.
  fixtureUpdate(6, 'jq', '1.6-2.1', { isApplicable: { kind: 'package', name: 'jq', installed: true }, isInstalled: { kind: 'package', name: 'jq', installed: true } }),
  fixtureUpdate(7, 'zlib1g', '1:1.2.13.dfsg-1'),
];

export const FACTS = {
  clients: [
    { name: 'WEB-{n}', count: 1, ipAddresses: ['10.30.0.{n}'], inventory: { os: { family: 'debian', version: '12' }, packages: ['openssl:amd64=3.0.1-1', 'curl:amd64=7.88.1-10', 'nginx:amd64=1.22.0-1', 'jq:amd64=1.6-2.1'] } },
    { name: 'DB-{n}', count: 1, ipAddresses: ['10.30.1.{n}'], inventory: { os: { family: 'debian', version: '12' }, packages: ['openssl:amd64=3.0.11-1', 'postgresql-15:amd64=15.1-1'] } },
    { name: 'BARE-{n}', ipAddresses: ['10.30.2.{n}'], inventory: { os: { family: 'debian', version: '12' }, packages: [] } },
  ],
};

/** Hand-checked: update number → state per client (update 1 is pruned: never reported). */
export const EXPECTED: Record<string, Record<number, string>> = {
  'WEB-1': { 2: 'required', 3: 'required', 4: 'installed', 5: 'notRequired', 6: 'unknown', 7: 'notRequired' },
  'DB-1': { 2: 'installed', 3: 'notRequired', 4: 'notRequired', 5: 'required', 6: 'notRequired', 7: 'notRequired' },
  'BARE-1': { 2: 'notRequired', 3: 'notRequired', 4: 'notRequired', 5: 'notRequired', 6: 'notRequired', 7: 'notRequired' },
};

/** At content version 2: update 8 supersedes 3, so 3 is no longer required on WEB-1 and 8 is. */
export const EXPECTED2: Record<string, Record<number, string>> = {
  'WEB-1': { ...EXPECTED['WEB-1'], 3: 'notRequired', 8: 'required' },
  'DB-1': { ...EXPECTED['DB-1'], 8: 'notRequired' },
  'BARE-1': { ...EXPECTED['BARE-1'], 8: 'notRequired' },
};

/**
 * A client whose first scan is at content version 2: update 3, superseded by 8, is pruned like 1 and so
 * never reported (a client that reported it at version 1 has it not required instead, `EXPECTED2`).
 */
export const EXPECTED2_FIRST_SCAN: Record<string, Record<number, string>> = Object.fromEntries(
  Object.entries(EXPECTED2).map(([client, states]) => [client, Object.fromEntries(Object.entries(states).filter(([n]) => n !== '3'))]),
);

export const STATE_ID: Record<string, number> = { unknown: 0, notRequired: 1, required: 2, installed: 3 };
export const NAMES = Object.keys(EXPECTED);

/** `cairn admin ARGS…` must succeed; its stdout. */
export async function ok(site: SiteProc, args: string[]): Promise<string> {
  const r = await cli(site, args);
  assert.equal(r.code, 0, `cairn admin ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

export async function agentUpdates(data: string, client: string): Promise<AgentUpdatesView> {
  const r = await runCairn(['agent', 'updates', '--data', data, '--client', client, '--all', '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as AgentUpdatesView;
}

/** The client's states as `update number → state name`, from its own update store. */
export const byNumber = (v: AgentUpdatesView): Record<number, string> => Object.fromEntries(v.updates.map((u) => [Number(u.updateId.slice(-12)), u.state]));

export interface SiteState {
  client: string;
  topicType: number;
  topicId: string;
  stateId: number;
  serialNumber: number;
}

export async function siteStates(site: SiteProc, topicType: number): Promise<SiteState[]> {
  return (await api<{ states: SiteState[] }>(site, 'GET', `/api/v1/states?topicType=${topicType}&limit=100000`)).json.states;
}

/** The site's topic 500 states of `client` as `update number → state ID`. */
export const siteStatesOf = (states: readonly SiteState[], client: string): Record<number, number> => Object.fromEntries(states.filter((s) => s.client === client).map((s) => [Number(s.topicId.slice(-12)), s.stateId]));

/** `expected` (update number → state name) as `update number → state ID`. */
export const stateIds = (expected: Record<number, string>): Record<number, number> => Object.fromEntries(Object.entries(expected).map(([k, v]) => [Number(k), STATE_ID[v]!]));

/** Each client's last scan job, from `cairn agent updates`. */
export async function scanJobs(data: string): Promise<Map<string, { jobId: string; state: string }>> {
  const out = new Map<string, { jobId: string; state: string }>();
  for (const n of NAMES) {
    const v = await agentUpdates(data, n);
    if (v.lastScan) out.set(n, { jobId: v.lastScan.jobId, state: v.lastScan.state });
  }
  return out;
}

/** Asserts that `needles` match lines of `lines` in this order. */
export function inOrder(lines: readonly string[], needles: readonly RegExp[]): void {
  let at = 0;
  for (const n of needles) {
    const i = lines.findIndex((l, k) => k >= at && n.test(l));
    assert.ok(i >= 0, `expected ${String(n)} after line ${at} in:\n${lines.join('\n')}`);
    at = i + 1;
  }
}

/** Regular-expression text of `s`, every character taken literally. */
export const literal = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Content version 2 of the fixture: update 8 (curl 7.88.1-10+deb12u8, superseding 3), written atomically. */
export async function addUpdate8(catalog: string): Promise<void> {
  const extra = path.join(catalog, 'updates', 'extra.ndjson');
  await fsp.writeFile(`${extra}.tmp`, JSON.stringify(fixtureUpdate(8, 'curl', '7.88.1-10+deb12u8', { supersedes: [updateId(3)] })) + '\n');
  await fsp.rename(`${extra}.tmp`, extra);
}

export interface ComplianceSite {
  readonly dir: string;
  readonly catalog: string;
  readonly up: UpstreamProc;
  readonly site: SiteProc;
  /** The update points, in install order (the first syncs from upstream, the others are its replicas). */
  readonly sups: SupProc[];
  /** The ports they listen on. */
  readonly supPorts: number[];
  readonly supKeys: string[];
  /** The URLs they are registered with at the site (what the MP's location reply lists). */
  readonly supUrls: string[];
  /** The facts file of the three simulated clients. */
  readonly factsFile: string;
}

/**
 * A temporary folder (removed after the tests unless CAIRN_KEEP_TEST_DATA is
 * set), the fixture catalog served by `cairn upstream`, a site (`--no-local-dp
 * --no-local-sup`, sync on demand only, first scans at once), the update points
 * `sups` registered (under the URL `register` gives for each, by default its
 * own) and started, the first sync done everywhere, and the facts file.
 */
export async function startComplianceSite(
  prefix: string,
  tests: { cleanups: (() => Promise<void>)[]; track: <T extends Pick<Proc, 'kill'>>(p: T) => T },
  opts: { sups: readonly string[]; register?: (name: string, port: number) => Promise<string> },
): Promise<ComplianceSite> {
  const { cleanups, track } = tests;
  const dir = await tempDir(prefix);
  if (!process.env['CAIRN_KEEP_TEST_DATA']) cleanups.push(() => fsp.rm(dir, { recursive: true, force: true }));
  const catalog = path.join(dir, 'catalog');
  await fsp.mkdir(path.join(catalog, 'updates'), { recursive: true });
  await fsp.writeFile(path.join(catalog, 'categories.ndjson'), categories().map((c) => JSON.stringify(c)).join('\n') + '\n');
  await fsp.writeFile(path.join(catalog, 'updates', 'fixture.ndjson'), FIXTURE.map((u) => JSON.stringify(u)).join('\n') + '\n');
  const up = track(await startUpstreamProcess(catalog));
  const site = track(await startSite(path.join(dir, 'site'), ['--no-local-dp', '--no-local-sup']));
  for (const [k, v] of Object.entries({ 'wsyncmgr.scheduleSeconds': 0, 'wsyncmgr.retrySeconds': 0, 'wsyncmgr.pollMs': 50, 'client.scanWindowSeconds': 0 })) await ok(site, ['settings', 'set', k, String(v)]);
  const sups: SupProc[] = [];
  const supPorts: number[] = [];
  const supKeys: string[] = [];
  const supUrls: string[] = [];
  for (const name of opts.sups) {
    const port = await freePort();
    const url = opts.register ? await opts.register(name, port) : `http://127.0.0.1:${port}`;
    const key = (await ok(site, ['sup', 'add', name, '--url', url])).trim();
    supPorts.push(port);
    supKeys.push(key);
    supUrls.push(url);
    sups.push(track(await startSupProcess(path.join(dir, name), key, port, name)));
  }
  await ok(site, ['sync', 'upstream', up.url]);
  await syncTo(site, 1);
  const factsFile = path.join(dir, 'facts.json');
  await fsp.writeFile(factsFile, JSON.stringify(FACTS));
  return { dir, catalog, up, site, sups, supPorts, supKeys, supUrls, factsFile };
}

/** `cairn admin sync now`, then waits for the site and every update point to be at content version `version`. */
export async function syncTo(site: SiteProc, version: number): Promise<void> {
  await ok(site, ['sync', 'now']);
  await waitFor(`the site at content version ${version}`, async () => (JSON.parse(await ok(site, ['sync', 'status', '--json'])) as { contentVersion: number }).contentVersion === version);
  await waitFor(`every update point at content version ${version}`, async () => (JSON.parse(await ok(site, ['sup', 'list', '--json'])) as { contentVersion: number }[]).every((p) => p.contentVersion === version));
}
