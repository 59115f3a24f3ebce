/**
 * Large files as content-defined chunks (ADR 0009): the `cairn-chunked/1`
 * manifest format, where chunks live, and the reader that yields a chunked
 * file's bytes (or a range of them) from its chunks in order.
 *
 *   ChunkLib/<HASH[0..2]>/<HASH>   one chunk's bytes, named by their full SHA-256
 *   ChunkLib/Files/<FILEHASH>      a hard link to each manifest in FileLib: the
 *                                  chunks it names are in use (the reference)
 *   ChunkLib/.tmp/                 chunks on their way in
 *
 * A manifest is the text `cairn-chunked/1\n` followed by one JSON line
 * `{"hash","size","chunks":[[offset,length,hash],…]}`; an entry
 * `[offset,length,hash,file,fileOffset]` is an extent: the chunk's bytes are
 * those of the whole file FileLib/<file> from `fileOffset` (ADR 0009,
 * amendment 2: a new version of a large file shares the old one's bytes
 * without copying them). A manifest never names another manifest. It is stored at
 * FileLib/<first 4 hex>/<FILEHASH> in place of the bytes. A file whose bytes
 * start with the magic line and parse as a manifest naming its own hash
 * cannot be a whole file: its SHA-256 would have to be a hash written inside
 * it (a fixed point of SHA-256), so the test below cannot mistake one for the
 * other.
 *
 * It owns the format and the reader; the content library (content-library.ts)
 * owns adopting, referencing and removing chunks and manifests. It must never
 * trust a manifest's shape: every manifest is checked when parsed.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { CairnError } from '../shared/errors.ts';
import { CHUNKING, SIGNATURE_MIN_FILE_SIZE } from './chunker.ts';
import { validateHash } from './definition.ts';

export const MANIFEST_FORMAT = 'cairn-chunked/1';
const MAGIC = Buffer.from(`${MANIFEST_FORMAT}\n`);
/** Files of at least this size are stored as chunks (the ones that have signatures). */
export const CHUNKED_MIN_FILE_SIZE = SIGNATURE_MIN_FILE_SIZE;
/** Largest chunk a manifest may name: the chunker's maximum. */
export const CHUNK_MAX_BYTES = CHUNKING.maxSize;

export interface ChunkRef {
  readonly offset: number;
  readonly length: number;
  /** Full SHA-256 of the chunk's bytes, upper-case hex. */
  readonly hash: string;
  /**
   * Where the bytes are when they are not ChunkLib/<hash>: an extent of a
   * whole file in FileLib (`file`, a file stored whole, never a manifest),
   * from byte `offset` (ADR 0009 amended: extents).
   */
  readonly src?: { readonly file: string; readonly offset: number } | undefined;
}

export interface FileManifest {
  /** SHA-256 of the whole file. */
  readonly hash: string;
  readonly size: number;
  readonly chunks: readonly ChunkRef[];
}

export function chunkLibDir(root: string): string {
  return path.join(path.resolve(root), 'ChunkLib');
}

export function chunkPathIn(chunkDir: string, hash: string): string {
  return path.join(chunkDir, hash.slice(0, 2), hash);
}

/** Builds a manifest from the chunker's [length, hash] list. */
export function manifestOf(hash: string, chunks: readonly (readonly [number, string])[]): FileManifest {
  let offset = 0;
  const refs = chunks.map(([length, h]) => {
    const ref = { offset, length, hash: h };
    offset += length;
    return ref;
  });
  return { hash, size: offset, chunks: refs };
}

export function formatManifest(m: FileManifest): string {
  return `${MANIFEST_FORMAT}\n${JSON.stringify({ hash: m.hash, size: m.size, chunks: m.chunks.map((c) => (c.src ? [c.offset, c.length, c.hash, c.src.file, c.src.offset] : [c.offset, c.length, c.hash])) })}\n`;
}

function invalid(detail: string): CairnError {
  return new CairnError('CAIRN_REQUEST_INVALID', `not a valid ${MANIFEST_FORMAT} manifest: ${detail}`);
}

/**
 * Checks untrusted manifest JSON (`{hash, size, chunks: [[offset, length,
 * hash] or [offset, length, hash, file, fileOffset]]}`): chunks contiguous
 * from 0, each 1..CHUNK_MAX_BYTES, adding up to the size; an extent names
 * another file (never this one) and a non-negative offset in it.
 */
