/**
 * The snapshot of a package source folder (spec 10, distribution manager:
 * "copies the source folder into the content library … creates the per-file
 * signatures used for delta transfer and the package hash"): walks the
 * folder, stores every file in FileLib and returns the content definition
 * and the files' block signatures.
 *
 * It owns nothing on disk but its temporary files in FileLib/.tmp/. It does
 * not record the content (no addContent): the distribution manager does that
 * after it has logged the definition. It must never read a file on the main
 * thread: each file is read exactly once, in a hash worker, which hashes it,
 * computes its block signature and copies it to a temporary file in one pass;
 * the main thread only walks folders and renames. Files of at least 1 MiB
 * get a signature of content-defined chunks (chunker.ts) and are stored as
 * those chunks (ADR 0009): the worker writes only the chunks ChunkLib does
 * not hold yet, and the snapshot adopts the file's manifest, so a changed
 * large file costs one read and its new chunks, not a copy of it.
 *
 * Source rules (what is refused, with which code):
 * - the folder is missing: CAIRN_PACKAGE_SOURCE_MISSING;
 * - it is not a folder, or an entry cannot be listed, opened or read (EACCES
 *   …), or changes while it is read: CAIRN_PACKAGE_SOURCE_UNREADABLE;
 * - a symbolic link whose target (realpath) lies outside the source folder:
 *   CAIRN_PACKAGE_SOURCE_ESCAPES, naming the link;
 * - a symbolic link to a file inside the folder is followed: the content gets
 *   a regular file with the target's bytes, mode and time (clients get the
 *   same bytes under both names; FileLib stores them once);
 * - a symbolic link to a folder is refused (UNREADABLE): following it would
 *   copy the subtree twice and can loop; a broken link is refused too;
 * - sockets, FIFOs and devices are refused (UNREADABLE);
 * - a name the library cannot store is refused (UNREADABLE): not valid
 *   UTF-8, a control character (tab and newline delimit the definition text),
 *   longer than 251 bytes (the data library appends `.INI`). Names with
 *   spaces, non-ASCII letters, leading dots or ending in `.INI` are fine.
 *
 * Signatures are kept beside the content in SigLib/<ContentID>.json
 * (`writeSignatures`/`readSignatures`); `signatureHash` gives the figure the
 * distribution manager logs.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import type { ContentDefinition, ContentLibrary, FileEntry, FileSignature } from './types.ts';
import type { HashPool } from './hash-pool.ts';
import { CairnError } from '../shared/errors.ts';
import { sharedHashPool } from './hash-pool.ts';
import { CHUNK_HASH_HEX, CHUNKING, SIGNATURE_MIN_FILE_SIZE } from './chunker.ts';
import { fileLibTempDir, forEachLimited, writeFileAtomic } from './content-library.ts';
import type { ChunkRef, FileManifest } from './chunk-lib.ts';
import {
  checkDefinitionConsistent,
  comparePaths,
  contentIdOf,
  definitionHash,
  parseContentId,
  segmentProblem,
  validateHash,
  validatePackageId,
  validateRelativePath,
} from './definition.ts';

export interface SnapshotResult {
  readonly definition: ContentDefinition;
  /** One signature per distinct file hash, sorted by hash. */
  readonly signatures: readonly FileSignature[];
  /** Bytes read from the source (each file once). */
  readonly bytesRead: number;
  /** Files the quick check kept from the previous version without reading them. */
  readonly filesUnchanged: number;
  /** Chunks of large files written to ChunkLib (the others were there already). */
  readonly chunksWritten: number;
  /** Each file's `<inode>:<ctime ns>` in the source, for the next update's quick check (writeSourceIndex). */
  readonly sources: Readonly<Record<string, string>>;
  /** With `verifyAll`: files the quick check would have kept although their bytes changed, by path. */
  readonly quickCheckMissed: readonly string[];
}

