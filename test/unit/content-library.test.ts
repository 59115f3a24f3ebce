/**
 * The content library on real folders (no mocks): the on-disk layout, single
 * instance storage, companion lists, idempotent and all-or-nothing
 * addContent, definitions read back from disk, and the validation of
 * definitions that arrive from the network.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import type { ContentDefinition, FileEntry } from '../../src/content-library/types.ts';
import { createContentLibrary } from '../../src/content-library/content-library.ts';
import {
  canonicalDefinitionText,
  definitionHash,
  parseContentDefinition,
  validateHash,
  validateRelativePath,
} from '../../src/content-library/definition.ts';
import { CairnError } from '../../src/shared/errors.ts';

const MTIME = '2024-05-01T12:00:00.000Z';

function sha(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex').toUpperCase();
}

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cairn-lib-'));
  t.after(() => fsp.rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Puts `data` into the library's FileLib the way a transfer does: a file, then adoptFile. */
async function store(lib: ReturnType<typeof createContentLibrary>, scratch: string, data: string): Promise<string> {
  const hash = sha(data);
  const tmp = path.join(scratch, `${hash}.${Math.random().toString(16).slice(2)}`);
  await fsp.writeFile(tmp, data);
  await lib.adoptFile(tmp, hash);
  return hash;
}

function entry(p: string, data: string, mode = 0o644): FileEntry {
  return { path: p, hash: sha(data), size: Buffer.byteLength(data), mode, mtime: MTIME };
}

function definition(packageId: string, version: number, folders: string[], files: FileEntry[]): ContentDefinition {
  const contentId = `${packageId}.${version}`;
  const draft = { contentId, packageId, version, folders, files, size: files.reduce((s, f) => s + f.size, 0) };
  return { ...draft, hash: definitionHash(draft) };
}

/** Every file under `dir` with its bytes, to prove that nothing changed. */
async function treeState(dir: string): Promise<Map<string, string>> {
  const state = new Map<string, string>();
  for (const rel of (await fsp.readdir(dir, { recursive: true })).sort()) {
    const st = await fsp.stat(path.join(dir, rel));
    state.set(rel, st.isDirectory() ? 'dir' : `${await fsp.readFile(path.join(dir, rel), 'utf8')}|${st.mtimeMs}`);
  }
  return state;
}

async function withScratch(t: { after: (fn: () => Promise<void>) => void }): Promise<{ root: string; scratch: string }> {
  const dir = await tempDir(t);
  const scratch = path.join(dir, 'scratch');
  await fsp.mkdir(scratch);
  return { root: path.join(dir, 'lib'), scratch };
}

const SAMPLE_FILES = [entry('a b/ünïcödé ✓.txt', 'unicode', 0o600), entry('a b/.hidden', 'dot'), entry('bin/run.sh', '#!/bin/sh\n', 0o755), entry('empty.dat', '')];
const SAMPLE_FOLDERS = ['a b', 'bin', 'nothing here'];

test('adoptFile moves a file to FileLib/<first 4 hex>/<HASH> and a second copy only deletes its source', async (t) => {
  const { root, scratch } = await withScratch(t);
  const lib = createContentLibrary(root);
  const hash = await store(lib, scratch, 'payload');
  assert.equal(lib.filePath(hash), path.join(root, 'FileLib', hash.slice(0, 4), hash));
  assert.equal(await fsp.readFile(lib.filePath(hash), 'utf8'), 'payload');
  const again = path.join(scratch, 'again');
  await fsp.writeFile(again, 'payload');
  await lib.adoptFile(again, hash);
  assert.equal(fs.existsSync(again), false);
  assert.deepEqual(await fsp.readdir(path.join(root, 'FileLib', hash.slice(0, 4))), [hash]);
  assert.equal(await lib.hasFile(hash), true);
  assert.equal(await lib.hasFile(sha('other')), false);
});

test('missingFiles lists absent hashes once each, in the order given, upper-cased', async (t) => {
  const { root, scratch } = await withScratch(t);
  const lib = createContentLibrary(root);
  const held = await store(lib, scratch, 'held');
  const a = sha('a');
  const b = sha('b');
  assert.deepEqual(await lib.missingFiles([b, held, a.toLowerCase(), b]), [b, a]);
  await assert.rejects(lib.missingFiles(['XYZ']), (err: unknown) => err instanceof CairnError && err.code === 'CAIRN_HASH_INVALID');
});

