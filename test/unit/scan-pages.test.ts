/**
 * Catalog pages for scanners (docs/adr/0011-catalog-pages.md): the update
 * point builds each page once (an index the scanner reads, the bodies kept
 * unparsed) and the scanner keeps the pages as received as its disk cache.
 * Against a real in-process `cairn sup` synced from a real `cairn upstream`,
 * through a proxy that can damage what passes: a corrupted page, a bad body
 * found only when a scan evaluates it, a body the update point itself marks
 * invalid, a restart from the pages on disk, incremental downloads after
 * new content versions (and the rewrite of many fetches into one), and the
 * plain JSON pages replicas still get.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';
import { MAX_SEGMENTS } from '../../src/agent/scan/catalog-cache.ts';
import { createScanner } from '../../src/agent/scan/scanner.ts';
import type { ScanRequest, ScanResult, UpdateStateName } from '../../src/agent/scan/types.ts';
import type { Machine, Rule } from '../../src/catalog/rules.ts';
import { parseCmtraceLine } from '../../src/shared/cmtrace-log.ts';
import type { ComponentLog } from '../../src/shared/cmtrace-log.ts';
import { buildPage, PAGE_MEDIA_TYPE, PAGE_SHA256_HEADER, readPage } from '../../src/sup/catalog-pack.ts';
import { startSup } from '../../src/sup/sup-server.ts';
import type { RunningSup } from '../../src/sup/sup-server.ts';
import { createSupClient } from '../../src/sup/sup-client.ts';
import { startUpstream } from '../../src/upstream/upstream-server.ts';
import type { RunningUpstream } from '../../src/upstream/upstream-server.ts';
import { product, SECURITY } from '../helpers/catalog.ts';
import { tempDir } from '../helpers/processes.ts';
import { scannerLog, syncSup, writeCatalogDir } from '../helpers/scan-world.ts';

const U = (n: number): string => `a1000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
const pkgRule = (name: string, op: 'lt' | 'ge', value: string): Rule => ({ kind: 'package', name, installed: true, version: { op, value } });

/** Update n brings package pkg-n to version 2.<rev>; revision `rev`. */
function upd(n: number, rev = 1, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const v = `2.${rev}`;
  return { id: U(n), revision: rev, title: `pkg-${n} ${v}`, articleId: `KB${n}`, classification: SECURITY, products: [product(0)], releaseDate: '2024-05-01', isApplicable: pkgRule(`pkg-${n}`, 'lt', v), isInstalled: pkgRule(`pkg-${n}`, 'ge', v), ...extra };
}

const catalog = (revs: Record<number, number> = {}): Record<string, unknown>[] => Array.from({ length: 7 }, (_, k) => upd(k + 1, revs[k + 1] ?? 1, k === 6 ? { supersedes: [U(6)] } : {}));

/** pkg-1 … pkg-7 installed: 1–3 below 2.1 (required), 4–7 at 2.1 (installed; 6 pruned, superseded by 7). */
const machine: Machine = { os: { family: 'debian', version: '12' }, packages: Array.from({ length: 7 }, (_, k) => ({ name: `pkg-${k + 1}`, arch: 'amd64', version: k < 3 ? '1.0' : '2.1' })) };
const expected: Record<string, UpdateStateName> = { [U(1)]: 'required', [U(2)]: 'required', [U(3)]: 'required', [U(4)]: 'installed', [U(5)]: 'installed', [U(7)]: 'installed' };
const other: Machine = { os: { family: 'debian', version: '12' }, packages: [] };

/** A proxy that records what it forwards and can rewrite a built page's bytes (and its SHA-256 header) on the way. */
interface Proxy {
  readonly url: string;
  readonly hits: Map<string, number>;
  /** Bodies of built pages as forwarded. */
  readonly pages: Buffer[];
  rewrite?: (page: Buffer) => { bytes: Buffer; sha256?: string };
  close(): Promise<void>;
}