export interface SnapshotOptions {
  readonly packageId: string;
  readonly version: number;
  /** Called with a file's relative path once the file is stored in FileLib. */
  readonly onFile?: (path: string) => void;
  /** The hash workers to use; the process's shared pool when left out. */
  readonly pool?: HashPool;
  /**
   * The previous version, for the quick check of an update: a file whose
   * path, size, modification time (to the millisecond), permission bits and
   * (when `sources` records them) inode and change time are those recorded
   * for it, and whose bytes FileLib still holds, keeps its recorded hash and
   * signature without being read (rsync's and git's quick check; the change
   * time catches an edit that put the modification time back, which no
   * program can do to the change time). Left out, every file is read.
   */
  readonly previous?: {
    readonly definition: ContentDefinition;
    readonly signatures: readonly FileSignature[];
    /** The previous snapshot's `sources` (readSourceIndex); without it, size, time and mode decide. */
    readonly sources?: Readonly<Record<string, string>> | undefined;
  };
  /**
   * Reads and hashes every file even when the quick check would keep it
   * (`cairn admin package update --verify-all`); the previous version still
   * serves for extents, and `quickCheckMissed` names the files the quick
   * check would have got wrong.
   */
  readonly verifyAll?: boolean;
}

interface SourceFile {
  readonly rel: string;
  /** What to read: the entry itself, or the resolved target of a symbolic link. */
  readonly abs: string;
}

