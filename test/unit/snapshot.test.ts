/**
 * Snapshots of real source folders in temporary directories (no mocks): the
 * definition and the FileLib copies, block signatures, the refusal of links
 * that escape and of entries that cannot be distributed, and the hash pool.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { createContentLibrary } from '../../src/content-library/content-library.ts';
import { definitionHash } from '../../src/content-library/definition.ts';
import { HashPool } from '../../src/content-library/hash-pool.ts';
import { readSignatures, readSourceIndex, signatureHash, snapshotFolder, writeSignatures, writeSourceIndex } from '../../src/content-library/snapshot.ts';
import { chunkBuffer } from '../../src/content-library/chunker.ts';
import { CairnError } from '../../src/shared/errors.ts';

const MiB = 1024 * 1024;

function sha(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex').toUpperCase();
}

async function setup(t: { after: (fn: () => Promise<void>) => void }): Promise<{ src: string; root: string }> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cairn-snap-'));
  t.after(() => fsp.rm(dir, { recursive: true, force: true }));
  const src = path.join(dir, 'source');
  await fsp.mkdir(src);
  return { src, root: path.join(dir, 'lib') };
}

async function write(src: string, rel: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const file = path.join(src, rel);
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await fsp.writeFile(file, data);
  await fsp.chmod(file, mode);
}

function isCode(code: string, detail?: RegExp): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof CairnError, `expected a CairnError, got ${String(err)}`);
    assert.equal(err.code, code);
    if (detail) assert.match(err.message, detail);
    return true;
  };
}

async function tempLeftovers(root: string): Promise<string[]> {
  try {
    return await fsp.readdir(path.join(root, 'FileLib', '.tmp'));
  } catch {
    return [];
  }
}

test('a snapshot lists nested and empty folders and every file, and stores each file in FileLib', async (t) => {
  const { src, root } = await setup(t);
  const big = randomBytes(3 * MiB + 123);
  await write(src, 'top.txt', 'top');
  await write(src, 'nested/deeper/deepest/leaf.bin', big, 0o600);
  await write(src, 'with space/ünïcödé ✓ 名前.txt', 'unicode name', 0o755);
  await write(src, '.hidden/.env', 'dot');
  await write(src, 'empty file', '');
  await fsp.mkdir(path.join(src, 'empty folder'));
  const mtime = new Date('2023-03-04T05:06:07.089Z');
  await fsp.utimes(path.join(src, 'top.txt'), mtime, mtime);

  const lib = createContentLibrary(root);
  const seen: string[] = [];
  const result = await snapshotFolder(lib, src, { packageId: 'CS100010', version: 3, onFile: (p) => seen.push(p) });
  const def = result.definition;

  assert.equal(def.contentId, 'CS100010.3');
  assert.equal(def.packageId, 'CS100010');
  assert.equal(def.version, 3);
  assert.deepEqual(def.folders, ['.hidden', 'empty folder', 'nested', 'nested/deeper', 'nested/deeper/deepest', 'with space']);
  assert.deepEqual(
    def.files.map((f) => [f.path, f.hash, f.size, f.mode]),
    [
      ['.hidden/.env', sha('dot'), 3, 0o644],
      ['empty file', sha(''), 0, 0o644],
      ['nested/deeper/deepest/leaf.bin', sha(big), big.length, 0o600],
      ['top.txt', sha('top'), 3, 0o644],
      ['with space/ünïcödé ✓ 名前.txt', sha('unicode name'), 12, 0o755],
    ],
  );
  assert.equal(def.files.find((f) => f.path === 'top.txt')?.mtime, '2023-03-04T05:06:07.089Z');
  assert.equal(def.size, 3 + 0 + big.length + 3 + 12);
  assert.equal(def.hash, definitionHash(def));
  assert.equal(result.bytesRead, def.size);
  assert.deepEqual([...seen].sort(), def.files.map((f) => f.path));
  for (const f of def.files) {
    // A first snapshot stores every file whole (ADR 0009 as amended); the reader yields its bytes.
    const parts: Buffer[] = [];
    for await (const p of (await lib.openFileReader(f.hash)).stream) parts.push(p as Buffer);
    assert.ok(sha(Buffer.concat(parts)) === f.hash, `FileLib copy of ${f.path} has the wrong bytes`);
    assert.equal(await lib.readManifest(f.hash), undefined, `${f.path} is stored whole`);
  }
  assert.deepEqual(await tempLeftovers(root), []);

  // The snapshot does not record the content; the caller does.
  assert.equal(await lib.getContent('CS100010.3'), undefined);
  await lib.addContent(def);
  assert.deepEqual(await createContentLibrary(root).getContent('CS100010.3'), def);
});

test('identical files in a source are stored once and their companion list names the content', async (t) => {
  const { src, root } = await setup(t);
  await write(src, 'a/copy.txt', 'twin');
  await write(src, 'b/copy.txt', 'twin');
  await write(src, 'c.txt', 'twin');
  const lib = createContentLibrary(root);
  const { definition, signatures } = await snapshotFolder(lib, src, { packageId: 'CS100011', version: 1 });
  await lib.addContent(definition);
  const hash = sha('twin');
  assert.deepEqual(definition.files.map((f) => f.hash), [hash, hash, hash]);
  assert.deepEqual(await fsp.readdir(path.join(root, 'FileLib')), ['.tmp', hash.slice(0, 4)]);
  assert.deepEqual(await fsp.readdir(path.join(root, 'FileLib', hash.slice(0, 4))), [hash, `${hash}.INI`]);
  assert.deepEqual(await lib.fileReferences(hash), ['CS100011.1']);
  assert.equal(signatures.length, 0);
});

test('a 2.5 MiB file gets a signature of content-defined chunks covering its bytes; a small file gets none', async (t) => {
  const { src, root } = await setup(t);
  const data = randomBytes(2.5 * MiB);
  await write(src, 'blocks.bin', data);
  await write(src, 'small.txt', 'small');
  const { signatures } = await snapshotFolder(createContentLibrary(root), src, { packageId: 'CS100012', version: 1 });
  const sig = signatures.find((s) => s.hash === sha(data));
  assert.ok(sig);
  assert.equal(sig.size, data.length);
  // The worker streams through 1 MiB reads; cutting the whole buffer at once must give the same chunks.
  assert.deepEqual(sig.chunks, chunkBuffer(data));
  assert.equal(signatures.length, 1);
});

test('signatures survive a write and read in SigLib, and their hash ignores their order', async (t) => {
  const { src, root } = await setup(t);
  await write(src, 'a', randomBytes(MiB + 1));
  await write(src, 'b', randomBytes(2 * MiB));
  await write(src, 'c', '');
  const { signatures } = await snapshotFolder(createContentLibrary(root), src, { packageId: 'CS100013', version: 2 });
  await writeSignatures(root, 'CS100013.2', signatures);
  assert.equal(fs.existsSync(path.join(root, 'SigLib', 'CS100013.2.json')), true);
  assert.deepEqual(await readSignatures(root, 'CS100013.2'), signatures);
  assert.equal(await readSignatures(root, 'CS100013.1'), undefined);
  const h = signatureHash(signatures);
  assert.match(h, /^[0-9A-F]{64}$/);
  assert.equal(signatureHash([...signatures].reverse()), h);
  const changed = signatures.map((s, i) => (i === 0 ? { ...s, chunks: [...s.chunks.slice(1), s.chunks[0]!] } : s));
  assert.notEqual(signatureHash(changed), h);
});

test('a symbolic link that leads outside the source is refused, naming the link', async (t) => {
  const { src, root } = await setup(t);
  const outside = path.join(path.dirname(src), 'outside.txt');
  await fsp.writeFile(outside, 'secret');
  await write(src, 'ok.txt', 'ok');
  await fsp.mkdir(path.join(src, 'sub'));
  await fsp.symlink('../../outside.txt', path.join(src, 'sub', 'sneaky link'));
  await assert.rejects(
    snapshotFolder(createContentLibrary(root), src, { packageId: 'CS100014', version: 1 }),
    isCode('CAIRN_PACKAGE_SOURCE_ESCAPES', /sub\/sneaky link/),
  );
});

test('a symbolic link to a file inside the source is stored as that file; one to a folder is refused', async (t) => {
  const { src, root } = await setup(t);
  await write(src, 'real/target.txt', 'target bytes', 0o640);
  await fsp.symlink('real/target.txt', path.join(src, 'alias.txt'));
  const lib = createContentLibrary(root);
  const { definition } = await snapshotFolder(lib, src, { packageId: 'CS100015', version: 1 });
  const alias = definition.files.find((f) => f.path === 'alias.txt');
  assert.deepEqual(alias && { hash: alias.hash, size: alias.size, mode: alias.mode }, { hash: sha('target bytes'), size: 12, mode: 0o640 });

  await fsp.symlink('real', path.join(src, 'folder link'));
  await assert.rejects(snapshotFolder(lib, src, { packageId: 'CS100015', version: 2 }), isCode('CAIRN_PACKAGE_SOURCE_UNREADABLE', /folder link/));
});

test('a missing source folder is CAIRN_PACKAGE_SOURCE_MISSING; a file in its place is unreadable', async (t) => {
  const { src, root } = await setup(t);
  const lib = createContentLibrary(root);
  const missing = path.join(src, 'not there');
  await assert.rejects(snapshotFolder(lib, missing, { packageId: 'CS100016', version: 1 }), isCode('CAIRN_PACKAGE_SOURCE_MISSING', /not there/));
  await write(src, 'plain.txt', 'x');
  await assert.rejects(
    snapshotFolder(lib, path.join(src, 'plain.txt'), { packageId: 'CS100016', version: 1 }),
    isCode('CAIRN_PACKAGE_SOURCE_UNREADABLE', /plain\.txt: not a folder/),
  );
});

test('a FIFO in the source is refused as unreadable', { skip: process.platform === 'win32' }, async (t) => {
  const { src, root } = await setup(t);
  await write(src, 'ok.txt', 'ok');
  execFileSync('mkfifo', [path.join(src, 'pipe')]);
  await assert.rejects(snapshotFolder(createContentLibrary(root), src, { packageId: 'CS100017', version: 1 }), isCode('CAIRN_PACKAGE_SOURCE_UNREADABLE', /pipe: a FIFO/));
});

test('a name with a newline is refused as unreadable', async (t) => {
  const { src, root } = await setup(t);
  await write(src, 'bad\nname.txt', 'x');
  await assert.rejects(snapshotFolder(createContentLibrary(root), src, { packageId: 'CS100018', version: 1 }), isCode('CAIRN_PACKAGE_SOURCE_UNREADABLE', /control character/));
});

test('a folder or file the server may not read is refused as unreadable', { skip: process.getuid?.() === 0 ? 'root reads every folder' : false }, async (t) => {
  const { src, root } = await setup(t);
  await write(src, 'locked/inside.txt', 'x');
  await fsp.chmod(path.join(src, 'locked'), 0o000);
  try {
    await assert.rejects(snapshotFolder(createContentLibrary(root), src, { packageId: 'CS100019', version: 1 }), isCode('CAIRN_PACKAGE_SOURCE_UNREADABLE', /locked: EACCES/));
  } finally {
    // Put the permission back, or the clean-up could not delete the folder.
    await fsp.chmod(path.join(src, 'locked'), 0o755);
  }
  await write(src, 'locked/secret.txt', 'x', 0o000);
  await assert.rejects(snapshotFolder(createContentLibrary(root), src, { packageId: 'CS100019', version: 1 }), isCode('CAIRN_PACKAGE_SOURCE_UNREADABLE', /secret\.txt: EACCES/));
  assert.deepEqual(await tempLeftovers(root), []);
});

test('a file that vanishes before it is read fails the snapshot and leaves no temporary file', async (t) => {
  const { src, root } = await setup(t);
  const pool = new HashPool(1);
  t.after(() => pool.close());
  for (let i = 0; i < 20; i++) await write(src, `f${String(i).padStart(2, '0')}`, randomBytes(64 * 1024));
  let deleted = false;
  const promise = snapshotFolder(createContentLibrary(root), src, {
    packageId: 'CS10001A',
    version: 1,
    pool,
    onFile: () => {
      // With one worker the last files are still queued when the first is done.
      if (!deleted) fs.rmSync(path.join(src, 'f19'));
      deleted = true;
    },
  });
  await assert.rejects(promise, isCode('CAIRN_PACKAGE_SOURCE_UNREADABLE', /f19: the file disappeared/));
  assert.deepEqual(await tempLeftovers(root), []);
});

test('the hash pool answers a failing file without affecting the next task, and lets go of the process when idle', async (t) => {
  const { src } = await setup(t);
  const pool = new HashPool(1);
  t.after(() => pool.close());
  const bad = await pool.hashFile(path.join(src, 'nope'));
  assert.deepEqual(bad.ok ? 'ok' : [bad.code, bad.side], ['ENOENT', 'source']);
  await write(src, 'yes', 'yes');
  const good = await pool.hashFile(path.join(src, 'yes'));
  assert.deepEqual(good.ok ? [good.hash, good.size, good.chunks] : good, [sha('yes'), 3, undefined]);
  await pool.close();
  await assert.rejects(pool.hashFile(path.join(src, 'yes')), /closed/);
});

test('an update snapshot reads only files whose size, time or mode changed, and keeps the rest from the previous version', async (t) => {
  const { src, root } = await setup(t);
  const big = randomBytes(2 * MiB);
  await write(src, 'big.bin', big);
  await write(src, 'same.txt', 'same');
  await write(src, 'edit.txt', 'before');
  const lib = createContentLibrary(root);
  const v1 = await snapshotFolder(lib, src, { packageId: 'CS100020', version: 1 });
  await lib.addContent(v1.definition);
  await write(src, 'edit.txt', 'after!');
  const future = new Date(Date.now() + 5000);
  await fsp.utimes(path.join(src, 'edit.txt'), future, future);
  const v2 = await snapshotFolder(lib, src, { packageId: 'CS100020', version: 2, previous: { definition: v1.definition, signatures: v1.signatures } });
  assert.equal(v2.filesUnchanged, 2);
  assert.equal(v2.bytesRead, 'after!'.length);
  assert.deepEqual(v2.definition.files.map((f) => [f.path, f.hash]), [['big.bin', sha(big)], ['edit.txt', sha('after!')], ['same.txt', sha('same')]]);
  assert.deepEqual(v2.signatures, v1.signatures, 'the unchanged large file keeps its signature');
  // Without the previous version every file is read.
  const v3 = await snapshotFolder(lib, src, { packageId: 'CS100020', version: 3 });
  assert.equal(v3.filesUnchanged, 0);
  assert.equal(v3.bytesRead, big.length + 4 + 6);
});

test('a large file is stored whole; a new version of it becomes extents of the old file plus its new chunks, flattened on the next version, and the old file stays while a manifest reads from it', async (t) => {
  const { src, root } = await setup(t);
  const lib = createContentLibrary(root);
  const big = randomBytes(4 * 1024 * 1024);
  const v1Bytes = Buffer.from(big);
  await write(src, 'big.bin', big);
  const v1 = await snapshotFolder(lib, src, { packageId: 'CS100009', version: 1 });
  await lib.addContent(v1.definition);
  assert.equal(await lib.readManifest(sha(v1Bytes)), undefined, 'a file seen whole is stored whole');
  assert.equal(v1.chunksWritten, 0);
  assert.deepEqual(await fsp.readFile(lib.filePath(sha(v1Bytes))), v1Bytes);

  randomBytes(64 * 1024).copy(big, 2 * 1024 * 1024);
  const v2Bytes = Buffer.from(big);
  await write(src, 'big.bin', big);
  const v2 = await snapshotFolder(lib, src, { packageId: 'CS100009', version: 2, previous: { definition: v1.definition, signatures: v1.signatures } });
  await lib.addContent(v2.definition);
  const m2 = await lib.readManifest(sha(v2Bytes));
  assert.ok(m2, 'the new version is a manifest');
  const fresh2 = m2.chunks.filter((c) => !c.src);
  assert.equal(v2.chunksWritten, fresh2.length);
  assert.ok(fresh2.length >= 1 && fresh2.length <= 8, `${fresh2.length} new chunks for 64 KiB changed`);
  assert.ok(m2.chunks.filter((c) => c.src).every((c) => c.src!.file === sha(v1Bytes)));
  // Chunked against v1's signature, yet exactly as the chunker would over the whole file.
  assert.deepEqual(v2.signatures.find((x) => x.hash === sha(v2Bytes))?.chunks, chunkBuffer(v2Bytes));
  assert.deepEqual(await readAll((await lib.openFileReader(sha(v2Bytes))).stream), v2Bytes);
  assert.deepEqual(await readAll((await lib.openFileReader(sha(v2Bytes), { start: 2 * 1024 * 1024 - 10, end: 2 * 1024 * 1024 + 70 * 1024 })).stream), v2Bytes.subarray(2 * 1024 * 1024 - 10, 2 * 1024 * 1024 + 70 * 1024 + 1));

  // The next version reads from the whole v1 file and ChunkLib, never from v2's manifest.
  randomBytes(64 * 1024).copy(big, 512 * 1024);
  const v3Bytes = Buffer.from(big);
  await write(src, 'big.bin', big);
  const v3 = await snapshotFolder(lib, src, { packageId: 'CS100009', version: 3, previous: { definition: v2.definition, signatures: v2.signatures } });
  await lib.addContent(v3.definition);
  const m3 = await lib.readManifest(sha(v3Bytes));
  assert.ok(m3);
  assert.ok(m3.chunks.every((c) => !c.src || c.src.file === sha(v1Bytes)), 'flattened');
  assert.deepEqual(v3.signatures.find((x) => x.hash === sha(v3Bytes))?.chunks, chunkBuffer(v3Bytes));
  assert.ok(m3.chunks.filter((c) => !c.src).length <= 16);
  assert.deepEqual(await readAll((await lib.openFileReader(sha(v3Bytes))).stream), v3Bytes);

  // Removing v1 and v2 keeps v1's bytes (v3 reads from them); removing v3 lets them go.
  await lib.removeContent(v1.definition.contentId);
  await lib.removeContent(v2.definition.contentId);
  assert.equal(await lib.hasFile(sha(v1Bytes)), true, 'still read by v3');
  assert.equal(await lib.hasFile(sha(v2Bytes)), false);
  assert.deepEqual(await lib.validateContent(v3.definition.contentId), []);
  const r = await lib.removeContent(v3.definition.contentId);
  assert.equal(await lib.hasFile(sha(v1Bytes)), false, 'no manifest reads from it any more');
  assert.equal(await lib.hasFile(sha(v3Bytes)), false);
  assert.ok(r.filesDeleted >= 2);
  const left = (await fsp.readdir(lib.chunkDir, { recursive: true })).filter((n) => /[0-9A-F]{64}$/.test(n));
  assert.deepEqual(left, [], 'no chunk left');
});

test('a new version with bytes inserted and removed is chunked as the chunker would, and shares the shifted chunks as extents', async (t) => {
  const { src, root } = await setup(t);
  const lib = createContentLibrary(root);
  // Seeded bytes: how many chunks an edit disturbs depends on the data, so the figure below is the same at every run.
  const v1Bytes = seededBytes('v1', 3 * 1024 * 1024 + 777);
  await write(src, 'big.bin', v1Bytes);
  const v1 = await snapshotFolder(lib, src, { packageId: 'CS100011', version: 1 });
  await lib.addContent(v1.definition);
  // 5,000 bytes inserted near the start, 70,000 removed in the middle, the tail cut by 100 bytes.
  const v2Bytes = Buffer.concat([v1Bytes.subarray(0, 100_000), seededBytes('inserted', 5000), v1Bytes.subarray(100_000, 1_500_000), v1Bytes.subarray(1_570_000, v1Bytes.length - 100)]);
  await write(src, 'big.bin', v2Bytes);
  const v2 = await snapshotFolder(lib, src, { packageId: 'CS100011', version: 2, previous: { definition: v1.definition, signatures: v1.signatures } });
  assert.equal(v2.definition.files[0]?.hash, sha(v2Bytes));
  assert.deepEqual(v2.signatures[0]?.chunks, chunkBuffer(v2Bytes));
  const m2 = await lib.readManifest(sha(v2Bytes));
  assert.ok(m2);
  // New chunks are exactly those of the chunker's cut of v2 that v1's cut does not have, and an edit disturbs only the chunks round it.
  const old = new Set(chunkBuffer(v1Bytes).map(([, h]) => h));
  const expected = chunkBuffer(v2Bytes).filter(([, h]) => !old.has(h)).length;
  const fresh = m2.chunks.filter((c) => !c.src).length;
  assert.equal(fresh, expected);
  assert.ok(fresh >= 1 && fresh <= 8, `${fresh} new chunks`);
  assert.deepEqual(await readAll((await lib.openFileReader(sha(v2Bytes))).stream), v2Bytes);
});

/** Pseudo-random bytes that are the same at every run (AES-CTR of zeros under a key derived from the label). */
function seededBytes(label: string, n: number): Buffer {
  return createCipheriv('aes-256-ctr', createHash('sha256').update(label).digest(), Buffer.alloc(16)).update(Buffer.alloc(n));
}

