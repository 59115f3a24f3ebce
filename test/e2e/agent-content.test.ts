/**
 * Content to clients end to end (issue 4, parts 5 and 8), with real
 * processes only: a site (`cairn start`), a DP (`cairn dp`) and `cairn agent`
 * processes. A package is distributed to the DP and deployed to a
 * collection; the agent learns it from policy, asks the MP where it is (the
 * DP of its boundary group; fallback is off, so only the boundary can send
 * it there), downloads and verifies it into its cache, and reports state 901
 * state 2 and status message 10003, which the site shows.
 *
 * The DP is registered with the site under the address of a pass-through
 * proxy in front of it. The proxy changes no byte; it records each content
 * request (Range header, status, bytes served) and, when asked, slows the
 * large file down so that an agent can be killed mid-file. That is how the
 * interrupted download is proved to resume with Range: the DP served the
 * rest of the file only, from the byte the partial file ended at.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterTests, api, cli, freePort, listFiles, readLog, sha256File, startDp, startSite, tempDir, waitFor } from '../helpers/processes.ts';
import type { SiteProc } from '../helpers/processes.ts';
import { logText, startAgentProc, waitWithTrigger } from '../helpers/agent.ts';
import { machineIpAddresses } from '../../src/agent/location-services.ts';
import type { StateView } from '../../src/site/services/state-messages.ts';

const { cleanups, track } = afterTests();
interface Served {
  url: string;
  range: string | undefined;
  status: number;
  bytes: number;
}

/** A streaming pass-through proxy to `target`; `slow` (a substring of the URL) makes matching GETs trickle. */
async function dpProxy(target: number): Promise<{ url: string; served: Served[]; slow: string | undefined; close(): Promise<void> }> {
  const state: { slow: string | undefined; served: Served[] } = { slow: undefined, served: [] };
  const server = http.createServer((req, res) => {
    const up = http.request({ host: '127.0.0.1', port: target, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      const content = req.method === 'GET' && (req.url ?? '').includes('SMS_DP_SMSPKG$');
      const rec: Served = { url: req.url ?? '', range: req.headers.range, status: r.statusCode ?? 0, bytes: 0 };
      if (content) state.served.push(rec);
      const slow = state.slow !== undefined && content && rec.url.includes(state.slow);
      r.on('data', (chunk: Buffer) => {
        rec.bytes += chunk.length;
        res.write(chunk);
        if (slow) {
          r.pause();
          setTimeout(() => r.resume(), 15);
        }
      });
      r.on('end', () => res.end());
      r.on('error', () => res.destroy());
    });
    up.on('error', () => res.destroy());
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    served: state.served,
    get slow() {
      return state.slow;
    },
    set slow(v: string | undefined) {
      state.slow = v;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

async function sameBytes(a: string, b: string): Promise<boolean> {
  const [sa, sb] = await Promise.all([fsp.stat(a), fsp.stat(b)]);
  if (sa.size !== sb.size) return false;
  if (sa.size < 4 * 1024 * 1024) return (await fsp.readFile(a)).equals(await fsp.readFile(b));
  return (await sha256File(a)) === (await sha256File(b));
}

/** Every file of `source` is in `cached`, with the same bytes, and nothing else is. */
async function assertSameTree(source: string, cached: string): Promise<void> {
  const files = await listFiles(source);
  assert.deepEqual(await listFiles(cached), files);
  for (const f of files) assert.ok(await sameBytes(path.join(source, f), path.join(cached, f)), `${f} has the source's bytes`);
}

async function states(site: SiteProc, client: string): Promise<StateView[]> {
  const r = await cli(site, ['state', 'list', '--client', client, '--topic-type', '901', '--json']);
  return r.code === 0 ? (JSON.parse(r.stdout) as StateView[]) : [];
}

async function statusMessages(site: SiteProc, id: number): Promise<{ component: string; istr: string[]; machine?: string }[]> {
  const r = await cli(site, ['status-messages', '--id', String(id), '--json']);
  return r.code === 0 ? (JSON.parse(r.stdout) as { component: string; istr: string[] }[]) : [];
}

async function createAndDistribute(site: SiteProc, name: string, source: string): Promise<string> {
  const created = await cli(site, ['package', 'create', '--name', name, '--source', source]);
  assert.equal(created.code, 0, created.stderr);
  const pkgId = created.stdout.trim();
  const d = await cli(site, ['package', 'distribute', pkgId, '--dp', 'dp1']);
  assert.equal(d.code, 0, d.stderr);
  await waitFor(`${pkgId} installed on dp1`, async () => {
    const s = await api<{ distributionPoints: { status: number; version: number }[] }>(site, 'GET', `/api/v1/packages/${pkgId}/status`);
    return s.json.distributionPoints.length === 1 && s.json.distributionPoints.every((x) => x.status === 3 && x.version === 1);
  });
  return pkgId;
}

async function deploy(site: SiteProc, pkgId: string, collection: string): Promise<string> {
  const r = await cli(site, ['package', 'deploy', pkgId, '--collection', collection, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { deployment: { deploymentId: string } }).deployment.deploymentId;
}

describe('content to clients', () => {
  let work: string;
  let site: SiteProc;
  let proxy: Awaited<ReturnType<typeof dpProxy>>;
  let siteFingerprint: string;

  before(async () => {
    work = await tempDir('agent-content');
    if (!process.env['CAIRN_KEEP_TEST_DATA']) cleanups.push(() => fsp.rm(work, { recursive: true, force: true }));
    site = track(await startSite(path.join(work, 'site'), ['--no-local-dp']));
    // Fallback off: the agent can only be sent to a DP by its boundary group.
    for (const [name, value] of [['mp.locationFallback', '0'], ['client.stateReportingSeconds', '60'], ['client.statusReportingSeconds', '60']] as const) {
      const r = await cli(site, ['settings', 'set', name, value]);
      assert.equal(r.code, 0, r.stderr);
    }
    const dpPort = await freePort();
    proxy = await dpProxy(dpPort);
    cleanups.push(() => proxy.close());
    const added = await cli(site, ['dp', 'add', '--name', 'dp1', '--url', proxy.url]);
    assert.equal(added.code, 0, added.stderr);
    track(await startDp(path.join(work, 'dp1'), dpPort, added.stdout.trim(), 'dp1'));
    // The boundary group of this machine: loopback, and the addresses the agent reports (it prefers the non-loopback ones).
    assert.equal((await cli(site, ['boundary-group', 'create', 'Local'])).code, 0);
    assert.equal((await cli(site, ['boundary', 'add', 'Local', '--subnet', '127.0.0.0/8'])).code, 0);
    for (const ip of machineIpAddresses().filter((a) => /^\d+\.\d+\.\d+\.\d+$/.test(a) && !a.startsWith('127.'))) {
      assert.equal((await cli(site, ['boundary', 'add', 'Local', '--range', `${ip}-${ip}`])).code, 0);
    }
    assert.equal((await cli(site, ['boundary-group', 'add-dp', 'Local', 'dp1'])).code, 0);
    siteFingerprint = ((await (await fetch(`${site.url}/mp/v1/site-key`)).json()) as { fingerprint: string }).fingerprint;
  });

  test('[CD7.3][CD7.4][CD7.5][CD7.7][CD7.8] a package deployed to a named collection reaches the agent: located by boundary, downloaded, verified, byte for byte in the cache; state 901/2 and status 10003 at the site', async () => {
    const source = path.join(work, 'src-tools');
    await fsp.mkdir(path.join(source, 'bin', 'deeper'), { recursive: true });
    await fsp.mkdir(path.join(source, 'données été'), { recursive: true });
    await fsp.writeFile(path.join(source, 'setup with spaces.sh'), '#!/bin/sh\necho hello\n');
    await fsp.writeFile(path.join(source, 'empty.txt'), '');
    await fsp.writeFile(path.join(source, 'données été', 'résumé – 日本語.txt'), 'non-ASCII names travel too\n');
    await fsp.writeFile(path.join(source, 'bin', 'deeper', 'tool.bin'), Buffer.alloc(300_000, 9));
    const pkgId = await createAndDistribute(site, 'Tools', source);
    assert.match((await cli(site, ['collection', 'create', 'Content agents'])).stdout, /^CS1\d{5}\n$/);
    assert.equal((await cli(site, ['collection', 'add-rule', 'Content agents', '--name-pattern', 'CONTENT-*'])).code, 0);
    const deploymentId = await deploy(site, pkgId, 'Content agents');

    const data = path.join(work, 'agent-a');
    const agent = track(startAgentProc(['--mp', site.url, '--data', data, '--name', 'CONTENT-A', '--site-key-fingerprint', siteFingerprint]));
    const done = new RegExp(`Content ${pkgId}\\.1 for deployment \\${deploymentId} is downloaded and verified`);
    await waitWithTrigger(data, 'policy', `the content to be downloaded\n${agent.output()}`, async () => done.test(logText(await readLog(data, 'ContentTransferManager'))));

    // Policy (CD7.5), location by boundary group (no fallback), download and verification (CD7.7, CD7.8).
    assert.match(logText(await readLog(data, 'PolicyAgent')), /\(ContentDeployment, assignment \{[^}]+\} \d\.00\) is new to this client/);
    const loc = logText(await readLog(data, 'LocationServices'));
    assert.match(loc, new RegExp(`The MP returned 1 location\\(s\\) for ${pkgId} version 1, in this order:\\n\\s+1\\. dp1 ${proxy.url.replace(/[.]/g, '\\.')}/SMS_DP_SMSPKG\\$/${pkgId}/ \\(boundary group Local\\)`));
    const dts = logText(await readLog(data, 'DataTransferService'));
    assert.match(dts, new RegExp(`Accepted ${pkgId}\\.1/bin/deeper/tool\\.bin into the cache \\(300000 bytes, SHA-256 [0-9A-F]{64} verified\\) from dp1`));
    assert.match(logText(await readLog(data, 'ContentTransferManager')), /STATMSG: ID=10003 SEV=I/);
    await assertSameTree(source, path.join(data, 'cache', `${pkgId}.1`));
    assert.deepEqual(await listFiles(path.join(data, 'cache', '.partial')).catch(() => []), []);

    // The report reaches the site: latest state 2 for the deployment, and 10002 then 10003.
    await waitWithTrigger(data, 'report', 'state 901/2 and status 10003 at the site', async () => {
      const s = (await states(site, 'CONTENT-A')).find((x) => x.topicId === deploymentId);
      const m = (await statusMessages(site, 10003)).find((x) => x.component === 'ContentTransferManager' && x.istr[3] === deploymentId);
      return s?.stateId === 2 && m !== undefined;
    });
    const s = (await states(site, 'CONTENT-A')).find((x) => x.topicId === deploymentId)!;
    assert.equal(s.topicTypeName, 'Content deployment');
    assert.equal(s.stateName, 'Downloaded and verified');
    assert.deepEqual(s.userParams.slice(0, 2), [pkgId, '1']);
    assert.ok((await statusMessages(site, 10002)).some((x) => x.istr[3] === deploymentId), 'download started (10002) reached the site too');
    const table = await cli(site, ['state', 'list', '--client', 'CONTENT-A', '--topic-type', '901']);
    assert.match(table.stdout, new RegExp(`CONTENT-A\\s+901 Content deployment\\s+\\${deploymentId}\\s+2 Downloaded and verified`));
    await agent.kill('SIGTERM');
    assert.equal(agent.child.exitCode, 0, agent.output());
  });

  test('[CD7.7][CD7.8] a download killed mid-file resumes with Range after the agent restarts, and only the rest of the file crosses the wire', async () => {
    const size = 24 * 1024 * 1024 + 123;
    const source = path.join(work, 'src-big');
    await fsp.mkdir(source, { recursive: true });
    await fsp.writeFile(path.join(source, 'small.txt'), 'a small file first or last\n');
    const big = Buffer.alloc(size);
    for (let i = 0; i + 4 <= size; i += 4) big.writeUInt32LE((i * 2654435761) >>> 0, i);
    await fsp.writeFile(path.join(source, 'large file.bin'), big);
    const pkgId = await createAndDistribute(site, 'Big', source);
    const contentId = `${pkgId}.1`;
    proxy.slow = 'large%20file.bin';
    const deploymentId = await deploy(site, pkgId, 'All Clients');

    const data = path.join(work, 'agent-b');
    const partial = path.join(data, 'cache', '.partial', contentId, 'large file.bin');
    const first = track(startAgentProc(['--mp', site.url, '--data', data, '--name', 'RESUME-B']));
    await waitWithTrigger(data, 'policy', `a partial file of at least 2 MiB\n${first.output()}`, async () => ((await fsp.stat(partial).catch(() => undefined))?.size ?? 0) >= 2 * 1024 * 1024);
    await first.kill('SIGKILL');
    const cut = (await fsp.stat(partial)).size;
    assert.ok(cut > 0 && cut < size, `the partial file holds part of the file (${cut} of ${size})`);
    assert.ok(!fs.existsSync(path.join(data, 'cache', contentId, 'large file.bin')), 'nothing unverified entered the cache');
    const before = proxy.served.filter((s) => s.url.includes('large%20file.bin')).length;

    proxy.slow = undefined;
    const second = track(startAgentProc(['--mp', site.url, '--data', data, '--name', 'RESUME-B']));
    const done = new RegExp(`Content ${contentId.replace('.', '\\.')} for deployment \\${deploymentId} is downloaded and verified`);
    await waitWithTrigger(data, 'policy', `the download to finish after the restart\n${second.output()}`, async () => done.test(logText(await readLog(data, 'ContentTransferManager'))));

    // "Download started" once for the job, not again when the restarted agent resumes it.
    assert.equal((logText(await readLog(data, 'ContentTransferManager')).match(/STATMSG: ID=10002 /g) ?? []).length, 1);
    const dts = logText(await readLog(data, 'DataTransferService'));
    assert.match(dts, new RegExp(`Downloading ${contentId.replace('.', '\\.')}/large file\\.bin \\(${size} bytes\\) from dp1`));
    assert.match(dts, new RegExp(`Resuming ${contentId.replace('.', '\\.')}/large file\\.bin at byte ${cut} of ${size} from dp1`));
    assert.match(dts, new RegExp(`Accepted ${contentId.replace('.', '\\.')}/large file\\.bin into the cache \\(${size} bytes, SHA-256 [0-9A-F]{64} verified\\) from dp1`));
    // What the DP served after the restart: exactly the rest of the file, from the byte the partial file ended at.
    const after = proxy.served.filter((s) => s.url.includes('large%20file.bin')).slice(before);
    assert.deepEqual(after.map((s) => [s.range, s.status, s.bytes]), [[`bytes=${cut}-`, 206, size - cut]]);
    await assertSameTree(source, path.join(data, 'cache', contentId));
    assert.ok(!fs.existsSync(partial), 'the partial file became the cached file');

    await waitWithTrigger(data, 'report', 'state 901/2 for the resumed download at the site', async () => (await states(site, 'RESUME-B')).find((x) => x.topicId === deploymentId)?.stateId === 2);
    await second.kill('SIGTERM');
    assert.equal(second.child.exitCode, 0, second.output());
  });
});