export function parseManifestJson(json: unknown): FileManifest {
  const o = (typeof json === 'object' && json !== null ? json : {}) as Record<string, unknown>;
  let hash: string;
  try {
    hash = validateHash(o.hash);
  } catch {
    throw invalid('hash is not a SHA-256');
  }
  const size = o.size;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw invalid('size is not a non-negative integer');
  if (!Array.isArray(o.chunks) || (size > 0 && o.chunks.length === 0)) throw invalid('chunks is not a list');
  let at = 0;
  const chunks = o.chunks.map((c: unknown, i) => {
    if (!Array.isArray(c) || (c.length !== 3 && c.length !== 5)) throw invalid(`chunks[${i}] is not [offset, length, hash] or [offset, length, hash, file, fileOffset]`);
    const [offset, length, h, f, fo] = c as [unknown, unknown, unknown, unknown, unknown];
    if (offset !== at) throw invalid(`chunks[${i}] starts at ${String(offset)}, not ${at}`);
    if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 1 || length > CHUNK_MAX_BYTES) throw invalid(`chunks[${i}] has no valid length (1 to ${CHUNK_MAX_BYTES})`);
    let ch: string;
    try {
      ch = validateHash(h);
    } catch {
      throw invalid(`chunks[${i}] has no valid hash`);
    }
    let src: ChunkRef['src'];
    if (c.length === 5) {
      let file: string;
      try {
        file = validateHash(f);
      } catch {
        throw invalid(`chunks[${i}] names no valid file hash`);
      }
      if (file === hash) throw invalid(`chunks[${i}] names the file itself`);
      if (typeof fo !== 'number' || !Number.isSafeInteger(fo) || fo < 0) throw invalid(`chunks[${i}] has no valid offset in file ${file}`);
      src = { file, offset: fo };
    }
    at += length;
    return src ? { offset: at - length, length, hash: ch, src } : { offset: at - length, length, hash: ch };
  });
  if (at !== size) throw invalid(`the chunks add up to ${at} bytes, not ${size}`);
  return { hash, size, chunks };
}

/** Parses manifest text; undefined when it is not one (then the file holds plain bytes). */
export function parseManifestText(text: Buffer, expectHash?: string): FileManifest | undefined {
  if (text.length < MAGIC.length || !text.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  try {
    const m = parseManifestJson(JSON.parse(text.subarray(MAGIC.length).toString('utf8')));
    return expectHash === undefined || m.hash === expectHash ? m : undefined;
  } catch {
    return undefined;
  }
}

/** What FileLib/<hash> holds: a manifest, or plain bytes of `size`. Undefined when absent. */
export type StoredFile = { readonly size: number; readonly manifest: FileManifest | undefined };

/** Reads FileLib/<hash> just enough to tell a manifest from plain bytes. */
export async function statStoredFile(file: string, hash: string): Promise<StoredFile | undefined> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
  try {
    const st = await fh.stat();
    const head = Buffer.alloc(MAGIC.length);
    const { bytesRead } = await fh.read(head, 0, MAGIC.length, 0);
    if (bytesRead < MAGIC.length || !head.equals(MAGIC)) return { size: st.size, manifest: undefined };
    // A positional read does not move the file position, so readFile reads from the start.
    const manifest = parseManifestText(await fh.readFile(), hash);
    return manifest ? { size: manifest.size, manifest } : { size: st.size, manifest: undefined };
  } finally {
    await fh.close();
  }
}

/**
 * The bytes [start, end] (inclusive) of a chunked file, read from its chunks
 * in order. A chunk missing or shorter than the manifest says fails the
 * stream with CAIRN_DP_FILE_NOT_FOUND (the library is damaged; validation
 * reports it, a redistribute repairs it).
 */
