/**
 * The hash worker: a worker thread (started by hash-pool.ts) that reads one
 * file at a time, once, and computes its SHA-256, for a file of at least
 * SIGNATURE_MIN_FILE_SIZE its content-defined chunks (the file's signature
 * for delta transfer, chunker.ts), and optionally copies the bytes to a
 * temporary file for the content library to adopt.
 *
 * It owns nothing but the temporary file of the task in hand, which it
 * removes when the task fails. It must never write anywhere but the
 * temporary path it is given, never rename into the library (the main thread
 * decides that), and never let one bad file kill the worker: every failure is
 * answered as a result for that task.
 *
 * The work is synchronous on purpose: this thread exists to block on reads
 * and hashing so that the main thread's event loop does not.
 */
import fs from 'node:fs';
import { createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { CHUNK_HASH_HEX, GearChunker, SIGNATURE_MIN_FILE_SIZE } from './chunker.ts';
import type { Chunk } from './chunker.ts';

/** Bytes read at a time. */
export const READ_BUFFER_SIZE = 1024 * 1024;

/** One task: hash `source`; when `temp` is given, copy the bytes there (a new file). */
export interface HashTask {
  readonly id: number;
  readonly source: string;
  readonly temp: string | undefined;
}

export interface HashSuccess {
  readonly id: number;
  readonly ok: true;
  readonly hash: string;
  readonly size: number;
  /** The content-defined chunks, for a file of at least SIGNATURE_MIN_FILE_SIZE bytes; otherwise undefined. */
  readonly chunks: Chunk[] | undefined;
  /** Permission bits of the source (mode & 0o7777). */
  readonly mode: number;
  /** Modification time, rounded to the nearest millisecond. */
  readonly mtimeMs: number;
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
    if (task.temp !== undefined) {
      try {
        dst = fs.openSync(task.temp, 'wx', 0o644);
      } catch (err) {
        throw new TaskError(errnoCode(err), 'temp', `cannot create ${task.temp}: ${(err as Error).message}`);
      }
    }
    const whole = createHash('sha256');
    const chunking = before.size >= BigInt(SIGNATURE_MIN_FILE_SIZE);
    const chunker = new GearChunker();
    const chunks: Chunk[] = [];
    let chunkHash = createHash('sha256');
    const endChunk = (): void => {
      chunks.push([chunker.length, chunkHash.digest('hex').slice(0, CHUNK_HASH_HEX).toUpperCase()]);
      chunker.reset();
      chunkHash = createHash('sha256');
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
    return { id: task.id, ok: true, hash: upperHex(whole), size, chunks: chunking ? chunks : undefined, mode: Number(before.mode) & 0o7777, mtimeMs: Number((before.mtimeNs + 500_000n) / 1_000_000n) };
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

if (parentPort) {
  const port = parentPort;
  // One buffer per worker, reused for every read.
  const buf = Buffer.allocUnsafe(READ_BUFFER_SIZE);
  port.on('message', (task: HashTask) => {
    port.postMessage(hashFileSync(task, buf));
  });
}
