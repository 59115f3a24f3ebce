/**
 * The content library on disk (spec 10, "Content library"; REFERENCE.md,
 * "Content library layout"): a single-instance store in which every distinct
 * file is kept once under its SHA-256, and contents are recorded as a folder
 * tree of small INI files. The same code runs on the site server and on every
 * distribution point.
 *
 *   PkgLib/<PkgID>.INI             [Packages] <ContentID>=   (the current content)
 *   DataLib/<ContentID>.INI        [Info] Hash= Size= FileCount= Version= PackageID=
 *   DataLib/<ContentID>/<path>.INI [File] Hash= Size= Attributes= TimeModified=
 *   DataLib/<ContentID>.json       the whole definition, for fast loading
 *   DataLib/<ContentID>.prepared   the content's hash, while records written ahead of its files (prepareContent) wait for addContent
 *   FileLib/<HASH[0..4]>/<HASH>    the file's bytes
 *   FileLib/<HASH[0..4]>/<HASH>.INI [Contents] <ContentID>=  (who uses the file)
 *   FileLib/.tmp/                  temporary files on their way into FileLib
 *   ChunkLib/…                     large files' chunks and their references (chunk-lib.ts, ADR 0009)
 *
 * A file of at least 1 MiB is stored as its content-defined chunks: its
 * FileLib entry is a `cairn-chunked/1` manifest instead of the bytes, and
 * every reader goes through `openFileReader`, which yields the same bytes
 * either way. A manifest is written only after every chunk it names is in
 * ChunkLib and flushed, and only after its reference (ChunkLib/Files/<HASH>,
 * a hard link to it) exists; a chunk is deleted only when no reference names
 * it, under an exclusive lock that adoptions of manifests share. So no
 * manifest ever names a missing chunk, whatever point a process is killed
 * at, and `recover()` at start finishes a removal cut short (a reference
 * whose manifest is gone).
 *
 * This module owns those folders. One process owns a library, so in-process
 * mutexes are enough to serialise the read-modify-write of a companion list
 * (per hash), of a package's list (per package) and of a content's record
 * (per content). Files that many readers depend on (PkgLib lists, new
 * companion lists, the content's INI and JSON) are written to a temporary
 * name and renamed, so a reader never sees half a file; a content joins an
 * existing companion list by one appended line (a single write, under the
 * hash's lock), and a new version's unchanged per-file INIs are hard links to
 * the current version's (records.ts, ADR 0015).
 *
 * Order of addContent, so that a crash at any point is repaired by adding the
 * content again: (1) check every file is in FileLib; (2) write the folder
 * tree, the per-file INIs and the JSON copy, unless prepareContent wrote
 * them while the files arrived (its `.prepared` marker, deleted before the
 * tree is written again or removed, says they are whole); (3) add the content to every
 * companion list; (4) write DataLib/<ContentID>.INI, whose presence marks the
 * content complete; (5) make it current in PkgLib. PkgLib is written after
 * the content's INI on purpose, so PkgLib never names an incomplete content.
 *
 * Removal (removeContent) runs the other way round: (1) PkgLib stops naming
 * the content; (2) DataLib/<ContentID>.INI is deleted, so the content is no
 * longer complete; (3) the content leaves each companion list, and a file
 * whose list is then empty leaves FileLib; (4) the folder tree, signatures
 * and, last, the JSON copy go. The JSON copy is what a repeated removal
 * reads the file list from, so a removal cut short at any point is finished
 * by removing again. Adding never deletes anything from FileLib or DataLib.
 * It must never trust a definition's shape: definitions are re-checked before
 * anything is written.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { ContentDefinition, ContentLibrary, FileEntry, ManifestAdoption, RemovalResult, StoredFiles, ValidationProblem } from './types.ts';
import type { Readable } from 'node:stream';
import { CHUNKED_MIN_FILE_SIZE, chunkLibDir, chunkPathIn, chunkedReadStream, flushChunks, formatManifest, parseManifestText, plainReadStream, SharedExclusiveLock, statStoredFile } from './chunk-lib.ts';
import type { FileManifest, StoredFile } from './chunk-lib.ts';
import { sharedHashPool } from './hash-pool.ts';
import { preparedMarkerIn } from './records.ts';
import type { PreviousContent, RecordsReply } from './records.ts';
import fs from 'node:fs';
import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { CairnError } from '../shared/errors.ts';
import {
  comparePaths,
  definitionHash,
  parseContentDefinition,
  parseContentId,
  validateHash,
  validatePackageId,
} from './definition.ts';

/** The folder for files on their way into FileLib: inside it, so on the same file system and a rename moves them. */
export function fileLibTempDir(root: string): string {
  return path.join(path.resolve(root), 'FileLib', '.tmp');
}

/** How many small files (INIs, stats) the library touches at once. */
const IO_CONCURRENCY = 32;
/** Contents whose definitions stay cached in memory (least recently used are dropped). */
const DEFAULT_CACHE_CONTENTS = 2000;

export interface ContentLibraryOptions {
  /** How many content definitions to keep in memory; default 2000. */
  readonly cacheContents?: number;
}

/** A mutex per key: tasks with the same key run one after another, in order. */
class KeyedMutex {
  readonly #tails = new Map<string, Promise<void>>();

