/**
 * Large files as chunks in the content library (ADR 0009) on real folders:
 * manifests adopted only over present chunks with the right whole-file hash,
 * readers (whole and ranges) yielding the file's bytes, chunks shared by
 * files kept until no manifest names them, a removal cut short finished by
 * `recover()`, and validation of chunks and the whole.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { ChunksMissingError, createContentLibrary } from '../../src/content-library/content-library.ts';
import { chunkBuffer } from '../../src/content-library/chunker.ts';
import { formatManifest, manifestOf, parseManifestText } from '../../src/content-library/chunk-lib.ts';
import type { FileManifest } from '../../src/content-library/chunk-lib.ts';
import { parseRange } from '../../src/dp/dp-server.ts';
import { storeChunk } from '../../src/content-library/hash-worker.ts';
import { definitionHash } from '../../src/content-library/definition.ts';
import type { ContentDefinition, ContentLibrary } from '../../src/content-library/types.ts';
import { CairnError } from '../../src/shared/errors.ts';

const MTIME = '2024-05-01T12:00:00.000Z';

function sha(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex').toUpperCase();
}

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cairn-chunks-'));
  t.after(() => fsp.rm(dir, { recursive: true, force: true }));
  return dir;
}

/** The file's manifest, with full chunk hashes (the chunker's are truncated for signatures). */
function manifestFor(data: Buffer): FileManifest {
  let at = 0;
  const chunks = chunkBuffer(data).map(([len]) => {
    const c = [len, sha(data.subarray(at, at + len))] as const;
    at += len;
    return c;
  });
  return manifestOf(sha(data), chunks);
}

/** Stores a file's chunks the way the hash workers do, and returns its manifest. */
function storeChunks(lib: ContentLibrary, data: Buffer, skip: (i: number) => boolean = () => false): FileManifest {
  const m = manifestFor(data);
  m.chunks.forEach((c, i) => {
    if (!skip(i)) storeChunk(lib.chunkDir, c.hash, data.subarray(c.offset, c.offset + c.length), false);
  });
  return m;
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of stream) parts.push(p as Buffer);
  return Buffer.concat(parts);
}

function content(packageId: string, version: number, files: { path: string; data: Buffer }[]): ContentDefinition {
  const entries = files.map((f) => ({ path: f.path, hash: sha(f.data), size: f.data.length, mode: 0o644, mtime: MTIME })).sort((a, b) => (a.path < b.path ? -1 : 1));
  const draft = { contentId: `${packageId}.${version}`, packageId, version, size: entries.reduce((n, f) => n + f.size, 0), folders: [], files: entries };
  return { ...draft, hash: definitionHash(draft) };
}

test('a manifest is adopted only when every chunk is present and the chunks hash to the file, then reads back whole and in ranges', async (t) => {
  const lib = createContentLibrary(await tempDir(t));
  const data = randomBytes(3 * 1024 * 1024 + 12345);
  const m = storeChunks(lib, data, (i) => i === 3);
  assert.ok(m.chunks.length > 20);

  await assert.rejects(lib.adoptManifest(m, { verify: true }), (err: unknown) => err instanceof ChunksMissingError && err.code === 'CAIRN_DP_CONTENT_INCOMPLETE' && err.missing[0] === m.chunks[3]!.hash);
  assert.equal(await lib.hasFile(m.hash), false);

  const c = m.chunks[3]!;
  storeChunk(lib.chunkDir, c.hash, data.subarray(c.offset, c.offset + c.length), false);
  // A manifest naming present chunks under another file's hash is refused.
  const lie = { ...m, hash: sha(Buffer.from('something else')) };
  await assert.rejects(lib.adoptManifest(lie, { verify: true }), (err: unknown) => err instanceof CairnError && err.code === 'CAIRN_DP_HASH_MISMATCH');
  assert.equal(await lib.hasFile(lie.hash), false);

  await lib.adoptManifest(m, { verify: true });
  assert.equal(await lib.hasFile(m.hash), true);
  assert.deepEqual(await lib.missingFiles([m.hash]), []);
  assert.deepEqual(parseManifestText(await fsp.readFile(lib.filePath(m.hash)), m.hash), m);
  assert.equal((await lib.statFile(m.hash))?.size, data.length);

  assert.ok((await readAll((await lib.openFileReader(m.hash)).stream)).equals(data));
  for (const [start, end] of [[0, 0], [1, 100_000], [c.offset - 1, c.offset + c.length], [data.length - 1, data.length - 1], [m.chunks[5]!.offset, m.chunks[5]!.offset + m.chunks[5]!.length - 1]] as const) {
    const r = await lib.openFileReader(m.hash, { start, end });
    assert.ok((await readAll(r.stream)).equals(data.subarray(start, end + 1)), `range ${start}-${end}`);
  }
});

