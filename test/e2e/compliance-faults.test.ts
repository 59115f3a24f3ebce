/**
 * Compliance scans under faults, end to end (issue 6, part 9; spec 30 §2,
 * "Update-point switching"; docs/adr/0010-scan-agent.md), with real
 * processes only: a site with its MP, a `cairn upstream` serving the
 * hand-checked fixture of test/helpers/compliance-fixture.ts, real `cairn sup`
 * update points and one `cairn agent` process with three simulated clients.
 *
 * 1. An update point killed in the middle of the catalog download: sup1 is
 *    registered under the address of a pass-through relay
 *    (test/helpers/relay.ts), so that the test knows when the agent has
 *    received part of the catalog (the scanner asks for small pages,
 *    `--scan-page-size 2`): the agent's request for the second page of
 *    updates is held back, sup1 is SIGKILLed, and the request released
 *    meets a dead process. The clients must switch to sup2 from the same
 *    location reply, finish there with the fixture's states, keep sup2 for
 *    the next scan, and the half download must never count as sup1's
 *    catalog (when sup2 dies later, the switch back to sup1 downloads its
 *    whole catalog and the states are unchanged).
 * 2. A catalog older than required: the only update point is restored from a
 *    backup taken before the last sync, so it serves content version 1 while
 *    the site, its policy and the MP's location reply say 2. The scanner
 *    meets CAIRN_SCAN_CONTENT_VERSION_TOO_OLD; the clients wait and retry with
 *    the bounded backoff (30 s, then 60 s, logged), report no update state at
 *    all (nothing at the site), and complete with the right states once the
 *    update point is synced to 2 again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { ComplianceView } from '../../src/site/services/compliance.ts';
import { afterTests, readLog, runCairn, waitFor } from '../helpers/processes.ts';
import { logText, startAgentProc, waitWithTrigger } from '../helpers/agent.ts';
import { startSupProcess } from '../helpers/catalog.ts';
import { addUpdate8, agentUpdates, byNumber, EXPECTED, EXPECTED2, EXPECTED2_FIRST_SCAN, inOrder, literal, NAMES, ok, scanJobs, siteStates, siteStatesOf, startComplianceSite, stateIds, syncTo } from '../helpers/compliance-fixture.ts';
import { startRelay } from '../helpers/relay.ts';
import type { Relay, Relayed } from '../helpers/relay.ts';

const { cleanups, track } = afterTests();

const lines = (text: string, client: string): string[] => text.split('\n').filter((l) => l.startsWith(`[${client}] `));
const completed = (text: string): number => text.split('\n').filter((l) => /CScanJob::OnScanComplete -Scan completed successfully/.test(l)).length;

async function supVersion(url: string): Promise<{ catalogId: string; contentVersion: number }> {
  const r = await fetch(`${url}/sup/v1/version`);
  assert.equal(r.status, 200);
  return (await r.json()) as { catalogId: string; contentVersion: number };
}

test('[UC30][UC10][UC14][UC16][UC17][UC24] an update point killed in the middle of the catalog download: the scan switches to the other update point of the location reply, finishes there with the fixture states, keeps it for the next scan; the half download never counts', async () => {
  let relay: Relay | undefined;
  const { dir, catalog, site, sups, supPorts, supKeys, supUrls, factsFile } = await startComplianceSite('compliance-faults-switch', { cleanups, track }, {
    sups: ['sup1', 'sup2'],
    register: async (name, port) => {
      if (name !== 'sup1') return `http://127.0.0.1:${port}`;
      relay = await startRelay(port);
      cleanups.push(() => relay!.close());
      return relay.url;
    },
  });
  const r = relay!;
  const [sup1, sup2] = supUrls as [string, string];
  const sup1Catalog = (await supVersion(sup1)).catalogId;
  assert.notEqual((await supVersion(sup2)).catalogId, sup1Catalog, 'each update point has its own catalog ID: a switch means a new download');

  // The agent's second page of updates (pages of 2: eight categories in four pages, seven updates in four) is held back.
  const synced = r.requests.length;
  let held: Relayed | undefined;
  void r.holdNext((u) => u.startsWith('/upstream/v1/updates?') && new URLSearchParams(u.slice(u.indexOf('?') + 1)).has('cursor')).then((x) => (held = x));
  const data = path.join(dir, 'agent');
  const agentArgs = ['--mp', site.url, '--data', data, '--simulate', '3', '--facts', factsFile, '--spread-seconds', '1', '--scan-page-size', '2'];
  const agent = track(startAgentProc(agentArgs));
  const scanLog = async () => logText(await readLog(data, 'ScanAgent'));
  const scannerLog = async () => logText(await readLog(data, 'Scanner'));
  await waitWithTrigger(data, 'policy', "the agent's download from sup1 to reach its second page of updates", async () => held !== undefined);

  // Mid-download: the catalog's categories and its first page of updates were served to the agent, nothing completed.
  const upstreamAsked = () => r.requests.slice(synced).filter((x) => x.url.startsWith('/upstream/'));
  const asked = upstreamAsked();
  assert.match(asked[0]!.url, /^\/upstream\/v1\/changes\?/);
  assert.ok(asked.filter((x) => x.url.startsWith('/upstream/v1/categories?')).length >= 1, JSON.stringify(asked));
  assert.deepEqual(asked.filter((x) => x.url.startsWith('/upstream/v1/updates?')).map((x) => x.status), [200, 0], JSON.stringify(asked));
  assert.ok(asked.slice(0, -1).every((x) => x.status === 200), JSON.stringify(asked));
  const midScan = await waitFor('the clients scanning against sup1', async () => {
    const text = await scannerLog();
    const mine = NAMES.filter((n) => lines(text, n).some((l) => l.includes(`Contacting update point ${sup1} for catalog content version 1 or later`)));
    return mine.length ? mine : undefined;
  });
  assert.equal(completed(await scanLog()), 0, 'no scan completed before sup1 died');
  assert.doesNotMatch(await scannerLog(), /Downloaded|Search against/);

  // sup1 dies; the held request meets a dead process.
  await sups[0]!.kill('SIGKILL');
  r.release();
  await waitWithTrigger(data, 'policy', 'every client to complete its first scan', async () => completed(await scanLog()) >= 3);
  assert.equal(held!.status, -1, 'the held page request met a dead update point');

  const scan = await scanLog();
  const scanner = await scannerLog();
  const wua = logText(await readLog(data, 'WUAHandler'));
  for (const n of midScan) {
    inOrder(lines(scan, n), [
      new RegExp(`CScanJob::OnLocationUpdate- Received Location=${literal(sup1)}, Version=1$`),
      new RegExp(`CScanJob::Execute- Adding UpdateSource=\\{[0-9A-F-]{36}\\}, ContentType=2, ContentLocation=${literal(sup1)}, ContentVersion=1$`),
      /CScanJob::Execute - Successfully requested Scan, ScanType=1$/,
      new RegExp(`ScanJob\\(\\{[0-9A-F-]{36}\\}\\): the update point ${literal(sup1)} does not answer; switching to ${literal(sup2)} from the location reply\\.$`),
      new RegExp(`CScanJob::OnLocationUpdate- Received Location=${literal(sup2)}, Version=1$`),
      new RegExp(`CScanJob::Execute- Adding UpdateSource=\\{[0-9A-F-]{36}\\}, ContentType=2, ContentLocation=${literal(sup2)}, ContentVersion=1$`),
      /CScanJob::OnScanComplete -Scan completed successfully, ScanType=1/,
    ]);
    inOrder(lines(scanner, n), [
      new RegExp(`Contacting update point ${literal(sup1)} for catalog content version 1 or later$`),
      new RegExp(`Search against ${literal(sup1)} failed: CAIRN_SCAN_UPDATE_POINT_UNREACHABLE: `),
      new RegExp(`Contacting update point ${literal(sup2)} for catalog content version 1 or later$`),
      /Successfully completed scan at content version 1: /,
    ]);
    inOrder(lines(wua, n), [
      new RegExp(`Enabling WUA Managed server policy to use server: ${literal(sup1)}$`),
      new RegExp(`Async searching failed: the update point ${literal(sup1)} does not answer \\(CAIRN_SCAN_UPDATE_POINT_UNREACHABLE: `),
      new RegExp(`Switching the WSUS update source from ${literal(sup1)} to ${literal(sup2)} \\(${literal(sup1)}: CAIRN_SCAN_UPDATE_POINT_UNREACHABLE: .*\\); the new update point stays in use for later scans\\.$`),
      new RegExp(`Enabling WUA Managed server policy to use server: ${literal(sup2)}$`),
      /Successfully completed scan\.$/,
    ]);
  }
  // Every client finished against sup2 with the fixture's states.
  for (const n of NAMES) {
    const v = await agentUpdates(data, n);
    assert.equal(v.lastScan?.updatePoint, sup2, `${n} scanned against sup2`);
    assert.deepEqual(byNumber(v), EXPECTED[n], n);
  }
  await waitWithTrigger(data, 'report', 'the states at the site', async () => (await siteStates(site, 500)).length >= 18);
  const at = await siteStates(site, 500);
  for (const n of NAMES) assert.deepEqual(siteStatesOf(at, n), stateIds(EXPECTED[n]!), `site states of ${n}`);

  // sup1 is back: the next scan keeps sup2, and sup1 is not asked for its catalog.
  sups[0] = track(await startSupProcess(path.join(dir, 'sup1'), supKeys[0]!, supPorts[0]!, 'sup1'));
  const askedBefore = upstreamAsked().length;
  const linesBefore = scan.split('\n').length;
  await runCairn(['agent', 'scan', '--now', '--data', data]);
  await waitFor('three more completed scans', async () => completed(await scanLog()) >= 6);
  const next = (await scanLog()).split('\n').slice(linesBefore - 1);
  for (const n of NAMES) {
    const received = lines(next.join('\n'), n).filter((l) => /CScanJob::OnLocationUpdate- Received Location=/.test(l));
    assert.deepEqual(received.map((l) => l.slice(l.indexOf('Received'))), [`Received Location=${sup2}, Version=1`], `${n} kept sup2`);
  }
  assert.equal(upstreamAsked().length, askedBefore, 'sup1 was not asked for its catalog');

  // Content version 2, then sup2 dies. A scan at a version the cache already holds asks no update point at all, so the
  // new version is what makes the clients ask sup2, find it silent and switch back to sup1, whose catalog they never
  // finished downloading: they download it whole now, and their states are the fixture's at version 2.
  await addUpdate8(catalog);
  await syncTo(site, 2);
  await sups[1]!.kill('SIGKILL');
  const thirdFrom = (await scanLog()).split('\n').length;
  await waitWithTrigger(data, 'policy', 'three scans completed at content version 2', async () => completed(await scanLog()) >= 9);
  const third = (await scanLog()).split('\n').slice(thirdFrom - 1).join('\n');
  for (const n of NAMES) {
    inOrder(lines(third, n), [
      /CScanAgent::ScanByUpdates- Added Policy to final ScanRequest List UpdateSourceID=\{[0-9A-F-]{36}\}, Policy-ContentVersion=2, Required-ContentVersion=2$/,
      new RegExp(`CScanJob::OnLocationUpdate- Received Location=${literal(sup2)}, Version=2$`),
      new RegExp(`the update point ${literal(sup2)} does not answer; switching to ${literal(sup1)} from the location reply\\.$`),
      new RegExp(`CScanJob::Execute- Adding UpdateSource=\\{[0-9A-F-]{36}\\}, ContentType=2, ContentLocation=${literal(sup1)}, ContentVersion=2$`),
      /CScanJob::OnScanComplete -Scan completed successfully/,
    ]);
    const v = await agentUpdates(data, n);
    assert.equal(v.lastScan?.updatePoint, sup1, `${n} switched back to sup1`);
    assert.deepEqual(byNumber(v), EXPECTED2[n], `${n}: the fixture's states at version 2, from sup1's whole catalog`);
  }
  assert.match(await scannerLog(), new RegExp(`Downloaded the whole catalog ${sup1Catalog} from ${literal(sup1)}: 8 update\\(s\\)`));
  await agent.kill('SIGTERM');
});

test('[UC8][UC12][UC14][UC17][UC24] a catalog older than required: the agent waits and retries with its backoff, reports no state from the old catalog, and completes once the update point holds the required version', async () => {
  const { dir, catalog, site, sups, supPorts, supKeys, supUrls, factsFile } = await startComplianceSite('compliance-faults-old', { cleanups, track }, { sups: ['sup1'] });
  const sup1 = supUrls[0]!;
  const supDir = path.join(dir, 'sup1');
  const storeFiles = ['sup.db', 'sup.db-wal', 'sup.db-shm', 'sup.json'];
  const backup = path.join(dir, 'sup1-backup');
  const restartSup = async () => {
    sups[0] = track(await startSupProcess(supDir, supKeys[0]!, supPorts[0]!, 'sup1'));
  };
  // A backup of the update point at content version 1: stopped cleanly, its store and catalog ID copied.
  await sups[0]!.kill('SIGTERM');
  await fsp.mkdir(backup);
  for (const f of storeFiles) await fsp.copyFile(path.join(supDir, f), path.join(backup, f)).catch((err: NodeJS.ErrnoException) => assert.equal(err.code, 'ENOENT'));
  await restartSup();
  // Content version 2 everywhere.
  await addUpdate8(catalog);
  await syncTo(site, 2);
  // The update point is restored from that backup: it serves content version 1, while the site and its MP hold it at 2.
  await sups[0]!.kill('SIGTERM');
  for (const f of storeFiles) {
    await fsp.rm(path.join(supDir, f), { force: true });
    await fsp.copyFile(path.join(backup, f), path.join(supDir, f)).catch((err: NodeJS.ErrnoException) => assert.equal(err.code, 'ENOENT'));
  }
  await restartSup();
  const served = await supVersion(sup1);
  assert.equal(served.contentVersion, 1);
  assert.equal((JSON.parse(await ok(site, ['sup', 'list', '--json'])) as { contentVersion: number }[])[0]!.contentVersion, 2);

  // New clients, never scanned: the policy requires content version 2; the MP lists sup1 (at 2, it believes); the scanner finds 1.
  const data = path.join(dir, 'agent');
  const agent = track(startAgentProc(['--mp', site.url, '--data', data, '--simulate', '3', '--facts', factsFile, '--spread-seconds', '1']));
  const scanLog = async () => logText(await readLog(data, 'ScanAgent'));
  const WAIT_LINE = new RegExp(`ScanJob\\(\\{[0-9A-F-]{36}\\}\\): no update point holds content version 2: ${literal(sup1)}: CAIRN_SCAN_CONTENT_VERSION_TOO_OLD: .*; the scan requires 2\\. Raised UpdateSource \\(\\{[0-9A-F-]{36}\\}\\) state message, StateId = 1; retrying at \\S+ \\(in about (\\d+) s; cairn agent scan --now retries at once\\)\\. No update state changes\\.$`);
  const waits = (text: string, n: string): number[] => lines(text, n).flatMap((l) => {
    const m = WAIT_LINE.exec(l);
    return m ? [Number(m[1])] : [];
  });
  await waitWithTrigger(data, 'policy', 'every client to wait for content version 2', async () => {
    const text = await scanLog();
    return NAMES.every((n) => waits(text, n).length >= 1);
  });
  const first = await scanLog();
  const scanner = logText(await readLog(data, 'Scanner'));
  const wua = logText(await readLog(data, 'WUAHandler'));
  for (const n of NAMES) {
    inOrder(lines(first, n), [
      /CScanAgent::ScanByUpdates- Added Policy to final ScanRequest List UpdateSourceID=\{[0-9A-F-]{36}\}, Policy-ContentVersion=2, Required-ContentVersion=2$/,
      new RegExp(`CScanJob::OnLocationUpdate- Received Location=${literal(sup1)}, Version=2$`),
      /Raised UpdateSource \(\{[0-9A-F-]{36}\}\) state message successfully\. StateId = 2$/,
      new RegExp(`the update point ${literal(sup1)} does not hold content version 2 yet; no other update point in the location reply\\.$`),
      WAIT_LINE,
    ]);
    // The first wait is the backoff's first step: 30 s, ±10 % jitter.
    assert.ok(waits(first, n)[0]! >= 27 && waits(first, n)[0]! <= 33, `${n}: first retry in about 30 s: ${waits(first, n).join(', ')}`);
    assert.match(lines(scanner, n).join('\n'), new RegExp(`Search against ${literal(sup1)} failed: CAIRN_SCAN_CONTENT_VERSION_TOO_OLD: .*${literal(sup1)} holds catalog ${served.catalogId} at content version 1; the scan requires 2`));
    assert.doesNotMatch(lines(scanner, n).join('\n'), /Update \(|Successfully completed scan/);
    assert.match(lines(wua, n).join('\n'), new RegExp(`Async searching failed: the update point ${literal(sup1)} holds an older catalog than content version 2 \\(CAIRN_SCAN_CONTENT_VERSION_TOO_OLD: `));
  }
  const waiting = await scanJobs(data);
  for (const n of NAMES) {
    assert.equal(waiting.get(n)?.state, 'waiting', n);
    assert.deepEqual((await agentUpdates(data, n)).updates, [], `${n}: no update state from the old catalog`);
  }
  // The reports carry the scan's own states (501: running, then waiting for content) and no update state.
  await waitWithTrigger(data, 'report', "the clients' waiting states at the site", async () => (await siteStates(site, 501)).filter((s) => NAMES.includes(s.client) && s.stateId === 1).length === 3);
  assert.deepEqual((await siteStates(site, 500)).filter((s) => NAMES.includes(s.client)), [], 'no topic 500 state at the site');
  type ClientKind = Extract<ComplianceView, { kind: 'client' }>;
  for (const n of NAMES) {
    const c = JSON.parse(await ok(site, ['compliance', '--client', n, '--json'])) as ClientKind;
    assert.deepEqual(c.client.updates, [], `${n}: nothing in the site's compliance table`);
    assert.deepEqual([c.client.counts.required, c.client.counts.installed, c.client.counts.notRequired, c.client.counts.unknown], [0, 0, 0, 0], n);
  }

  // The retry comes by itself, after the first wait; the update point still holds 1: the next wait is the backoff's second step (60 s).
  await waitFor('every client to retry by itself and wait again', async () => {
    const text = await scanLog();
    return NAMES.every((n) => waits(text, n).length >= 2);
  });
  const second = await scanLog();
  for (const n of NAMES) {
    inOrder(lines(second, n), [WAIT_LINE, new RegExp(`ScanJob\\(${literal(waiting.get(n)!.jobId)}\\): attempt 2 of the job \\(waiting, last error: no update point holds content version 2: `), WAIT_LINE]);
    assert.ok(waits(second, n)[1]! >= 54 && waits(second, n)[1]! <= 66, `${n}: second retry in about 60 s: ${waits(second, n).join(', ')}`);
    assert.deepEqual((await agentUpdates(data, n)).updates, [], `${n}: still no update state`);
  }

  // The update point is synced again (cairn admin sync now): it reaches content version 2; the waiting jobs, retried now, complete.
  await ok(site, ['sync', 'now']);
  await waitFor('sup1 at content version 2', async () => (await supVersion(sup1)).contentVersion === 2);
  await waitFor('the resumed jobs to complete', async () => {
    await runCairn(['agent', 'scan', '--now', '--data', data]);
    const now = await scanJobs(data);
    return NAMES.every((n) => now.get(n)?.state === 'complete');
  });
  const done = await scanJobs(data);
  for (const n of NAMES) {
    assert.equal(done.get(n)!.jobId, waiting.get(n)!.jobId, `${n}: the same job, retried`);
    const v = await agentUpdates(data, n);
    assert.equal(v.lastScan?.contentVersion, 2);
    assert.deepEqual(byNumber(v), EXPECTED2_FIRST_SCAN[n], `${n} at content version 2`);
  }
  await waitWithTrigger(data, 'report', 'the states at the site', async () => (await siteStates(site, 500)).length >= 18);
  const at = await siteStates(site, 500);
  for (const n of NAMES) assert.deepEqual(siteStatesOf(at, n), stateIds(EXPECTED2_FIRST_SCAN[n]!), `site states of ${n}`);
  await agent.kill('SIGTERM');
});
