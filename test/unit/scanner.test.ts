/**
 * The scanner against a real update point on loopback (an in-process
 * `cairn sup` synced from an in-process `cairn upstream`): a hand-checked
 * catalog of eight updates against hand-made machines (installed, required,
 * not required, unknown for a malformed and for a contradictory entry,
 * supersedence pruning), the Scanner.log lines in order (UC13–UC16), an
 * incremental refresh by content version, the cache on disk across a
 * restart, coalesced refreshes, a content version too old, and an update
 * point that refuses connections, answers 5xx or hangs. A counting proxy in
 * front of the update point shows which requests were made.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import { createScanner } from '../../src/agent/scan/scanner.ts';
import type { ScanRequest, ScanResult, UpdateStateName } from '../../src/agent/scan/types.ts';
import { compileRule, evaluateRule, prepareMachine } from '../../src/catalog/rules.ts';
import { createUpstreamClient } from '../../src/catalog/upstream-client.ts';
import type { Machine, Rule } from '../../src/catalog/rules.ts';
import type { ComponentLog } from '../../src/shared/cmtrace-log.ts';
import { startSup } from '../../src/sup/sup-server.ts';
import type { RunningSup } from '../../src/sup/sup-server.ts';
import { createSupClient } from '../../src/sup/sup-client.ts';
import { startUpstream } from '../../src/upstream/upstream-server.ts';
import type { RunningUpstream } from '../../src/upstream/upstream-server.ts';
import { product, SECURITY, UPDATES } from '../helpers/catalog.ts';
import { freePort, tempDir } from '../helpers/processes.ts';
import { scannerLog, syncSup, writeCatalogDir } from '../helpers/scan-world.ts';

const U = (n: number): string => `f0000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
const pkgRule = (name: string, op: 'lt' | 'ge', value: string, arch?: string): Rule => ({ kind: 'package', name, installed: true, ...(arch ? { arch } : {}), version: { op, value } });

function upd(n: number, title: string, isApplicable: unknown, isInstalled: unknown, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { id: U(n), revision: 1, title, articleId: `KB${n}`, classification: n % 2 ? SECURITY : UPDATES, products: [product(n % 2)], releaseDate: '2024-05-01', isApplicable, isInstalled, ...extra };
}

/** The hand-checked catalog (docs/catalog.md, "Evaluation"); the comments say what machine A gets. */
function catalog(openssl2Revision = 1): Record<string, unknown>[] {
  return [
    // Required on A, but pruned: U2 supersedes it.
    upd(1, 'openssl 3.0.11-1~deb12u2', pkgRule('openssl', 'lt', '3.0.11-1~deb12u2', 'amd64'), pkgRule('openssl', 'ge', '3.0.11-1~deb12u2', 'amd64')),
    // Required on A.
    upd(2, 'openssl 3.0.13-1~deb12u1', pkgRule('openssl', 'lt', '3.0.13-1~deb12u1', 'amd64'), pkgRule('openssl', 'ge', '3.0.13-1~deb12u1', 'amd64'), { supersedes: [U(1)], revision: openssl2Revision }),
    // Installed on A (same version).
    upd(3, 'curl 7.88.1-10+deb12u5', pkgRule('curl', 'lt', '7.88.1-10+deb12u5', 'amd64'), pkgRule('curl', 'ge', '7.88.1-10+deb12u5', 'amd64')),
    // Required on A: Architecture all.
    upd(4, 'tzdata 2024b-0+deb12u1', pkgRule('tzdata', 'lt', '2024b-0+deb12u1', 'all'), pkgRule('tzdata', 'ge', '2024b-0+deb12u1', 'all')),
    // Malformed at the client: unknown everywhere, with the reason.
    upd(5, 'broken rule', pkgRule('bash', 'lt', 'abc'), pkgRule('bash', 'ge', '5.0')),
    // Contradictory on a machine with bash: unknown there, not required elsewhere.
    upd(6, 'bash contradiction', { kind: 'package', name: 'bash', installed: true }, { kind: 'package', name: 'bash', installed: true }),
    // Facts: required on a beta-channel machine with the agent below 2.5.
    upd(
      7,
      'Contoso agent 2.5',
      { kind: 'all', rules: [{ kind: 'fact', name: 'channel', op: 'equals', value: 'beta' }, pkgRule('contoso-agent', 'lt', '2.5')] },
      pkgRule('contoso-agent', 'ge', '2.5'),
    ),
    // OS only: installed on Debian 12, required on Debian 11, not required elsewhere.
    upd(8, 'Debian 12 point release', { kind: 'os', family: 'debian', version: { op: 'lt', value: '12' } }, { kind: 'os', family: 'debian', version: { op: 'ge', value: '12' } }),
  ];
}