test('a file whose bytes look like a manifest of another hash is read as plain bytes', async (t) => {
  const lib = createContentLibrary(await tempDir(t));
  const fake = Buffer.from(formatManifest({ hash: sha(Buffer.from('x')), size: 1, chunks: [{ offset: 0, length: 1, hash: sha(Buffer.from('x')) }] }));
  const hash = sha(fake);
  await fsp.mkdir(path.dirname(lib.filePath(hash)), { recursive: true });
  await fsp.writeFile(lib.filePath(hash), fake);
  assert.equal(await lib.readManifest(hash), undefined);
  assert.ok((await readAll((await lib.openFileReader(hash)).stream)).equals(fake));
});

test('removing a content deletes the chunks only it used and keeps those another file shares', async (t) => {
  const lib = createContentLibrary(await tempDir(t));
  const a = randomBytes(2 * 1024 * 1024);
  // b is a with 64 KiB changed in the middle: most chunks are shared.
  const b = Buffer.from(a);
  randomBytes(64 * 1024).copy(b, 1024 * 1024);
  const ma = storeChunks(lib, a);
  const mb = storeChunks(lib, b);
  await lib.adoptManifest(ma, { verify: true });
  await lib.adoptManifest(mb, { verify: true });
  await lib.addContent(content('CS100001', 1, [{ path: 'a.bin', data: a }]));
  await lib.addContent(content('CS100002', 1, [{ path: 'b.bin', data: b }]));
  const onlyA = ma.chunks.filter((c) => !mb.chunks.some((x) => x.hash === c.hash));
  const shared = ma.chunks.filter((c) => mb.chunks.some((x) => x.hash === c.hash));
  assert.ok(onlyA.length > 0 && shared.length > 10);

  const r = await lib.removePackage('CS100001');
  assert.equal(r.filesDeleted, 1);
  assert.equal(await lib.hasFile(ma.hash), false);
  assert.deepEqual(await lib.missingChunks(onlyA.map((c) => c.hash)), onlyA.map((c) => c.hash));
  assert.deepEqual(await lib.missingChunks(mb.chunks.map((c) => c.hash)), []);
  assert.ok((await readAll((await lib.openFileReader(mb.hash)).stream)).equals(b));

  await lib.removePackage('CS100002');
  assert.deepEqual(await fsp.readdir(path.join(lib.chunkDir, 'Files')), []);
  assert.equal((await lib.missingChunks(mb.chunks.map((c) => c.hash))).length, new Set(mb.chunks.map((c) => c.hash)).size);
});

test('a removal killed after the manifest went is finished by recover(): its chunks go, a still-used file keeps its own', async (t) => {
  const root = await tempDir(t);
  const lib = createContentLibrary(root);
  const a = randomBytes(2 * 1024 * 1024);
  const b = randomBytes(2 * 1024 * 1024);
  const ma = storeChunks(lib, a);
  const mb = storeChunks(lib, b);
  await lib.adoptManifest(ma, { verify: false });
  await lib.adoptManifest(mb, { verify: false });
  // What a process killed between deleting a's manifest and collecting its chunks leaves.
  await fsp.rm(lib.filePath(ma.hash));
  // And chunks half-written into ChunkLib/.tmp.
  await fsp.mkdir(path.join(lib.chunkDir, '.tmp'), { recursive: true });
  await fsp.writeFile(path.join(lib.chunkDir, '.tmp', 'partial'), 'half');

  const again = createContentLibrary(root);
  const r = await again.recover();
  assert.equal(r.referencesCollected, 1);
  assert.equal(r.chunksDeleted, new Set(ma.chunks.map((c) => c.hash)).size);
  assert.deepEqual(await fsp.readdir(path.join(lib.chunkDir, 'Files')), [mb.hash]);
  assert.deepEqual(await again.missingChunks(mb.chunks.map((c) => c.hash)), []);
  await assert.rejects(fsp.stat(path.join(lib.chunkDir, '.tmp')));
  assert.ok((await readAll((await again.openFileReader(mb.hash)).stream)).equals(b));
});