test('addContent writes the documented INI layout, mirroring folders (empty ones too) and odd names', async (t) => {
  const { root, scratch } = await withScratch(t);
  const lib = createContentLibrary(root);
  for (const data of ['unicode', 'dot', '#!/bin/sh\n', '']) await store(lib, scratch, data);
  const def = definition('CS100001', 1, SAMPLE_FOLDERS, SAMPLE_FILES);
  await lib.addContent(def);

  assert.equal(await fsp.readFile(path.join(root, 'PkgLib', 'CS100001.INI'), 'utf8'), '[Packages]\nCS100001.1=\n');
  assert.equal(
    await fsp.readFile(path.join(root, 'DataLib', 'CS100001.1.INI'), 'utf8'),
    `[Info]\nHash=${def.hash}\nSize=${7 + 3 + 10}\nFileCount=4\nVersion=1\nPackageID=CS100001\n`,
  );
  assert.equal(
    await fsp.readFile(path.join(root, 'DataLib', 'CS100001.1', 'a b', 'ünïcödé ✓.txt.INI'), 'utf8'),
    `[File]\nHash=${sha('unicode')}\nSize=7\nAttributes=0600\nTimeModified=${MTIME}\n`,
  );
  assert.match(await fsp.readFile(path.join(root, 'DataLib', 'CS100001.1', 'bin', 'run.sh.INI'), 'utf8'), /^Attributes=0755$/m);
  assert.equal(fs.existsSync(path.join(root, 'DataLib', 'CS100001.1', 'a b', '.hidden.INI')), true);
  assert.deepEqual(await fsp.readdir(path.join(root, 'DataLib', 'CS100001.1', 'nothing here')), []);
  assert.equal(await fsp.readFile(`${lib.filePath(sha('dot'))}.INI`, 'utf8'), '[Contents]\nCS100001.1=\n');
});

test('two paths with identical bytes are stored once and the companion list names the content once', async (t) => {
  const { root, scratch } = await withScratch(t);
  const lib = createContentLibrary(root);
  const hash = await store(lib, scratch, 'same bytes');
  await store(lib, scratch, 'same bytes');
  const def = definition('CS100002', 1, ['x'], [entry('one.txt', 'same bytes'), entry('x/two.txt', 'same bytes')]);
  await lib.addContent(def);
  assert.deepEqual(await fsp.readdir(path.join(root, 'FileLib', hash.slice(0, 4))), [hash, `${hash}.INI`]);
  assert.deepEqual(await lib.fileReferences(hash), ['CS100002.1']);
});

test('a file shared by two contents has both in its companion list', async (t) => {
  const { root, scratch } = await withScratch(t);
  const lib = createContentLibrary(root);
  const shared = await store(lib, scratch, 'shared');
  await store(lib, scratch, 'only in B');
  await lib.addContent(definition('CS10000A', 1, [], [entry('s.txt', 'shared')]));
  await lib.addContent(definition('CS10000B', 3, [], [entry('s.txt', 'shared'), entry('b.txt', 'only in B')]));
  assert.deepEqual(await lib.fileReferences(shared), ['CS10000A.1', 'CS10000B.3']);
  assert.deepEqual(await lib.fileReferences(sha('only in B')), ['CS10000B.3']);
  assert.deepEqual(await lib.fileReferences(sha('never stored')), []);
});

test('adding the same content twice changes nothing on disk', async (t) => {
  const { root, scratch } = await withScratch(t);
  const lib = createContentLibrary(root);
  for (const data of ['unicode', 'dot', '#!/bin/sh\n', '']) await store(lib, scratch, data);
  const def = definition('CS100003', 2, SAMPLE_FOLDERS, SAMPLE_FILES);
  await lib.addContent(def);
  const before = await treeState(root);
  await lib.addContent(def);
  await createContentLibrary(root).addContent(def);
  assert.deepEqual(await treeState(root), before);
});

test('concurrent addContent of contents sharing a file loses no companion list entry', async (t) => {
  const { root, scratch } = await withScratch(t);
  const lib = createContentLibrary(root);
  const hash = await store(lib, scratch, 'popular');
  const ids = Array.from({ length: 12 }, (_, i) => `CS2000${i.toString(16).toUpperCase().padStart(2, '0')}`);
  await Promise.all(ids.map((id) => lib.addContent(definition(id, 1, [], [entry('p.txt', 'popular')]))));
  assert.deepEqual(await lib.fileReferences(hash), ids.map((id) => `${id}.1`).sort());
});