  async run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const release = await this.#acquire(key);
    try {
      return await task();
    } finally {
      release();
    }
  }

  /**
   * Runs `task` holding the lock of every key (a content's file hashes). The
   * keys are taken in sorted order, so two such calls never wait on each
   * other in a cycle; `run` holds one key and never waits for a second.
   */
  async runAll<T>(keys: readonly string[], task: () => Promise<T>): Promise<T> {
    const releases: (() => void)[] = [];
    try {
      for (const key of [...new Set(keys)].sort()) releases.push(await this.#acquire(key));
      return await task();
    } finally {
      for (const release of releases) release();
    }
  }

  /** Waits for the key's earlier holders; resolves with the function that releases it. */
  async #acquire(key: string): Promise<() => void> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    let release = (): void => {};
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous.then(() => mine);
    this.#tails.set(key, tail);
    await previous;
    return () => {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    };
  }
}

/** The hash worker's answer to a bookkeeping task, or the errno error it met (ENOSPC, EACCES…) raised here. */
function recordsResult(r: RecordsReply): Extract<RecordsReply, { ok: true }> {
  if (r.ok) return r;
  throw Object.assign(new Error(r.message), { code: r.code });
}

/** Runs `fn` over `items`, at most `limit` at once; after the first error no new item starts, and it is thrown once the running ones settle. */
export async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | undefined;
  const lane = async (): Promise<void> => {
    while (failure === undefined && next < items.length) {
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  if (failure) throw failure.err;
}

function isErrno(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === code;
}

async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await fsp.readFile(file, 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}

/** Writes `file` atomically: a temporary name in the same folder, then rename. */
export async function writeFileAtomic(file: string, text: string): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await fsp.writeFile(tmp, text, { encoding: 'utf8', mode: 0o644 });
    await fsp.rename(tmp, file);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
}

/** Parses INI text into sections of ordered key/value pairs. Lines are `key=value`; `;` starts a comment. */
export function parseIni(text: string): Map<string, Map<string, string>> {
  const sections = new Map<string, Map<string, string>>();
  let current: Map<string, string> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '').trim();
    if (line === '' || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      const name = header[1] as string;
      current = sections.get(name) ?? new Map<string, string>();
      sections.set(name, current);
      continue;
    }
    const eq = line.indexOf('=');
    if (current && eq > 0) current.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
  }
  return sections;
}

export function formatIni(section: string, entries: readonly (readonly [string, string | number])[]): string {
  return `[${section}]\n${entries.map(([k, v]) => `${k}=${v}\n`).join('')}`;
}

/**
 * A manifest names chunks the library does not hold (`missing`), or whole
 * files its extents read from that it does not hold whole (`sources`):
 * CAIRN_DP_CONTENT_INCOMPLETE, with both lists.
 */
/** addContent's refusal of a content whose files are not all in FileLib; `missing` are their hashes. */
export class FilesMissingError extends CairnError {
  readonly missing: readonly string[];
  constructor(message: string, missing: readonly string[]) {
    super('CAIRN_DP_CONTENT_INCOMPLETE', message);
    this.missing = missing;
  }
}

export class ChunksMissingError extends CairnError {
  readonly missing: readonly string[];
  readonly sources: readonly string[];
  constructor(fileHash: string, missing: readonly string[], sources: readonly string[] = []) {
    const what = [
      ...(missing.length ? [`${missing.length} chunk(s) not in the library: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`] : []),
      ...(sources.length ? [`${sources.length} whole file(s) its extents read from, not in the library: ${sources.slice(0, 5).join(', ')}${sources.length > 5 ? ', …' : ''}`] : []),
    ];
    super('CAIRN_DP_CONTENT_INCOMPLETE', `file ${fileHash} needs ${what.join('; ')}`);
    this.missing = missing;
    this.sources = sources;
  }
}

/** The hash worker's view of a manifest's chunks: [length, hash] in ChunkLib, or [length, hash, path, offset] for an extent. */
function workerChunks(lib: { filePath(hash: string): string }, m: FileManifest): (readonly [number, string] | readonly [number, string, string, number])[] {
  return m.chunks.map((c) => (c.src ? ([c.length, c.hash, lib.filePath(c.src.file), c.src.offset] as const) : ([c.length, c.hash] as const)));
}

function damaged(file: string, why: string): CairnError {
  return new CairnError('CAIRN_INTERNAL', `content library record ${file} is damaged: ${why}`);
}

function iniNumber(section: Map<string, string>, key: string, file: string, radix = 10): number {
  const text = section.get(key);
  const n = text === undefined ? NaN : radix === 10 ? Number(text) : parseInt(text, radix);
  if (!Number.isSafeInteger(n) || n < 0) throw damaged(file, `${key}=${text ?? ''}`);
  return n;
}

/** Cached definitions are shared with every caller, so none of them may change one. */
function freezeDefinition(def: ContentDefinition): ContentDefinition {
  return Object.freeze({ ...def, folders: Object.freeze([...def.folders]), files: Object.freeze(def.files.map((f) => Object.freeze({ ...f }))) });
}

interface ContentInfo {
  readonly hash: string;
  readonly size: number;
  readonly fileCount: number;
  readonly version: number;
  readonly packageId: string;
}

class DefaultContentLibrary implements ContentLibrary {
  readonly root: string;
  readonly #pkgLib: string;
  readonly #dataLib: string;
  readonly #fileLib: string;
  readonly #cacheLimit: number;
  /** contentId → definition, in least-recently-used order (Map keeps insertion order). */
  readonly #cache = new Map<string, ContentDefinition>();
  readonly #hashLocks = new KeyedMutex();
  readonly #packageLocks = new KeyedMutex();
  readonly #contentLocks = new KeyedMutex();
  readonly chunkDir: string;
  readonly #chunkRefs: string;
  /** Shared by adoptions of manifests, exclusive for collecting unused chunks. */
  readonly #chunkLock = new SharedExclusiveLock();
  /** Parsed manifests by file hash (a manifest never changes for a hash), least recently used dropped. */
  readonly #manifests = new Map<string, FileManifest>();