test('validation re-hashes every chunk and the whole file: a missing chunk and a damaged one are reported', async (t) => {
  const lib = createContentLibrary(await tempDir(t));
  const data = randomBytes(2 * 1024 * 1024);
  const m = storeChunks(lib, data);
  await lib.adoptManifest(m, { verify: true });
  await lib.addContent(content('CS100003', 1, [{ path: 'big.bin', data }]));
  assert.deepEqual(await lib.validateContent('CS100003.1'), []);

  const damaged = m.chunks[2]!;
  const bytes = await fsp.readFile(lib.chunkPath(damaged.hash));
  bytes[0] = bytes[0]! ^ 0xff;
  await fsp.writeFile(lib.chunkPath(damaged.hash), bytes);
  let problems = await lib.validateContent('CS100003.1');
  assert.equal(problems.length, 1);
  assert.equal(problems[0]!.problem, 'hash mismatch');
  assert.equal(problems[0]!.chunk, damaged.hash);

  await fsp.rm(lib.chunkPath(m.chunks[0]!.hash));
  problems = await lib.validateContent('CS100003.1');
  assert.equal(problems[0]!.problem, 'missing');
  assert.equal(problems[0]!.chunk, m.chunks[0]!.hash);
});

test('parseRange: one range, suffix and open ranges; several or malformed serve the whole; outside is unsatisfiable', () => {
  assert.deepEqual(parseRange('bytes=0-9', 100), { start: 0, end: 9 });
  assert.deepEqual(parseRange('bytes=90-', 100), { start: 90, end: 99 });
  assert.deepEqual(parseRange('bytes=-10', 100), { start: 90, end: 99 });
  assert.deepEqual(parseRange('bytes=50-500', 100), { start: 50, end: 99 });
  assert.equal(parseRange('bytes=100-', 100), 'unsatisfiable');
  assert.equal(parseRange('bytes=0-1,5-6', 100), undefined);
  assert.equal(parseRange('items=0-1', 100), undefined);
});