test('addContent with a file not in FileLib fails naming it and writes nothing to PkgLib or DataLib', async (t) => {
  const { root, scratch } = await withScratch(t);
  const lib = createContentLibrary(root);
  await store(lib, scratch, 'present');
  const def = definition('CS100004', 1, ['sub'], [entry('present.txt', 'present'), entry('sub/absent file.bin', 'absent')]);
  await assert.rejects(lib.addContent(def), (err: unknown) => {
    assert.ok(err instanceof CairnError);
    assert.equal(err.code, 'CAIRN_DP_CONTENT_INCOMPLETE');
    assert.match(err.message, /sub\/absent file\.bin/);
    assert.match(err.message, new RegExp(sha('absent')));
    assert.doesNotMatch(err.message, /present\.txt/);
    return true;
  });
  assert.equal(fs.existsSync(path.join(root, 'PkgLib', 'CS100004.INI')), false);
  assert.equal(fs.existsSync(path.join(root, 'DataLib', 'CS100004.1.INI')), false);
  assert.deepEqual(await lib.fileReferences(sha('present')), []);
  assert.equal(await lib.getContent('CS100004.1'), undefined);
  assert.equal(await lib.currentContent('CS100004'), undefined);
});

test('getContent returns the stored definition unchanged, from the cache, a fresh instance and the INI tree alone', async (t) => {
  const { root, scratch } = await withScratch(t);
  const lib = createContentLibrary(root);
  for (const data of ['unicode', 'dot', '#!/bin/sh\n', '']) await store(lib, scratch, data);
  // Given out of order: the library records them sorted.
  const def = definition('CS100005', 7, [...SAMPLE_FOLDERS].reverse(), [...SAMPLE_FILES].reverse());
  const sorted = { ...def, folders: [...SAMPLE_FOLDERS].sort(), files: [...SAMPLE_FILES].sort((a, b) => (a.path < b.path ? -1 : 1)) };
  await lib.addContent(def);

  assert.deepEqual(await lib.getContent('CS100005.7'), sorted);
  const fresh = await createContentLibrary(root).getContent('CS100005.7');
  assert.deepEqual(fresh, sorted);
  assert.equal(fresh?.hash, definitionHash(sorted));

  await fsp.rm(path.join(root, 'DataLib', 'CS100005.7.json'));
  assert.deepEqual(await createContentLibrary(root).getContent('CS100005.7'), sorted);
  assert.deepEqual(await createContentLibrary(root).currentContent('CS100005'), sorted);
  assert.equal(await lib.getContent('CS100005.8'), undefined);
});

test('getContent refuses an INI tree that no longer matches its [Info] Hash', async (t) => {
  const { root, scratch } = await withScratch(t);
  const lib = createContentLibrary(root);
  await store(lib, scratch, 'x');
  await lib.addContent(definition('CS100006', 1, [], [entry('x.txt', 'x')]));
  await fsp.rm(path.join(root, 'DataLib', 'CS100006.1.json'));
  await fsp.rename(path.join(root, 'DataLib', 'CS100006.1', 'x.txt.INI'), path.join(root, 'DataLib', 'CS100006.1', 'y.txt.INI'));
  await assert.rejects(createContentLibrary(root).getContent('CS100006.1'), (err: unknown) => err instanceof CairnError && err.code === 'CAIRN_INTERNAL');
});

test('a new version replaces the package line in PkgLib, and a late older version does not roll it back', async (t) => {
  const { root, scratch } = await withScratch(t);
  const lib = createContentLibrary(root);
  await store(lib, scratch, 'v1');
  await store(lib, scratch, 'v2');
  const v1 = definition('CS100007', 1, [], [entry('f', 'v1')]);
  const v2 = definition('CS100007', 2, [], [entry('f', 'v2')]);
  await lib.addContent(v1);
  assert.equal((await lib.currentContent('CS100007'))?.contentId, 'CS100007.1');
  await lib.addContent(v2);
  assert.equal(await fsp.readFile(path.join(root, 'PkgLib', 'CS100007.INI'), 'utf8'), '[Packages]\nCS100007.2=\n');
  await createContentLibrary(root).addContent(v1);
  assert.equal((await createContentLibrary(root).currentContent('CS100007'))?.hash, v2.hash);
  assert.notEqual(await lib.getContent('CS100007.1'), undefined);
});

