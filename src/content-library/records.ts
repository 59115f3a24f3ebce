/**
 * A content's per-file bookkeeping and the storing of small files, in one
 * pass with synchronous calls (ADR 0015): the DataLib folder tree with one
 * INI per file, the JSON copy, the content's entry in every file's companion
 * list (`FileLib/<HASH[0..4]>/<HASH>.INI`), the content's own
 * `DataLib/<ContentID>.INI`, and the files of a `cairn-bundle/1` upload. The
 * layout is the one content-library.ts documents; only the way it is written
 * differs: a hash worker (hash-worker.ts) runs these functions one system
 * call after another, where the main thread made thousands of thread-pool
 * round trips (about 8,000 for a content of 1,000 files), each costing more
 * of the DP's main thread than the call itself (performance.md).
 *
 * The caller (content-library.ts) holds the content's lock and the lock of
 * every file hash the task names, so no other read-modify-write of these
 * companion lists, and no removal of these files, runs meanwhile. The order
 * of the steps is addContent's, so a process killed at any point is repaired
 * by adding the content again. Every file that readers depend on is written
 * to a temporary name and renamed, as before.
 *
 * It must never throw out of the worker: a failure is answered as an errno
 * code and a message, and the main thread raises it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';

/** One file of a content, as the per-file INI records it. */
export interface RecordFile {
  readonly path: string;
  readonly hash: string;
  readonly size: number;
  readonly mode: number;
  readonly mtime: string;
}

/** Writes a content's records (steps 1–4 of addContent). */
export interface ContentRecordsTask {
  readonly id: number;
  readonly kind: 'contentRecords';
  /** The library's FileLib and DataLib folders. */
  readonly fileLib: string;
  readonly dataLib: string;
  readonly contentId: string;
  readonly folders: readonly string[];
  readonly files: readonly RecordFile[];
  /**
   * The content's JSON copy and `DataLib/<ContentID>.INI` text, for a content
   * not stored yet: the folder tree, the per-file INIs and the JSON copy are
   * (re)written before the companion lists (unless `prepared`: prepareContent
   * wrote them whole), the INI after them. Absent for a content stored
   * already: only the companion lists are repaired.
   */
  readonly record?: { readonly json: string; readonly info: string; readonly prepared: boolean } | undefined;
  /** The package's current content, whose per-file INIs an unchanged file's INI is linked to. */
  readonly previous?: PreviousContent | undefined;
}

/** A content stored before (the package's current one): its ID and files. */
export interface PreviousContent {
  readonly contentId: string;
  readonly files: readonly RecordFile[];
}

/** Writes a content's folder tree, per-file INIs and JSON copy ahead of its files, then its `.prepared` marker (prepareContent). */
export interface PrepareRecordsTask {
  readonly id: number;
  readonly kind: 'prepareRecords';
  readonly dataLib: string;
  readonly contentId: string;
  readonly folders: readonly string[];
  readonly files: readonly RecordFile[];
  readonly json: string;
  /** The content's hash, which the marker holds. */
  readonly hash: string;
  readonly previous?: PreviousContent | undefined;
}

/**
 * Stores the files of a bundle in FileLib: each is hashed and, when it
 * matches and FileLib does not hold it yet (or `replace`), written under
 * `tempDir` and renamed into place.
 */
export interface StoreFilesTask {
  readonly id: number;
  readonly kind: 'storeFiles';
  readonly fileLib: string;
  readonly tempDir: string;
  readonly data: Uint8Array;
  readonly entries: readonly { readonly hash: string; readonly size: number; readonly start: number }[];
  readonly replace: boolean;
}

/** Removes a content from companion lists; a list it would leave empty is not touched (the caller deletes the file). */
export interface DropReferencesTask {
  readonly id: number;
  readonly kind: 'dropReferences';
  readonly fileLib: string;
  readonly contentId: string;
  readonly hashes: readonly string[];
}

export type RecordsTask = ContentRecordsTask | PrepareRecordsTask | DropReferencesTask | StoreFilesTask;

export type RecordsReply =
  | {
      readonly id: number;
      readonly ok: true;
      /** contentRecords: file hashes not in FileLib (nothing was written then). */
      readonly missing: string[];
      /** dropReferences: hashes whose list names no other content (or no list at all). */
      readonly last: string[];
      /** Companion lists rewritten. */
      readonly listsWritten: number;
      /** storeFiles: hashes FileLib now holds (written now or held already), those written now, and those whose bytes did not match. */
      readonly stored: string[];
      readonly written: string[];
      readonly rejected: { hash: string; actual: string }[];
      /** storeFiles: the errno error that stopped it (ENOSPC…); what was stored before it is in `stored`. */
      readonly writeError?: { code: string; message: string } | undefined;
    }
  | { readonly id: number; readonly ok: false; readonly code: string; readonly message: string };

