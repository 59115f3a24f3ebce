/**
 * The distribution point server, black-box over real HTTP on loopback, with
 * the real content library in a temporary folder: authentication and proofs,
 * uploads (whole, resumed, interrupted, corrupt, too long, disk full), content
 * records, and the public download URLs (ranges, HEAD, odd names, traversal).
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { createContentLibrary } from '../../src/content-library/content-library.ts';
import { definitionHash } from '../../src/content-library/definition.ts';
import type { ContentDefinition, FileEntry } from '../../src/content-library/types.ts';
import { createDpClient } from '../../src/dp/dp-client.ts';
import { buildDpServer, uploadTempPath } from '../../src/dp/dp-server.ts';
import { BUNDLE_FILE_MAX_BYTES, BUNDLE_MAX_BYTES, BUNDLE_MAX_FILES, PROOF_HEADER, encodeBundleHeader, newSharedKey, packBundles, parseBundle, signRequest, verifyProof } from '../../src/dp/protocol.ts';
import type { PackageListing } from '../../src/dp/protocol.ts';
import { isCairnError } from '../../src/shared/errors.ts';
import { waitFor } from '../helpers/processes.ts';

const execFileAsync = promisify(execFile);
const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex').toUpperCase();

interface RunningTestDp {
  readonly app: FastifyInstance;
  readonly url: string;
  readonly dataDir: string;
  readonly key: string;
  close(): Promise<void>;
}

async function startTestDp(root: string, key = newSharedKey()): Promise<RunningTestDp> {
  const dataDir = await fsp.mkdtemp(path.join(root, 'dp-'));
  const app = await buildDpServer({ dataDir, key, name: 'DP-TEST' });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const addr = app.server.address();
  assert.ok(addr && typeof addr === 'object');
  return { app, url: `http://127.0.0.1:${addr.port}`, dataDir, key, close: () => app.close() };
}

/** A signed request made by hand, so that tests see the raw status, body and proof. */
async function signed(dp: { url: string; key: string }, method: string, pathWithQuery: string, body?: Buffer | string, contentType?: string): Promise<{ status: number; json: Record<string, unknown>; proofOk: boolean; proof: string | null }> {
  const s = signRequest(dp.key, method, pathWithQuery);
  const headers: Record<string, string> = { authorization: s.authorization };
  if (body !== undefined) headers['content-type'] = contentType ?? 'application/octet-stream';
  const res = await fetch(dp.url + pathWithQuery, { method, headers, ...(body !== undefined ? { body: typeof body === 'string' ? body : new Uint8Array(body) } : {}) });
  const text = await res.text();
  const proof = res.headers.get(PROOF_HEADER);
  return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {}, proofOk: verifyProof(dp.key, s.nonce, res.status, proof ?? undefined), proof };
}

interface SourceFile {
  readonly path: string;
  readonly bytes: Buffer;
}

/** Writes the files into a source folder and returns their paths on disk and the content definition. */
async function makeContent(root: string, packageId: string, version: number, files: readonly SourceFile[]): Promise<{ def: ContentDefinition; diskPaths: Map<string, string> }> {
  const src = await fsp.mkdtemp(path.join(root, 'src-'));
  const diskPaths = new Map<string, string>();
  const entries: FileEntry[] = [];
  const folders = new Set<string>();
  for (const f of files) {
    const onDisk = path.join(src, ...f.path.split('/'));
    await fsp.mkdir(path.dirname(onDisk), { recursive: true });
    await fsp.writeFile(onDisk, f.bytes);
    diskPaths.set(f.path, onDisk);
    entries.push({ path: f.path, hash: sha256(f.bytes), size: f.bytes.length, mode: 0o644, mtime: '2026-01-02T03:04:05.000Z' });
    const parts = f.path.split('/');
    for (let i = 1; i < parts.length; i++) folders.add(parts.slice(0, i).join('/'));
  }
  entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const contentId = `${packageId}.${version}`;
  const sortedFolders = [...folders].sort();
  const def: ContentDefinition = {
    contentId,
    packageId,
    version,
    folders: sortedFolders,
    files: entries,
    size: entries.reduce((n, e) => n + e.size, 0),
    hash: definitionHash({ contentId, folders: sortedFolders, files: entries }),
  };
  return { def, diskPaths };
}

async function exists(file: string): Promise<boolean> {
  return fsp.stat(file).then(
    () => true,
    () => false,
  );
}

/** A GET or HEAD with the path exactly as given (no URL normalisation), for traversal attempts. */
function rawGet(url: string, rawPath: string, method = 'GET'): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ hostname: u.hostname, port: u.port, path: rawPath, method }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end();
  });
}

