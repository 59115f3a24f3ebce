/**
 * Compliance scans end to end (issue 6, parts 1, 2, 4, 7-10; spec 30 §§1-4):
 * a real site with its MP, a real `cairn upstream` serving a hand-checked
 * fixture catalog, two real `cairn sup` update points, and a real `cairn
 * agent` process running three simulated clients whose facts file carries
 * their inventories. Everything is driven as an administrator would:
 * `cairn admin settings set|sync|summarize|compliance`, `cairn agent scan
 * --now`, `cairn agent updates --json`; the update points are killed and
 * restarted, and the agent is killed with a job waiting.
 *
 * The fixture (hand-checked; the expected states are written out below):
 * 1 openssl 3.0.5-1 (superseded by 2, so pruned everywhere), 2 openssl
 * 3.0.11-1, 3 curl 7.88.1-10+deb12u5, 4 nginx 1.22.0-1, 5 postgresql-15
 * 15.2-1, 6 jq with contradictory rules (unknown where jq is installed),
 * 7 zlib1g (installed nowhere). WEB-1 has openssl 3.0.1-1, curl 7.88.1-10,
 * nginx 1.22.0-1 and jq; DB-1 openssl 3.0.11-1 and postgresql-15 15.1-1;
 * BARE-1 nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { openDatabase } from '../../src/datastore/engine.ts';
import type { AgentUpdatesView } from '../../src/cli/agent-updates.ts';
import { afterTests, api, cli, freePort, readLog, runCairn, startSite, tempDir, waitFor } from '../helpers/processes.ts';
import type { SiteProc } from '../helpers/processes.ts';
import { logText, startAgentProc, waitWithTrigger } from '../helpers/agent.ts';
import { categories, product, SECURITY, startSupProcess, startUpstreamProcess, updateId } from '../helpers/catalog.ts';
import type { SupProc } from '../helpers/catalog.ts';

const { cleanups, track } = afterTests();

const pkgRule = (name: string, op: 'lt' | 'ge', version: string) => ({ kind: 'package', name, installed: true, version: { op, value: version } });
function fixtureUpdate(n: number, pkg: string, version: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
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
const FIXTURE = [
  fixtureUpdate(1, 'openssl', '3.0.5-1'),
  fixtureUpdate(2, 'openssl', '3.0.11-1', { supersedes: [updateId(1)] }),
  fixtureUpdate(3, 'curl', '7.88.1-10+deb12u5'),
  fixtureUpdate(4, 'nginx', '1.22.0-1'),
  fixtureUpdate(5, 'postgresql-15', '15.2-1'),
  // Contradictory: both rules hold wherever jq is installed.
  fixtureUpdate(6, 'jq', '1.6-2.1', { isApplicable: { kind: 'package', name: 'jq', installed: true }, isInstalled: { kind: 'package', name: 'jq', installed: true } }),
  fixtureUpdate(7, 'zlib1g', '1:1.2.13.dfsg-1'),
];
const FACTS = {
  clients: [
    { name: 'WEB-{n}', count: 1, ipAddresses: ['10.30.0.{n}'], inventory: { os: { family: 'debian', version: '12' }, packages: ['openssl:amd64=3.0.1-1', 'curl:amd64=7.88.1-10', 'nginx:amd64=1.22.0-1', 'jq:amd64=1.6-2.1'] } },
    { name: 'DB-{n}', count: 1, ipAddresses: ['10.30.1.{n}'], inventory: { os: { family: 'debian', version: '12' }, packages: ['openssl:amd64=3.0.11-1', 'postgresql-15:amd64=15.1-1'] } },
    { name: 'BARE-{n}', ipAddresses: ['10.30.2.{n}'], inventory: { os: { family: 'debian', version: '12' }, packages: [] } },
  ],
};
// Hand-checked: update number → state per client (update 1 is pruned: never reported).
const EXPECTED: Record<string, Record<number, string>> = {
  'WEB-1': { 2: 'required', 3: 'required', 4: 'installed', 5: 'notRequired', 6: 'unknown', 7: 'notRequired' },
  'DB-1': { 2: 'installed', 3: 'notRequired', 4: 'notRequired', 5: 'required', 6: 'notRequired', 7: 'notRequired' },
  'BARE-1': { 2: 'notRequired', 3: 'notRequired', 4: 'notRequired', 5: 'notRequired', 6: 'notRequired', 7: 'notRequired' },
};
const STATE_ID: Record<string, number> = { unknown: 0, notRequired: 1, required: 2, installed: 3 };
const NAMES = Object.keys(EXPECTED);

async function ok(site: SiteProc, args: string[]): Promise<string> {
  const r = await cli(site, args);
  assert.equal(r.code, 0, `cairn admin ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function agentUpdates(data: string, client: string): Promise<AgentUpdatesView> {
  const r = await runCairn(['agent', 'updates', '--data', data, '--client', client, '--all', '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as AgentUpdatesView;
}

/** The client's states as `update number → state name`, from its own update store. */
const byNumber = (v: AgentUpdatesView): Record<number, string> => Object.fromEntries(v.updates.map((u) => [Number(u.updateId.slice(-12)), u.state]));