/** `DataLib/<ContentID>.prepared` */
export function preparedMarkerIn(dataLib: string, contentId: string): string {
  return path.join(dataLib, `${contentId}.prepared`);
}

/** `FileLib/<HASH[0..4]>/<HASH>` */
function filePathIn(fileLib: string, hash: string): string {
  return path.join(fileLib, hash.slice(0, 4), hash);
}

function isErrno(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === code;
}

function writeFileAtomicSync(file: string, text: string): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    fs.writeFileSync(tmp, text, { encoding: 'utf8', mode: 0o644 });
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/** The content IDs a companion list names (its `[Contents]` keys), in file order; [] when there is no list. */
export function readReferencesSync(listFile: string): string[] {
  return readListSync(listFile).refs;
}

/**
 * A companion list: its text ('' when there is none), the content IDs it
 * names in file order, and whether a line appended to it lands in its
 * `[Contents]` section (it ends in that section).
 */
function readListSync(listFile: string): { text: string; refs: string[]; appendable: boolean } {
  let text: string;
  try {
    text = fs.readFileSync(listFile, 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return { text: '', refs: [], appendable: false };
    throw err;
  }
  // The same reading as parseIni's: `[Contents]` keys, `;` comments, CRLF tolerated.
  const refs: string[] = [];
  let inContents = false;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '').trim();
    if (line === '' || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      inContents = header[1] === 'Contents';
      continue;
    }
    const eq = line.indexOf('=');
    if (inContents && eq > 0) {
      const key = line.slice(0, eq).trim();
      if (!refs.includes(key)) refs.push(key);
    }
  }
  return { text, refs, appendable: inContents };
}

/**
 * Adds `contentId` to a companion list. A list that exists gets one line
 * appended (a single write(2): a process killed around it leaves the list
 * with or without the line, never half of it) instead of a new file renamed
 * over it, which cost a new inode per file per version (ADR 0015). A new
 * list, or one that does not end in its `[Contents]` section, is written
 * whole under a temporary name and renamed. Returns false when the list
 * named the content already.
 */
function addReferenceSync(listFile: string, contentId: string): boolean {
  const list = readListSync(listFile);
  if (list.refs.includes(contentId)) return false;
  if (list.appendable) fs.appendFileSync(listFile, `${list.text.endsWith('\n') ? '' : '\n'}${contentId}=\n`);
  else writeFileAtomicSync(listFile, formatList([...list.refs, contentId]));
  return true;
}

function formatList(ids: readonly string[]): string {
  return `[Contents]\n${ids.map((id) => `${id}=\n`).join('')}`;
}

function formatFileIni(f: RecordFile): string {
  return `[File]\nHash=${f.hash}\nSize=${f.size}\nAttributes=${f.mode.toString(8).padStart(4, '0')}\nTimeModified=${f.mtime}\n`;
}

function isFile(file: string): boolean {
  try {
    return fs.statSync(file).isFile();
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return false;
    throw err;
  }
}

/**
 * The folder tree and per-file INIs, replacing what a crashed attempt left;
 * then the JSON copy. The `.prepared` marker goes first: it may only stand
 * beside a tree written whole. A file whose INI reads the same in the
 * previous content (same path, hash, size, attributes and time) gets a hard
 * link to that INI: a directory entry, not a new inode (ADR 0015); the INI
 * is checked byte for byte first, and anything unexpected (it is gone, it
 * differs, the link is refused) writes it as usual.
 */
function writeDataLibSync(t: { readonly dataLib: string; readonly contentId: string; readonly folders: readonly string[]; readonly files: readonly RecordFile[]; readonly previous?: PreviousContent | undefined }, json: string): void {
  fs.rmSync(preparedMarkerIn(t.dataLib, t.contentId), { force: true });
  const dir = path.join(t.dataLib, t.contentId);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  // Folders are sorted, so a parent is created before its children.
  for (const folder of t.folders) fs.mkdirSync(path.join(dir, folder));
  const previous = t.previous && t.previous.contentId !== t.contentId ? t.previous : undefined;
  const before = new Map(previous?.files.map((f) => [f.path, formatFileIni(f)] as const));
  for (const f of t.files) {
    const text = formatFileIni(f);
    const target = path.join(dir, `${f.path}.INI`);
    if (previous && before.get(f.path) === text && linkSameSync(path.join(t.dataLib, previous.contentId, `${f.path}.INI`), target, text)) continue;
    fs.writeFileSync(target, text, { flag: 'wx' });
  }
  writeFileAtomicSync(path.join(t.dataLib, `${t.contentId}.json`), json);
}

/** Links `target` to `existing` when `existing` holds exactly `text`; false (nothing done) otherwise. */
function linkSameSync(existing: string, target: string, text: string): boolean {
  try {
    if (fs.readFileSync(existing, 'utf8') !== text) return false;
    fs.linkSync(existing, target);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EXDEV' || code === 'EPERM' || code === 'EMLINK' || code === 'EACCES') return false;
    throw err;
  }
}