let root: string;
before(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'cairn-dp-server-'));
});
after(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

describe('DP authentication', () => {
  let dp: RunningTestDp;
  before(async () => {
    dp = await startTestDp(root);
  });
  after(() => dp.close());

  test('a request without a signature is refused with 401, no proof, and a log line naming the reason and the address', async () => {
    const res = await fetch(`${dp.url}/dp/v1/status`);
    assert.equal(res.status, 401);
    assert.equal(res.headers.get(PROOF_HEADER), null);
    const body = (await res.json()) as { code: string };
    assert.equal(body.code, 'CAIRN_AUTH_MISSING');
    const log = await fsp.readFile(path.join(dp.dataDir, 'logs', 'SMSDPProv.log'), 'utf8');
    assert.match(log, /Rejected GET \/dp\/v1\/status from 127\.0\.0\.1: no Authorization header/);
  });

  test('a request signed with another key is refused with 401 CAIRN_AUTH_INVALID', async () => {
    const r = await signed({ url: dp.url, key: newSharedKey() }, 'GET', '/dp/v1/status');
    assert.equal(r.status, 401);
    assert.equal(r.json['code'], 'CAIRN_AUTH_INVALID');
    assert.equal(r.proof, null);
  });

  test('a signature made for another path is refused', async () => {
    const s = signRequest(dp.key, 'GET', '/dp/v1/status');
    const res = await fetch(`${dp.url}/dp/v1/uploads/${'A'.repeat(64)}?content=CS100001.1`, { headers: { authorization: s.authorization } });
    assert.equal(res.status, 401);
  });

  test('a replayed request is refused the second time', async () => {
    const s = signRequest(dp.key, 'GET', '/dp/v1/status');
    const first = await fetch(`${dp.url}/dp/v1/status`, { headers: { authorization: s.authorization } });
    assert.equal(first.status, 200);
    const second = await fetch(`${dp.url}/dp/v1/status`, { headers: { authorization: s.authorization } });
    assert.equal(second.status, 401);
    assert.match(((await second.json()) as { message: string }).message, /nonce already used/);
  });

  test('a request signed outside the clock window is refused', async () => {
    const s = signRequest(dp.key, 'GET', '/dp/v1/status', Date.now() - 10 * 60 * 1000);
    const res = await fetch(`${dp.url}/dp/v1/status`, { headers: { authorization: s.authorization } });
    assert.equal(res.status, 401);
  });

  test('authenticated answers carry a proof of their status, errors included', async () => {
    const ok = await signed(dp, 'GET', '/dp/v1/status');
    assert.equal(ok.status, 200);
    assert.ok(ok.proofOk);
    assert.deepEqual(ok.json, { name: 'DP-TEST', freeBytes: ok.json['freeBytes'], contents: 0 });
    assert.ok(typeof ok.json['freeBytes'] === 'number' && ok.json['freeBytes'] > 0);
    const bad = await signed(dp, 'GET', '/dp/v1/uploads/not-a-hash?content=CS100001.1');
    assert.equal(bad.status, 400);
    assert.equal(bad.json['code'], 'CAIRN_HASH_INVALID');
    assert.ok(bad.proofOk, 'the 400 carries a proof for status 400');
    const unknown = await signed(dp, 'GET', '/dp/v1/nothing-here');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json['code'], 'CAIRN_NOT_FOUND');
    assert.ok(unknown.proofOk);
  });

  test('malformed JSON gets 400 CAIRN_REQUEST_INVALID, and the server keeps serving', async () => {
    const r = await signed(dp, 'POST', '/dp/v1/files/missing', '{"hashes": [', 'application/json');
    assert.equal(r.status, 400);
    assert.equal(r.json['code'], 'CAIRN_REQUEST_INVALID');
    assert.ok(r.proofOk);
    const wrongShape = await signed(dp, 'POST', '/dp/v1/files/missing', '{"hashes": ["xyz"]}', 'application/json');
    assert.equal(wrongShape.status, 400);
    assert.equal(wrongShape.json['code'], 'CAIRN_HASH_INVALID');
    assert.equal((await signed(dp, 'GET', '/dp/v1/status')).status, 200);
  });

  test('an upload with a content ID that could name another path is refused', async () => {
    for (const id of ['..', '../x', 'a/b', '', 'x'.repeat(65)]) {
      const r = await signed(dp, 'GET', `/dp/v1/uploads/${'A'.repeat(64)}?content=${encodeURIComponent(id)}`);
      assert.equal(r.status, 400, id);
      assert.equal(r.json['code'], 'CAIRN_REQUEST_INVALID');
    }
  });

  test('unknown public routes answer 404 CAIRN_NOT_FOUND', async () => {
    const res = await fetch(`${dp.url}/no/such/route`);
    assert.equal(res.status, 404);
    assert.equal(((await res.json()) as { code: string }).code, 'CAIRN_NOT_FOUND');
  });
});

