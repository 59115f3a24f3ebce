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
 * The fixture, its expected states and the set-up are in
 * test/helpers/compliance-fixture.ts (hand-checked; written out there).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { openDatabase } from '../../src/datastore/engine.ts';
import type { AgentUpdatesView } from '../../src/cli/agent-updates.ts';
import { afterTests, readLog, runCairn, waitFor } from '../helpers/processes.ts';
import { logText, startAgentProc, waitWithTrigger } from '../helpers/agent.ts';
import { startSupProcess, updateId } from '../helpers/catalog.ts';
import { addUpdate8, agentUpdates, byNumber, EXPECTED, EXPECTED2, inOrder, NAMES, ok, scanJobs, siteStates, STATE_ID, startComplianceSite, syncTo } from '../helpers/compliance-fixture.ts';

const { cleanups, track } = afterTests();

test('[UC3][UC4][UC5][UC6][UC7][UC8][UC9][UC10][UC11][UC12][UC13][UC14][UC15][UC16][UC17][UC18][UC19][UC20][UC21][UC23][UC24][UC30] compliance scans: first scan from policy, per-client states against the fixture, pruning, states and summaries at the site, switching, waiting without false states, restart resumes the job', async () => {
  const { dir, catalog, site, sups, supPorts, supKeys, factsFile } = await startComplianceSite('compliance-scan', { cleanups, track }, { sups: ['sup1', 'sup2'] });

  const data = path.join(dir, 'agent');
  const agentArgs = ['--mp', site.url, '--data', data, '--simulate', '3', '--facts', factsFile, '--spread-seconds', '1'];
  let agent = track(startAgentProc(agentArgs));
  const scanLog = async () => logText(await readLog(data, 'ScanAgent'));

  // UC3-UC16: the UpdateSource policy arrives and, with a window of 0 s, each client scans at once.
  await waitWithTrigger(data, 'policy', 'every client to complete its first scan', async () => (await scanLog()).split('\n').filter((l) => /CScanJob::OnScanComplete -Scan completed successfully, ScanType=1/.test(l)).length >= 3);
  const scan = (await scanLog()).split('\n');
  const web = scan.filter((l) => l.startsWith('[WEB-1] '));
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
  await addUpdate8(catalog);
  await syncTo(site, 2);
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
