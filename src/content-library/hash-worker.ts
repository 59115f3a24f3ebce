/**
 * The hash worker: a worker thread (started by hash-pool.ts) that reads one
 * file at a time, once, and computes its SHA-256, for a file of at least
 * SIGNATURE_MIN_FILE_SIZE its content-defined chunks (the file's signature
 * for delta transfer, chunker.ts), and optionally copies the bytes to a
 * temporary file for the content library to adopt.
 *
 * It owns nothing but the temporary file of the task in hand, which it
 * removes when the task fails. It must never write anywhere but the
 * temporary path it is given, ChunkLib, and what records.ts writes for the
 * content library (a bundle's files into FileLib, a content's records), and
 * never let one bad file kill the worker: every failure is answered as a
 * result for that task. Into ChunkLib and FileLib it renames only chunks and
 * files whose bytes it has just hashed (ADR 0009, ADR 0015): their names are
 * their content, so there is nothing to decide; records.ts runs only while
 * the content library holds the locks its task names.
 *
 * The work is synchronous on purpose: this thread exists to block on reads
 * and hashing so that the main thread's event loop does not.
 */
import fs from 'node:fs';
import { createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { CHUNK_HASH_HEX, CHUNKING, GearChunker, SIGNATURE_MIN_FILE_SIZE } from './chunker.ts';
import type { Chunk } from './chunker.ts';
import { runRecordsTask } from './records.ts';
import type { RecordsReply, RecordsTask } from './records.ts';

/** Bytes read at a time. */
export const READ_BUFFER_SIZE = 1024 * 1024;

/**
 * One task: hash `source`; when `temp` is given, copy the bytes there (a new
 * file). When `chunkDir` is given too and the file is at least
 * SIGNATURE_MIN_FILE_SIZE, the bytes go to ChunkLib instead (ADR 0009): each
 * chunk ChunkLib does not hold yet is written under ChunkLib/.tmp and renamed
 * to its hash (its bytes are the ones just hashed), and no temporary copy of
 * the whole file is made.
 */
export interface HashTask {
  readonly id: number;
  readonly kind?: 'file';
  readonly source: string;
  readonly temp: string | undefined;
  readonly chunkDir?: string | undefined;
  /**
   * With `chunkDir`: chunks (`<first 32 hex of the hash>:<length>`) the
   * library holds elsewhere already (extents of files stored whole, ADR 0009
   * amended); they are not written to ChunkLib.
   */
  readonly skip?: readonly string[] | undefined;
  /**
   * With `chunkDir`: the signature of the file's previous version (its
   * chunks' lengths and 32-hex hash prefixes). Chunks are then found by
   * checking the previous version's chunk at each point first (a SHA-256 of
   * that range) and running the gear chunker only where that fails; the
   * result is the chunker's own (see chunkAgainstPrevious).
   */
  readonly previous?: readonly (readonly [number, string])[] | undefined;
  /**
   * `whole`: only the whole file's SHA-256 (no chunks, no copy); `chunks`:
   * with `previous`, only the chunks (the reply's `hash` is empty). The
   * snapshot runs both at once in two workers for a changed large file.
   */
  readonly only?: 'whole' | 'chunks' | undefined;
}

/** Stores chunks that arrived in a bundle: each is hashed, and stored only when it matches. */
export interface StoreChunksTask {
  readonly id: number;
  readonly kind: 'storeChunks';
  readonly chunkDir: string;
  readonly data: Uint8Array;
  readonly entries: readonly { readonly hash: string; readonly size: number; readonly start: number }[];
  readonly replace: boolean;
}

export interface StoreChunksReply {
  readonly id: number;
  readonly ok: true;
  readonly stored: string[];
  readonly rejected: { hash: string; actual: string }[];
  /** Chunks written (not already held). */
  readonly written: number;
  /** errno code when writing failed (ENOSPC …); what was stored before it is in `stored`. */
  readonly writeError?: { code: string; message: string };
}

/**
 * Reads a chunked file's chunks in order: the whole file's SHA-256, and with
 * `perChunk` each chunk's. A chunk is [length, hash] (in ChunkLib) or
 * [length, hash, path, offset] (an extent of a whole file).
 */
export interface HashChunksTask {
  readonly id: number;
  readonly kind: 'hashChunks';
  readonly chunkDir: string;
  readonly chunks: readonly (readonly [number, string] | readonly [number, string, string, number])[];
  readonly perChunk: boolean;
}

export interface HashChunksReply {
  readonly id: number;
  readonly ok: true;
  /** SHA-256 of the chunks' bytes in order; undefined when a chunk is missing or of the wrong size. */
  readonly whole: string | undefined;
  readonly problems: { index: number; problem: 'missing' | 'size mismatch' | 'hash mismatch'; actual?: string }[];
}

export type WorkerTask = HashTask | StoreChunksTask | HashChunksTask | RecordsTask;
export type WorkerReply = HashReply | StoreChunksReply | HashChunksReply | RecordsReply;

export interface HashSuccess {
  readonly id: number;
  readonly ok: true;
  readonly hash: string;
  readonly size: number;
  /** The content-defined chunks with their full SHA-256, for a file of at least SIGNATURE_MIN_FILE_SIZE bytes; otherwise undefined. */
  readonly chunks: Chunk[] | undefined;
  /** True when the bytes went to ChunkLib (no temporary copy of the whole file exists). */
  readonly chunked: boolean;
  /** Chunks written to ChunkLib by this task (the others were there already). */
  readonly chunksWritten: number;
  /** Permission bits of the source (mode & 0o7777). */
  readonly mode: number;
  /** Modification time, rounded to the nearest millisecond. */
  readonly mtimeMs: number;
  /** `<inode>:<ctime in ns>` of the source as it was opened, for the snapshot's quick check next time. */
  readonly ident: string;
}

export interface HashFailure {
  readonly id: number;
  readonly ok: false;
  /** errno code (`EACCES`, `ENOSPC` …) or `NOT_A_FILE` / `CHANGED`. */
  readonly code: string;
  /** Which side failed: reading the source or writing the temporary file. */
  readonly side: 'source' | 'temp';
  readonly message: string;
}

export type HashReply = HashSuccess | HashFailure;

class TaskError extends Error {
  constructor(
    readonly code: string,
    readonly side: 'source' | 'temp',
    message: string,
  ) {
    super(message);
  }
}

function errnoCode(err: unknown): string {
  return (err as NodeJS.ErrnoException | undefined)?.code ?? 'EIO';
}

function upperHex(h: ReturnType<typeof createHash>): string {
  return h.digest('hex').toUpperCase();
}

/** Writes all of `buf[0..len)` to `fd` (writeSync may write less than asked). */
function writeAll(fd: number, buf: Buffer, len: number): void {
  let off = 0;
  while (off < len) off += fs.writeSync(fd, buf, off, len - off);
}

export function hashFileSync(task: HashTask, buf: Buffer): HashReply {
  let src: number | undefined;
  let dst: number | undefined;
  try {
    try {
      // O_NONBLOCK: if the entry turned into a FIFO since the walk, open must not hang.
      src = fs.openSync(task.source, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    } catch (err) {
      throw new TaskError(errnoCode(err), 'source', (err as Error).message);
    }
    // bigint, to round the time to the nearest millisecond exactly: a time set
    // from a JS Date is often stored a hair below it (….088999 for .089).
    const before = fs.fstatSync(src, { bigint: true });
    if (!before.isFile()) throw new TaskError('NOT_A_FILE', 'source', 'not a regular file');
    const chunking = before.size >= BigInt(SIGNATURE_MIN_FILE_SIZE) && task.only !== 'whole';
    const toChunkLib = chunking && task.chunkDir !== undefined;
    if (task.temp !== undefined && !toChunkLib) {
      try {
        dst = fs.openSync(task.temp, 'wx', 0o644);
      } catch (err) {
        throw new TaskError(errnoCode(err), 'temp', `cannot create ${task.temp}: ${(err as Error).message}`);
      }
    }
    if (toChunkLib && task.previous && task.previous.length > 0) {
      const r = chunkAgainstPrevious(src, Number(before.size), task.previous, task.chunkDir!, new Set(task.skip ?? []), task.only !== 'chunks');
      const after = fs.fstatSync(src, { bigint: true });
      if (BigInt(r.size) !== before.size || after.size !== before.size || after.mtimeNs !== before.mtimeNs) {
        throw new TaskError('CHANGED', 'source', 'the file changed while it was read');
      }
      return { id: task.id, ok: true, hash: r.hash, size: r.size, chunks: r.chunks, chunked: true, chunksWritten: r.chunksWritten, mode: Number(before.mode) & 0o7777, mtimeMs: Number((before.mtimeNs + 500_000n) / 1_000_000n), ident: `${before.ino}:${before.ctimeNs}` };
    }
    const whole = createHash('sha256');
    const chunker = new GearChunker();
    const chunks: Chunk[] = [];
    let chunkHash = createHash('sha256');
    let chunkBytes = 0;
    let chunksWritten = 0;
    const skip = new Set(task.skip ?? []);
    const endChunk = (): void => {
      const h = chunkHash.digest('hex').toUpperCase();
      chunks.push([chunker.length, h]);
      if (toChunkLib && !skip.has(`${h.slice(0, 32)}:${chunker.length}`)) {
        try {
          if (storeChunk(task.chunkDir!, h, chunkBuf.subarray(0, chunkBytes), false)) chunksWritten += 1;
        } catch (err) {
          throw new TaskError(errnoCode(err), 'temp', `cannot store a chunk in ${task.chunkDir}: ${(err as Error).message}`);
        }
      }
      chunker.reset();
      chunkHash = createHash('sha256');
      chunkBytes = 0;
    };
    let size = 0;
    for (;;) {
      let n: number;
      try {
        n = fs.readSync(src, buf, 0, buf.length, null);
      } catch (err) {
        throw new TaskError(errnoCode(err), 'source', (err as Error).message);
      }
      if (n === 0) break;
      const chunk = buf.subarray(0, n);
      whole.update(chunk);
      size += n;
      if (chunking) {
        for (let pos = 0; pos < n; ) {
          const cut = chunker.feed(buf, pos, n);
          const end = cut === -1 ? n : cut;
          chunkHash.update(buf.subarray(pos, end));
          if (toChunkLib) {
            buf.copy(chunkBuf, chunkBytes, pos, end);
            chunkBytes += end - pos;
          }
          if (cut !== -1) endChunk();
          pos = end;
        }
      }
      if (dst !== undefined) {
        try {
          writeAll(dst, buf, n);
        } catch (err) {
          throw new TaskError(errnoCode(err), 'temp', `cannot write ${task.temp}: ${(err as Error).message}`);
        }
      }
    }
    if (chunking && chunker.length > 0) endChunk();
    const after = fs.fstatSync(src, { bigint: true });
    if (BigInt(size) !== before.size || after.size !== before.size || after.mtimeNs !== before.mtimeNs) {
      throw new TaskError('CHANGED', 'source', 'the file changed while it was read');
    }
    if (dst !== undefined) {
      try {
        // The library renames this file into place; its bytes must be on disk first.
        fs.fdatasyncSync(dst);
        fs.closeSync(dst);
        dst = undefined;
      } catch (err) {
        throw new TaskError(errnoCode(err), 'temp', `cannot write ${task.temp}: ${(err as Error).message}`);
      }
    }
    return { id: task.id, ok: true, hash: upperHex(whole), size, chunks: chunking ? chunks : undefined, chunked: toChunkLib, chunksWritten, mode: Number(before.mode) & 0o7777, mtimeMs: Number((before.mtimeNs + 500_000n) / 1_000_000n), ident: `${before.ino}:${before.ctimeNs}` };
  } catch (err) {
    if (dst !== undefined) {
      fs.closeSync(dst);
      dst = undefined;
    }
    if (task.temp !== undefined) fs.rmSync(task.temp, { force: true });
    if (err instanceof TaskError) return { id: task.id, ok: false, code: err.code, side: err.side, message: err.message };
    return { id: task.id, ok: false, code: errnoCode(err), side: 'source', message: (err as Error).message };
  } finally {
    if (src !== undefined) fs.closeSync(src);
    if (dst !== undefined) fs.closeSync(dst);
  }
}

/** Reads up to `length` bytes at `pos` into chunkBuf; returns how many (fewer only at the end of the file). */
function readAt(fd: number, length: number, pos: number): number {
  let done = 0;
  while (done < length) {
    let n: number;
    try {
      n = fs.readSync(fd, chunkBuf, done, length - done, pos + done);
    } catch (err) {
      throw new TaskError(errnoCode(err), 'source', (err as Error).message);
    }
    if (n === 0) break;
    done += n;
  }
  return done;
}

/**
 * Chunks a new version of a file against its previous version's signature,
 * with the same result as running the gear chunker over all of it (so its
 * signature is the canonical one), but running the chunker only where the
 * bytes changed. The chunker's state is reset at every cut, and whether it
 * cuts at the end of a range depends only on the range's bytes; so at a cut
 * point, when the bytes of the range the previous version's chunk would take
 * there hash the same, the chunker would cut there too: that chunk is taken
 * without scanning it. The chunk expected next is the one that followed the
 * chunk just found in the previous version, or the previous version's chunk
 * that starts at this offset; elsewhere, the chunker runs. The previous
 * version's last chunk (ended by the file's end, not by a cut) is taken only
 * where it ends this file too. One read of the file (page-cached re-reads of
 * a changed chunk aside); chunks not in `skip` are stored in ChunkLib.
 */
export function chunkAgainstPrevious(fd: number, size: number, previous: readonly (readonly [number, string])[], chunkDir: string, skip: ReadonlySet<string>, hashWhole = true): { hash: string; size: number; chunks: Chunk[]; chunksWritten: number } {
  const byKey = new Map<string, number>();
  const byStart = new Map<number, number>();
  let off = 0;
  previous.forEach(([l, h], i) => {
    const key = `${h}:${l}`;
    if (!byKey.has(key)) byKey.set(key, i);
    byStart.set(off, i);
    off += l;
  });
  const whole = createHash('sha256');
  const chunker = new GearChunker();
  const chunks: Chunk[] = [];
  let chunksWritten = 0;
  let p = 0;
  let next: number | undefined = 0;
  while (p < size) {
    let len: number | undefined;
    let hash: string | undefined;
    if (next !== undefined) {
      const [l, prefix] = previous[next]!;
      const last = next === previous.length - 1;
      if (p + l <= size && (!last || p + l === size)) {
        const n = readAt(fd, l, p);
        if (n === l) {
          const h = createHash('sha256').update(chunkBuf.subarray(0, l)).digest('hex').toUpperCase();
          if (h.slice(0, CHUNK_HASH_HEX) === prefix) {
            len = l;
            hash = h;
          }
        }
      }
    }
    if (len === undefined || hash === undefined) {
      const n = readAt(fd, Math.min(CHUNKING.maxSize, size - p), p);
      if (n === 0) break;
      chunker.reset();
      const cut = chunker.feed(chunkBuf, 0, n);
      len = cut === -1 ? n : cut;
      hash = createHash('sha256').update(chunkBuf.subarray(0, len)).digest('hex').toUpperCase();
    }
    const data = chunkBuf.subarray(0, len);
    if (hashWhole) whole.update(data);
    chunks.push([len, hash]);
    const key = `${hash.slice(0, CHUNK_HASH_HEX)}:${len}`;
    if (!skip.has(key)) {
      try {
        if (storeChunk(chunkDir, hash, data, false)) chunksWritten += 1;
      } catch (err) {
        throw new TaskError(errnoCode(err), 'temp', `cannot store a chunk in ${chunkDir}: ${(err as Error).message}`);
      }
    }
    p += len;
    const i = byKey.get(key);
    next = i !== undefined && i + 1 < previous.length ? i + 1 : byStart.get(p);
  }
  return { hash: hashWhole ? upperHex(whole) : '', size: p, chunks, chunksWritten };
}

/** One chunk being assembled (at most the chunker's maximum), per worker. */
const chunkBuf = Buffer.allocUnsafe(CHUNKING.maxSize);
/** ChunkLib fan-out folders known to exist, so each is made once per worker. */
const madeDirs = new Set<string>();

/**
 * Stores one verified chunk: written under ChunkLib/.tmp and renamed to its
 * hash, so a reader never sees half a chunk. Not flushed: the content library
 * flushes the file system once before a manifest naming it is written.
 * Returns false when ChunkLib held it already (and `replace` is not set).
 */
export function storeChunk(chunkDir: string, hash: string, data: Uint8Array, replace: boolean): boolean {
  const dir = path.join(chunkDir, hash.slice(0, 2));
  const dest = path.join(dir, hash);
  if (!replace && fs.existsSync(dest)) return false;
  const tmpDir = path.join(chunkDir, '.tmp');
  if (!madeDirs.has(dir)) {
    fs.mkdirSync(dir, { recursive: true });
    fs.mkdirSync(tmpDir, { recursive: true });
    madeDirs.add(dir);
  }
  const tmp = path.join(tmpDir, `${hash}.${randomBytes(4).toString('hex')}`);
  try {
    const fd = fs.openSync(tmp, 'wx', 0o644);
    try {
      let off = 0;
      while (off < data.length) off += fs.writeSync(fd, data, off, data.length - off);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, dest);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    // A fan-out folder removed by hand (or by a test) since it was made: make it again once.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && madeDirs.has(dir)) {
      madeDirs.delete(dir);
      return storeChunk(chunkDir, hash, data, replace);
    }
    throw err;
  }
  return true;
}

export function storeChunksSync(task: StoreChunksTask): StoreChunksReply {
  const stored: string[] = [];
  const rejected: { hash: string; actual: string }[] = [];
  let written = 0;
  for (const e of task.entries) {
    const data = task.data.subarray(e.start, e.start + e.size);
    const actual = createHash('sha256').update(data).digest('hex').toUpperCase();
    if (actual !== e.hash) {
      rejected.push({ hash: e.hash, actual });
      continue;
    }
    try {
      if (storeChunk(task.chunkDir, e.hash, data, task.replace)) written += 1;
    } catch (err) {
      return { id: task.id, ok: true, stored, rejected, written, writeError: { code: errnoCode(err), message: (err as Error).message } };
    }
    stored.push(e.hash);
  }
  return { id: task.id, ok: true, stored, rejected, written };
}

export function hashChunksSync(task: HashChunksTask, buf: Buffer): HashChunksReply {
  const whole = createHash('sha256');
  const problems: HashChunksReply['problems'] = [];
  // Extents of one file follow each other: its descriptor stays open while they do.
  let open: { path: string; fd: number } | undefined;
  const fail = (i: number, problem: 'missing' | 'size mismatch'): boolean => {
    problems.push({ index: i, problem });
    return !task.perChunk;
  };
  try {
    for (let i = 0; i < task.chunks.length; i++) {
      const entry = task.chunks[i]!;
      const [length, hash] = entry;
      const extent = entry.length === 4 ? { path: entry[2], offset: entry[3] } : undefined;
      const file = extent ? extent.path : path.join(task.chunkDir, hash.slice(0, 2), hash);
      // Without per-chunk hashes, a run of extents that follow each other in one file is one range: read in large blocks, not a read per chunk.
      let runLength = length;
      let last = i;
      if (extent && !task.perChunk) {
        for (let j = i + 1; j < task.chunks.length; j++) {
          const e = task.chunks[j]!;
          if (e.length !== 4 || e[2] !== extent.path || e[3] !== extent.offset + runLength) break;
          runLength += e[0];
          last = j;
        }
      }
      const h = task.perChunk ? createHash('sha256') : undefined;
      if (open?.path !== file) {
        if (open) fs.closeSync(open.fd);
        open = undefined;
        try {
          open = { path: file, fd: fs.openSync(file, 'r') };
        } catch {
          if (fail(i, 'missing')) return { id: task.id, ok: true, whole: undefined, problems };
          continue;
        }
      }
      let size = 0;
      let pos = extent ? extent.offset : 0;
      for (;;) {
        // An extent reads exactly its length; a chunk file to its end (longer is a size mismatch).
        const want = extent ? Math.min(buf.length, runLength - size) : buf.length;
        if (want === 0) break;
        const n = fs.readSync(open.fd, buf, 0, want, pos);
        if (n === 0) break;
        pos += n;
        if (size + n <= runLength) whole.update(buf.subarray(0, n));
        size += n;
        h?.update(buf.subarray(0, n));
      }
      if (last > i) {
        // A run: short means its file is shorter than the extents say (whole is then undefined, as for one extent).
        if (size !== runLength) {
          if (fail(i, 'size mismatch')) return { id: task.id, ok: true, whole: undefined, problems };
        }
        i = last;
        continue;
      }
      if (size !== length) {
        if (fail(i, 'size mismatch')) return { id: task.id, ok: true, whole: undefined, problems };
        continue;
      }
      const actual = h?.digest('hex').toUpperCase();
      if (actual !== undefined && actual !== hash) problems.push({ index: i, problem: 'hash mismatch', actual });
    }
  } finally {
    if (open) fs.closeSync(open.fd);
  }
  const sizeProblem = problems.some((p) => p.problem !== 'hash mismatch');
  return { id: task.id, ok: true, whole: sizeProblem ? undefined : upperHex(whole), problems };
}

if (parentPort) {
  const port = parentPort;
  // One buffer per worker, reused for every read.
  const buf = Buffer.allocUnsafe(READ_BUFFER_SIZE);
  port.on('message', (task: WorkerTask) => {
    if (task.kind === 'storeChunks') port.postMessage(storeChunksSync(task));
    else if (task.kind === 'hashChunks') port.postMessage(hashChunksSync(task, buf));
    // A content's per-file bookkeeping and a bundle's files (records.ts, ADR 0015).
    else if (task.kind === 'contentRecords' || task.kind === 'prepareRecords' || task.kind === 'dropReferences' || task.kind === 'storeFiles') port.postMessage(runRecordsTask(task));
    else port.postMessage(hashFileSync(task, buf));
  });
}