describe('DP uploads', () => {
  let dp: RunningTestDp;
  before(async () => {
    dp = await startTestDp(root);
  });
  after(() => dp.close());

  const lib = (): ReturnType<typeof createContentLibrary> => createContentLibrary(path.join(dp.dataDir, 'ContentLib'));

  test('a file sent in two parts is stored once the second part arrives', async () => {
    const bytes = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyz'.repeat(1000));
    const hash = sha256(bytes);
    const half = Math.floor(bytes.length / 2);
    const q = (offset: number): string => `/dp/v1/uploads/${hash}?content=CS100002.1&offset=${offset}&size=${bytes.length}`;
    const first = await signed(dp, 'PUT', q(0), bytes.subarray(0, half));
    assert.equal(first.status, 200);
    assert.deepEqual(first.json, { offset: half });
    assert.ok(first.proofOk);
    const at = await signed(dp, 'GET', `/dp/v1/uploads/${hash}?content=CS100002.1`);
    assert.deepEqual(at.json, { offset: half });
    assert.ok(await exists(uploadTempPath(dp.dataDir, hash, 'CS100002.1')), 'the partial upload is under SMS_DP$');
    assert.ok(fs.existsSync(path.join(dp.dataDir, 'SMS_DP$', `${hash}-CS100002.1.temp`)));
    const second = await signed(dp, 'PUT', q(half), bytes.subarray(half));
    assert.equal(second.status, 201);
    assert.deepEqual(second.json, { stored: true });
    assert.ok(await lib().hasFile(hash));
    assert.deepEqual(await fsp.readFile(lib().filePath(hash)), bytes);
    assert.equal(await exists(uploadTempPath(dp.dataDir, hash, 'CS100002.1')), false);
    const log = await fsp.readFile(path.join(dp.dataDir, 'logs', 'SMSDPProv.log'), 'utf8');
    assert.ok(log.includes(`Added file ${hash} for content CS100002.1 to the content library`));
  });

  test('a bundle stores each file whose bytes match its hash and rejects, alone, the one that does not', async () => {
    const good = [Buffer.from('first small file'), Buffer.alloc(70_000, 7), Buffer.alloc(0)];
    const liar = Buffer.from('these bytes are not what the hash says');
    const claimed = sha256('what the site meant');
    const entries = [...good.map((b) => ({ hash: sha256(b), size: b.length })), { hash: claimed, size: liar.length }];
    const body = Buffer.concat([encodeBundleHeader(entries), ...good, liar]);
    const r = await signed(dp, 'PUT', '/dp/v1/bundles?content=CS100020.1', body);
    assert.equal(r.status, 200);
    assert.ok(r.proofOk);
    assert.deepEqual([...(r.json['stored'] as string[])].sort(), good.map((b) => sha256(b)).sort());
    assert.deepEqual(r.json['rejected'], [{ hash: claimed, code: 'CAIRN_DP_HASH_MISMATCH', message: `the bytes hash to ${sha256(liar)}, not ${claimed}` }]);
    for (const b of good) assert.deepEqual(await fsp.readFile(lib().filePath(sha256(b))), b);
    assert.equal(await lib().hasFile(claimed), false);
    assert.deepEqual((await fsp.readdir(path.join(dp.dataDir, 'SMS_DP$'))).filter((f) => f.includes('CS100020') || f.endsWith('.bundle')), [], 'no temporary file is left behind');
    const log = await fsp.readFile(path.join(dp.dataDir, 'logs', 'SMSDPProv.log'), 'utf8');
    assert.ok(log.includes(`Added file ${sha256(good[1]!)} for content CS100020.1 to the content library`));
    assert.ok(log.includes(`File ${claimed} for content CS100020.1 in a bundle failed hash verification`));
  });

  test('a definition sent ahead of the files gets its per-file records written at once, and adding the content then keeps them', async () => {
    const files = [
      { path: 'docs/read me.txt', bytes: Buffer.from('prepared ahead') },
      { path: 'bin/tool', bytes: Buffer.alloc(5000, 3) },
    ];
    const { def } = await makeContent(root, 'CS100022', 1, files);
    const dataLib = path.join(dp.dataDir, 'ContentLib', 'DataLib');
    const first = await signed(dp, 'PUT', '/dp/v1/contents/CS100022.1?prepare=1', JSON.stringify(def), 'application/json');
    assert.equal(first.status, 200);
    assert.ok(first.proofOk);
    assert.deepEqual(first.json, { prepared: true });
    // Records ahead of the files: the per-file INIs, the JSON copy and the marker, not the content's INI.
    assert.match(await fsp.readFile(path.join(dataLib, 'CS100022.1', 'docs', 'read me.txt.INI'), 'utf8'), new RegExp(`^Hash=${sha256(files[0]!.bytes)}$`, 'm'));
    assert.equal((await fsp.readFile(path.join(dataLib, 'CS100022.1.prepared'), 'utf8')).trim(), def.hash);
    assert.equal(await exists(path.join(dataLib, 'CS100022.1.INI')), false);
    const again = await signed(dp, 'PUT', '/dp/v1/contents/CS100022.1?prepare=1', JSON.stringify(def), 'application/json');
    assert.deepEqual(again.json, { prepared: false });
    // Without its files the content still cannot be added.
    const early = await signed(dp, 'PUT', '/dp/v1/contents/CS100022.1', JSON.stringify(def), 'application/json');
    assert.equal(early.json['code'], 'CAIRN_DP_CONTENT_INCOMPLETE');
    assert.deepEqual([...(early.json['missing'] as string[])].sort(), files.map((f) => sha256(f.bytes)).sort(), 'the answer names every missing file');
    const body = Buffer.concat([encodeBundleHeader(files.map((f) => ({ hash: sha256(f.bytes), size: f.bytes.length }))), ...files.map((f) => f.bytes)]);
    assert.equal((await signed(dp, 'PUT', '/dp/v1/bundles?content=CS100022.1', body)).status, 200);
    const iniBefore = await fsp.stat(path.join(dataLib, 'CS100022.1', 'docs', 'read me.txt.INI'));
    const added = await signed(dp, 'PUT', '/dp/v1/contents/CS100022.1', JSON.stringify(def), 'application/json');
    assert.equal(added.status, 200);
    assert.ok(await exists(path.join(dataLib, 'CS100022.1.INI')));
    assert.equal(await exists(path.join(dataLib, 'CS100022.1.prepared')), false, 'the content INI replaces the marker');
    assert.equal((await fsp.stat(path.join(dataLib, 'CS100022.1', 'docs', 'read me.txt.INI'))).ino, iniBefore.ino, 'the prepared records were kept, not written again');
    assert.deepEqual(await lib().fileReferences(sha256(files[1]!.bytes)), ['CS100022.1']);
    const log = await fsp.readFile(path.join(dp.dataDir, 'logs', 'SMSDPProv.log'), 'utf8');
    assert.ok(log.includes(`Prepared the records of content 'CS100022.1' for package 'CS100022' (2 files) while its files arrive`));
    // Once added, a late prepare changes nothing.
    assert.deepEqual((await signed(dp, 'PUT', '/dp/v1/contents/CS100022.1?prepare=1', JSON.stringify(def), 'application/json')).json, { prepared: false });
  });

  test('malformed bundles get 400 CAIRN_REQUEST_INVALID and store nothing', async () => {
    const bytes = Buffer.from('payload');
    const entry = { hash: sha256(bytes), size: bytes.length };
    const cases: [string, Buffer][] = [
      ['no header line', Buffer.from('{"format":"cairn-bundle/1"')],
      ['not JSON', Buffer.from('not json\npayload')],
      ['wrong format', Buffer.from(`${JSON.stringify({ format: 'other', files: [entry] })}\npayload`)],
      ['sizes that do not add up', Buffer.concat([encodeBundleHeader([entry]), bytes, Buffer.from('extra')])],
      ['a file too large for a bundle', Buffer.concat([encodeBundleHeader([{ hash: entry.hash, size: BUNDLE_FILE_MAX_BYTES + 1 }]), Buffer.alloc(BUNDLE_FILE_MAX_BYTES + 1)])],
      ['a lower-case hash', Buffer.concat([encodeBundleHeader([entry]).toString().replace(entry.hash, entry.hash.toLowerCase()), bytes].map((x) => Buffer.from(x)))],
    ];
    for (const [what, body] of cases) {
      const r = await signed(dp, 'PUT', '/dp/v1/bundles?content=CS100021.1', body);
      assert.equal(r.status, 400, what);
      assert.equal(r.json['code'], 'CAIRN_REQUEST_INVALID', what);
    }
    assert.equal(await lib().hasFile(entry.hash), false);
    const tooBig = await signed(dp, 'PUT', '/dp/v1/bundles?content=CS100021.1', Buffer.alloc(BUNDLE_MAX_BYTES + BUNDLE_MAX_FILES * 128 + 2048));
    assert.equal(tooBig.status, 400);
    const hostile = await signed(dp, 'PUT', '/dp/v1/bundles?content=..%2Fetc', Buffer.concat([encodeBundleHeader([entry]), bytes]));
    assert.equal(hostile.status, 400);
    assert.equal(await lib().hasFile(entry.hash), false);
  });

  test('bundles are packed within their limits, in order', () => {
    const files = Array.from({ length: BUNDLE_MAX_FILES + 10 }, (_, i) => ({ hash: String(i), size: 10 }));
    const byCount = packBundles(files);
    assert.deepEqual(byCount.map((b) => b.length), [BUNDLE_MAX_FILES, 10]);
    assert.deepEqual(byCount.flat(), files);
    const large = Array.from({ length: 40 }, (_, i) => ({ hash: String(i), size: BUNDLE_FILE_MAX_BYTES }));
    const bySize = packBundles(large);
    assert.ok(bySize.every((b) => b.reduce((n, f) => n + f.size, 0) <= BUNDLE_MAX_BYTES));
    assert.equal(bySize.flat().length, 40);
    assert.deepEqual(packBundles([]), []);
    assert.ok('error' in parseBundle(Buffer.from('')));
  });

  test('a PUT at another offset than the DP holds gets 409 with the DP offset', async () => {
    const bytes = Buffer.from('some bytes for the offset test');
    const hash = sha256(bytes);
    const r = await signed(dp, 'PUT', `/dp/v1/uploads/${hash}?content=CS100002.1&offset=5&size=${bytes.length}`, bytes.subarray(5));
    assert.equal(r.status, 409);
    assert.equal(r.json['offset'], 0);
    assert.ok(r.proofOk);
  });

  test('bytes that do not match their hash get 422; the temporary file is deleted and the library does not hold the file', async () => {
    const claimed = sha256('what the site meant to send');
    const r = await signed(dp, 'PUT', `/dp/v1/uploads/${claimed}?content=CS100003.1&offset=0&size=10`, Buffer.from('0123456789'));
    assert.equal(r.status, 422);
    assert.equal(r.json['code'], 'CAIRN_DP_HASH_MISMATCH');
    assert.ok(r.proofOk);
    assert.equal(await lib().hasFile(claimed), false);
    assert.equal(await exists(uploadTempPath(dp.dataDir, claimed, 'CS100003.1')), false);
    const log = await fsp.readFile(path.join(dp.dataDir, 'logs', 'SMSDPProv.log'), 'utf8');
    assert.ok(log.includes(`File ${claimed} for content CS100003.1 failed hash verification`));
  });

  test('a resumed upload whose bytes do not match is also refused with 422', async () => {
    const claimed = sha256('abcdefghij');
    const q = (o: number): string => `/dp/v1/uploads/${claimed}?content=CS100003.1&offset=${o}&size=10`;
    assert.equal((await signed(dp, 'PUT', q(0), Buffer.from('abcde'))).status, 200);
    const r = await signed(dp, 'PUT', q(5), Buffer.from('XXXXX'));
    assert.equal(r.status, 422);
    assert.equal(await lib().hasFile(claimed), false);
    assert.equal(await exists(uploadTempPath(dp.dataDir, claimed, 'CS100003.1')), false);
  });

  test('more bytes than announced get 400 and the temporary file is deleted', async () => {
    const bytes = Buffer.from('0123456789');
    const hash = sha256(bytes);
    const r = await signed(dp, 'PUT', `/dp/v1/uploads/${hash}?content=CS100003.1&offset=0&size=4`, bytes);
    assert.equal(r.status, 400);
    assert.equal(r.json['code'], 'CAIRN_REQUEST_INVALID');
    assert.equal(await exists(uploadTempPath(dp.dataDir, hash, 'CS100003.1')), false);
    assert.equal(await lib().hasFile(hash), false);
  });

  test('an empty file is stored from an empty PUT', async () => {
    const hash = sha256('');
    const r = await signed(dp, 'PUT', `/dp/v1/uploads/${hash}?content=CS100003.1&offset=0&size=0`, Buffer.alloc(0));
    assert.equal(r.status, 201);
    assert.ok(await lib().hasFile(hash));
  });

  test('a sender that disconnects mid-upload leaves the partial file, and the client resumes from it', async () => {
    const bytes = Buffer.alloc(4 * 1024 * 1024);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + (i >> 12)) & 0xff;
    const hash = sha256(bytes);
    const pathWithQuery = `/dp/v1/uploads/${hash}?content=CS100004.1&offset=0&size=${bytes.length}`;
    const s = signRequest(dp.key, 'PUT', pathWithQuery);
    const u = new URL(dp.url);
    const sentBeforeCut = 1024 * 1024;
    await new Promise<void>((resolve) => {
      const req = http.request({ hostname: u.hostname, port: u.port, path: pathWithQuery, method: 'PUT', headers: { authorization: s.authorization, 'content-type': 'application/octet-stream', 'content-length': bytes.length } });
      req.on('error', () => resolve());
      req.write(bytes.subarray(0, sentBeforeCut), () => {
        setTimeout(() => {
          req.destroy();
          resolve();
        }, 200);
      });
    });
    const temp = uploadTempPath(dp.dataDir, hash, 'CS100004.1');
    let held = 0;
    for (let i = 0; i < 50 && held === 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
      held = (await signed(dp, 'GET', `/dp/v1/uploads/${hash}?content=CS100004.1`)).json['offset'] as number;
    }
    assert.ok(held > 0 && held <= sentBeforeCut, `the DP kept ${held} bytes`);
    assert.ok(await exists(temp));
    const src = path.join(root, 'resume-source.bin');
    await fsp.writeFile(src, bytes);
    const client = createDpClient({ url: dp.url, key: dp.key });
    // Let the DP finish closing the interrupted upload before resuming.
    await new Promise((r) => setTimeout(r, 100));
    const sent = await client.upload(hash, 'CS100004.1', src, bytes.length);
    const heldAtResume = bytes.length - sent;
    assert.ok(heldAtResume >= held && heldAtResume > 0, `resumed from ${heldAtResume}, sending only ${sent} bytes`);
    assert.ok(await lib().hasFile(hash));
    assert.deepEqual(await fsp.readFile(lib().filePath(hash)), bytes);
    assert.equal(await exists(temp), false);
  });

  test('partial uploads survive a restart and are counted in the log', async () => {
    const dp2 = await startTestDp(root);
    const hash = sha256('0123456789');
    assert.equal((await signed(dp2, 'PUT', `/dp/v1/uploads/${hash}?content=CS100005.1&offset=0&size=10`, Buffer.from('01234'))).status, 200);
    await dp2.close();
    const again = await buildDpServer({ dataDir: dp2.dataDir, key: dp2.key });
    await again.close();
    assert.ok(await exists(uploadTempPath(dp2.dataDir, hash, 'CS100005.1')));
    const log = await fsp.readFile(path.join(dp2.dataDir, 'logs', 'SMSDPProv.log'), 'utf8');
    assert.match(log, /; 1 partial upload\(s\) in /);
  });

  test('files/missing reports only the hashes the library lacks', async () => {
    const present = sha256('');
    const absent = sha256('never uploaded');
    const r = await signed(dp, 'POST', '/dp/v1/files/missing', JSON.stringify({ hashes: [present, absent, absent.toLowerCase()] }), 'application/json');
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { missing: [absent] });
  });

  test('a content naming a file the library lacks gets 409 CAIRN_DP_CONTENT_INCOMPLETE listing it', async () => {
    const { def } = await makeContent(root, 'CS100006', 1, [
      { path: 'here.txt', bytes: Buffer.from('') },
      { path: 'absent.txt', bytes: Buffer.from('not uploaded') },
    ]);
    const r = await signed(dp, 'PUT', `/dp/v1/contents/${def.contentId}`, JSON.stringify(def), 'application/json');
    assert.equal(r.status, 409);
    assert.equal(r.json['code'], 'CAIRN_DP_CONTENT_INCOMPLETE');
    assert.deepEqual(r.json['missing'], [sha256('not uploaded')]);
    assert.ok(r.proofOk);
    assert.equal(await lib().getContent(def.contentId), undefined);
  });

  test('a content definition sent under another content ID is refused', async () => {
    const { def } = await makeContent(root, 'CS100006', 2, [{ path: 'a.txt', bytes: Buffer.from('') }]);
    const r = await signed(dp, 'PUT', '/dp/v1/contents/CS100006.3', JSON.stringify(def), 'application/json');
    assert.equal(r.status, 400);
    assert.equal(r.json['code'], 'CAIRN_REQUEST_INVALID');
  });
});