async function readAll(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of stream) parts.push(p as Buffer);
  return Buffer.concat(parts);
}

test('the quick check compares inode and change time too: an edit that puts the time back is read; verifyAll finds what a record without them misses', async (t) => {
  const { src, root } = await setup(t);
  await write(src, 'a.txt', 'aaaa');
  await write(src, 'b.txt', 'bbbb');
  await write(src, 'c.txt', 'cccc');
  const lib = createContentLibrary(root);
  const v1 = await snapshotFolder(lib, src, { packageId: 'CS100021', version: 1 });
  await lib.addContent(v1.definition);
  assert.deepEqual(Object.keys(v1.sources).sort(), ['a.txt', 'b.txt', 'c.txt']);
  await writeSourceIndex(root, v1.definition.contentId, v1.sources);
  assert.deepEqual(await readSourceIndex(root, v1.definition.contentId), v1.sources);
  // Same size, and the modification time put back as it was: only the change time (and the bytes) differ.
  const sameTime = async (rel: string, text: string): Promise<void> => {
    const file = path.join(src, rel);
    const st = await fsp.stat(file);
    await fsp.writeFile(file, text);
    await fsp.utimes(file, st.atime, st.mtime);
  };
  await sameTime('a.txt', 'AAAA');
  const v2 = await snapshotFolder(lib, src, { packageId: 'CS100021', version: 2, previous: { definition: v1.definition, signatures: v1.signatures, sources: await readSourceIndex(root, v1.definition.contentId) } });
  await lib.addContent(v2.definition);
  assert.equal(v2.filesUnchanged, 2);
  assert.equal(v2.definition.files.find((f) => f.path === 'a.txt')?.hash, sha('AAAA'));
  assert.equal(v2.definition.files.find((f) => f.path === 'a.txt')?.mtime, v1.definition.files.find((f) => f.path === 'a.txt')?.mtime);

  // A version recorded without inode and change time (snapshotted before they were kept): size, time and mode decide, and such an edit is missed…
  await sameTime('b.txt', 'BBBB');
  const v3 = await snapshotFolder(lib, src, { packageId: 'CS100021', version: 3, previous: { definition: v2.definition, signatures: v2.signatures } });
  assert.equal(v3.filesUnchanged, 3);
  assert.equal(v3.definition.files.find((f) => f.path === 'b.txt')?.hash, sha('bbbb'));
  // …until verifyAll reads every file, and names the one the quick check got wrong.
  const v4 = await snapshotFolder(lib, src, { packageId: 'CS100021', version: 4, verifyAll: true, previous: { definition: v2.definition, signatures: v2.signatures } });
  assert.equal(v4.filesUnchanged, 0);
  assert.equal(v4.bytesRead, 12);
  assert.equal(v4.definition.files.find((f) => f.path === 'b.txt')?.hash, sha('BBBB'));
  assert.deepEqual(v4.quickCheckMissed, ['b.txt']);
  // Removing a content removes its source index.
  await lib.removeContent(v1.definition.contentId);
  assert.equal(await readSourceIndex(root, v1.definition.contentId), undefined);
});