test('addContent refuses a different definition under an ID already stored', async (t) => {
  const { root, scratch } = await withScratch(t);
  const lib = createContentLibrary(root);
  await store(lib, scratch, 'one');
  await store(lib, scratch, 'two');
  await lib.addContent(definition('CS100008', 1, [], [entry('f', 'one')]));
  await assert.rejects(
    lib.addContent(definition('CS100008', 1, [], [entry('f', 'two')])),
    (err: unknown) => err instanceof CairnError && err.code === 'CAIRN_REQUEST_INVALID' && /already stored/.test(err.message),
  );
  assert.equal((await createContentLibrary(root).getContent('CS100008.1'))?.files[0]?.hash, sha('one'));
});

test('the definition hash is SHA-256 of the documented canonical text', () => {
  const def = definition('CS100009', 4, ['z', 'a'], [entry('z/b', 'bb'), entry('a/c d', 'c')]);
  const text = `cairn-content/1\nCS100009.4\nD\ta\nD\tz\nF\ta/c d\t${sha('c')}\t1\nF\tz/b\t${sha('bb')}\t2\n`;
  assert.equal(canonicalDefinitionText(def), text);
  assert.equal(def.hash, sha(text));
  // Mode and time are not part of the identity of a content.
  assert.equal(definitionHash({ ...def, files: def.files.map((f) => ({ ...f, mode: 0o777, mtime: '2000-01-01T00:00:00.000Z' })) }), def.hash);
});

function rejectsWith(code: string, value: unknown): void {
  assert.throws(
    () => parseContentDefinition(value),
    (err: unknown) => err instanceof CairnError && err.code === code,
    `expected ${code} for ${JSON.stringify(value)}`,
  );
}

test('parseContentDefinition accepts a valid definition and returns it sorted', () => {
  const def = definition('CS10000C', 1, ['b', 'a'], [entry('b/x', 'x'), entry('a/y', 'y')]);
  const parsed = parseContentDefinition(JSON.parse(JSON.stringify(def)));
  assert.deepEqual(parsed.folders, ['a', 'b']);
  assert.deepEqual(parsed.files.map((f) => f.path), ['a/y', 'b/x']);
  assert.equal(parsed.hash, def.hash);
});

test('parseContentDefinition rejects bad paths, hashes, sizes and inconsistent definitions', () => {
  const good = definition('CS10000D', 1, ['a'], [entry('a/f', 'f')]);
  const withFile = (p: Partial<FileEntry>): unknown => ({ ...good, files: [{ ...good.files[0], ...p }] });
  rejectsWith('CAIRN_CONTENT_PATH_INVALID', withFile({ path: '../x' }));
  rejectsWith('CAIRN_CONTENT_PATH_INVALID', withFile({ path: '/abs' }));
  rejectsWith('CAIRN_CONTENT_PATH_INVALID', withFile({ path: 'a//b' }));
  rejectsWith('CAIRN_CONTENT_PATH_INVALID', withFile({ path: 'a/./b' }));
  rejectsWith('CAIRN_CONTENT_PATH_INVALID', withFile({ path: '' }));
  rejectsWith('CAIRN_CONTENT_PATH_INVALID', withFile({ path: 'a/line\nbreak' }));
  rejectsWith('CAIRN_CONTENT_PATH_INVALID', { ...good, folders: ['a', 'a/..'] });
  rejectsWith('CAIRN_HASH_INVALID', withFile({ hash: 'ABC' }));
  rejectsWith('CAIRN_HASH_INVALID', withFile({ hash: `${sha('f').slice(0, 63)}G` }));
  rejectsWith('CAIRN_HASH_INVALID', { ...good, hash: 42 });
  rejectsWith('CAIRN_REQUEST_INVALID', withFile({ size: -1 }));
  rejectsWith('CAIRN_REQUEST_INVALID', withFile({ size: 1.5 }));
  rejectsWith('CAIRN_REQUEST_INVALID', withFile({ mode: 0o10000 }));
  rejectsWith('CAIRN_REQUEST_INVALID', withFile({ mtime: 'yesterday' }));
  rejectsWith('CAIRN_REQUEST_INVALID', { ...good, size: -1 });
  rejectsWith('CAIRN_REQUEST_INVALID', { ...good, size: 2 });
  rejectsWith('CAIRN_REQUEST_INVALID', { ...good, hash: sha('not the definition') });
  rejectsWith('CAIRN_REQUEST_INVALID', { ...good, folders: [] });
  rejectsWith('CAIRN_REQUEST_INVALID', { ...good, files: [good.files[0], good.files[0]] });
  rejectsWith('CAIRN_REQUEST_INVALID', { ...good, contentId: '../../etc/passwd.1' });
  rejectsWith('CAIRN_REQUEST_INVALID', { ...good, version: 2 });
  rejectsWith('CAIRN_REQUEST_INVALID', 'not an object');
  rejectsWith('CAIRN_REQUEST_INVALID', { ...good, files: 'f' });
});