describe('DP content distribution and download', () => {
  let dp: RunningTestDp;
  let def: ContentDefinition;
  const big = Buffer.alloc(3 * 1024 * 1024 + 17);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
  const files: SourceFile[] = [
    { path: 'setup.msi', bytes: Buffer.from('MSI installer bytes '.repeat(50)) },
    { path: 'docs/read me.txt', bytes: Buffer.from('plain text with spaces in the name\n') },
    { path: 'docs/ünïcödé ファイル.json', bytes: Buffer.from('{"non":"ascii"}') },
    { path: 'empty.bin', bytes: Buffer.alloc(0) },
    { path: 'payload/big.bin', bytes: big },
    { path: 'payload/copy of setup.msi', bytes: Buffer.from('MSI installer bytes '.repeat(50)) },
  ];
  const bytesOf = (p: string): Buffer => {
    const f = files.find((x) => x.path === p);
    assert.ok(f);
    return f.bytes;
  };
  const fileUrl = (p: string): string => `${dp.url}/SMS_DP_SMSPKG$/CS100010/${p.split('/').map(encodeURIComponent).join('/')}`;

  before(async () => {
    dp = await startTestDp(root);
    const made = await makeContent(root, 'CS100010', 1, files);
    def = made.def;
    const client = createDpClient({ url: dp.url, key: dp.key });
    const missing = await client.missing(def.files.map((f) => f.hash));
    // Two files share their bytes: the library holds them once.
    assert.equal(missing.length, files.length - 1);
    for (const hash of missing) {
      const entry = def.files.find((f) => f.hash === hash);
      assert.ok(entry);
      const onDisk = made.diskPaths.get(entry.path);
      assert.ok(onDisk);
      assert.equal(await client.upload(hash, def.contentId, onDisk, entry.size), entry.size);
    }
    assert.deepEqual(await client.missing(def.files.map((f) => f.hash)), []);
    await client.putContent(def);
  });
  after(() => dp.close());

  test('recording a content logs the seed line and counts in the status', async () => {
    const log = await fsp.readFile(path.join(dp.dataDir, 'logs', 'SMSDPProv.log'), 'utf8');
    assert.ok(log.includes("Content 'CS100010.1' for package 'CS100010' has been successfully added to the content library"));
    const status = await createDpClient({ url: dp.url, key: dp.key }).status();
    assert.equal(status.contents, 1);
    assert.equal(status.name, 'DP-TEST');
  });

  test('recording the same content twice succeeds', async () => {
    await createDpClient({ url: dp.url, key: dp.key }).putContent(def);
  });

  test('every file downloads over HTTP with its bytes, hash, length and type', async () => {
    for (const f of def.files) {
      const res = await fetch(fileUrl(f.path));
      assert.equal(res.status, 200, f.path);
      const body = Buffer.from(await res.arrayBuffer());
      assert.deepEqual(body, bytesOf(f.path), f.path);
      assert.equal(res.headers.get('content-length'), String(f.size));
      assert.equal(res.headers.get('x-cairn-sha256'), f.hash);
      assert.equal(res.headers.get('etag'), `"${f.hash}"`);
      assert.equal(res.headers.get('accept-ranges'), 'bytes');
    }
    assert.equal((await fetch(fileUrl('docs/read me.txt'))).headers.get('content-type'), 'text/plain');
    assert.equal((await fetch(fileUrl('setup.msi'))).headers.get('content-type'), 'application/x-msdownload');
    assert.equal((await fetch(fileUrl('empty.bin'))).headers.get('content-type'), 'application/octet-stream');
  });

  test('curl gets 206 and exactly 10 bytes for the range 0-9', async () => {
    const { stdout } = await execFileAsync('curl', ['-sS', '-r', '0-9', '-o', '-', '-w', '\n%{http_code} %{size_download}', fileUrl('payload/big.bin')], { encoding: 'buffer' });
    const trailer = stdout.subarray(stdout.lastIndexOf(0x0a) + 1).toString();
    assert.equal(trailer, '206 10');
    assert.deepEqual(stdout.subarray(0, 10), big.subarray(0, 10));
  });

  test('curl downloads names with spaces and non-ASCII characters when percent-encoded', async () => {
    for (const p of ['docs/read me.txt', 'docs/ünïcödé ファイル.json']) {
      const out = path.join(root, `curl-${sha256(p).slice(0, 8)}`);
      const { stdout } = await execFileAsync('curl', ['-sS', '-o', out, '-w', '%{http_code}', fileUrl(p)]);
      assert.equal(stdout, '200');
      assert.deepEqual(await fsp.readFile(out), bytesOf(p));
    }
  });

  test('a range in the middle and an open-ended range give the right bytes; an unsatisfiable one 416', async () => {
    const mid = await fetch(fileUrl('payload/big.bin'), { headers: { range: 'bytes=1000000-1000099' } });
    assert.equal(mid.status, 206);
    assert.equal(mid.headers.get('content-range'), `bytes 1000000-1000099/${big.length}`);
    assert.deepEqual(Buffer.from(await mid.arrayBuffer()), big.subarray(1000000, 1000100));
    const tail = await fetch(fileUrl('payload/big.bin'), { headers: { range: `bytes=${big.length - 5}-` } });
    assert.deepEqual(Buffer.from(await tail.arrayBuffer()), big.subarray(big.length - 5));
    const bad = await fetch(fileUrl('setup.msi'), { headers: { range: 'bytes=999999-' } });
    assert.equal(bad.status, 416);
    assert.equal(bad.headers.get('content-range'), `bytes */${bytesOf('setup.msi').length}`);
    await bad.arrayBuffer();
  });

  test('a range is honoured only when If-Range names the file hash', async () => {
    const hash = sha256(big);
    const same = await fetch(fileUrl('payload/big.bin'), { headers: { range: 'bytes=0-9', 'if-range': `"${hash}"` } });
    assert.equal(same.status, 206);
    await same.arrayBuffer();
    const other = await fetch(fileUrl('payload/big.bin'), { headers: { range: 'bytes=0-9', 'if-range': `"${sha256('x')}"` } });
    assert.equal(other.status, 200);
    assert.equal(Buffer.from(await other.arrayBuffer()).length, big.length);
  });

  test('If-None-Match with the file hash gets 304', async () => {
    const res = await fetch(fileUrl('setup.msi'), { headers: { 'if-none-match': `"${sha256(bytesOf('setup.msi'))}"` } });
    assert.equal(res.status, 304);
  });

  test('HEAD gives the Content-Length and no body', async () => {
    const res = await rawGet(dp.url, `/SMS_DP_SMSPKG$/CS100010/payload/big.bin`, 'HEAD');
    assert.equal(res.status, 200);
    assert.equal(res.body, '');
    const viaFetch = await fetch(fileUrl('payload/big.bin'), { method: 'HEAD' });
    assert.equal(viaFetch.headers.get('content-length'), String(big.length));
    const { stdout } = await execFileAsync('curl', ['-sS', '-I', fileUrl('empty.bin')]);
    assert.match(stdout, /^HTTP\/1\.1 200/);
    assert.match(stdout, /content-length: 0\r?\n/i);
  });

  test('the package listing gives every file with an absolute percent-encoded URL built from the Host header', async () => {
    for (const suffix of ['/', '']) {
      const res = await fetch(`${dp.url}/SMS_DP_SMSPKG$/CS100010${suffix}`);
      assert.equal(res.status, 200);
      const listing = (await res.json()) as PackageListing;
      assert.equal(listing.packageId, 'CS100010');
      assert.equal(listing.contentId, 'CS100010.1');
      assert.equal(listing.version, 1);
      assert.equal(listing.hash, def.hash);
      assert.deepEqual(
        listing.files.map((f) => f.path),
        def.files.map((f) => f.path),
      );
      const uni = listing.files.find((f) => f.path === 'docs/ünïcödé ファイル.json');
      assert.equal(uni?.url, `${dp.url}/SMS_DP_SMSPKG$/CS100010/docs/${encodeURIComponent('ünïcödé ファイル.json')}`);
      for (const f of listing.files) {
        const got = Buffer.from(await (await fetch(f.url)).arrayBuffer());
        assert.equal(sha256(got), f.hash, f.path);
      }
    }
    const res = await new Promise<string>((resolve, reject) => {
      const u = new URL(dp.url);
      http
        .get({ hostname: u.hostname, port: u.port, path: '/SMS_DP_SMSPKG$/CS100010/', headers: { host: 'dp1.example:8090' } }, (r) => {
          let text = '';
          r.on('data', (c: Buffer) => (text += c.toString()));
          r.on('end', () => resolve(text));
        })
        .on('error', reject);
    });
    const listing = JSON.parse(res) as PackageListing;
    assert.ok(listing.files.every((f) => f.url.startsWith('http://dp1.example:8090/SMS_DP_SMSPKG$/CS100010/')));
  });

  test('path traversal attempts get 4xx and never file contents', async () => {
    const attempts = [
      '/SMS_DP_SMSPKG$/CS100010/..%2F..%2Fetc%2Fpasswd',
      '/SMS_DP_SMSPKG$/CS100010/../../../../etc/passwd',
      '/SMS_DP_SMSPKG$/CS100010/docs/..%2f..%2f..%2fetc%2fpasswd',
      '/SMS_DP_SMSPKG$/CS100010/%2e%2e/%2e%2e/etc/passwd',
      '/SMS_DP_SMSPKG$/CS100010/docs//read%20me.txt',
      '/SMS_DP_SMSPKG$/CS100010/%2Fetc%2Fpasswd',
      '/SMS_DP_SMSPKG$/..%2F..%2Fetc/passwd',
      '/SMS_DP_SMSPKG$/CS100010/%E0%A4%A',
      '/SMS_DP_SMSPKG$/CS100010/..%5C..%5Cwindows',
    ];
    for (const a of attempts) {
      const res = await rawGet(dp.url, a);
      assert.ok(res.status >= 400 && res.status < 500, `${a} → ${res.status}`);
      assert.doesNotMatch(res.body, /root:/);
      assert.match(JSON.parse(res.body).code as string, /^CAIRN_/);
    }
  });

  test('an unknown package or file is 404 CAIRN_DP_FILE_NOT_FOUND', async () => {
    for (const p of ['/SMS_DP_SMSPKG$/CS1000FF/setup.msi', '/SMS_DP_SMSPKG$/CS100010/nope.txt', '/SMS_DP_SMSPKG$/CS100010/docs', '/SMS_DP_SMSPKG$/CS1000FF/']) {
      const res = await fetch(dp.url + p);
      assert.equal(res.status, 404, p);
      assert.equal(((await res.json()) as { code: string }).code, 'CAIRN_DP_FILE_NOT_FOUND');
    }
  });
});