/** The subset of fs.Dirent and fs.Stats that classifies an entry. */
interface EntryKind {
  isFile(): boolean;
  isDirectory(): boolean;
  isSymbolicLink(): boolean;
  isFIFO(): boolean;
  isSocket(): boolean;
  isBlockDevice(): boolean;
  isCharacterDevice(): boolean;
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

function errnoCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

function reason(err: unknown): string {
  const code = errnoCode(err);
  const message = err instanceof Error ? err.message : String(err);
  return code && !message.startsWith(code) ? `${code}: ${message}` : message;
}

function unreadable(where: string, why: string, cause?: unknown): CairnError {
  return new CairnError('CAIRN_PACKAGE_SOURCE_UNREADABLE', `${where}: ${why}`, cause === undefined ? undefined : { cause });
}

function specialKind(k: EntryKind): string | undefined {
  if (k.isFIFO()) return 'a FIFO';
  if (k.isSocket()) return 'a socket';
  if (k.isBlockDevice() || k.isCharacterDevice()) return 'a device';
  return undefined;
}

function isInside(root: string, target: string): boolean {
  const rel = path.relative(root, target);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
}

/** Lists the source tree: every folder and every file (symbolic links to files resolved), or throws a source error. */
async function walkSource(sourceDir: string): Promise<{ folders: string[]; files: SourceFile[] }> {
  let root: string;
  try {
    const st = await fsp.stat(sourceDir);
    if (!st.isDirectory()) throw unreadable(sourceDir, 'not a folder');
    root = await fsp.realpath(sourceDir);
  } catch (err) {
    if (err instanceof CairnError) throw err;
    const code = errnoCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new CairnError('CAIRN_PACKAGE_SOURCE_MISSING', sourceDir, { cause: err });
    throw unreadable(sourceDir, reason(err), err);
  }

  const folders: string[] = [];
  const files: SourceFile[] = [];
  const walk = async (relDir: string): Promise<void> => {
    const absDir = relDir === '' ? root : path.join(root, relDir);
    let entries;
    try {
      entries = await fsp.readdir(absDir, { withFileTypes: true, encoding: 'buffer' });
    } catch (err) {
      throw unreadable(absDir, reason(err), err);
    }
    for (const entry of entries) {
      let name: string;
      try {
        name = UTF8.decode(entry.name);
      } catch {
        throw unreadable(path.join(absDir, entry.name.toString('utf8')), 'the name is not valid UTF-8');
      }
      const abs = path.join(absDir, name);
      const problem = segmentProblem(name);
      if (problem) throw unreadable(abs, `the name cannot be stored: ${problem}`);
      const rel = relDir === '' ? name : `${relDir}/${name}`;
      try {
        validateRelativePath(rel);
      } catch (err) {
        throw unreadable(abs, (err as CairnError).detail ?? 'the path cannot be stored', err);
      }
      let kind: EntryKind = entry;
      if (!entry.isFile() && !entry.isDirectory() && !entry.isSymbolicLink() && !specialKind(entry)) {
        // Some file systems do not report the type in the listing.
        try {
          kind = await fsp.lstat(abs);
        } catch (err) {
          throw unreadable(abs, reason(err), err);
        }
      }
      if (kind.isDirectory()) {
        folders.push(rel);
        await walk(rel);
      } else if (kind.isFile()) {
        files.push({ rel, abs });
      } else if (kind.isSymbolicLink()) {
        files.push({ rel, abs: await resolveLink(root, abs, rel) });
      } else {
        throw unreadable(abs, `${specialKind(kind) ?? 'an unknown kind of entry'} cannot be distributed`);
      }
    }
  };
  await walk('');
  return { folders, files };
}

/** The target of a symbolic link to a file inside the source folder; anything else is refused. */
async function resolveLink(root: string, abs: string, rel: string): Promise<string> {
  let target: string;
  try {
    target = await fsp.realpath(abs);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT') throw unreadable(abs, 'broken symbolic link', err);
    if (code === 'ELOOP') throw unreadable(abs, 'symbolic link loop', err);
    throw unreadable(abs, reason(err), err);
  }
  if (!isInside(root, target)) throw new CairnError('CAIRN_PACKAGE_SOURCE_ESCAPES', `${rel} → ${target}`);
  let st;
  try {
    st = await fsp.stat(target);
  } catch (err) {
    throw unreadable(abs, reason(err), err);
  }
  if (st.isDirectory()) throw unreadable(abs, 'a symbolic link to a folder is not supported');
  if (!st.isFile()) throw unreadable(abs, `it links to ${specialKind(st) ?? 'an unknown kind of entry'}`);
  return target;
}

/**
 * Snapshots `sourceDir` as content `<packageId>.<version>`: stores every file
 * in the library's FileLib and returns the definition (not yet recorded: the
 * caller calls `lib.addContent`), the block signatures and the bytes read.
 * Files already stored earlier may remain in FileLib when it fails partway;
 * they are unreferenced until a content that uses them is added.
 */
export async function snapshotFolder(lib: ContentLibrary, sourceDir: string, opts: SnapshotOptions): Promise<SnapshotResult> {
  const packageId = validatePackageId(opts.packageId);
  if (!Number.isSafeInteger(opts.version) || opts.version < 0) throw new CairnError('CAIRN_REQUEST_INVALID', `version ${opts.version} is not a non-negative integer`);
  const contentId = contentIdOf(packageId, opts.version);
  const pool = opts.pool ?? sharedHashPool();

  const { folders, files: sources } = await walkSource(sourceDir);

  const tmpDir = fileLibTempDir(lib.root);
  await fsp.mkdir(tmpDir, { recursive: true });
  const files: FileEntry[] = [];
  const signatures = new Map<string, FileSignature>();
  let bytesRead = 0;
  // Twice the pool size keeps every worker busy while the main thread renames.
  const previousByPath = new Map(opts.previous?.definition.files.map((f) => [f.path, f]) ?? []);
  const previousSigs = new Map(opts.previous?.signatures.map((sig) => [sig.hash, sig]) ?? []);
  const previousSources = opts.previous?.sources;
  const idents: Record<string, string> = {};
  const quickCheckMissed: string[] = [];
  let filesUnchanged = 0;
  let chunksWritten = 0;
  // Where the previous version's large files keep each chunk (ADR 0009, extents): built at the first changed large file.
  let extentIndex: Promise<Map<string, ChunkRef['src'] | string>> | undefined;
  const extentsOf = (): Promise<Map<string, ChunkRef['src'] | string>> => (extentIndex ??= buildExtentIndex(lib, opts.previous?.signatures ?? []));
  await forEachLimited(sources, pool.size * 2, async (src) => {
    const before = previousByPath.get(src.rel);
    let quickPass = false;
    if (before) {
      let st;
      try {
        st = await fsp.stat(src.abs, { bigint: true });
      } catch {
        st = undefined;
      }
      // The worker rounds the time to the nearest millisecond the same way.
      const mtime = st ? new Date(Number((st.mtimeNs + 500_000n) / 1_000_000n)).toISOString() : '';
      const sameSize = st !== undefined && Number(st.size) === before.size;
      const needsSig = before.size >= SIGNATURE_MIN_FILE_SIZE;
      const ident = st ? `${st.ino}:${st.ctimeNs}` : '';
      const recorded = previousSources?.[src.rel];
      if (st && sameSize && mtime === before.mtime && (Number(st.mode) & 0o7777) === before.mode && (recorded === undefined || recorded === ident) && (!needsSig || previousSigs.has(before.hash)) && (await lib.hasFile(before.hash))) {
        quickPass = true;
        if (!opts.verifyAll) {
          files.push({ ...before });
          idents[src.rel] = ident;
          const sig = previousSigs.get(before.hash);
          if (sig) signatures.set(before.hash, sig);
          filesUnchanged += 1;
          opts.onFile?.(src.rel);
          return;
        }
      }
    }
    const temp = path.join(tmpDir, `${randomBytes(12).toString('hex')}.tmp`);
    // A new version of a large file (its path had a large file before) is
    // stored as extents of the files the library holds plus its new chunks;
    // any other file is stored whole (ADR 0009, amended).
    const index = before && before.size >= SIGNATURE_MIN_FILE_SIZE && previousSigs.has(before.hash) ? await extentsOf() : undefined;
    let reply;
    try {
      const previousChunks = before ? previousSigs.get(before.hash)?.chunks : undefined;
      if (index && index.size > 0 && previousChunks) {
        // Two workers at once: one finds and stores the chunks, the other hashes the whole file.
        const [c, w] = await Promise.all([
          pool.hashFile(src.abs, { chunkDir: lib.chunkDir, skip: [...index.keys()], previous: previousChunks, only: 'chunks' }),
          pool.hashFile(src.abs, { only: 'whole' }),
        ]);
        if (!c.ok) reply = c;
        else if (!w.ok) reply = w;
        else if (c.size !== w.size || c.mtimeMs !== w.mtimeMs) reply = { id: c.id, ok: false as const, code: 'CHANGED', side: 'source' as const, message: 'the file changed while it was read' };
        else reply = { ...c, hash: w.hash };
      } else {
        reply = await pool.hashFile(src.abs, index && index.size > 0 ? { temp, chunkDir: lib.chunkDir, skip: [...index.keys()] } : { temp });
      }
    } catch (err) {
      // The worker died (or the pool closed) mid-file and could not clean up after itself.
      await fsp.rm(temp, { force: true });
      throw new CairnError('CAIRN_INTERNAL', `hashing ${src.rel} failed: ${reason(err)}`, { cause: err });
    }
    if (!reply.ok) {
      if (reply.side === 'temp') throw new CairnError('CAIRN_INTERNAL', `cannot store ${src.rel} in the content library: ${reply.message}`);
      if (reply.code === 'ENOENT') throw unreadable(src.abs, 'the file disappeared while the folder was read');
      throw unreadable(src.abs, reply.message.includes(reply.code) ? reply.message : `${reply.code}: ${reply.message}`);
    }
    try {
      // A file the library holds already (same bytes, new time) needs nothing: its chunks were not written.
      if (reply.chunked && reply.chunks) {
        if (!(await lib.hasFile(reply.hash))) await lib.adoptManifest(extentManifest(reply.hash, reply.chunks, index!), { verify: false });
      }
      else await lib.adoptFile(temp, reply.hash);
    } catch (err) {
      await fsp.rm(temp, { force: true });
      throw err;
    }
    chunksWritten += reply.chunksWritten;
    files.push({ path: src.rel, hash: reply.hash, size: reply.size, mode: reply.mode, mtime: new Date(reply.mtimeMs).toISOString() });
    idents[src.rel] = reply.ident;
    if (quickPass && before && reply.hash !== before.hash) quickCheckMissed.push(src.rel);
    // Signatures keep the first CHUNK_HASH_HEX digits of each chunk's hash (cairn-signatures/2).
    if (reply.chunks) signatures.set(reply.hash, { hash: reply.hash, size: reply.size, chunks: reply.chunks.map(([l, h]) => [l, h.slice(0, CHUNK_HASH_HEX)] as const) });
    bytesRead += reply.size;
    opts.onFile?.(src.rel);
  });

  folders.sort(comparePaths);
  files.sort((a, b) => comparePaths(a.path, b.path));
  const draft = { contentId, packageId, version: opts.version, size: files.reduce((sum, f) => sum + f.size, 0), folders, files };
  const definition: ContentDefinition = { ...draft, hash: definitionHash(draft) };
  try {
    checkDefinitionConsistent(definition);
  } catch (err) {
    // Only a name clash the data library cannot hold (a file `x` beside a folder `x.INI`) gets here.
    throw unreadable(sourceDir, (err as CairnError).detail ?? 'the tree cannot be stored', err);
  }
  const sorted = [...signatures.values()].sort((a, b) => comparePaths(a.hash, b.hash));
  quickCheckMissed.sort(comparePaths);
  return { definition, signatures: sorted, bytesRead, filesUnchanged, chunksWritten, sources: idents, quickCheckMissed };
}

/**
 * Where each chunk of the previous version's large files is kept, keyed by
 * `<first 32 hex of its hash>:<length>` (the signature's chunk ID): an extent
 * of a file stored whole, or (for a file stored as a manifest) the location
 * its manifest names, so a new manifest never names another manifest.
 */
async function buildExtentIndex(lib: ContentLibrary, sigs: readonly FileSignature[]): Promise<Map<string, ChunkRef['src'] | string>> {
  const index = new Map<string, ChunkRef['src'] | string>();
  for (const sig of sigs) {
    const st = await lib.statFile(sig.hash).catch(() => undefined);
    if (!st) continue;
    if (st.manifest) {
      for (const c of st.manifest.chunks) index.set(`${c.hash.slice(0, CHUNK_HASH_HEX)}:${c.length}`, c.src ?? c.hash);
      continue;
    }
    if (st.size !== sig.size) continue;
    let offset = 0;
    for (const [length, h] of sig.chunks) {
      const key = `${h}:${length}`;
      if (!index.has(key)) index.set(key, { file: sig.hash, offset });
      offset += length;
    }
  }
  return index;
}

/** The manifest of a file chunked against `index`: known chunks where the index keeps them, new ones in ChunkLib. */
function extentManifest(hash: string, chunks: readonly (readonly [number, string])[], index: Map<string, ChunkRef['src'] | string>): FileManifest {
  let offset = 0;
  const refs: ChunkRef[] = chunks.map(([length, h]) => {
    const at = index.get(`${h.slice(0, CHUNK_HASH_HEX)}:${length}`);
    const ref: ChunkRef = typeof at === 'object' && at.file !== hash ? { offset, length, hash: h, src: at } : { offset, length, hash: h };
    offset += length;
    return ref;
  });
  return { hash, size: offset, chunks: refs };
}

const SOURCE_INDEX_FORMAT = 'cairn-source-index/1';

function sourceIndexFile(root: string, contentId: string): string {
  return path.join(path.resolve(root), 'SigLib', `${parseContentId(contentId).contentId}.source.json`);
}

/**
 * Stores what the quick check of the next update compares besides size,
 * time and mode: each file's inode and change time in the source, at
 * `SigLib/<ContentID>.source.json` (the site's library only; DPs never get
 * it). Written atomically.
 */
export async function writeSourceIndex(root: string, contentId: string, sources: Readonly<Record<string, string>>): Promise<void> {
  const file = sourceIndexFile(root, contentId);
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await writeFileAtomic(file, JSON.stringify({ format: SOURCE_INDEX_FORMAT, contentId, sources }));
}

/** The source index of a content, or undefined when none is stored (a version snapshotted before it existed) or it is unreadable: the quick check then compares size, time and mode only. */
export async function readSourceIndex(root: string, contentId: string): Promise<Record<string, string> | undefined> {
  try {
    const body = JSON.parse(await fsp.readFile(sourceIndexFile(root, contentId), 'utf8')) as Record<string, unknown>;
    if (body.format !== SOURCE_INDEX_FORMAT || body.contentId !== contentId || typeof body.sources !== 'object' || body.sources === null) return undefined;
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(body.sources as Record<string, unknown>)) if (typeof v === 'string') out[k] = v;
    return out;
  } catch {
    return undefined;
  }
}