test('validateRelativePath accepts spaces, non-ASCII and leading dots; validateHash upper-cases', () => {
  for (const p of ['a b/c d.txt', 'ünïcödé/日本語.txt', '.config/.env', 'x.INI']) assert.equal(validateRelativePath(p), p);
  assert.throws(() => validateRelativePath(`${'é'.repeat(126)}`), (err: unknown) => err instanceof CairnError && err.code === 'CAIRN_CONTENT_PATH_INVALID');
  assert.equal(validateHash(sha('q').toLowerCase()), sha('q'));
});

test('library methods refuse content and package IDs that are not safe file names', async (t) => {
  const { root } = await withScratch(t);
  const lib = createContentLibrary(root);
  await assert.rejects(lib.getContent('../PkgLib/x.1'), (err: unknown) => err instanceof CairnError && err.code === 'CAIRN_REQUEST_INVALID');
  await assert.rejects(lib.currentContent('../x'), (err: unknown) => err instanceof CairnError && err.code === 'CAIRN_REQUEST_INVALID');
  assert.throws(() => lib.filePath('../../etc/passwd'), (err: unknown) => err instanceof CairnError && err.code === 'CAIRN_HASH_INVALID');
});

test('removing package A keeps the files package B shares with it and deletes the rest', async (t) => {
  const root = await tempDir(t);
  const scratch = await tempDir(t);
  const lib = createContentLibrary(root);
  for (const d of ['shared', 'only-a', 'only-b']) await store(lib, scratch, d);
  const a = definition('CS100001', 1, [], [entry('s.txt', 'shared'), entry('a.txt', 'only-a')]);
  const b = definition('CS100002', 1, [], [entry('s.txt', 'shared'), entry('b.txt', 'only-b')]);
  await lib.addContent(a);
  await lib.addContent(b);
  const result = await lib.removePackage('CS100001');
  assert.deepEqual([result.contents, result.filesDeleted, result.bytesFreed], [['CS100001.1'], 1, 'only-a'.length]);
  assert.equal(await lib.hasFile(sha('only-a')), false);
  assert.equal(await lib.hasFile(sha('shared')), true);
  assert.deepEqual(await lib.fileReferences(sha('shared')), ['CS100002.1']);
  assert.equal(await lib.currentContent('CS100001'), undefined);
  assert.deepEqual(await lib.listContents('CS100001'), []);
  assert.deepEqual((await lib.currentContent('CS100002'))?.contentId, 'CS100002.1');
  assert.deepEqual(await lib.validateContent('CS100002.1'), []);
});

test('a removal cut short after the content record went is finished by removing again', async (t) => {
  const root = await tempDir(t);
  const scratch = await tempDir(t);
  const lib = createContentLibrary(root);
  await store(lib, scratch, 'one');
  await lib.addContent(definition('CS100003', 1, [], [entry('one', 'one')]));
  // As if the process died right after step 2: the INI is gone, references and the JSON copy are not.
  await fsp.rm(path.join(root, 'DataLib', 'CS100003.1.INI'));
  const fresh = createContentLibrary(root);
  assert.deepEqual(await fresh.listContents('CS100003'), ['CS100003.1']);
  const r = await fresh.removeContent('CS100003.1');
  assert.equal(r.filesDeleted, 1);
  assert.equal(await fresh.hasFile(sha('one')), false);
  assert.deepEqual(await fresh.listContents('CS100003'), []);
  assert.deepEqual(await fresh.removeContent('CS100003.1'), { contents: [], filesDeleted: 0, bytesFreed: 0 });
});