describe('DP out of disk space', () => {
  test('an upload that fills the disk gets 507 CAIRN_DP_DISK_FULL and the temporary file is deleted', async (t) => {
    const mountPoint = await fsp.mkdtemp(path.join(root, 'tmpfs-'));
    try {
      await execFileAsync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mountPoint]);
    } catch (err) {
      t.skip(`cannot mount a 1 MiB tmpfs to fill (needs root): ${(err as Error).message.split('\n')[0]}`);
      return;
    }
    try {
      const key = newSharedKey();
      const app = await buildDpServer({ dataDir: mountPoint, key });
      await app.listen({ port: 0, host: '127.0.0.1' });
      const addr = app.server.address();
      assert.ok(addr && typeof addr === 'object');
      const url = `http://127.0.0.1:${addr.port}`;
      try {
        const bytes = Buffer.alloc(2 * 1024 * 1024, 7);
        const hash = sha256(bytes);
        const src = path.join(root, 'too-big.bin');
        await fsp.writeFile(src, bytes);
        const client = createDpClient({ url, key });
        await assert.rejects(client.upload(hash, 'CS100020.1', src, bytes.length), (err: unknown) => {
          assert.ok(isCairnError(err));
          assert.equal(err.code, 'CAIRN_DP_DISK_FULL');
          return true;
        });
        assert.equal(await exists(uploadTempPath(mountPoint, hash, 'CS100020.1')), false);
        const log = await fsp.readFile(path.join(mountPoint, 'logs', 'SMSDPProv.log'), 'utf8');
        assert.match(log, /Out of disk space writing file/);
        // Still serving after the failure.
        assert.equal((await client.status()).name.length > 0, true);
      } finally {
        await app.close();
      }
    } finally {
      await execFileAsync('umount', [mountPoint]);
    }
  });
});