const machineA: Machine = {
  os: { family: 'debian', version: '12' },
  facts: { channel: 'beta', architecture: 'amd64' },
  packages: [
    { name: 'openssl', arch: 'amd64', version: '3.0.11-1~deb12u1' },
    { name: 'curl', arch: 'amd64', version: '7.88.1-10+deb12u5' },
    { name: 'tzdata', arch: 'all', version: '2024a-0+deb12u1' },
    { name: 'bash', arch: 'amd64', version: '5.2.15-2+b2' },
    { name: 'contoso-agent', arch: 'amd64', version: '2.4.1' },
  ],
};
const machineB: Machine = { os: { family: 'ubuntu', version: '24.04' }, facts: {}, packages: [] };
const machineC: Machine = { os: { family: 'debian', version: '11' }, packages: [{ name: 'openssl', arch: 'amd64', version: '3.0.13-1~deb12u1' }] };

/** A forwarding proxy that counts requests by route and can fail on demand. */
interface Proxy {
  readonly url: string;
  readonly hits: Map<string, number>;
  mode: 'pass' | 'error500' | 'hang';
  close(): Promise<void>;
}

async function startProxy(target: string): Promise<Proxy> {
  const t = new URL(target);
  const hits = new Map<string, number>();
  const sockets = new Set<net.Socket>();
  const proxy: Proxy = {
    url: '',
    hits,
    mode: 'pass',
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        srv.close(() => resolve());
      }),
  };
  const srv = http.createServer((req, res) => {
    const route = (req.url ?? '').split('?')[0]!;
    hits.set(route, (hits.get(route) ?? 0) + 1);
    if (proxy.mode === 'hang') return;
    if (proxy.mode === 'error500') {
      res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 'CAIRN_INTERNAL', message: 'an internal error occurred' }));
      return;
    }
    const up = http.request({ host: t.hostname, port: t.port, path: req.url, method: req.method, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  srv.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', () => resolve()));
  return Object.assign(proxy, { url: `http://127.0.0.1:${(srv.address() as net.AddressInfo).port}` });
}

interface World {
  readonly dir: string;
  readonly catalogDir: string;
  readonly up: RunningUpstream;
  readonly sup: RunningSup;
  /** In front of the update point (`cairn sup`), and in front of the upstream, which serves items unvalidated. */
  readonly proxy: Proxy;
  readonly upProxy: Proxy;
  sync(): Promise<number>;
  close(): Promise<void>;
}

async function world(prefix: string): Promise<World> {
  const dir = await tempDir(prefix);
  const catalogDir = path.join(dir, 'catalog');
  await writeCatalogDir(catalogDir, catalog(), 2);
  const up = await startUpstream({ catalogDir, port: 0 });
  const key = 'k'.repeat(43);
  const sup = await startSup({ dataDir: path.join(dir, 'sup'), key, name: 'sup1', port: 0, pageSize: 3 });
  const proxy = await startProxy(sup.url);
  const upProxy = await startProxy(up.url);
  const client = createSupClient({ url: sup.url, key });
  return {
    dir,
    catalogDir,
    up,
    sup,
    proxy,
    upProxy,
    sync: () => syncSup(client, up.url),
    async close() {
      await proxy.close();
      await upProxy.close();
      await sup.close();
      await up.close();
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };
}

function request(w: World, machine: Machine, log: ComponentLog, required: number, url = w.proxy.url): ScanRequest {
  return { updateSourceId: '{c2d17964-bbdd-4339-b9f3-12d7205b39cc}', requiredContentVersion: required, location: { url, serverName: 'sup1', contentVersion: required }, machine, log };
}

const statesOf = (r: ScanResult): Record<string, UpdateStateName> => Object.fromEntries(r.updates.map((u) => [u.id, u.state]));

function inOrder(lines: string[], patterns: RegExp[]): void {
  let at = 0;
  for (const p of patterns) {
    const k = lines.findIndex((l, i) => i >= at && p.test(l));
    assert.ok(k >= 0, `no line matching ${p} after line ${at}:\n${lines.join('\n')}`);
    at = k + 1;
  }
}

test('[UC13][UC14][UC15][UC16] a hand-checked catalog classifies every update on each machine, prunes the superseded one and logs the scan in order', async () => {
  const w = await world('scan-states');
  try {
    const v = await w.sync();
    // As the agent host runs it: requests through a shared keep-alive agent (node:http, not fetch).
    const httpAgent = new http.Agent({ keepAlive: true });
    after(() => httpAgent.destroy());
    const scanner = createScanner({ cacheDir: path.join(w.dir, 'cache'), pageSize: 3, httpAgent });
    const a = scannerLog(w.dir, 'ScannerA');
    const ra = await scanner.scan(request(w, machineA, a.log, v));
    // The update point rejected the malformed update when it synced (ADR 0007): it never reaches clients from there.
    assert.deepEqual(statesOf(ra), { [U(2)]: 'required', [U(3)]: 'installed', [U(4)]: 'required', [U(6)]: 'unknown', [U(7)]: 'required', [U(8)]: 'installed' });
    assert.deepEqual(ra.pruned, [{ id: U(1), supersededBy: U(2) }]);
    assert.match(ra.updates.find((u) => u.id === U(6))!.reason!, /contradict.*isApplicable and isInstalled both hold/);
    assert.deepEqual([ra.contentVersion, ra.updatePoint, ra.total, ra.evaluated, ra.categories], [v, w.proxy.url, 7, 7, 4]);
    const u2 = ra.updates.find((u) => u.id === U(2))!;
    assert.deepEqual([u2.revision, u2.title, u2.articleId, u2.products, u2.classification], [1, 'openssl 3.0.13-1~deb12u1', 'KB2', [product(0)], UPDATES]);
    inOrder(a.lines(), [
      /^Scan results will not include updates superseded/,
      /^Search Criteria is \(DeploymentAction=\* AND Type='Software'\); update source \{C2D17964-BBDD-4339-B9F3-12D7205B39CC\}, required content version 1$/,
      /^Async searching of updates using update point sup1 .* started$/,
      /^Contacting update point http:\/\/127\.0\.0\.1:\d+ for catalog content version 1 or later$/,
      /^Downloaded the whole catalog [0-9a-f]{16} from .*: 7 update\(s\) and 6 categories, now at content version 1$/,
      /^Found 7 updates and 4 categories in search; evaluated applicability rules of 7 out of 7 deployed entities$/,
      /^Async searching completed\.$/,
      /^Finished searching everything in single call\.$/,
      new RegExp(`^Pruning: update id \\(${U(1)}\\) is superseded by \\(${U(2)}\\)\\.$`),
      new RegExp(`^Update \\(Missing\\): openssl 3\\.0\\.13-1~deb12u1 \\(${U(2)}, 1\\)$`),
      new RegExp(`^Update \\(Installed\\): curl 7\\.88\\.1-10\\+deb12u5 \\(${U(3)}, 1\\)$`),
      new RegExp(`^Update \\(Unknown\\): bash contradiction \\(${U(6)}, 1\\): the rules contradict`),
      /^Successfully completed scan at content version 1: 3 required, 2 installed, 0 not required, 1 unknown, 1 pruned as superseded$/,
    ]);
    assert.ok(!a.lines().some((l) => l.startsWith('Update (Not required)')), 'no line per not-required update');

    // Machine B has nothing: only the rules that need no package are evaluated; no pruning line (U1 was not found).
    const b = scannerLog(w.dir, 'ScannerB');
    const rb = await scanner.scan(request(w, machineB, b.log, v));
    assert.deepEqual(statesOf(rb), { [U(2)]: 'notRequired', [U(3)]: 'notRequired', [U(4)]: 'notRequired', [U(6)]: 'notRequired', [U(7)]: 'notRequired', [U(8)]: 'notRequired' });
    assert.deepEqual([rb.evaluated, rb.total], [1, 7]);
    inOrder(b.lines(), [/is cached at content version 1 \(required 1\); .* need not be contacted$/, /^Found 0 updates and 0 categories in search; evaluated applicability rules of 1 out of 7 deployed entities$/, /0 required, 0 installed, 6 not required, 0 unknown/]);
    assert.ok(!b.lines().some((l) => l.startsWith('Pruning')));

    // Machine C: Debian 11 with the newest openssl; the OS update is required there.
    const c = scannerLog(w.dir, 'ScannerC');
    const rc = await scanner.scan(request(w, machineC, c.log, v));
    assert.deepEqual([statesOf(rc)[U(2)], statesOf(rc)[U(8)], statesOf(rc)[U(6)]], ['installed', 'required', 'notRequired']);
    assert.equal(w.proxy.hits.get('/upstream/v1/changes'), 1, 'three scans, one download');
  } finally {
    await w.close();
  }
});

test('an entry that fails validation at the client is reported unknown with the reason, also after a restart; the scan goes on', async () => {
  const w = await world('scan-bad');
  try {
    // `cairn upstream` serves items as its files hold them (an update point would have rejected this one at its sync).
    const v = Number(/-(\d+)$/.exec((await createUpstreamClient(w.up.url).changesSince('')).anchor)![1]);
    const cacheDir = path.join(w.dir, 'cache');
    const l = scannerLog(w.dir, 'Scanner');
    const r = await createScanner({ cacheDir, pageSize: 3 }).scan(request(w, machineA, l.log, v, w.upProxy.url));
    const bad = r.updates.find((u) => u.id === U(5))!;
    assert.deepEqual([bad.state, bad.title, bad.revision, bad.articleId], ['unknown', 'broken rule', 1, 'KB5']);
    assert.match(bad.reason!, /^CAIRN_CATALOG_RULE_INVALID: .*isApplicable\.version\.value is not a Debian version/);
    assert.deepEqual([statesOf(r)[U(2)], statesOf(r)[U(3)]], ['required', 'installed'], 'the other updates are classified');
    assert.equal(r.total, 8);
    inOrder(l.lines(), [/^1 update\(s\) of this download failed validation on this client; they are reported unknown with the reason$/, new RegExp(`^Update \\(Unknown\\): broken rule \\(${U(5)}, 1\\): CAIRN_CATALOG_RULE_INVALID`)]);
    // A restarted agent reads it back from disk as bad, without a request.
    const hits = w.upProxy.hits.get('/upstream/v1/changes');
    const again = await createScanner({ cacheDir }).scan(request(w, machineB, l.log, v, w.upProxy.url));
    assert.equal(again.updates.find((u) => u.id === U(5))!.state, 'unknown');
    assert.equal(w.upProxy.hits.get('/upstream/v1/changes'), hits);
  } finally {
    await w.close();
  }
});

test('a new content version is fetched incrementally, kept on disk across a restart, and refreshes coalesce into one fetch', async () => {
  const w = await world('scan-incremental');
  try {
    const v1 = await w.sync();
    const cacheDir = path.join(w.dir, 'cache');
    const s1 = createScanner({ cacheDir, pageSize: 3 });
    const l1 = scannerLog(w.dir, 'Scanner1');
    // Ten clients at once: one download, the others join it.
    const all = await Promise.all(Array.from({ length: 10 }, () => s1.scan(request(w, machineA, l1.log, v1))));
    assert.ok(all.every((r) => statesOf(r)[U(2)] === 'required'));
    assert.equal(w.proxy.hits.get('/upstream/v1/changes'), 1);
    assert.equal(l1.lines().filter((l) => l.startsWith('Downloaded the whole catalog')).length, 1);
    assert.equal(l1.lines().filter((l) => l.startsWith('Joined the download')).length, 9);
    const pagesAfterFull = w.proxy.hits.get('/upstream/v1/updates')!;
    assert.equal(pagesAfterFull, 3, 'seven updates in pages of three');

    // A new revision of U2 that no longer supersedes U1, and a content version 2.
    await writeCatalogDir(w.catalogDir, catalog(2).map((u) => (u.id === U(2) ? { ...u, supersedes: [] } : u)), 2);
    const v2 = await w.sync();
    assert.equal(v2, v1 + 1);
    const l2 = scannerLog(w.dir, 'Scanner2');
    const r2 = await s1.scan(request(w, machineA, l2.log, v2));
    assert.deepEqual(r2.pruned, []);
    assert.equal(statesOf(r2)[U(1)], 'required', 'no longer pruned');
    assert.equal(r2.updates.find((u) => u.id === U(2))!.revision, 2);
    inOrder(l2.lines(), [new RegExp(`^Downloaded the changes since content version ${v1} [0-9a-f]{16} from .*: 1 update\\(s\\) and 0 categories, now at content version ${v2}$`)]);
    assert.equal(w.proxy.hits.get('/upstream/v1/updates'), pagesAfterFull + 1, 'one page: only the changed update');

    // A restarted agent (a new scanner on the same folder) reads its catalog from disk: no request.
    const before = w.proxy.hits.get('/upstream/v1/changes');
    const s2 = createScanner({ cacheDir, pageSize: 3 });
    const l3 = scannerLog(w.dir, 'Scanner3');
    const r3 = await s2.scan(request(w, machineA, l3.log, v2));
    assert.deepEqual(statesOf(r3), statesOf(r2));
    assert.equal(w.proxy.hits.get('/upstream/v1/changes'), before);
    inOrder(l3.lines(), [/is cached at content version 2/]);

    // A damaged cache costs a full fetch, never a wrong answer: an edited segment (its hash no longer matches)…
    const catDir = path.join(cacheDir, fs.readdirSync(cacheDir).find((n) => /^[0-9a-f]{16}$/.test(n))!);
    const seg = fs.readdirSync(catDir).find((n) => n.endsWith('.ndjson'))!;
    fs.writeFileSync(path.join(catDir, seg), fs.readFileSync(path.join(catDir, seg), 'utf8').replace('"ge"', '"lt"'));
    const l4 = scannerLog(w.dir, 'Scanner4');
    const r4 = await createScanner({ cacheDir, pageSize: 3 }).scan(request(w, machineA, l4.log, v2));
    assert.deepEqual(statesOf(r4), statesOf(r2));
    inOrder(l4.lines(), [/^Downloaded the whole catalog/]);
    // …or a state file that does not parse.
    fs.writeFileSync(path.join(catDir, 'state.json'), '{not json');
    const l5 = scannerLog(w.dir, 'Scanner5');
    const r5 = await createScanner({ cacheDir, pageSize: 3 }).scan(request(w, machineA, l5.log, v2));
    assert.deepEqual(statesOf(r5), statesOf(r2));
    inOrder(l5.lines(), [/^Downloaded the whole catalog/]);
  } finally {
    await w.close();
  }
});

test('an update point older than required is CAIRN_SCAN_CONTENT_VERSION_TOO_OLD: nothing is reported, never a false "installed"', async () => {
  const w = await world('scan-too-old');
  try {
    const v = await w.sync();
    const scanner = createScanner({ cacheDir: path.join(w.dir, 'cache'), pageSize: 3 });
    const l = scannerLog(w.dir, 'Scanner');
    await assert.rejects(scanner.scan(request(w, machineA, l.log, v + 1)), (err: { code?: string; message?: string }) => err.code === 'CAIRN_SCAN_CONTENT_VERSION_TOO_OLD' && /content version 1; the scan requires 2/.test(err.message ?? ''));
    inOrder(l.lines(), [/^Contacting update point/, /^Search against .* failed: CAIRN_SCAN_CONTENT_VERSION_TOO_OLD/]);
    assert.ok(!l.lines().some((x) => /^Update \(|^Successfully completed/.test(x)));
    // Once the update point has it, the same request succeeds.
    await writeCatalogDir(w.catalogDir, catalog(2), 2);
    assert.equal(await w.sync(), v + 1);
    const r = await scanner.scan(request(w, machineA, l.log, v + 1));
    assert.equal(r.contentVersion, v + 1);
  } finally {
    await w.close();
  }
});

test('an update point that refuses connections, answers 5xx or hangs is CAIRN_SCAN_UPDATE_POINT_UNREACHABLE', async () => {
  const w = await world('scan-unreachable');
  try {
    const v = await w.sync();
    const httpAgent = new http.Agent({ keepAlive: true });
    after(() => httpAgent.destroy());
    const l = scannerLog(w.dir, 'Scanner');
    // Once through fetch, once through a keep-alive agent: both paths fail the same way.
    for (const scanner of [createScanner({ cacheDir: path.join(w.dir, 'cache'), pageSize: 3, timeoutMs: 500 }), createScanner({ cacheDir: path.join(w.dir, 'cache2'), pageSize: 3, timeoutMs: 500, httpAgent })]) {
      const unreachable = (why: RegExp) => (err: { code?: string; message?: string }) => err.code === 'CAIRN_SCAN_UPDATE_POINT_UNREACHABLE' && why.test(err.message ?? '');
      const closed = `http://127.0.0.1:${await freePort()}`;
      await assert.rejects(scanner.scan(request(w, machineA, l.log, v, closed)), unreachable(/ECONNREFUSED/));
      w.proxy.mode = 'error500';
      await assert.rejects(scanner.scan(request(w, machineA, l.log, v)), unreachable(/HTTP 500/));
      w.proxy.mode = 'hang';
      await assert.rejects(scanner.scan(request(w, machineA, l.log, v)), unreachable(/abort|timeout/i));
      // The agent switches to another location serving the catalog: the scan finishes there.
      w.proxy.mode = 'pass';
      const r = await scanner.scan(request(w, machineA, l.log, v, w.sup.url));
      assert.equal(statesOf(r)[U(2)], 'required');
    }
    assert.equal(l.lines().filter((x) => /^Search against .* failed: CAIRN_SCAN_UPDATE_POINT_UNREACHABLE/.test(x)).length, 6);
  } finally {
    await w.close();
  }
});

test('compiled rules answer exactly as evaluateRule on random rules and machines', () => {
  let seed = 42;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const names = ['a', 'b', 'c'];
  const versions = ['1.0', '1.0-1', '2:0.1', '1.0~rc1', '1.10', 'x-bad'];
  const leaf = (): Rule => {
    switch (rnd(5)) {
      case 0:
        return { kind: 'package', name: names[rnd(3)]!, installed: false, ...(rnd(2) ? { arch: 'amd64' } : {}) };
      case 1:
        return { kind: 'package', name: names[rnd(3)]!, installed: true, ...(rnd(2) ? { arch: ['amd64', 'all'][rnd(2)]! } : {}), ...(rnd(3) ? { version: { op: (['lt', 'le', 'eq', 'ne', 'ge', 'gt'] as const)[rnd(6)]!, value: versions[rnd(6)]! } } : {}) };
      case 2:
        return { kind: 'fact', name: 'f', op: 'ge', value: versions[rnd(6)]! };
      case 3:
        return rnd(2) ? { kind: 'fact', name: 'g', op: 'equals', value: 'x' } : { kind: 'fact', name: 'g', op: 'in', values: ['x', 'y'] };
      default:
        return { kind: 'os', family: 'debian', ...(rnd(2) ? { version: { op: 'lt' as const, value: versions[rnd(6)]! } } : {}) };
    }
  };
  const rule = (depth: number): Rule => {
    if (depth > 2 || rnd(3) === 0) return leaf();
    const k = rnd(3);
    if (k === 2) return { kind: 'not', rule: rule(depth + 1) };
    return { kind: k ? 'all' : 'any', rules: Array.from({ length: rnd(4) }, () => rule(depth + 1)) };
  };
  const machine = (): Machine => ({
    ...(rnd(3) ? { os: { family: rnd(2) ? 'debian' : 'ubuntu', version: versions[rnd(6)]! } } : {}),
    facts: { ...(rnd(2) ? { f: versions[rnd(6)]! } : {}), ...(rnd(2) ? { g: ['x', 'y', 'z'][rnd(3)]! } : {}), ...(rnd(2) ? { architecture: 'amd64' } : {}) },
    packages: Array.from({ length: rnd(4) }, () => ({ name: names[rnd(3)]!, arch: ['amd64', 'all', 'i386'][rnd(3)]!, version: versions[rnd(6)]! })),
  });
  let checked = 0;
  for (let i = 0; i < 3000; i += 1) {
    const r = rule(0);
    const m = prepareMachine(machine());
    assert.equal(compileRule(r)(m), evaluateRule(r, m), JSON.stringify(r));
    checked += 1;
  }
  assert.equal(checked, 3000);
});