test('removing older contents keeps the current version and the files it still uses', async (t) => {
  const root = await tempDir(t);
  const scratch = await tempDir(t);
  const lib = createContentLibrary(root);
  for (const d of ['same', 'old', 'new']) await store(lib, scratch, d);
  await lib.addContent(definition('CS100004', 1, [], [entry('same', 'same'), entry('x', 'old')]));
  await lib.addContent(definition('CS100004', 2, [], [entry('same', 'same'), entry('x', 'new')]));
  const r = await lib.removeOlderContents('CS100004', 'CS100004.2');
  assert.deepEqual([r.contents, r.filesDeleted], [['CS100004.1'], 1]);
  assert.equal((await lib.currentContent('CS100004'))?.contentId, 'CS100004.2');
  assert.deepEqual(await lib.fileReferences(sha('same')), ['CS100004.2']);
  assert.equal(await lib.hasFile(sha('old')), false);
});

test('validation reports a missing file and a damaged one, and a replacing adopt repairs the damage', async (t) => {
  const root = await tempDir(t);
  const scratch = await tempDir(t);
  const lib = createContentLibrary(root);
  for (const d of ['keep', 'lose', 'spoil']) await store(lib, scratch, d);
  await lib.addContent(definition('CS100005', 1, ['d'], [entry('d/keep', 'keep'), entry('lose', 'lose'), entry('spoil', 'spoil')]));
  await fsp.rm(lib.filePath(sha('lose')));
  await fsp.writeFile(lib.filePath(sha('spoil')), 'SPOIL');
  const problems = await lib.validateContent('CS100005.1');
  assert.deepEqual(problems.map((p) => [p.path, p.problem, p.actual]), [
    ['lose', 'missing', undefined],
    ['spoil', 'hash mismatch', sha('SPOIL')],
  ]);
  const tmp = path.join(scratch, 'spoil.fixed');
  await fsp.writeFile(tmp, 'spoil');
  await lib.adoptFile(tmp, sha('spoil'));
  assert.equal((await lib.validateContent('CS100005.1')).length, 2, 'a plain adopt keeps the copy it has');
  await fsp.writeFile(tmp, 'spoil');
  await lib.adoptFile(tmp, sha('spoil'), { replace: true });
  assert.deepEqual((await lib.validateContent('CS100005.1')).map((p) => p.path), ['lose']);
  await assert.rejects(lib.validateContent('CS100005.9'), (err) => err instanceof CairnError && err.code === 'CAIRN_NOT_FOUND');
});

/** The library's files with their bytes, mtimes left out: two ways of writing the same records compare equal. */
async function layout(dir: string): Promise<Map<string, string>> {
  const state = new Map<string, string>();
  for (const rel of (await fsp.readdir(dir, { recursive: true })).sort()) {
    const st = await fsp.stat(path.join(dir, rel));
    state.set(rel, st.isDirectory() ? 'dir' : await fsp.readFile(path.join(dir, rel), 'utf8'));
  }
  return state;
}

test('a content prepared ahead of its files ends with the same layout as one added directly, and no marker', async (t) => {
  const { root, scratch } = await withScratch(t);
  const direct = createContentLibrary(path.join(root, 'direct'));
  const prepared = createContentLibrary(path.join(root, 'prepared'));
  const def = definition('CS100030', 1, SAMPLE_FOLDERS, SAMPLE_FILES);
  assert.equal(await prepared.prepareContent(def), true);
  const dataLib = path.join(root, 'prepared', 'DataLib');
  assert.equal(fs.existsSync(path.join(dataLib, 'CS100030.1.INI')), false, 'prepared is not stored');
  assert.equal((await fsp.readFile(path.join(dataLib, 'CS100030.1.prepared'), 'utf8')).trim(), def.hash);
  assert.equal(await prepared.getContent('CS100030.1'), undefined);
  assert.equal(await prepared.prepareContent(def), false, 'a second prepare has nothing to do');
  for (const lib of [direct, prepared]) {
    for (const data of ['unicode', 'dot', '#!/bin/sh\n', '']) await store(lib, scratch, data);
    await lib.addContent(def);
  }
  assert.deepEqual(await layout(path.join(root, 'prepared')), await layout(path.join(root, 'direct')));
  assert.equal(await prepared.prepareContent(def), false, 'a stored content is not prepared again');
  assert.equal(fs.existsSync(path.join(dataLib, 'CS100030.1.prepared')), false);
});