export function chunkedReadStream(chunkDir: string, m: FileManifest, start = 0, end = m.size - 1, filePath: (hash: string) => string = () => ''): Readable {
  async function* generate(): AsyncGenerator<Buffer> {
    if (end < start) return;
    // Extents of one whole file follow each other: its handle stays open while they do.
    let open: { file: string; fh: fsp.FileHandle } | undefined;
    try {
      yield* read();
    } finally {
      await open?.fh.close();
    }
    async function* read(): AsyncGenerator<Buffer> {
    // First chunk that holds `start`, by binary search.
    let lo = 0;
    let hi = m.chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (m.chunks[mid]!.offset <= start) lo = mid;
      else hi = mid - 1;
    }
    for (let i = lo; i < m.chunks.length; i++) {
      const c = m.chunks[i]!;
      if (c.offset > end) break;
      const from = Math.max(start, c.offset) - c.offset;
      const to = Math.min(end, c.offset + c.length - 1) - c.offset;
      const buf = Buffer.allocUnsafe(to - from + 1);
      const where = c.src ? filePath(c.src.file) : chunkPathIn(chunkDir, c.hash);
      const base = c.src ? c.src.offset : 0;
      if (open?.file !== where) {
        await open?.fh.close();
        open = undefined;
        try {
          open = { file: where, fh: await fsp.open(where, 'r') };
        } catch (err) {
          const what = c.src ? `file ${c.src.file} holding chunk ${c.hash}` : `chunk ${c.hash}`;
          throw new CairnError('CAIRN_DP_FILE_NOT_FOUND', `${what} of file ${m.hash} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
        }
      }
      let done = 0;
      while (done < buf.length) {
        const { bytesRead } = await open.fh.read(buf, done, buf.length - done, base + from + done);
        if (bytesRead === 0) throw new CairnError('CAIRN_DP_FILE_NOT_FOUND', `chunk ${c.hash} of file ${m.hash} is shorter than ${c.length} bytes`);
        done += bytesRead;
      }
      yield buf;
    }
    }
  }
  return Readable.from(generate(), { objectMode: false, highWaterMark: 1024 * 1024 });
}

/** A plain file's bytes [start, end] (inclusive). */
export function plainReadStream(file: string, start: number, end: number): Readable {
  if (end < start) return Readable.from([]);
  return fs.createReadStream(file, { start, end, highWaterMark: 1024 * 1024 });
}

/**
 * A lock with a shared side (adopting manifests, many at once) and an
 * exclusive side (collecting chunks no manifest uses), so a chunk is never
 * deleted between a manifest's check that its chunks are present and the
 * manifest's reference being written.
 */
export class SharedExclusiveLock {
  #shared = 0;
  #exclusive = false;
  #waiting: { exclusive: boolean; go: () => void }[] = [];

  async shared<T>(task: () => Promise<T>): Promise<T> {
    await this.#acquire(false);
    try {
      return await task();
    } finally {
      this.#shared -= 1;
      this.#next();
    }
  }

  async exclusive<T>(task: () => Promise<T>): Promise<T> {
    await this.#acquire(true);
    try {
      return await task();
    } finally {
      this.#exclusive = false;
      this.#next();
    }
  }

  #acquire(exclusive: boolean): Promise<void> {
    // Queue behind a waiting exclusive holder, so collections are not starved.
    if (this.#waiting.length === 0 && !this.#exclusive && (exclusive ? this.#shared === 0 : true)) {
      if (exclusive) this.#exclusive = true;
      else this.#shared += 1;
      return Promise.resolve();
    }
    return new Promise((go) => this.#waiting.push({ exclusive, go }));
  }

  #next(): void {
    while (this.#waiting.length > 0 && !this.#exclusive) {
      const w = this.#waiting[0]!;
      if (w.exclusive) {
        if (this.#shared > 0) return;
        this.#waiting.shift();
        this.#exclusive = true;
        w.go();
        return;
      }
      this.#waiting.shift();
      this.#shared += 1;
      w.go();
    }
  }
}

/** Above this many chunks, one syncfs is cheaper than an fdatasync each (ADR 0009, amendment 3). */
export const FLUSH_EACH_MAX_CHUNKS = 256;

/**
 * Makes the chunks a manifest names durable before the manifest is written:
 * an fdatasync of each chunk and of each fan-out folder holding one (so its
 * name survives too), a few at a time; a chunk flushed before costs next to
 * nothing. An update names few chunks outside its extents, and flushing
 * only those does not wait for every dirty page of the file system (other
 * processes' included), as syncfs does. More than FLUSH_EACH_MAX_CHUNKS: one
 * syncfs (flushFileSystem). A chunk that is gone is left for the presence
 * check that follows to report.
 */
export async function flushChunks(chunkDir: string, hashes: readonly string[]): Promise<void> {
  const unique = [...new Set(hashes)];
  if (unique.length === 0) return;
  if (unique.length > FLUSH_EACH_MAX_CHUNKS) return flushFileSystem(chunkDir);
  const paths = [...unique.map((h) => chunkPathIn(chunkDir, h)), ...new Set(unique.map((h) => path.join(chunkDir, h.slice(0, 2))))];
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < paths.length) {
      const p = paths[next++]!;
      let fh: fsp.FileHandle;
      try {
        fh = await fsp.open(p, 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      try {
        await fh.datasync();
      } finally {
        await fh.close();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(8, paths.length) }, lane));
}

/**
 * Flushes the file system holding `dir` (syncfs(2), through coreutils'
 * `sync -f`): chunks are written without a flush each (thousands of
 * fdatasync calls cost seconds), and flushed together before a manifest that
 * names them is written. Where `sync -f` is not available, the chunks stay
 * unflushed and a validation finds any a power cut took (ADR 0002's rule for
 * bundles).
 */
export async function flushFileSystem(dir: string): Promise<void> {
  const { execFile } = await import('node:child_process');
  await new Promise<void>((resolve) => execFile('sync', ['-f', dir], () => resolve()));
}