interface SiteState {
  client: string;
  topicType: number;
  topicId: string;
  stateId: number;
  serialNumber: number;
}
async function siteStates(site: SiteProc, topicType: number): Promise<SiteState[]> {
  return (await api<{ states: SiteState[] }>(site, 'GET', `/api/v1/states?topicType=${topicType}&limit=100000`)).json.states;
}

async function scanJobs(data: string): Promise<Map<string, { jobId: string; state: string }>> {
  const out = new Map<string, { jobId: string; state: string }>();
  for (const n of NAMES) {
    const v = await agentUpdates(data, n);
    if (v.lastScan) out.set(n, { jobId: v.lastScan.jobId, state: v.lastScan.state });
  }
  return out;
}

test('[UC3][UC4][UC5][UC6][UC7][UC8][UC9][UC10][UC11][UC12][UC13][UC14][UC15][UC16][UC17][UC18][UC19][UC20][UC21][UC23][UC24][UC30] compliance scans: first scan from policy, per-client states against the fixture, pruning, states and summaries at the site, switching, waiting without false states, restart resumes the job', async () => {
  const dir = await tempDir('compliance-scan');
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
  for (const name of ['sup1', 'sup2']) {
    const port = await freePort();
    const key = (await ok(site, ['sup', 'add', name, '--url', `http://127.0.0.1:${port}`])).trim();
    supPorts.push(port);
    supKeys.push(key);
    sups.push(track(await startSupProcess(path.join(dir, name), key, port, name)));
  }
  await ok(site, ['sync', 'upstream', up.url]);
  await ok(site, ['sync', 'now']);
  await waitFor('the first sync', async () => (JSON.parse(await ok(site, ['sync', 'status', '--json'])) as { contentVersion: number; lastSyncResult: string }).contentVersion === 1);

  const factsFile = path.join(dir, 'facts.json');
  await fsp.writeFile(factsFile, JSON.stringify(FACTS));
  const data = path.join(dir, 'agent');
  const agentArgs = ['--mp', site.url, '--data', data, '--simulate', '3', '--facts', factsFile, '--spread-seconds', '1'];
  let agent = track(startAgentProc(agentArgs));
  const scanLog = async () => logText(await readLog(data, 'ScanAgent'));

  // UC3-UC16: the UpdateSource policy arrives and, with a window of 0 s, each client scans at once.
  await waitWithTrigger(data, 'policy', 'every client to complete its first scan', async () => (await scanLog()).split('\n').filter((l) => /CScanJob::OnScanComplete -Scan completed successfully, ScanType=1/.test(l)).length >= 3);
  const scan = (await scanLog()).split('\n');
  const web = scan.filter((l) => l.startsWith('[WEB-1] '));
  const inOrder = (lines: string[], needles: RegExp[]) => {
    let at = 0;
    for (const n of needles) {
      const i = lines.findIndex((l, k) => k >= at && n.test(l));
      assert.ok(i >= 0, `expected ${String(n)} after line ${at} in:\n${lines.join('\n')}`);
      at = i + 1;
    }
  };
  inOrder(web, [
    /CScanAgent::OnPolicyChange- Policy InstanceModificationEvent notification received/,
    /CScanAgent::ScanByUpdates- Policy available for UpdateSourceID=\{[0-9A-F-]{36}\} ContentVersion=1$/,
    /CScanAgent::ScanByUpdates- Added Policy to final ScanRequest List UpdateSourceID=\{[0-9A-F-]{36}\}, Policy-ContentVersion=1, Required-ContentVersion=1$/,
    /ScanJob\(\{[0-9A-F-]{36}\}\): CScanJob::RequestLocations- entered/,
    /- - - - - -Requesting WSUS Server Locations from LS for \{[0-9A-F-]{36}\} version 1$/,
    /CScanAgentCache::PersistInstanceInCache- Persisted Instance CCM_ScanJobInstance/,
    /WSUSLocationUpdate received for location request guid=\{[0-9A-F-]{36}\}/,
    new RegExp(`CScanJob::OnLocationUpdate- Received Location=http://127\\.0\\.0\\.1:${supPorts[0]}, Version=1$`),
    new RegExp(`CScanJob::Execute- Adding UpdateSource=\\{[0-9A-F-]{36}\\}, ContentType=2, ContentLocation=http://127\\.0\\.0\\.1:${supPorts[0]}, ContentVersion=1$`),
    /Raised UpdateSource \(\{[0-9A-F-]{36}\}\) state message successfully\. StateId = 2$/,
    /CScanJob::Execute - Successfully requested Scan, ScanType=1$/,
    /CScanJob::OnScanComplete -Scan completed successfully, ScanType=1 \(with errors: 1 updates unknown\)$/,
  ]);
  const loc = logText(await readLog(data, 'LocationServices')).split('\n').filter((l) => l.startsWith('[WEB-1] '));
  inOrder(loc, [
    /CCCMWSUSLocation::GetLocationsAsyncEx/,
    /WSUSLocationRequest : <WSUSLocationRequest SchemaVersion="1\.00"><Content ID="\{[0-9A-F-]{36}\}" Version="1"\/><AssignedSite SiteCode="CS1"\/><ClientLocationInfo OnInternet="0">.*<IPAddress SubnetAddress="10\.30\.0\.0" Address="10\.30\.0\.1"\/>/,
    /WSUSLocationReply : <WSUSLocationReply SchemaVersion="1\.00"><Sites><Site><MPSite SiteCode="CS1"\/><LocationRecords><LocationRecord WSUSURL="http:\/\/127\.0\.0\.1:\d+" ServerName="127\.0\.0\.1" Version="1"\/><LocationRecord /,
    /Calling back with the following WSUS locations/,
    new RegExp(`WSUS Path='http://127\\.0\\.0\\.1:${supPorts[1]}', Server='127\\.0\\.0\\.1', Version='1'`),
  ]);
  assert.match(logText(await readLog(data, 'CcmMessaging')), /Sending async message '\{[0-9A-F-]{36}\}' to outgoing queue 'mp:\[http\]mp_locationmanager'[\s\S]*got reply '\{[0-9A-F-]{36}\}' to local endpoint queue 'LS_ReplyLocations'/);
  const wua = logText(await readLog(data, 'WUAHandler'));
  assert.match(wua, /\[WEB-1\] Its a completely new WSUS Update Source\.\n.*\[WEB-1\] Enabling WUA Managed server policy to use server: http:\/\/127\.0\.0\.1:\d+/);
  assert.match(wua, /\[WEB-1\] Search Criteria is \(DeploymentAction=\* AND Type='Software'\) OR \(DeploymentAction=\* AND Type='Driver'\)/);
  assert.match(logText(await readLog(data, 'Scanner')), new RegExp(`\\[WEB-1\\] Pruning: update id \\(${updateId(1)}\\) is superseded by \\(${updateId(2)}\\)\\.`));
  assert.match(logText(await readLog(site.dataDir, 'MP_Location')), /MP LM: Reply message body: <WSUSLocationReply/);

  // UC17: each client's update store against the hand-checked fixture; update 1 was pruned, never recorded.
  for (const n of NAMES) assert.deepEqual(byNumber(await agentUpdates(data, n)), EXPECTED[n], n);
  const required = await runCairn(['agent', 'updates', '--data', data, '--client', 'WEB-1', '--json']);
  // Without --all: only the required updates, by title (curl before openssl).
  assert.deepEqual((JSON.parse(required.stdout) as AgentUpdatesView).updates.map((u) => u.articleId), ['FIX-3', 'FIX-2']);
  const unknown = (await agentUpdates(data, 'WEB-1')).updates.find((u) => u.state === 'unknown')!;
  assert.match(unknown.reason, /contradict/);
  const store = logText(await readLog(data, 'UpdatesStore'));
  assert.match(store, new RegExp(`\\[WEB-1\\] Status of update \\(${updateId(3)}\\) has not been reported before, creating new instance\\.`));
  assert.match(store, new RegExp(`\\[WEB-1\\] Successfully raised state message for update \\(${updateId(3)}\\) with status \\(Missing\\)\\.`));
  assert.match(logText(await readLog(data, 'StateMessage')), new RegExp(`\\[WEB-1\\] State message\\(State ID : 2\\) with TopicType 500 and TopicId ${updateId(3)} has been recorded for SYSTEM`));

  // UC18-UC24: the reporting cycle carries the states to the site; each client's latest state per update.
  await waitWithTrigger(data, 'report', 'the states at the site', async () => (await siteStates(site, 500)).length >= 18);
  const at = await siteStates(site, 500);
  for (const n of NAMES) {
    const mine = Object.fromEntries(at.filter((s) => s.client === n).map((s) => [Number(s.topicId.slice(-12)), s.stateId]));
    assert.deepEqual(mine, Object.fromEntries(Object.entries(EXPECTED[n]!).map(([k, v]) => [Number(k), STATE_ID[v]])), `site states of ${n}`);
  }
  const scanStates = await siteStates(site, 501);
  assert.deepEqual(scanStates.map((s) => [s.client, s.stateId]).sort(), [['BARE-1', 3], ['DB-1', 3], ['WEB-1', 6]], 'topic 501: complete, and completed with errors where an update is unknown');

  // Summaries: cairn admin summarize, then the counts equal a direct count over the per-client states.
  await ok(site, ['summarize']);
  const summary = JSON.parse(await ok(site, ['compliance', '--json'])) as { updates: { updateId: string; required: number; installed: number; notRequired: number; unknown: number; total: number }[] };
  for (let n = 2; n <= 7; n += 1) {
    const direct = { required: 0, installed: 0, notRequired: 0, unknown: 0 };
    for (const c of NAMES) direct[EXPECTED[c]![n] as keyof typeof direct] += 1;
    const row = summary.updates.find((u) => u.updateId === updateId(n));
    assert.ok(row, `a summary row for update ${n}`);
    assert.deepEqual({ required: row.required, installed: row.installed, notRequired: row.notRequired, unknown: row.unknown, total: row.total }, { ...direct, total: 3 }, `update ${n}`);
  }

  // A rescan that finds nothing new raises no topic 500 message.
  await runCairn(['agent', 'scan', '--now', '--data', data]);
  await waitFor('three more completed scans', async () => (await scanLog()).split('\n').filter((l) => /OnScanComplete -Scan completed successfully/.test(l)).length >= 6);
  assert.match(logText(await readLog(data, 'UpdatesStore')), /\[DB-1\] Update store: 6 update states from the scan at content version 1: 0 new, 0 changed, 6 unchanged; raised 0 state messages/);

  // A new curl update (8) supersedes update 3 at content version 2; then the update point in use (sup1) stops answering.
  const extra = path.join(catalog, 'updates', 'extra.ndjson');
  await fsp.writeFile(`${extra}.tmp`, JSON.stringify(fixtureUpdate(8, 'curl', '7.88.1-10+deb12u8', { supersedes: [updateId(3)] })) + '\n');
  await fsp.rename(`${extra}.tmp`, extra);
  await ok(site, ['sync', 'now']);
  await waitFor('the second sync', async () => (JSON.parse(await ok(site, ['sync', 'status', '--json'])) as { contentVersion: number }).contentVersion === 2);
  await waitFor('both update points at content version 2', async () => (JSON.parse(await ok(site, ['sup', 'list', '--json'])) as { contentVersion: number }[]).every((p) => p.contentVersion === 2));
  await sups[0]!.kill('SIGKILL');
  // UC30: the clients learn of version 2, find sup1 silent, switch to sup2 and finish there.
  await waitWithTrigger(data, 'policy', 'three scans completed at content version 2', async () => (await scanLog()).split('\n').filter((l) => /OnScanComplete -Scan completed successfully/.test(l)).length >= 9);
  const switched = (await scanLog()).split('\n').filter((l) => l.startsWith('[DB-1] '));
  inOrder(switched, [
    /CScanAgent::ScanByUpdates- Added Policy to final ScanRequest List UpdateSourceID=\{[0-9A-F-]{36}\}, Policy-ContentVersion=2, Required-ContentVersion=2$/,
    new RegExp(`the update point http://127\\.0\\.0\\.1:${supPorts[0]} does not answer; switching to http://127\\.0\\.0\\.1:${supPorts[1]} from the location reply\\.`),
    new RegExp(`CScanJob::Execute- Adding UpdateSource=\\{[0-9A-F-]{36}\\}, ContentType=2, ContentLocation=http://127\\.0\\.0\\.1:${supPorts[1]}, ContentVersion=2$`),
    /CScanJob::OnScanComplete -Scan completed successfully/,
  ]);
  const wua2 = logText(await readLog(data, 'WUAHandler'));
  assert.match(wua2, new RegExp(`\\[DB-1\\] Switching the WSUS update source from http://127\\.0\\.0\\.1:${supPorts[0]} to http://127\\.0\\.0\\.1:${supPorts[1]}`));
  assert.match(wua2, /\[DB-1\] WSUS update source already exists, increased version to 2\./);
  const EXPECTED2: Record<string, Record<number, string>> = {
    'WEB-1': { ...EXPECTED['WEB-1'], 3: 'notRequired', 8: 'required' },
    'DB-1': { ...EXPECTED['DB-1'], 8: 'notRequired' },
    'BARE-1': { ...EXPECTED['BARE-1'], 8: 'notRequired' },
  };
  for (const n of NAMES) {
    const v = await agentUpdates(data, n);
    assert.equal(v.lastScan?.updatePoint, `http://127.0.0.1:${supPorts[1]}`, `${n} scanned against sup2`);
    assert.deepEqual(byNumber(v), EXPECTED2[n], `${n} at content version 2`);
  }
  // Pruned now, update 3 is no longer required where it was (WEB-1), with the reason.
  assert.equal((await agentUpdates(data, 'WEB-1')).updates.find((u) => u.updateId === updateId(3))!.reason, `superseded by ${updateId(8)}`);
  await waitWithTrigger(data, 'report', 'the version 2 states at the site', async () => (await siteStates(site, 500)).length >= 21 && (await siteStates(site, 500)).some((s) => s.client === 'WEB-1' && s.topicId === updateId(3) && s.stateId === 1));
  const at2 = await siteStates(site, 500);
  for (const n of NAMES) {
    const mine = Object.fromEntries(at2.filter((s) => s.client === n).map((s) => [Number(s.topicId.slice(-12)), s.stateId]));
    assert.deepEqual(mine, Object.fromEntries(Object.entries(EXPECTED2[n]!).map(([k, v]) => [Number(k), STATE_ID[v]])), `site states of ${n} at version 2`);
  }
  const serialsBefore = new Map(at2.map((s) => [`${s.client} ${s.topicId}`, s.serialNumber]));

  // sup1 comes back: the clients keep using sup2, the one they switched to, first in their order.
  sups[0] = track(await startSupProcess(path.join(dir, 'sup1'), supKeys[0]!, supPorts[0]!, 'sup1'));
  const linesBefore = (await scanLog()).split('\n').length;
  await runCairn(['agent', 'scan', '--now', '--data', data]);
  await waitFor('three more completed scans', async () => (await scanLog()).split('\n').filter((l) => /OnScanComplete -Scan completed successfully/.test(l)).length >= 12);
  const kept = (await scanLog()).split('\n').slice(linesBefore - 1).filter((l) => /CScanJob::OnLocationUpdate- Received Location=/.test(l));
  assert.ok(kept.length >= 3 && kept.every((l) => l.endsWith(`Received Location=http://127.0.0.1:${supPorts[1]}, Version=2`)), kept.join('\n'));

  // No update point holds the required version (their rows say they have not synced it): the job waits, nothing changes.
  const siteDb = openDatabase(`sqlite:${path.join(site.dataDir, 'site.db')}`);
  cleanups.push(() => siteDb.destroy());
  await siteDb.db.updateTable('UpdatePoints').set({ ContentVersion: 0 }).execute();
  await runCairn(['agent', 'scan', '--now', '--data', data]);
  await waitFor('every job to wait for content', async () => [...(await scanJobs(data)).values()].filter((j) => j.state === 'waiting').length === 3);
  assert.match(await scanLog(), /CAIRN_AGENT_NO_UPDATE_POINT: no update point holding content version 2 or later serves this client yet\. Raised UpdateSource \(\{[0-9A-F-]{36}\}\) state message, StateId = 1; retrying at .*No update state changes\./);
  const waiting = await scanJobs(data);
  for (const n of NAMES) assert.deepEqual(byNumber(await agentUpdates(data, n)), EXPECTED2[n], `${n}: no false state while waiting`);

  // The agent is killed with the jobs waiting; restarted, it resumes the same jobs and finishes them once content is there.
  await agent.kill('SIGKILL');
  agent = track(startAgentProc(agentArgs));
  await waitFor('the jobs to be resumed', async () => (await scanLog()).split('\n').filter((l) => /: resuming the job persisted in state waiting/.test(l)).length >= 3);
  await siteDb.db.updateTable('UpdatePoints').set({ ContentVersion: 2 }).execute();
  await waitFor('the resumed jobs to complete', async () => {
    await runCairn(['agent', 'scan', '--now', '--data', data]);
    const now = await scanJobs(data);
    return NAMES.every((n) => now.get(n)?.state === 'complete') ? now : undefined;
  });
  const done = await scanJobs(data);
  for (const n of NAMES) assert.equal(done.get(n)!.jobId, waiting.get(n)!.jobId, `${n}: the same job ID, resumed`);
  await waitWithTrigger(data, 'report', 'the 501 states of the resumed jobs', async () => (await siteStates(site, 501)).filter((s) => s.stateId === 3 || s.stateId === 6).length === 3);
  // Latest wins at the site, and no topic 500 state moved: nothing was reported that was not scanned.
  const after = await siteStates(site, 500);
  assert.equal(after.length, at2.length);
  for (const s of after) assert.equal(s.serialNumber, serialsBefore.get(`${s.client} ${s.topicId}`), `${s.client} ${s.topicId}: no new topic 500 message`);
  await agent.kill('SIGTERM');
});