describe('cairn dp command', () => {
  test('runs as its own process, says where it listens, serves, and stops cleanly on SIGTERM', async () => {
    const data = await fsp.mkdtemp(path.join(root, 'cmd-'));
    const key = newSharedKey();
    const args = JSON.stringify({ data, port: 0, key, host: '127.0.0.1', name: 'DP-CMD' });
    const child = spawn(process.execPath, ['--import', 'tsx', '-e', `import('./src/cli/dp-command.ts').then((m) => m.runDpCommand(${args})).then(() => console.log('stopped'))`], {
      cwd: path.resolve(import.meta.dirname, '../..'),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const started = Date.now();
      let m: RegExpExecArray | null = null;
      while (!(m = /Cairn distribution point listening on (http:\/\/127\.0\.0\.1:\d+) \(content library (.*)\)/.exec(out)) && Date.now() - started < 20_000) {
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(m, `no listening line in: ${out}`);
      assert.equal(m[2], path.join(data, 'ContentLib'));
      const status = await createDpClient({ url: m[1] ?? '', key }).status();
      assert.equal(status.name, 'DP-CMD');
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0);
    assert.match(out, /stopped/);
    assert.match(await fsp.readFile(path.join(data, 'logs', 'SMSDPProv.log'), 'utf8'), /Distribution point 'DP-CMD' stopped/);
  });
});

describe('DP removal of superseded versions (ADR 0009, amendment 3)', () => {
  const pkg = 'CS100030';
  const file = (p: string, text: string): SourceFile => ({ path: p, bytes: Buffer.from(text) });

  test('[CD4.6] the DP answers a new version first and removes the superseded one after; one a stop left behind goes at the next start', async () => {
    const dp = await startTestDp(root);
    const client = createDpClient({ url: dp.url, key: dp.key });
    const send = async (version: number, files: readonly SourceFile[]): Promise<ContentDefinition> => {
      const made = await makeContent(root, pkg, version, files);
      for (const hash of await client.missing(made.def.files.map((f) => f.hash))) {
        const entry = made.def.files.find((f) => f.hash === hash)!;
        await client.upload(hash, made.def.contentId, made.diskPaths.get(entry.path)!, entry.size);
      }
      return made.def;
    };
    const libRoot = path.join(dp.dataDir, 'ContentLib');
    const logText = (): Promise<string> => fsp.readFile(path.join(dp.dataDir, 'logs', 'SMSDPProv.log'), 'utf8');
    const v1 = await send(1, [file('a.txt', 'shared by every version'), file('b.txt', 'only in version 1')]);
    assert.deepEqual(await client.putContent(v1), { removedContents: [], filesDeleted: 0, supersededContents: [] });
    const v2 = await send(2, [file('a.txt', 'shared by every version'), file('c.txt', 'only in version 2')]);
    // The answer names what goes; it goes after the answer, and the new version serves at once.
    assert.deepEqual(await client.putContent(v2), { removedContents: [], filesDeleted: 0, supersededContents: [`${pkg}.1`] });
    assert.equal((await fetch(`${dp.url}/SMS_DP_SMSPKG$/${pkg}/c.txt`)).status, 200);
    const onlyV1 = v1.files.find((f) => f.path === 'b.txt')!.hash;
    const lib = createContentLibrary(libRoot);
    await waitFor('version 1 removed', async () => !fs.existsSync(lib.filePath(onlyV1)) && (await logText()).includes(`Removed content '${pkg}.1' of package '${pkg}' (superseded by '${pkg}.2')`));
    assert.deepEqual(await lib.listContents(pkg), [`${pkg}.2`]);
    assert.ok(fs.existsSync(lib.filePath(v1.files.find((f) => f.path === 'a.txt')!.hash)), 'a file the current version uses stays');
    await dp.close();

    // A DP stopped after answering version 3 and before removing version 2: the library holds both, PkgLib names 3.
    const made = await makeContent(root, pkg, 3, [file('a.txt', 'shared by every version'), file('d.txt', 'only in version 3')]);
    const d = made.def.files.find((f) => f.path === 'd.txt')!;
    const copy = path.join(root, `d-${Date.now()}.tmp`);
    await fsp.copyFile(made.diskPaths.get('d.txt')!, copy);
    await lib.adoptFile(copy, d.hash);
    await lib.addContent(made.def);
    assert.deepEqual(await lib.listContents(pkg), [`${pkg}.2`, `${pkg}.3`]);
    const again = await buildDpServer({ dataDir: dp.dataDir, key: dp.key, name: 'DP-TEST' });
    try {
      const onlyV2 = v2.files.find((f) => f.path === 'c.txt')!.hash;
      await waitFor('version 2 removed at start', async () => (await lib.listContents(pkg)).length === 1 && !fs.existsSync(lib.filePath(onlyV2)));
      assert.deepEqual(await lib.listContents(pkg), [`${pkg}.3`]);
      const log = await logText();
      assert.ok(log.includes(`Finishing the removal of 1 superseded content(s) left by an earlier run: ${pkg}.2`), log.slice(-2000));
      assert.ok(log.includes(`Removed content '${pkg}.2' of package '${pkg}' (superseded by '${pkg}.3')`));
      assert.equal((await lib.currentContent(pkg))?.contentId, `${pkg}.3`);
    } finally {
      await again.close();
    }
  });
});