  constructor(root: string, options: ContentLibraryOptions) {
    this.root = path.resolve(root);
    this.chunkDir = chunkLibDir(this.root);
    this.#chunkRefs = path.join(this.chunkDir, 'Files');
    this.#pkgLib = path.join(this.root, 'PkgLib');
    this.#dataLib = path.join(this.root, 'DataLib');
    this.#fileLib = path.join(this.root, 'FileLib');
    this.#cacheLimit = options.cacheContents ?? DEFAULT_CACHE_CONTENTS;
  }

  filePath(hash: string): string {
    const h = validateHash(hash);
    return path.join(this.#fileLib, h.slice(0, 4), h);
  }

  async hasFile(hash: string): Promise<boolean> {
    try {
      return (await fsp.stat(this.filePath(hash))).isFile();
    } catch (err) {
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return false;
      throw err;
    }
  }

  async missingFiles(hashes: readonly string[]): Promise<string[]> {
    const unique = [...new Set(hashes.map((h) => validateHash(h)))];
    const present = new Map<string, boolean>();
    await forEachLimited(unique, IO_CONCURRENCY, async (h) => {
      present.set(h, await this.hasFile(h));
    });
    return unique.filter((h) => !present.get(h));
  }

  async adoptFile(sourcePath: string, hash: string, opts: { readonly replace?: boolean } = {}): Promise<void> {
    const dest = this.filePath(hash);
    await this.#hashLocks.run(validateHash(hash), async () => {
      if (!opts.replace && (await this.hasFile(hash))) {
        await fsp.rm(sourcePath, { force: true });
        return;
      }
      await fsp.mkdir(path.dirname(dest), { recursive: true });
      try {
        // rename(2) replaces an existing file atomically: readers see the old bytes or the new.
        await fsp.rename(sourcePath, dest);
        // A manifest it replaced (a redistribute sends every file whole) is no longer what FileLib holds.
        this.#manifests.delete(validateHash(hash));
      } catch (err) {
        // Idempotent: a source already moved by an earlier call that then failed later is fine.
        if (isErrno(err, 'ENOENT') && (await this.hasFile(hash))) return;
        throw err;
      }
    });
  }

  chunkPath(hash: string): string {
    return chunkPathIn(this.chunkDir, validateHash(hash));
  }

  async missingChunks(hashes: readonly string[]): Promise<string[]> {
    const unique = [...new Set(hashes.map((h) => validateHash(h)))];
    const present = new Map<string, boolean>();
    await forEachLimited(unique, IO_CONCURRENCY, async (h) => {
      try {
        present.set(h, (await fsp.stat(this.chunkPath(h))).isFile());
      } catch (err) {
        if (!isErrno(err, 'ENOENT') && !isErrno(err, 'ENOTDIR')) throw err;
        present.set(h, false);
      }
    });
    return unique.filter((h) => !present.get(h));
  }

  async statFile(hash: string): Promise<StoredFile | undefined> {
    const h = validateHash(hash);
    const cached = this.#manifests.get(h);
    if (cached && (await this.hasFile(h))) return { size: cached.size, manifest: cached };
    const st = await statStoredFile(this.filePath(h), h);
    if (st?.manifest) this.#rememberManifest(st.manifest);
    return st;
  }

  async readManifest(hash: string): Promise<FileManifest | undefined> {
    return (await this.statFile(hash))?.manifest;
  }

  #rememberManifest(m: FileManifest): void {
    this.#manifests.delete(m.hash);
    this.#manifests.set(m.hash, m);
    while (this.#manifests.size > 32) this.#manifests.delete(this.#manifests.keys().next().value as string);
  }

  async openFileReader(hash: string, range?: { readonly start: number; readonly end: number }): Promise<{ size: number; chunked: boolean; stream: Readable }> {
    const st = await this.statFile(hash);
    if (!st) throw new CairnError('CAIRN_DP_FILE_NOT_FOUND', `file ${hash} is not in the content library`);
    const start = range?.start ?? 0;
    const end = range?.end ?? st.size - 1;
    const stream = st.manifest ? chunkedReadStream(this.chunkDir, st.manifest, start, end, (h) => this.filePath(h)) : plainReadStream(this.filePath(hash), start, end);
    return { size: st.size, chunked: st.manifest !== undefined, stream };
  }

  async adoptManifest(m: FileManifest, opts: { readonly verify: boolean; readonly replace?: boolean }): Promise<ManifestAdoption> {
    const hash = validateHash(m.hash);
    const cost = { verifyMs: 0, flushMs: 0, flushed: 0 };
    await this.#chunkLock.shared(async () => {
      const missing = await this.missingChunks(m.chunks.filter((c) => !c.src).map((c) => c.hash));
      // Extents read from files stored whole (a manifest never names another manifest).
      const sources = [...new Set(m.chunks.flatMap((c) => (c.src ? [c.src.file] : [])))];
      const absent: string[] = [];
      await forEachLimited(sources, IO_CONCURRENCY, async (f) => {
        const st = await this.statFile(f);
        if (!st || st.manifest) absent.push(f);
      });
      if (missing.length > 0 || absent.length > 0) throw new ChunksMissingError(hash, missing, absent);
      if (opts.verify) {
        const started = performance.now();
        const r = await sharedHashPool().hashChunks(this.chunkDir, workerChunks(this, m), false);
        if (r.whole === undefined) {
          const p = r.problems[0];
          throw new CairnError('CAIRN_DP_HASH_MISMATCH', `chunk ${p ? m.chunks[p.index]?.hash : '?'} of file ${hash}: ${p?.problem ?? 'unreadable'}`);
        }
        if (r.whole !== hash) throw new CairnError('CAIRN_DP_HASH_MISMATCH', `the chunks of file ${hash} hash to ${r.whole} in order`);
        cost.verifyMs = performance.now() - started;
      }
      await this.#hashLocks.run(hash, async () => {
        if (!opts.replace && (await this.hasFile(hash))) return;
        // The chunks reach the disk before anything names them: those this manifest names outside its extents.
        const own = m.chunks.flatMap((c) => (c.src ? [] : [c.hash]));
        const flushStarted = performance.now();
        await flushChunks(this.chunkDir, own);
        cost.flushMs = performance.now() - flushStarted;
        cost.flushed = new Set(own).size;
        const tmpDir = fileLibTempDir(this.root);
        await fsp.mkdir(tmpDir, { recursive: true });
        await fsp.mkdir(this.#chunkRefs, { recursive: true });
        const dest = this.filePath(hash);
        await fsp.mkdir(path.dirname(dest), { recursive: true });
        const tmp = path.join(tmpDir, `${hash}.${randomBytes(6).toString('hex')}.manifest`);
        try {
          await fsp.writeFile(tmp, formatManifest(m), { mode: 0o644 });
          // The reference first: from here on the chunks are in use.
          try {
            await fsp.link(tmp, path.join(this.#chunkRefs, hash));
          } catch (err) {
            if (!isErrno(err, 'EEXIST')) throw err;
          }
          await fsp.rename(tmp, dest);
        } catch (err) {
          await fsp.rm(tmp, { force: true });
          throw err;
        }
        this.#rememberManifest(m);
      });
    });
    return cost;
  }

  /**
   * Deletes the chunks of the given manifests (whose FileLib entries are
   * gone) that no other reference names, then the whole files their extents
   * read from and the `candidates` (large whole files no content uses any
   * more) that no other manifest reads from and no content uses, then the
   * references themselves.
   */
  async #collectChunks(hashes: readonly string[], candidates: readonly string[] = []): Promise<{ chunksDeleted: number; filesDeleted: number; bytesFreed: number }> {
    if (hashes.length === 0 && candidates.length === 0) return { chunksDeleted: 0, filesDeleted: 0, bytesFreed: 0 };
    return this.#chunkLock.exclusive(async () => {
      let names: string[];
      try {
        names = await fsp.readdir(this.#chunkRefs);
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
        names = [];
      }
      const dropping = new Set<string>();
      for (const h of hashes) {
        // Adopted again since its removal began: still in use.
        if (!(await this.hasFile(h))) dropping.add(h);
      }
      const keep = new Set<string>();
      const keepSources = new Set<string>();
      const dropped: FileManifest[] = [];
      await forEachLimited(names, 4, async (name) => {
        const m = await this.#readReference(name);
        if (!m) return;
        if (dropping.has(name)) dropped.push(m);
        else
          for (const c of m.chunks) {
            if (c.src) keepSources.add(c.src.file);
            else keep.add(c.hash);
          }
      });
      let chunksDeleted = 0;
      let filesDeleted = 0;
      let bytesFreed = 0;
      const dropSource = async (f: string): Promise<void> => {
        if (keepSources.has(f)) return;
        keepSources.add(f);
        await this.#hashLocks.run(f, async () => {
          const file = this.filePath(f);
          if ((await this.#readReferences(`${file}.INI`)).length > 0) return;
          const st = await this.statFile(f).catch(() => undefined);
          if (!st || st.manifest) return;
          try {
            await fsp.rm(file);
            filesDeleted += 1;
            bytesFreed += st.size;
          } catch (err) {
            if (!isErrno(err, 'ENOENT')) throw err;
          }
          await fsp.rm(`${file}.INI`, { force: true });
        });
      };
      for (const m of dropped) {
        const gone = [...new Set(m.chunks.flatMap((c) => (c.src ? [] : [c.hash])))].filter((c) => !keep.has(c));
        await forEachLimited(gone, IO_CONCURRENCY, async (c) => {
          try {
            await fsp.rm(chunkPathIn(this.chunkDir, c));
            chunksDeleted += 1;
          } catch (err) {
            if (!isErrno(err, 'ENOENT')) throw err;
          }
        });
        for (const c of gone) keep.add(c);
        for (const f of new Set(m.chunks.flatMap((c) => (c.src ? [c.src.file] : [])))) await dropSource(f);
        await fsp.rm(path.join(this.#chunkRefs, m.hash), { force: true });
        this.#manifests.delete(m.hash);
      }
      for (const f of candidates) await dropSource(f);
      // A reference that is not a manifest (damaged by hand) pins nothing.
      for (const h of dropping) await fsp.rm(path.join(this.#chunkRefs, h), { force: true });
      return { chunksDeleted, filesDeleted, bytesFreed };
    });
  }

  async #readReference(name: string): Promise<FileManifest | undefined> {
    if (!/^[0-9A-F]{64}$/.test(name)) return undefined;
    const cached = this.#manifests.get(name);
    if (cached) return cached;
    const text = await fsp.readFile(path.join(this.#chunkRefs, name)).catch((err: unknown) => {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    });
    return text ? parseManifestText(text, name) : undefined;
  }

  async recover(): Promise<{ referencesCollected: number; chunksDeleted: number }> {
    await fsp.rm(path.join(this.chunkDir, '.tmp'), { recursive: true, force: true });
    let names: string[];
    try {
      names = await fsp.readdir(this.#chunkRefs);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return { referencesCollected: 0, chunksDeleted: 0 };
      throw err;
    }
    // A reference whose manifest is not in FileLib: an adoption or a removal was cut short.
    const dangling: string[] = [];
    await forEachLimited(names, IO_CONCURRENCY, async (name) => {
      if (/^[0-9A-F]{64}$/.test(name) && !(await this.hasFile(name))) dangling.push(name);
    });
    const r = await this.#collectChunks(dangling);
    return { referencesCollected: dangling.length, chunksDeleted: r.chunksDeleted };
  }

  async addContent(def: ContentDefinition): Promise<void> {
    // Re-checked even though the type says it is fine: what is written here is the record.
    const sorted = parseContentDefinition(def);
    await this.#contentLocks.run(sorted.contentId, () => this.#addContentLocked(sorted));
  }

  async prepareContent(def: ContentDefinition): Promise<boolean> {
    const sorted = parseContentDefinition(def);
    return this.#contentLocks.run(sorted.contentId, async () => {
      if ((await this.#readInfo(sorted.contentId)) !== undefined) return false;
      if (await this.#dataLibPrepared(sorted)) return false;
      recordsResult(
        await sharedHashPool().prepareRecords({
          dataLib: this.#dataLib,
          contentId: sorted.contentId,
          folders: sorted.folders,
          files: sorted.files,
          json: JSON.stringify(sorted),
          hash: sorted.hash,
          previous: await this.#previousContent(sorted),
        }),
      );
      return true;
    });
  }

  /** The package's current content when it is not `def`: a new version's records link to its unchanged per-file INIs (records.ts). */
  async #previousContent(def: ContentDefinition): Promise<PreviousContent | undefined> {
    let current: ContentDefinition | undefined;
    try {
      current = await this.currentContent(def.packageId);
    } catch {
      // A damaged record of the current version: this one's records are written in full.
      return undefined;
    }
    if (!current || current.contentId === def.contentId) return undefined;
    return { contentId: current.contentId, files: current.files };
  }

  /** `DataLib/<ContentID>.prepared`: DataLib/<ContentID>/ and the JSON copy were written whole by prepareContent. */
  #preparedMarker(contentId: string): string {
    return preparedMarkerIn(this.#dataLib, contentId);
  }

  /**
   * True when prepareContent wrote `def`'s records and nothing has touched
   * them since: the marker names `def`'s hash and the JSON copy is `def`.
   * Writing the records again and removing the content both delete the
   * marker first, so a folder cut short by either never passes.
   */
  async #dataLibPrepared(def: ContentDefinition): Promise<boolean> {
    if ((await readIfExists(this.#preparedMarker(def.contentId)))?.trim() !== def.hash) return false;
    return (await readIfExists(path.join(this.#dataLib, `${def.contentId}.json`))) === JSON.stringify(def);
  }

  async #addContentLocked(def: ContentDefinition): Promise<void> {
    const existing = await this.#readInfo(def.contentId);
    if (existing && existing.hash !== def.hash) {
      throw new CairnError('CAIRN_REQUEST_INVALID', `content ${def.contentId} is already stored with hash ${existing.hash}, not ${def.hash}`);
    }
    // Steps 1–4 in one pass in a hash worker (records.ts, ADR 0015), holding
    // every companion list's lock; step 2 is skipped when prepareContent
    // wrote it whole. A content stored already (a crash after step 4) gets
    // only its companion lists repaired; that changes nothing when they are
    // complete.
    const info: [string, string | number][] = [
      ['Hash', def.hash],
      ['Size', def.size],
      ['FileCount', def.files.length],
      ['Version', def.version],
      ['PackageID', def.packageId],
    ];
    const record = existing ? undefined : { json: JSON.stringify(def), info: formatIni('Info', info), prepared: await this.#dataLibPrepared(def) };
    const previous = record && !record.prepared ? await this.#previousContent(def) : undefined;
    const hashes = [...new Set(def.files.map((f) => f.hash))];
    const r = await this.#hashLocks.runAll(hashes, async () =>
      recordsResult(await sharedHashPool().contentRecords({ fileLib: this.#fileLib, dataLib: this.#dataLib, contentId: def.contentId, folders: def.folders, files: def.files, record, previous })),
    );
    if (r.missing.length > 0) {
      const missingSet = new Set(r.missing);
      const named = def.files.filter((f) => missingSet.has(f.hash)).map((f) => `${f.path} (${f.hash})`);
      const shown = named.slice(0, 10).join(', ');
      throw new FilesMissingError(`content ${def.contentId} needs ${named.length} file(s) not in the library: ${shown}${named.length > 10 ? ', …' : ''}`, r.missing);
    }
    this.#remember(freezeDefinition(def));
    await this.#makeCurrent(def);
  }

  async storeFiles(data: Uint8Array, entries: readonly { hash: string; size: number; start: number }[], opts: { readonly replace: boolean; readonly tempDir: string }): Promise<StoredFiles> {
    const hashes = entries.map((e) => validateHash(e.hash));
    const r = await this.#hashLocks.runAll(hashes, async () => recordsResult(await sharedHashPool().storeFiles({ fileLib: this.#fileLib, tempDir: opts.tempDir, data, entries, replace: opts.replace })));
    if (opts.replace) for (const h of r.stored) this.#manifests.delete(h);
    return { stored: r.stored, written: r.written, rejected: r.rejected, writeError: r.writeError };
  }

  async #readReferences(file: string): Promise<string[]> {
    const text = await readIfExists(file);
    if (text === undefined) return [];
    return [...(parseIni(text).get('Contents')?.keys() ?? [])];
  }

  /** Makes `def` the package's current content, unless PkgLib already names a newer version. */
  async #makeCurrent(def: ContentDefinition): Promise<void> {
    await this.#packageLocks.run(def.packageId, async () => {
      const file = path.join(this.#pkgLib, `${def.packageId}.INI`);
      const listed = await this.#readPackageList(file);
      if (listed === def.contentId) return;
      // A late retry of an older version must not roll a package back.
      if (listed !== undefined && parseContentId(listed).version > def.version) return;
      await fsp.mkdir(this.#pkgLib, { recursive: true });
      await writeFileAtomic(file, formatIni('Packages', [[def.contentId, '']]));
    });
  }

  async #readPackageList(file: string): Promise<string | undefined> {
    const text = await readIfExists(file);
    if (text === undefined) return undefined;
    const ids = [...(parseIni(text).get('Packages')?.keys() ?? [])];
    // One line is the rule; should a hand-edited file list several, the highest version wins.
    let best: { id: string; version: number } | undefined;
    for (const id of ids) {
      const { version } = parseContentId(id);
      if (!best || version > best.version) best = { id, version };
    }
    return best?.id;
  }

  async #readInfo(contentId: string): Promise<ContentInfo | undefined> {
    const file = path.join(this.#dataLib, `${contentId}.INI`);
    const text = await readIfExists(file);
    if (text === undefined) return undefined;
    const info = parseIni(text).get('Info');
    if (!info) throw damaged(file, 'no [Info] section');
    let hash: string;
    try {
      hash = validateHash(info.get('Hash'));
    } catch {
      throw damaged(file, 'Hash is not a hash');
    }
    return {
      hash,
      size: iniNumber(info, 'Size', file),
      fileCount: iniNumber(info, 'FileCount', file),
      version: iniNumber(info, 'Version', file),
      packageId: info.get('PackageID') ?? '',
    };
  }

  #remember(def: ContentDefinition): void {
    this.#cache.delete(def.contentId);
    this.#cache.set(def.contentId, def);
    while (this.#cache.size > this.#cacheLimit) {
      const oldest = this.#cache.keys().next();
      if (oldest.done) break;
      this.#cache.delete(oldest.value);
    }
  }

  async getContent(contentId: string): Promise<ContentDefinition | undefined> {
    const id = parseContentId(contentId).contentId;
    const cached = this.#cache.get(id);
    if (cached) {
      this.#remember(cached);
      return cached;
    }
    const info = await this.#readInfo(id);
    if (!info) return undefined;
    const def = (await this.#loadJson(id, info)) ?? (await this.#loadIniTree(id, info));
    const frozen = freezeDefinition(def);
    this.#remember(frozen);
    return frozen;
  }

  /** The JSON copy, when it exists, is valid and matches the content's INI; otherwise undefined. */
  async #loadJson(contentId: string, info: ContentInfo): Promise<ContentDefinition | undefined> {
    const text = await readIfExists(path.join(this.#dataLib, `${contentId}.json`));
    if (text === undefined) return undefined;
    try {
      const def = parseContentDefinition(JSON.parse(text));
      return def.contentId === contentId && def.hash === info.hash ? def : undefined;
    } catch {
      // A damaged copy is only a lost shortcut: the INI tree is the record.
      return undefined;
    }
  }

  /** Rebuilds a definition from DataLib/<ContentID>/ (the documented layout) and checks it against [Info] Hash. */
  async #loadIniTree(contentId: string, info: ContentInfo): Promise<ContentDefinition> {
    const dir = path.join(this.#dataLib, contentId);
    const folders: string[] = [];
    const iniFiles: string[] = [];
    const walk = async (rel: string): Promise<void> => {
      const entries = await fsp.readdir(rel === '' ? dir : path.join(dir, rel), { withFileTypes: true });
      for (const e of entries) {
        const p = rel === '' ? e.name : `${rel}/${e.name}`;
        if (e.isDirectory()) {
          folders.push(p);
          await walk(p);
        } else if (e.isFile() && p.endsWith('.INI')) {
          iniFiles.push(p);
        }
      }
    };
    try {
      await walk('');
    } catch (err) {
      if (isErrno(err, 'ENOENT')) throw damaged(dir, 'the folder is missing');
      throw err;
    }
    const files: FileEntry[] = [];
    await forEachLimited(iniFiles, IO_CONCURRENCY, async (rel) => {
      const file = path.join(dir, rel);
      const section = parseIni(await fsp.readFile(file, 'utf8')).get('File');
      if (!section) throw damaged(file, 'no [File] section');
      let hash: string;
      try {
        hash = validateHash(section.get('Hash'));
      } catch {
        throw damaged(file, 'Hash is not a hash');
      }
      files.push({
        path: rel.slice(0, -'.INI'.length),
        hash,
        size: iniNumber(section, 'Size', file),
        mode: iniNumber(section, 'Attributes', file, 8),
        mtime: section.get('TimeModified') ?? '',
      });
    });
    folders.sort(comparePaths);
    files.sort((a, b) => comparePaths(a.path, b.path));
    const { packageId, version } = parseContentId(contentId);
    const def: ContentDefinition = {
      contentId,
      packageId,
      version,
      hash: info.hash,
      size: files.reduce((sum, f) => sum + f.size, 0),
      folders,
      files,
    };
    if (files.length !== info.fileCount) throw damaged(dir, `${files.length} file records, [Info] says ${info.fileCount}`);
    if (definitionHash(def) !== info.hash) throw damaged(dir, 'the files listed do not hash to [Info] Hash');
    return def;
  }

  async currentContent(packageId: string): Promise<ContentDefinition | undefined> {
    const id = await this.#readPackageList(path.join(this.#pkgLib, `${validatePackageId(packageId)}.INI`));
    return id === undefined ? undefined : this.getContent(id);
  }

  async fileReferences(hash: string): Promise<string[]> {
    return this.#readReferences(`${this.filePath(hash)}.INI`);
  }

  async listContents(packageId: string): Promise<string[]> {
    const pkg = validatePackageId(packageId);
    return (await this.#contentRecords())
      .filter((c) => c.packageId === pkg)
      .sort((a, b) => a.version - b.version)
      .map((c) => c.contentId);
  }

  /** Every content DataLib has a record of (`<ContentID>.INI` or `.json`), once each; stray files are ignored. */
  async #contentRecords(): Promise<ReturnType<typeof parseContentId>[]> {
    let names: string[];
    try {
      names = await fsp.readdir(this.#dataLib);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return [];
      throw err;
    }
    const byId = new Map<string, ReturnType<typeof parseContentId>>();
    for (const n of names) {
      const id = /^(.+)\.(?:INI|json)$/.exec(n)?.[1];
      if (!id || byId.has(id)) continue;
      try {
        byId.set(id, parseContentId(id));
      } catch {
        // Not a content record (a stray file); ignored.
      }
    }
    return [...byId.values()];
  }

  async removeContent(contentId: string): Promise<RemovalResult> {
    const id = parseContentId(contentId).contentId;
    return this.#contentLocks.run(id, () => this.#removeContentLocked(id));
  }

  async #removeContentLocked(contentId: string): Promise<RemovalResult> {
    const { packageId } = parseContentId(contentId);
    // (1) Nothing may serve a content that is being taken apart.
    await this.#packageLocks.run(packageId, async () => {
      const file = path.join(this.#pkgLib, `${packageId}.INI`);
      if ((await this.#readPackageList(file)) === contentId) await fsp.rm(file, { force: true });
    });
    const def = await this.#definitionForRemoval(contentId);
    this.#cache.delete(contentId);
    // (2) The content is no longer complete (nor prepared).
    await fsp.rm(path.join(this.#dataLib, `${contentId}.INI`), { force: true });
    await fsp.rm(this.#preparedMarker(contentId), { force: true });
    let filesDeleted = 0;
    let bytesFreed = 0;
    if (def) {
      // (3) Companion lists; a file nobody references leaves FileLib, and a chunk no manifest names leaves ChunkLib.
      const sizes = new Map(def.files.map((f) => [f.hash, f.size] as const));
      const manifests: string[] = [];
      const candidates: string[] = [];
      // Lists that name other contents too lose this one in one pass in a
      // hash worker (records.ts); a file this content was the last user of
      // goes through #dropReference below, which deletes it.
      const hashes = [...sizes.keys()];
      const { last } = await this.#hashLocks.runAll(hashes, async () => recordsResult(await sharedHashPool().dropReferences({ fileLib: this.#fileLib, contentId, hashes })));
      await forEachLimited(last, IO_CONCURRENCY, async (hash) => {
        const r = await this.#dropReference(hash, contentId);
        if (r.deleted) {
          filesDeleted += 1;
          bytesFreed += sizes.get(hash) ?? 0;
        }
        if (r.chunked) manifests.push(hash);
        if (r.candidate) candidates.push(hash);
      });
      const c = await this.#collectChunks(manifests, candidates);
      filesDeleted += c.filesDeleted;
      bytesFreed += c.bytesFreed;
    }
    // (4) The record itself; the JSON copy last, since a repeated removal reads the file list from it.
    await fsp.rm(path.join(this.#dataLib, contentId), { recursive: true, force: true });
    await fsp.rm(path.join(this.root, 'SigLib', `${contentId}.json`), { force: true });
    await fsp.rm(path.join(this.root, 'SigLib', `${contentId}.source.json`), { force: true });
    await fsp.rm(path.join(this.#dataLib, `${contentId}.json`), { force: true });
    return { contents: def ? [contentId] : [], filesDeleted, bytesFreed };
  }

  /** The definition to remove: the cached or stored one, or the JSON copy alone once the INI is gone. */
  async #definitionForRemoval(contentId: string): Promise<ContentDefinition | undefined> {
    try {
      const def = await this.getContent(contentId);
      if (def) return def;
    } catch {
      // A damaged record: fall through to the JSON copy.
    }
    const text = await readIfExists(path.join(this.#dataLib, `${contentId}.json`));
    if (text === undefined) return undefined;
    try {
      return parseContentDefinition(JSON.parse(text));
    } catch {
      return undefined;
    }
  }

  /**
   * Removes `contentId` from the file's companion list; deletes the file when
   * no content is left. `chunked` when what was deleted was a manifest, or its
   * reference was left by a removal cut short: its chunks are to be collected.
   * `candidate` when no content is left but the file is large and whole: a
   * manifest's extents may read from it, so #collectChunks decides (its
   * companion list is gone already).
   */
  async #dropReference(hash: string, contentId: string): Promise<{ deleted: boolean; chunked: boolean; candidate?: boolean }> {
    return this.#hashLocks.run(hash, async () => {
      const file = this.filePath(hash);
      const listFile = `${file}.INI`;
      const refs = await this.#readReferences(listFile);
      const left = refs.filter((r) => r !== contentId);
      if (left.length > 0) {
        if (left.length !== refs.length) await writeFileAtomic(listFile, formatIni('Contents', left.map((r) => [r, ''] as const)));
        return { deleted: false, chunked: false };
      }
      const chunked = await fsp.stat(path.join(this.#chunkRefs, hash)).then(
        () => true,
        () => false,
      );
      if (!chunked) {
        const st = await fsp.stat(file).catch(() => undefined);
        if (st && st.size >= CHUNKED_MIN_FILE_SIZE && !(await this.statFile(hash))?.manifest) {
          await fsp.rm(listFile, { force: true });
          return { deleted: false, chunked: false, candidate: true };
        }
      }
      // The bytes go first: a companion list left without its file is harmless, a file without its list is garbage.
      let existed = false;
      try {
        await fsp.rm(file);
        existed = true;
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
      }
      await fsp.rm(listFile, { force: true });
      return { deleted: existed, chunked };
    });
  }

  async removeOlderContents(packageId: string, keepContentId: string): Promise<RemovalResult> {
    const keep = parseContentId(keepContentId);
    const older = (await this.listContents(packageId)).filter((id) => parseContentId(id).version < keep.version);
    return this.#removeAll(older);
  }

  async supersededContents(): Promise<string[]> {
    // One listing for every package: contents grouped by package, then each package's current version.
    const byPackage = new Map<string, ReturnType<typeof parseContentId>[]>();
    for (const c of await this.#contentRecords()) byPackage.set(c.packageId, [...(byPackage.get(c.packageId) ?? []), c]);
    const out: string[] = [];
    for (const [pkg, contents] of byPackage) {
      if (contents.length < 2) continue;
      const current = await this.#readPackageList(path.join(this.#pkgLib, `${pkg}.INI`));
      if (current === undefined) continue;
      const keep = parseContentId(current).version;
      for (const c of contents) if (c.version < keep) out.push(c.contentId);
    }
    return out.sort(comparePaths);
  }

  async removePackage(packageId: string): Promise<RemovalResult> {
    const pkg = validatePackageId(packageId);
    await this.#packageLocks.run(pkg, () => fsp.rm(path.join(this.#pkgLib, `${pkg}.INI`), { force: true }));
    return this.#removeAll(await this.listContents(pkg));
  }

  async #removeAll(ids: readonly string[]): Promise<RemovalResult> {
    const contents: string[] = [];
    let filesDeleted = 0;
    let bytesFreed = 0;
    for (const id of ids) {
      const r = await this.removeContent(id);
      contents.push(...r.contents);
      filesDeleted += r.filesDeleted;
      bytesFreed += r.bytesFreed;
    }
    return { contents, filesDeleted, bytesFreed };
  }

  async validateContent(contentId: string): Promise<ValidationProblem[]> {
    const def = await this.getContent(contentId);
    if (!def) throw new CairnError('CAIRN_NOT_FOUND', `content ${contentId} is not in the content library`);
    const problems: ValidationProblem[] = [];
    const byHash = new Map<string, FileEntry[]>();
    for (const f of def.files) byHash.set(f.hash, [...(byHash.get(f.hash) ?? []), f]);
    // Each distinct file is read once, a few at a time: validation must not starve downloads.
    await forEachLimited([...byHash.keys()], 2, async (hash) => {
      const entries = byHash.get(hash)!;
      const expectedSize = entries[0]!.size;
      let actual: string;
      let size: number;
      const stored = await this.statFile(hash).catch(() => undefined);
      if (stored?.manifest) {
        // A chunked file: every chunk re-hashed, and the whole file over the chunks in order.
        const m = stored.manifest;
        const r = await sharedHashPool().hashChunks(this.chunkDir, workerChunks(this, m), true);
        const first = r.problems[0];
        if (first) {
          const chunk = m.chunks[first.index]!.hash;
          const problem = first.problem === 'missing' ? 'missing' : first.problem === 'size mismatch' ? 'size mismatch' : 'hash mismatch';
          for (const f of entries) problems.push({ path: f.path, hash, problem, chunk, ...(first.actual ? { actual: first.actual } : {}) });
        } else if (m.size !== expectedSize) {
          for (const f of entries) problems.push({ path: f.path, hash, problem: 'size mismatch', ...(r.whole ? { actual: r.whole } : {}) });
        } else if (r.whole !== hash) {
          for (const f of entries) problems.push({ path: f.path, hash, problem: 'hash mismatch', ...(r.whole ? { actual: r.whole } : {}) });
        }
        return;
      }
      try {
        const hasher = createHash('sha256');
        size = (await fsp.stat(this.filePath(hash))).size;
        await pipeline(fs.createReadStream(this.filePath(hash)), hasher);
        actual = hasher.digest('hex').toUpperCase();
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
        for (const f of entries) problems.push({ path: f.path, hash, problem: 'missing' });
        return;
      }
      if (size !== expectedSize) for (const f of entries) problems.push({ path: f.path, hash, problem: 'size mismatch', actual });
      else if (actual !== hash) for (const f of entries) problems.push({ path: f.path, hash, problem: 'hash mismatch', actual });
    });
    return problems.sort((a, b) => comparePaths(a.path, b.path));
  }
}

/** Opens (without touching the disk) the content library rooted at `root`; folders are created as needed. */
export function createContentLibrary(root: string, options: ContentLibraryOptions = {}): ContentLibrary {
  return new DefaultContentLibrary(root, options);
}