test('records whose marker is gone or names another definition are written again when the content is added', async (t) => {
  const { root, scratch } = await withScratch(t);
  const lib = createContentLibrary(root);
  const def = definition('CS100031', 1, SAMPLE_FOLDERS, SAMPLE_FILES);
  await lib.prepareContent(def);
  const ini = path.join(root, 'DataLib', 'CS100031.1', 'bin', 'run.sh.INI');
  // A removal or a rewrite cut short: one per-file INI gone, and the marker with it.
  await fsp.rm(ini);
  await fsp.rm(path.join(root, 'DataLib', 'CS100031.1.prepared'));
  for (const data of ['unicode', 'dot', '#!/bin/sh\n', '']) await store(lib, scratch, data);
  await lib.addContent(def);
  assert.match(await fsp.readFile(ini, 'utf8'), /^Attributes=0755$/m);
  // A marker left by another definition under the same ID does not count either.
  const other = definition('CS100032', 1, [], [entry('x.txt', 'unicode')]);
  await lib.prepareContent(other);
  await fsp.writeFile(path.join(root, 'DataLib', 'CS100032.1.prepared'), `${'0'.repeat(64)}\n`);
  await fsp.rm(path.join(root, 'DataLib', 'CS100032.1', 'x.txt.INI'));
  await lib.addContent(other);
  assert.ok(fs.existsSync(path.join(root, 'DataLib', 'CS100032.1', 'x.txt.INI')));
});

test('a content prepared and never added is listed, and removing it leaves no record, marker or file behind', async (t) => {
  const { root, scratch } = await withScratch(t);
  const lib = createContentLibrary(root);
  const def = definition('CS100033', 1, [], [entry('only.txt', 'never added')]);
  await lib.prepareContent(def);
  await store(lib, scratch, 'never added');
  assert.deepEqual(await lib.listContents('CS100033'), ['CS100033.1']);
  await lib.removeContent('CS100033.1');
  assert.deepEqual(await lib.listContents('CS100033'), []);
  assert.deepEqual((await fsp.readdir(path.join(root, 'DataLib'))).filter((n) => n.startsWith('CS100033')), []);
});

test('storeFiles stores the files whose bytes match, rejects the others and reports which it wrote', async (t) => {
  const { root, scratch } = await withScratch(t);
  const lib = createContentLibrary(root);
  const held = await store(lib, scratch, 'held already');
  const parts = [Buffer.from('held already'), Buffer.from('new one'), Buffer.from('not what it claims'), Buffer.alloc(0)];
  const claimed = sha('something else');
  const hashes = [held, sha(parts[1]!), claimed, sha(parts[3]!)];
  let start = 0;
  const entries = parts.map((p, i) => {
    const e = { hash: hashes[i]!, size: p.length, start };
    start += p.length;
    return e;
  });
  const r = await lib.storeFiles(Buffer.concat(parts), entries, { replace: false, tempDir: scratch });
  assert.deepEqual([...r.stored].sort(), [held, sha(parts[1]!), sha(parts[3]!)].sort());
  assert.deepEqual([...r.written].sort(), [sha(parts[1]!), sha(parts[3]!)].sort());
  assert.deepEqual(r.rejected, [{ hash: claimed, actual: sha(parts[2]!) }]);
  assert.equal(r.writeError, undefined);
  assert.deepEqual(await fsp.readFile(lib.filePath(sha(parts[1]!)), 'utf8'), 'new one');
  assert.equal(await lib.hasFile(claimed), false);
  assert.deepEqual(await fsp.readdir(scratch), [], 'no temporary file is left');
  // With `replace`, a held file is written again (a redistribute repairs a damaged copy).
  await fsp.writeFile(lib.filePath(held), 'damaged');
  const again = await lib.storeFiles(Buffer.from('held already'), [{ hash: held, size: 12, start: 0 }], { replace: true, tempDir: scratch });
  assert.deepEqual(again.written, [held]);
  assert.equal(await fsp.readFile(lib.filePath(held), 'utf8'), 'held already');
});

test('storeFiles reports the error that stopped it and what it stored before', async (t) => {
  const { root, scratch } = await withScratch(t);
  const lib = createContentLibrary(root);
  const parts = [Buffer.from('stored first'), Buffer.from('cannot be written')];
  const entries = [
    { hash: sha(parts[0]!), size: parts[0]!.length, start: 0 },
    { hash: sha(parts[1]!), size: parts[1]!.length, start: parts[0]!.length },
  ];
  // The temporary folder is gone after the first file: the second cannot be written.
  const gone = path.join(scratch, 'gone');
  const r = await lib.storeFiles(Buffer.concat(parts), entries.slice(0, 1), { replace: false, tempDir: scratch });
  assert.deepEqual(r.stored, [sha(parts[0]!)]);
  const r2 = await lib.storeFiles(Buffer.concat(parts), entries, { replace: false, tempDir: gone });
  assert.deepEqual(r2.stored, [sha(parts[0]!)], 'the held file counts as stored');
  assert.equal(r2.writeError?.code, 'ENOENT');
  assert.equal(await lib.hasFile(sha(parts[1]!)), false);
});

