/**
 * The hash worker: a worker thread (started by hash-pool.ts) that reads one
 * file at a time, once, in blocks, and computes its SHA-256, the SHA-256 of
 * each block (the file's signature for delta transfer), and optionally copies
 * the bytes to a temporary file for the content library to adopt.
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

/** One task: hash `source`; when `temp` is given, copy the bytes there (a new file). */
export interface HashTask {
  readonly id: number;
  readonly source: string;
  readonly temp: string | undefined;
  readonly blockSize: number;
}

export interface HashSuccess {
  readonly id: number;
  readonly ok: true;
  readonly hash: string;
  readonly size: number;
  readonly blocks: string[];
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
    const blocks: string[] = [];
    let block = createHash('sha256');
    let inBlock = 0;
    let size = 0;
    for (;;) {
      // Never read across a block boundary, so each chunk belongs to one block.
      let n: number;
      try {
        n = fs.readSync(src, buf, 0, Math.min(buf.length, task.blockSize - inBlock), null);
      } catch (err) {
        throw new TaskError(errnoCode(err), 'source', (err as Error).message);
      }
      if (n === 0) break;
      const chunk = buf.subarray(0, n);
      whole.update(chunk);
      block.update(chunk);
      inBlock += n;
      size += n;
      if (inBlock === task.blockSize) {
        blocks.push(upperHex(block));
        block = createHash('sha256');
        inBlock = 0;
      }
      if (dst !== undefined) {
        try {
          writeAll(dst, buf, n);
        } catch (err) {
          throw new TaskError(errnoCode(err), 'temp', `cannot write ${task.temp}: ${(err as Error).message}`);
        }
      }
    }
    if (inBlock > 0) blocks.push(upperHex(block));
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
    return { id: task.id, ok: true, hash: upperHex(whole), size, blocks, mode: Number(before.mode) & 0o7777, mtimeMs: Number((before.mtimeNs + 500_000n) / 1_000_000n) };
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
  const buffers = new Map<number, Buffer>();
  port.on('message', (task: HashTask) => {
    let buf = buffers.get(task.blockSize);
    if (!buf) {
      buf = Buffer.allocUnsafe(Math.min(task.blockSize, 4 * 1024 * 1024));
      buffers.clear();
      buffers.set(task.blockSize, buf);
    }
    port.postMessage(hashFileSync(task, buf));
  });
}