const SIGNATURES_FORMAT = 'cairn-signatures/2';
const CHUNK_HASH_RE = new RegExp(`^[0-9A-F]{${CHUNK_HASH_HEX}}$`);

function signaturesFile(root: string, contentId: string): string {
  return path.join(path.resolve(root), 'SigLib', `${parseContentId(contentId).contentId}.json`);
}

function canonicalSignatures(signatures: readonly FileSignature[]): FileSignature[] {
  return [...signatures]
    .sort((a, b) => comparePaths(a.hash, b.hash))
    .map((s) => ({ hash: s.hash, size: s.size, chunks: s.chunks.map(([l, h]) => [l, h] as const) }));
}

/** SHA-256 (upper-case hex) over the canonical JSON of the signatures: sorted by hash, members in a fixed order. */
export function signatureHash(signatures: readonly FileSignature[]): string {
  return createHash('sha256').update(JSON.stringify(canonicalSignatures(signatures)), 'utf8').digest('hex').toUpperCase();
}

/** Validates untrusted signatures (JSON array): chunk lengths within the chunking limits and adding up to the size. Throws CAIRN_REQUEST_INVALID or CAIRN_HASH_INVALID. */
export function parseSignatures(json: unknown): FileSignature[] {
  if (!Array.isArray(json)) throw new CairnError('CAIRN_REQUEST_INVALID', 'signatures must be an array');
  return json.map((s: unknown, i) => {
    if (typeof s !== 'object' || s === null) throw new CairnError('CAIRN_REQUEST_INVALID', `signatures[${i}] is not an object`);
    const { hash, size, chunks } = s as Record<string, unknown>;
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw new CairnError('CAIRN_REQUEST_INVALID', `signatures[${i}].size is not a non-negative integer`);
    if (!Array.isArray(chunks)) throw new CairnError('CAIRN_REQUEST_INVALID', `signatures[${i}].chunks is not an array`);
    let total = 0;
    const parsed = chunks.map((c: unknown, j) => {
      const ok = Array.isArray(c) && c.length === 2 && Number.isSafeInteger(c[0]) && c[0] > 0 && c[0] <= CHUNKING.maxSize && typeof c[1] === 'string' && CHUNK_HASH_RE.test(c[1]);
      if (!ok) throw new CairnError('CAIRN_REQUEST_INVALID', `signatures[${i}].chunks[${j}] is not [length, hash]`);
      total += c[0] as number;
      return [c[0] as number, c[1] as string] as const;
    });
    if (total !== size) throw new CairnError('CAIRN_REQUEST_INVALID', `signatures[${i}]: chunks add up to ${total} bytes, not ${size}`);
    return { hash: validateHash(hash), size, chunks: parsed };
  });
}

