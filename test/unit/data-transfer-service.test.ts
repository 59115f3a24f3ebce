/**
 * The agent's downloader against plain node:http servers that serve files
 * with Range support, and misbehave on purpose: cut a file in the middle,
 * serve the wrong bytes, refuse. (A real DP is exercised end to end in
 * test/e2e/agent-content.test.ts.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { DataTransferService, contentPathSegments, fileUrl } from '../../src/agent/data-transfer-service.ts';
import { createComponentLog } from '../../src/shared/cmtrace-log.ts';
import { isCairnError } from '../../src/shared/errors.ts';
import { tempDir } from '../helpers/processes.ts';

interface Served {
  readonly url: string;
  readonly requests: { path: string; range: string | undefined }[];
  close(): Promise<void>;
}

/** Serves `files` (path → bytes) under `/SMS_DP_SMSPKG$/PKG/`; `behave` may take over a request. */
async function serve(files: Record<string, Buffer>, behave?: (req: http.IncomingMessage, res: http.ServerResponse, n: number) => boolean): Promise<Served> {
  const requests: Served['requests'] = [];
  const server = http.createServer((req, res) => {
    requests.push({ path: decodeURIComponent(req.url ?? ''), range: req.headers.range });
    if (behave?.(req, res, requests.length)) return;
    const rel = decodeURIComponent((req.url ?? '').replace(/^\/SMS_DP_SMSPKG\$\/PKG\//, ''));
    const body = files[rel];
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (m) {
      const start = Number(m[1]);
      if (start >= body.length) {
        res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
        return;
      }
      res.writeHead(206, { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}`, 'content-length': body.length - start });
      res.end(body.subarray(start));
      return;
    }
    res.writeHead(200, { 'content-length': body.length });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/SMS_DP_SMSPKG$/PKG/`,
    requests,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

function bytes(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i += 4) b.writeUInt32LE(((i + seed) * 2654435761) >>> 0, Math.min(i, n - 4));
  return b;
}
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex').toUpperCase();

async function dts(dir: string, retryDelaysMs: number[] = [10]): Promise<DataTransferService> {
  return new DataTransferService({ log: createComponentLog({ dir: path.join(dir, 'logs'), name: 'DataTransferService', component: 'DataTransferService' }), cacheDir: path.join(dir, 'cache'), retryDelaysMs });
}

test('downloads every file of a content into the cache, verified, with nested paths and spaces', async () => {
  const dir = await tempDir('dts');
  const files = { 'a.txt': Buffer.from('hello'), 'sub dir/b é.bin': bytes(300_000) };
  const s = await serve(files);
  try {
    const r = await (await dts(dir)).downloadContent({
      contentId: 'CS100001.1',
      files: Object.entries(files).map(([p, b]) => ({ path: p, size: b.length, hash: sha(b) })),
      locations: [{ name: 'dp1', packageUrl: s.url }],
    });
    assert.equal(r.files, 2);
    assert.deepEqual(await fsp.readFile(path.join(dir, 'cache', 'CS100001.1', 'sub dir', 'b é.bin')), files['sub dir/b é.bin']);
    assert.equal(await fsp.readFile(path.join(dir, 'cache', 'CS100001.1', 'a.txt'), 'utf8'), 'hello');
  } finally {
    await s.close();
  }
});

test('an interrupted download resumes with a Range request from the bytes already on disk', async () => {
  const dir = await tempDir('dts');
  const big = bytes(1_000_000, 7);
  const s = await serve({ 'big.bin': big }, (_req, res, n) => {
    if (n !== 1) return false;
    // The first answer promises the whole file, sends 400,000 bytes and drops the connection.
    res.writeHead(200, { 'content-length': big.length });
    res.write(big.subarray(0, 400_000), () => setTimeout(() => res.socket?.destroy(), 50));
    return true;
  });
  try {
    await (await dts(dir)).downloadContent({ contentId: 'CS100002.1', files: [{ path: 'big.bin', size: big.length, hash: sha(big) }], locations: [{ name: 'dp1', packageUrl: s.url }] });
    assert.equal(s.requests.length, 2);
    assert.equal(s.requests[0]!.range, undefined);
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(s.requests[1]!.range ?? '')?.[1]);
    assert.ok(resumedAt > 0 && resumedAt <= 400_000, `resumed at ${s.requests[1]!.range}`);
    assert.deepEqual(await fsp.readFile(path.join(dir, 'cache', 'CS100002.1', 'big.bin')), big);
    const log = await fsp.readFile(path.join(dir, 'logs', 'DataTransferService.log'), 'utf8');
    assert.match(log, new RegExp(`Resuming CS100002.1/big.bin at byte ${resumedAt} of 1000000`));
  } finally {
    await s.close();
  }
});

test('a partial file left by a killed agent is resumed by a new service, and falls over to the next location', async () => {
  const dir = await tempDir('dts');
  const big = bytes(200_000, 3);
  // The partial file a killed agent left behind.
  const partial = path.join(dir, 'cache', '.partial', 'CS100003.1', 'f.bin');
  await fsp.mkdir(path.dirname(partial), { recursive: true });
  await fsp.writeFile(partial, big.subarray(0, 123_456));
  const down = await serve({}, (_req, res) => {
    res.writeHead(503).end();
    return true;
  });
  const up = await serve({ 'f.bin': big });
  try {
    await (await dts(dir)).downloadContent({ contentId: 'CS100003.1', files: [{ path: 'f.bin', size: big.length, hash: sha(big) }], locations: [{ name: 'down', packageUrl: down.url }, { name: 'up', packageUrl: up.url }] });
    assert.equal(down.requests.length, 1);
    assert.deepEqual(up.requests.map((r) => r.range), ['bytes=123456-']);
    assert.deepEqual(await fsp.readFile(path.join(dir, 'cache', 'CS100003.1', 'f.bin')), big);
    assert.equal(fs.existsSync(partial), false);
  } finally {
    await down.close();
    await up.close();
  }
});

test('a file whose bytes do not match the policy hash is never accepted', async () => {
  const dir = await tempDir('dts');
  const good = bytes(5000, 1);
  const evil = bytes(5000, 2);
  const s = await serve({ 'f.bin': evil });
  try {
    await assert.rejects(
      (await dts(dir, [5])).downloadContent({ contentId: 'CS100004.1', files: [{ path: 'f.bin', size: good.length, hash: sha(good) }], locations: [{ name: 'dp1', packageUrl: s.url }] }),
      (err: unknown) => isCairnError(err) && err.code === 'CAIRN_AGENT_DOWNLOAD_FAILED' && /CAIRN_AGENT_CONTENT_HASH_MISMATCH/.test(err.message),
    );
    assert.equal(s.requests.length, 2, 'one try per round');
    assert.equal(fs.existsSync(path.join(dir, 'cache', 'CS100004.1', 'f.bin')), false);
    assert.equal(fs.existsSync(path.join(dir, 'cache', '.partial', 'CS100004.1', 'f.bin')), false);
    assert.match(await fsp.readFile(path.join(dir, 'logs', 'DataTransferService.log'), 'utf8'), /Refused CS100004.1\/f.bin from dp1: CAIRN_AGENT_CONTENT_HASH_MISMATCH/);
  } finally {
    await s.close();
  }
});

test('hostile paths in a policy are refused before anything is requested or written', async () => {
  const dir = await tempDir('dts');
  const s = await serve({ 'ok.txt': Buffer.from('ok') });
  try {
    for (const p of ['/etc/passwd', '../escape.txt', 'a/../../b', 'a\\b', '', 'a//b', 'C:/x']) {
      await assert.rejects(
        (await dts(dir)).downloadContent({ contentId: 'CS100005.1', files: [{ path: 'ok.txt', size: 2, hash: sha(Buffer.from('ok')) }, { path: p, size: 1, hash: sha(Buffer.from('x')) }], locations: [{ name: 'dp1', packageUrl: s.url }] }),
        (err: unknown) => isCairnError(err) && err.code === 'CAIRN_CONTENT_PATH_INVALID',
        `path ${JSON.stringify(p)}`,
      );
    }
    await assert.rejects((await dts(dir)).downloadContent({ contentId: '../x', files: [], locations: [] }), (err: unknown) => isCairnError(err) && err.code === 'CAIRN_CONTENT_PATH_INVALID');
    assert.equal(s.requests.length, 0);
    assert.equal(fs.existsSync(path.join(dir, 'cache', 'CS100005.1')), false);
  } finally {
    await s.close();
  }
});

test('file URLs encode each path segment under the package URL', () => {
  assert.equal(fileUrl('http://dp:1/SMS_DP_SMSPKG$/P/', 'a b/c#d.txt'), 'http://dp:1/SMS_DP_SMSPKG$/P/a%20b/c%23d.txt');
  assert.deepEqual(contentPathSegments('x/y.z'), ['x', 'y.z']);
});

test('an empty file of a content is made and verified without a request (it used to fail with ENOENT)', async () => {
  const dir = await tempDir('dts-empty');
  const s = await serve({ 'empty.txt': Buffer.alloc(0), 'a.txt': Buffer.from('hello') });
  try {
    const d = await dts(dir);
    const r = await d.downloadContent({ contentId: 'PKG.1', files: [{ path: 'empty.txt', size: 0, hash: sha(Buffer.alloc(0)) }, { path: 'a.txt', size: 5, hash: sha(Buffer.from('hello')) }], locations: [{ name: 'dp', packageUrl: s.url }] });
    assert.equal(r.files, 2);
    assert.equal((await fsp.readFile(path.join(dir, 'cache', 'PKG.1', 'empty.txt'))).length, 0);
    assert.deepEqual(s.requests.map((q) => q.path), ['/SMS_DP_SMSPKG$/PKG/a.txt']);
    // A wrong hash for an empty file is refused like any other.
    await assert.rejects(d.downloadFile('PKG.2', { path: 'empty.txt', size: 0, hash: sha(Buffer.from('x')) }, [{ name: 'dp', packageUrl: s.url }]), (e: unknown) => isCairnError(e) && e.code === 'CAIRN_AGENT_DOWNLOAD_FAILED');
    assert.ok(!fs.existsSync(path.join(dir, 'cache', 'PKG.2', 'empty.txt')));
  } finally {
    await s.close();
  }
});