test('a manifest of extents: adopted only over a whole file it reads from, verified, read back in ranges, and refused when the bytes differ', async (t) => {
  const lib = createContentLibrary(await tempDir(t));
  const a = randomBytes(2 * 1024 * 1024);
  const b = Buffer.from(a);
  randomBytes(10_000).copy(b, 1_000_000);
  const ma = manifestFor(a);
  const mbPlain = manifestFor(b);
  // b's chunks that a also has become extents of a; the rest go to ChunkLib.
  const aAt = new Map(ma.chunks.map((c) => [c.hash, c.offset] as const));
  const mb: FileManifest = {
    ...mbPlain,
    chunks: mbPlain.chunks.map((c) => (aAt.has(c.hash) ? { ...c, src: { file: ma.hash, offset: aAt.get(c.hash)! } } : c)),
  };
  assert.ok(mb.chunks.filter((c) => !c.src).length >= 1 && mb.chunks.filter((c) => c.src).length > 20);
  for (const c of mb.chunks) if (!c.src) storeChunk(lib.chunkDir, c.hash, b.subarray(c.offset, c.offset + c.length), false);
  // The text form carries the extents and parses back to the same manifest.
  assert.deepEqual(parseManifestText(Buffer.from(formatManifest(mb)), mb.hash), mb);

  // a is not in the library yet: refused, naming it.
  await assert.rejects(lib.adoptManifest(mb, { verify: true }), (err: unknown) => err instanceof ChunksMissingError && err.sources[0] === ma.hash && err.missing.length === 0);
  const temp = path.join(lib.root, 'a.tmp');
  await fsp.writeFile(temp, a);
  await lib.adoptFile(temp, ma.hash);
  // Extents pointing at the wrong bytes of a: the whole-file check refuses the manifest.
  const shifted: FileManifest = { ...mb, hash: sha(Buffer.from('not b')), chunks: mb.chunks.map((c) => (c.src ? { ...c, src: { file: c.src.file, offset: c.src.offset + 1 } } : c)) };
  await assert.rejects(lib.adoptManifest(shifted, { verify: true }), (err: unknown) => err instanceof CairnError && err.code === 'CAIRN_DP_HASH_MISMATCH');
  await lib.adoptManifest(mb, { verify: true });
  assert.ok((await readAll((await lib.openFileReader(mb.hash)).stream)).equals(b));
  assert.ok((await readAll((await lib.openFileReader(mb.hash, { start: 999_990, end: 1_200_000 })).stream)).equals(b.subarray(999_990, 1_200_001)));

  // a's content goes: a stays, read by b's manifest; b's goes too: both go.
  await lib.addContent(content('CS100003', 1, [{ path: 'a.bin', data: a }]));
  await lib.addContent(content('CS100004', 1, [{ path: 'b.bin', data: b }]));
  await lib.removePackage('CS100003');
  assert.equal(await lib.hasFile(ma.hash), true);
  assert.deepEqual(await lib.validateContent('CS100004.1'), []);
  // Damage a byte of a inside an extent b reads: validation names the chunk.
  const fd = await fsp.open(lib.filePath(ma.hash), 'r+');
  await fd.write(Buffer.from([a[10]! ^ 0xff]), 0, 1, 10);
  await fd.close();
  const problems = await lib.validateContent('CS100004.1');
  assert.equal(problems[0]?.problem, 'hash mismatch');
  assert.equal(problems[0]?.chunk, mb.chunks[0]!.hash);
  const r = await lib.removePackage('CS100004');
  assert.equal(r.filesDeleted, 2);
  assert.equal(await lib.hasFile(ma.hash), false);
});

test('a manifest whose extents read past the end of a (shorter) whole file is refused; an adoption flushes only the chunks it names outside its extents', async (t) => {
  const lib = createContentLibrary(await tempDir(t));
  const a = randomBytes(2 * 1024 * 1024);
  const b = Buffer.from(a);
  randomBytes(10_000).copy(b, 500_000);
  const ma = manifestFor(a);
  const mbPlain = manifestFor(b);
  const aAt = new Map(ma.chunks.map((c) => [c.hash, c.offset] as const));
  const mb: FileManifest = { ...mbPlain, chunks: mbPlain.chunks.map((c) => (aAt.has(c.hash) ? { ...c, src: { file: ma.hash, offset: aAt.get(c.hash)! } } : c)) };
  const own = mb.chunks.filter((c) => !c.src);
  for (const c of own) storeChunk(lib.chunkDir, c.hash, b.subarray(c.offset, c.offset + c.length), false);
  // FileLib holds a's name over fewer bytes (a damaged library): the runs of extents at its end come up short.
  const temp = path.join(lib.root, 'a.tmp');
  await fsp.writeFile(temp, a.subarray(0, a.length - 70_000));
  await lib.adoptFile(temp, ma.hash);
  await assert.rejects(lib.adoptManifest(mb, { verify: true }), (err: unknown) => err instanceof CairnError && err.code === 'CAIRN_DP_HASH_MISMATCH');
  assert.equal(await lib.hasFile(mb.hash), false);
  // With a's real bytes it is adopted, and only its own chunks were flushed.
  await fsp.writeFile(temp, a);
  await lib.adoptFile(temp, ma.hash, { replace: true });
  const cost = await lib.adoptManifest(mb, { verify: true });
  assert.equal(cost.flushed, new Set(own.map((c) => c.hash)).size);
  assert.ok((await readAll((await lib.openFileReader(mb.hash)).stream)).equals(b));
  // Adopting it again finds it held: nothing is flushed.
  assert.equal((await lib.adoptManifest(mb, { verify: false })).flushed, 0);
});