async function startProxy(target: string): Promise<Proxy> {
  const t = new URL(target);
  const sockets = new Set<net.Socket>();
  const proxy: Proxy = {
    url: '',
    hits: new Map(),
    pages: [],
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        srv.close(() => resolve());
      }),
  };
  const srv = http.createServer((req, res) => {
    const route = (req.url ?? '').split('?')[0]!;
    proxy.hits.set(route, (proxy.hits.get(route) ?? 0) + 1);
    const up = http.request({ host: t.hostname, port: t.port, path: req.url, method: req.method, headers: req.headers }, (ur) => {
      const chunks: Buffer[] = [];
      ur.on('data', (c: Buffer) => chunks.push(c));
      ur.on('end', () => {
        let body: Buffer = Buffer.concat(chunks);
        const headers = { ...ur.headers };
        if (String(headers['content-type']).startsWith(PAGE_MEDIA_TYPE)) {
          if (proxy.rewrite) {
            const r = proxy.rewrite(body);
            body = r.bytes;
            if (r.sha256) headers[PAGE_SHA256_HEADER] = r.sha256;
          }
          proxy.pages.push(body);
        }
        headers['content-length'] = String(body.length);
        res.writeHead(ur.statusCode ?? 502, headers).end(body);
      });
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
  readonly proxy: Proxy;
  sync(): Promise<number>;
  close(): Promise<void>;
}

async function world(prefix: string): Promise<World> {
  const dir = await tempDir(prefix);
  const catalogDir = path.join(dir, 'catalog');
  await writeCatalogDir(catalogDir, catalog(), 1);
  const up = await startUpstream({ catalogDir, port: 0 });
  const key = 'k'.repeat(43);
  const sup = await startSup({ dataDir: path.join(dir, 'sup'), key, name: 'sup1', port: 0, pageSize: 3 });
  const proxy = await startProxy(sup.url);
  const client = createSupClient({ url: sup.url, key });
  return {
    dir,
    catalogDir,
    up,
    sup,
    proxy,
    sync: () => syncSup(client, up.url),
    async close() {
      await proxy.close();
      await sup.close();
      await up.close();
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };
}

const request = (w: World, m: Machine, log: ComponentLog, required: number): ScanRequest => ({
  updateSourceId: 'c2d17964-bbdd-4339-b9f3-12d7205b39cc',
  requiredContentVersion: required,
  location: { url: w.proxy.url, serverName: 'sup1', contentVersion: required },
  machine: m,
  log,
});
const statesOf = (r: ScanResult): Record<string, UpdateStateName> => Object.fromEntries(r.updates.map((u) => [u.id, u.state]));
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const supLog = (w: World): string[] => fs.readFileSync(path.join(w.dir, 'sup', 'logs', 'SoftwareDistribution.log'), 'utf8').split('\n').filter(Boolean).map((l) => parseCmtraceLine(l)?.text ?? l);
const cacheFiles = (cacheDir: string): { catDir: string; state: { fetches: number; segments: { file: string; sha256: string }[] } } => {
  const catDir = path.join(cacheDir, fs.readdirSync(cacheDir).find((n) => /^[0-9a-f]{16}$/.test(n))!);
  return { catDir, state: JSON.parse(fs.readFileSync(path.join(catDir, 'state.json'), 'utf8')) as { fetches: number; segments: { file: string; sha256: string }[] } };
};

test('the update point builds pages for scanners at its sync and serves plain JSON pages to replicas', async () => {
  const w = await world('pages-serve');
  try {
    const v = await w.sync();
    assert.ok(
      supLog(w).some((l) => new RegExp(`^Prepared 1 catalog page\\(s\\) of content version ${v} for scanners in \\d+ ms$`).test(l)),
      'the whole catalog in one page of 5,000, built before the sync was reported done',
    );
    const anchor = ((await (await fetch(`${w.sup.url}/upstream/v1/changes?anchor=`)).json()) as { anchor: string }).anchor;
    const q = `since=&until=${anchor}&limit=5000`;
    // A replica or child site (no Accept for pages): the JSON page, as before.
    const plain = await fetch(`${w.sup.url}/upstream/v1/updates?${q}`);
    assert.match(plain.headers.get('content-type') ?? '', /^application\/json/);
    assert.equal(((await plain.json()) as { items: unknown[] }).items.length, 7);
    // A scanner: the built page, its hash in a header; the bodies are the catalog's items.
    const built = await fetch(`${w.sup.url}/upstream/v1/updates?${q}`, { headers: { accept: PAGE_MEDIA_TYPE } });
    assert.equal(built.headers.get('content-type'), PAGE_MEDIA_TYPE);
    const bytes = Buffer.from(await built.arrayBuffer());
    assert.equal(built.headers.get(PAGE_SHA256_HEADER), sha256(bytes));
    const entries = readPage(bytes);
    assert.deepEqual(
      entries.map((e) => [e.id, e.revision, e.needs, e.bad]),
      Array.from({ length: 7 }, (_, k) => [U(k + 1), 1, `pkg-${k + 1}`, null]),
    );
    assert.deepEqual(entries[6]!.supersedes, [U(6)]);
    const body = JSON.parse(bytes.toString('utf8', entries[2]!.start, entries[2]!.end)) as Record<string, unknown>;
    assert.deepEqual([body.id, body.revision, body.title, body.isApplicable, body.isInstalled], [U(3), 1, 'pkg-3 2.1', pkgRule('pkg-3', 'lt', '2.1'), pkgRule('pkg-3', 'ge', '2.1')]);
  } finally {
    await w.close();
  }
});

test('a corrupted page is CAIRN_SCAN_UPDATE_POINT_UNREACHABLE and nothing of it is cached; a body that fails only when evaluated is unknown with the reason', async () => {
  const w = await world('pages-corrupt');
  try {
    const v = await w.sync();
    const cacheDir = path.join(w.dir, 'cache');
    const l = scannerLog(w.dir, 'Scanner');
    // A byte changed in transit: the page no longer matches its SHA-256.
    w.proxy.rewrite = (page) => {
      const b = Buffer.from(page);
      b[b.length - 5] = b[b.length - 5]! ^ 1;
      return { bytes: b };
    };
    const unreachable = (why: RegExp) => (err: { code?: string; message?: string }) => err.code === 'CAIRN_SCAN_UPDATE_POINT_UNREACHABLE' && why.test(err.message ?? '');
    await assert.rejects(createScanner({ cacheDir, pageSize: 3 }).scan(request(w, machine, l.log, v)), unreachable(/does not match its SHA-256/));
    // A page that matches its hash but whose index does not fit its bodies.
    w.proxy.rewrite = (page) => {
      const b = Buffer.concat([page, Buffer.from('{}\n')]);
      return { bytes: b, sha256: sha256(b) };
    };
    await assert.rejects(createScanner({ cacheDir, pageSize: 3 }).scan(request(w, machine, l.log, v)), unreachable(/the page is malformed: the page has bytes after its last body/));
    assert.ok(!fs.existsSync(path.join(cacheDir, 'locations.json')), 'nothing cached from a failed download');

    // The index says U2 (valid, needs pkg-2) but its body has a malformed version, and U3's body is of another revision:
    // the scanner finds out when it first evaluates them.
    w.proxy.rewrite = (page) => {
      const items = readPage(page).map((e) => {
        let body: Buffer | string = e.page.subarray(e.start, e.end);
        if (e.id === U(2)) body = JSON.stringify(upd(2, 1, { isApplicable: pkgRule('pkg-2', 'lt', 'not a version!') }));
        if (e.id === U(3)) body = JSON.stringify(upd(3, 2));
        return { entry: e, body };
      });
      const b = buildPage(items);
      return { bytes: b, sha256: sha256(b) };
    };
    const scanner = createScanner({ cacheDir, pageSize: 3 });
    const r = await scanner.scan(request(w, machine, l.log, v));
    const u2 = r.updates.find((u) => u.id === U(2))!;
    const u3 = r.updates.find((u) => u.id === U(3))!;
    assert.deepEqual([u2.state, u2.title, u2.revision], ['unknown', 'pkg-2 2.1', 1]);
    assert.match(u2.reason!, /^CAIRN_CATALOG_RULE_INVALID: .*isApplicable\.version\.value is not a Debian version/);
    assert.equal(u3.state, 'unknown');
    assert.match(u3.reason!, /^CAIRN_CATALOG_UPDATE_INVALID: .*its body \(revision 2\) does not match its entry in the catalog page's index \(revision 1\)/);
    assert.deepEqual({ ...statesOf(r), [U(2)]: 'required', [U(3)]: 'required' }, expected, 'the other updates are classified');
    assert.ok(l.lines().some((x) => x.startsWith(`Update (Unknown): pkg-2 2.1 (${U(2)}, 1): CAIRN_CATALOG_RULE_INVALID`)));
    // A machine without pkg-2 never evaluates U2: not required there (the index is trusted for which machines evaluate an update).
    assert.equal(statesOf(await scanner.scan(request(w, other, l.log, v)))[U(2)], 'notRequired');
  } finally {
    await w.close();
  }
});

test('an update the update point finds invalid when it builds the page is unknown on every machine, with the reason', async () => {
  const w = await world('pages-marked');
  try {
    const v = await w.sync();
    // The update point's store damaged after its sync (its pages of 3 are built when first asked for).
    const db = new Database(path.join(w.dir, 'sup', 'sup.db'));
    db.prepare('UPDATE "CI_ConfigurationItems" SET "Digest" = ? WHERE "CI_UniqueID" = ?').run(JSON.stringify(upd(4, 1, { isInstalled: { kind: 'nonsense' } })), U(4));
    db.close();
    const l = scannerLog(w.dir, 'Scanner');
    const scanner = createScanner({ cacheDir: path.join(w.dir, 'cache'), pageSize: 3 });
    for (const m of [machine, other]) {
      const u4 = (await scanner.scan(request(w, m, l.log, v))).updates.find((u) => u.id === U(4))!;
      assert.deepEqual([u4.state, u4.title, u4.articleId], ['unknown', 'pkg-4 2.1', 'KB4']);
      assert.match(u4.reason!, /^CAIRN_CATALOG_RULE_INVALID: /);
    }
    assert.ok(l.lines().includes('1 update(s) of this download are marked invalid by the update point; they are reported unknown with the reason'));
  } finally {
    await w.close();
  }
});

test('a restart reads the pages kept as received, without a request; new content versions are downloaded as changes only, and many fetches are rewritten as one', async () => {
  const w = await world('pages-restart');
  try {
    let v = await w.sync();
    const cacheDir = path.join(w.dir, 'cache');
    const l = scannerLog(w.dir, 'Scanner');
    const first = await createScanner({ cacheDir, pageSize: 3 }).scan(request(w, machine, l.log, v));
    assert.deepEqual(statesOf(first), expected);
    // The cache holds the pages byte for byte as the update point sent them (7 updates in pages of 3), each with its hash.
    const { catDir, state } = cacheFiles(cacheDir);
    const pageFiles = state.segments.filter((s) => s.file.endsWith('.ndjson'));
    assert.deepEqual(
      pageFiles.map((s) => fs.readFileSync(path.join(catDir, s.file))),
      w.proxy.pages,
    );
    assert.deepEqual([pageFiles.length, state.fetches], [3, 1]);
    assert.ok(pageFiles.every((s) => sha256(fs.readFileSync(path.join(catDir, s.file))) === s.sha256));

    // A restart: no request at all, the same results.
    const hits = w.proxy.hits.get('/upstream/v1/changes');
    const restarted = createScanner({ cacheDir, pageSize: 3 });
    const r = await restarted.scan(request(w, machine, l.log, v));
    assert.deepEqual(statesOf(r), statesOf(first));
    assert.deepEqual(r.pruned, [{ id: U(6), supersededBy: U(7) }]);
    assert.equal(w.proxy.hits.get('/upstream/v1/changes'), hits);

    // New content versions, each changing one update's revision: one page of one update each time.
    const revs: Record<number, number> = {};
    for (let round = 1; round <= MAX_SEGMENTS + 1; round += 1) {
      const n = ((round - 1) % 3) + 1;
      revs[n] = (revs[n] ?? 1) + 1;
      await writeCatalogDir(w.catalogDir, catalog(revs), 1);
      const previous = v;
      v = await w.sync();
      assert.ok(supLog(w).some((x) => new RegExp(`^Prepared 2 catalog page\\(s\\) of content version ${v} for scanners`).test(x)), 'the whole catalog and the changes since the last version');
      const pagesBefore = w.proxy.pages.length;
      const lr = scannerLog(w.dir, `Scanner${round}`);
      const rr = await restarted.scan(request(w, machine, lr.log, v));
      assert.ok(lr.lines().some((x) => x.startsWith(`Downloaded the changes since content version ${previous} `) && x.includes(': 1 update(s) and 0 categories')));
      assert.equal(w.proxy.pages.length, pagesBefore + 1);
      assert.deepEqual(readPage(w.proxy.pages.at(-1)!).map((e) => [e.id, e.revision]), [[U(n), revs[n]]]);
      // pkg-n at 1.0 or 2.1 is below 2.<rev> ≥ 2.2: required.
      assert.equal(statesOf(rr)[U(n)], 'required');
      const s = cacheFiles(cacheDir).state;
      assert.ok(s.fetches <= MAX_SEGMENTS, `fetches ${s.fetches}`);
      if (round === MAX_SEGMENTS) assert.equal(s.fetches, 1, 'the ninth fetch rewrote the catalog as one');
      // A restart after every round reads the same catalog back.
      assert.deepEqual(statesOf(await createScanner({ cacheDir }).scan(request(w, machine, lr.log, v))), statesOf(rr));
    }
    // And a new client downloading everything agrees with the cache built from changes.
    const fresh = await createScanner({ cacheDir: path.join(w.dir, 'fresh') }).scan(request(w, machine, l.log, v));
    const incremental = await createScanner({ cacheDir }).scan(request(w, machine, l.log, v));
    assert.deepEqual(
      fresh.updates.map((u) => [u.id, u.revision, u.state]),
      incremental.updates.map((u) => [u.id, u.revision, u.state]),
    );
  } finally {
    await w.close();
  }
});