/** The signature file's text, as stored in SigLib and sent to DPs. */
export function formatSignatures(contentId: string, signatures: readonly FileSignature[]): string {
  return JSON.stringify({ format: SIGNATURES_FORMAT, contentId, chunking: CHUNKING, signatures: canonicalSignatures(signatures) });
}

/** Parses a signature file's JSON; undefined when it was made with other chunking parameters (then it cannot serve deltas). Throws CAIRN_REQUEST_INVALID when malformed. */
export function parseSignatureFile(json: unknown, contentId: string): FileSignature[] | undefined {
  const body = (typeof json === 'object' && json !== null ? json : {}) as Record<string, unknown>;
  if (body.format !== SIGNATURES_FORMAT || body.contentId !== contentId) throw new CairnError('CAIRN_REQUEST_INVALID', `not a ${SIGNATURES_FORMAT} file for ${contentId}`);
  const c = body.chunking as Record<string, unknown> | undefined;
  if (!c || c.algorithm !== CHUNKING.algorithm || c.minSize !== CHUNKING.minSize || c.avgSize !== CHUNKING.avgSize || c.maxSize !== CHUNKING.maxSize) return undefined;
  return parseSignatures(body.signatures);
}

/** Stores a content's signatures at `<root>/SigLib/<ContentID>.json` (written atomically). */
export async function writeSignatures(root: string, contentId: string, signatures: readonly FileSignature[]): Promise<void> {
  const file = signaturesFile(root, contentId);
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await writeFileAtomic(file, formatSignatures(contentId, signatures));
}

/** The path of a content's signature file (it may not exist). */
export function signaturesPath(root: string, contentId: string): string {
  return signaturesFile(root, contentId);
}

/** A content's stored signatures, or undefined when none are stored (or they were made with other chunking parameters). */
export async function readSignatures(root: string, contentId: string): Promise<FileSignature[] | undefined> {
  const file = signaturesFile(root, contentId);
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return parseSignatureFile(JSON.parse(text), contentId);
  } catch (err) {
    throw new CairnError('CAIRN_INTERNAL', `signature file ${file} is damaged: ${reason(err)}`, { cause: err });
  }
}