function contentRecordsSync(t: ContentRecordsTask): { missing: string[]; listsWritten: number } {
  const hashes = [...new Set(t.files.map((f) => f.hash))];
  // (1) Every file is in FileLib, or nothing is written.
  const missing = hashes.filter((h) => !isFile(filePathIn(t.fileLib, h)));
  if (missing.length > 0) return { missing, listsWritten: 0 };
  // (2) Unless prepareContent wrote it whole ahead of the files.
  if (t.record && !t.record.prepared) writeDataLibSync(t, t.record.json);
  // (3) The content joins every file's companion list.
  let listsWritten = 0;
  for (const h of hashes) if (addReferenceSync(`${filePathIn(t.fileLib, h)}.INI`, t.contentId)) listsWritten += 1;
  // (4) The content's INI, whose presence marks it complete; the marker has done its work.
  if (t.record) {
    writeFileAtomicSync(path.join(t.dataLib, `${t.contentId}.INI`), t.record.info);
    fs.rmSync(preparedMarkerIn(t.dataLib, t.contentId), { force: true });
  }
  return { missing: [], listsWritten };
}

function prepareRecordsSync(t: PrepareRecordsTask): void {
  writeDataLibSync(t, t.json);
  writeFileAtomicSync(preparedMarkerIn(t.dataLib, t.contentId), `${t.hash}\n`);
}

/** Fan-out folders of FileLib this worker has made or seen (a removal never deletes one). */
const madeDirs = new Set<string>();

function storeFilesSync(t: StoreFilesTask): { stored: string[]; written: string[]; rejected: { hash: string; actual: string }[]; writeError?: { code: string; message: string } } {
  const stored: string[] = [];
  const rejected: { hash: string; actual: string }[] = [];
  const written: string[] = [];
  for (const e of t.entries) {
    const data = t.data.subarray(e.start, e.start + e.size);
    const actual = createHash('sha256').update(data).digest('hex').toUpperCase();
    if (actual !== e.hash) {
      rejected.push({ hash: e.hash, actual });
      continue;
    }
    const dest = filePathIn(t.fileLib, e.hash);
    if (!t.replace && isFile(dest)) {
      stored.push(e.hash);
      continue;
    }
    const tmp = path.join(t.tempDir, `${e.hash}.${randomBytes(4).toString('hex')}.bundle`);
    try {
      const dir = path.dirname(dest);
      if (!madeDirs.has(dir)) {
        fs.mkdirSync(dir, { recursive: true });
        madeDirs.add(dir);
      }
      fs.writeFileSync(tmp, data, { mode: 0o644 });
      try {
        fs.renameSync(tmp, dest);
      } catch (err) {
        // A fan-out folder removed by hand since it was seen: made again, once.
        if (!isErrno(err, 'ENOENT')) throw err;
        madeDirs.delete(dir);
        fs.mkdirSync(dir, { recursive: true });
        fs.renameSync(tmp, dest);
      }
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      const e2 = err as NodeJS.ErrnoException;
      return { stored, written, rejected, writeError: { code: typeof e2.code === 'string' ? e2.code : 'EUNKNOWN', message: e2.message } };
    }
    written.push(e.hash);
    stored.push(e.hash);
  }
  return { stored, written, rejected };
}

function dropReferencesSync(t: DropReferencesTask): { last: string[]; listsWritten: number } {
  const last: string[] = [];
  let listsWritten = 0;
  for (const h of t.hashes) {
    const list = `${filePathIn(t.fileLib, h)}.INI`;
    const refs = readReferencesSync(list);
    const left = refs.filter((r) => r !== t.contentId);
    if (left.length === 0) {
      last.push(h);
      continue;
    }
    if (left.length !== refs.length) {
      writeFileAtomicSync(list, formatList(left));
      listsWritten += 1;
    }
  }
  return { last, listsWritten };
}

const NONE = { missing: [], last: [], listsWritten: 0, stored: [], written: [], rejected: [] };

/** Runs one task; never throws. */
export function runRecordsTask(t: RecordsTask): RecordsReply {
  try {
    if (t.kind === 'contentRecords') return { id: t.id, ok: true, ...NONE, ...contentRecordsSync(t) };
    if (t.kind === 'prepareRecords') {
      prepareRecordsSync(t);
      return { id: t.id, ok: true, ...NONE };
    }
    if (t.kind === 'storeFiles') return { id: t.id, ok: true, ...NONE, ...storeFilesSync(t) };
    return { id: t.id, ok: true, ...NONE, ...dropReferencesSync(t) };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return { id: t.id, ok: false, code: typeof e?.code === 'string' ? e.code : 'EUNKNOWN', message: e instanceof Error ? e.message : String(err) };
  }
}