test('a new version links the per-file INIs its files share with the current one, writes the rest, and appends to companion lists', async (t) => {
  const { root, scratch } = await withScratch(t);
  const lib = createContentLibrary(root);
  for (const data of ['kept', 'changed v1', 'changed v2', 'damaged']) await store(lib, scratch, data);
  const v1 = definition('CS100040', 1, ['d'], [entry('d/kept.txt', 'kept'), entry('change.txt', 'changed v1'), entry('hurt.txt', 'damaged')]);
  const v2 = definition('CS100040', 2, ['d'], [entry('d/kept.txt', 'kept'), entry('change.txt', 'changed v2'), entry('hurt.txt', 'damaged')]);
  await lib.addContent(v1);
  const ini = (c: string, p: string): string => path.join(root, 'DataLib', c, `${p}.INI`);
  // One INI of v1 no longer says what v1's definition says: it must not be carried over.
  await fsp.writeFile(ini('CS100040.1', 'hurt.txt'), '[File]\nHash=0\n');
  const list = `${lib.filePath(sha('kept'))}.INI`;
  const listInode = (await fsp.stat(list)).ino;
  await lib.addContent(v2);
  assert.equal((await fsp.stat(ini('CS100040.2', 'd/kept.txt'))).ino, (await fsp.stat(ini('CS100040.1', 'd/kept.txt'))).ino, 'unchanged: a hard link');
  assert.notEqual((await fsp.stat(ini('CS100040.2', 'change.txt'))).ino, (await fsp.stat(ini('CS100040.1', 'change.txt'))).ino);
  assert.match(await fsp.readFile(ini('CS100040.2', 'change.txt'), 'utf8'), new RegExp(`^Hash=${sha('changed v2')}$`, 'm'));
  assert.notEqual((await fsp.stat(ini('CS100040.2', 'hurt.txt'))).ino, (await fsp.stat(ini('CS100040.1', 'hurt.txt'))).ino, 'a damaged INI is not linked');
  assert.match(await fsp.readFile(ini('CS100040.2', 'hurt.txt'), 'utf8'), new RegExp(`^Hash=${sha('damaged')}$`, 'm'));
  // The shared file's list got a line appended, in place.
  assert.equal(await fsp.readFile(list, 'utf8'), '[Contents]\nCS100040.1=\nCS100040.2=\n');
  assert.equal((await fsp.stat(list)).ino, listInode);
  // Removing v1 leaves v2's records whole.
  await lib.removeContent('CS100040.1');
  assert.equal(fs.existsSync(path.join(root, 'DataLib', 'CS100040.1')), false);
  assert.match(await fsp.readFile(ini('CS100040.2', 'd/kept.txt'), 'utf8'), new RegExp(`^Hash=${sha('kept')}$`, 'm'));
  assert.deepEqual(await lib.fileReferences(sha('kept')), ['CS100040.2']);
  assert.equal((await lib.getContent('CS100040.2'))?.hash, v2.hash);
});

test('a companion list that does not end in its [Contents] section is written whole, with the new content in [Contents]', async (t) => {
  const { root, scratch } = await withScratch(t);
  const lib = createContentLibrary(root);
  await store(lib, scratch, 'edited by hand');
  await lib.addContent(definition('CS100041', 1, [], [entry('a.txt', 'edited by hand')]));
  const list = `${lib.filePath(sha('edited by hand'))}.INI`;
  await fsp.writeFile(list, '[Contents]\nCS100041.1=\n[Note]\nwho=admin\n');
  await lib.addContent(definition('CS100042', 1, [], [entry('b.txt', 'edited by hand')]));
  assert.deepEqual(await lib.fileReferences(sha('edited by hand')), ['CS100041.1', 'CS100042.1']);
  assert.equal(await fsp.readFile(list, 'utf8'), '[Contents]\nCS100041.1=\nCS100042.1=\n');
});
