/**
 * Block-level deltas between two versions of a file (issue 3, "block-level
 * deltas"; spec 10, flow 4 step 6: "each DP receives only changed files (and
 * changed blocks)").
 *
 * The sender has both versions' signatures (content-defined chunks,
 * chunker.ts). `planDelta` walks the new file's chunks: a chunk the old file
 * also has becomes a *copy* of those bytes from the old file, anything else a
 * *literal* read from the new file. The receiver rebuilds the new file from
 * the copy of the old one in its library plus the literals, hashing as it
 * writes, and accepts it only when the whole file's SHA-256 is the one asked
 * for: a stale or damaged base can only make the delta fail (then the file is
 * sent whole), never produce a wrong file.
 *
 * Wire format `cairn-delta/1`: a sequence of operations, each a 13-byte
 * header — kind (1 byte: 1 copy, 2 literal), offset in the old file
 * (8 bytes, big-endian; 0 for a literal), length (4 bytes, big-endian) —
 * and, for a literal, that many bytes. Nothing else: no length prefix for the
 * whole, which the HTTP request carries.
 *
 * It must never trust an operation: a copy outside the old file, or output
 * beyond the announced size, is refused with CAIRN_DP_DELTA_INVALID.
 */
import fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { CairnError } from '../shared/errors.ts';
import type { FileSignature } from './types.ts';

export const DELTA_FORMAT = 'cairn-delta/1';
export const OP_HEADER_BYTES = 13;
const OP_COPY = 1;
const OP_LITERAL = 2;
/** Largest length one operation carries (fits the 4-byte field with room to spare). */
const MAX_OP_LENGTH = 1024 * 1024 * 1024;

export type DeltaOp = { readonly kind: 'copy'; readonly baseOffset: number; readonly length: number } | { readonly kind: 'literal'; readonly offset: number; readonly length: number };

export interface DeltaPlan {
  readonly ops: readonly DeltaOp[];
  /** Bytes of the new file that travel as literals. */
  readonly literalBytes: number;
  /** Bytes on the wire: literals plus operation headers. */
  readonly wireBytes: number;
}

/** Plans the delta from `base` to `target`; adjacent copies and adjacent literals are merged. */
export function planDelta(target: FileSignature, base: FileSignature): DeltaPlan {
  const known = new Map<string, number>();
  let off = 0;
  for (const [len, hash] of base.chunks) {
    const key = `${len}:${hash}`;
    if (!known.has(key)) known.set(key, off);
    off += len;
  }
  const ops: { kind: 'copy' | 'literal'; at: number; length: number }[] = [];
  let pos = 0;
  for (const [len, hash] of target.chunks) {
    const from = known.get(`${len}:${hash}`);
    const last = ops[ops.length - 1];
    if (from !== undefined) {
      if (last?.kind === 'copy' && last.at + last.length === from && last.length + len <= MAX_OP_LENGTH) last.length += len;
      else ops.push({ kind: 'copy', at: from, length: len });
    } else if (last?.kind === 'literal' && last.length + len <= MAX_OP_LENGTH) {
      last.length += len;
    } else {
      ops.push({ kind: 'literal', at: pos, length: len });
    }
    pos += len;
  }
  const out: DeltaOp[] = ops.map((o) => (o.kind === 'copy' ? { kind: 'copy', baseOffset: o.at, length: o.length } : { kind: 'literal', offset: o.at, length: o.length }));
  const literalBytes = out.reduce((n, o) => n + (o.kind === 'literal' ? o.length : 0), 0);
  return { ops: out, literalBytes, wireBytes: literalBytes + out.length * OP_HEADER_BYTES };
}

function header(kind: number, offset: number, length: number): Buffer {
  const b = Buffer.alloc(OP_HEADER_BYTES);
  b.writeUInt8(kind, 0);
  b.writeBigUInt64BE(BigInt(offset), 1);
  b.writeUInt32BE(length, 9);
  return b;
}

/** The delta's wire bytes, literals streamed from the new file at `targetPath`. */
export function deltaStream(plan: DeltaPlan, targetPath: string): Readable {
  async function* generate(): AsyncGenerator<Buffer> {
    for (const op of plan.ops) {
      if (op.kind === 'copy') {
        yield header(OP_COPY, op.baseOffset, op.length);
        continue;
      }
      yield header(OP_LITERAL, 0, op.length);
      if (op.length === 0) continue;
      for await (const chunk of fs.createReadStream(targetPath, { start: op.offset, end: op.offset + op.length - 1 })) yield chunk as Buffer;
    }
  }
  return Readable.from(generate(), { objectMode: false });
}

function invalid(detail: string): CairnError {
  return new CairnError('CAIRN_DP_DELTA_INVALID', detail);
}

/**
 * Rebuilds a file from a delta: reads `body`, copies from `base` (an open
 * handle on the old file of `baseSize` bytes) and appends to `out`. Returns
 * the SHA-256 of what was written and its size; the caller compares both.
 */
export async function applyDelta(body: AsyncIterable<Buffer | string>, base: FileHandle, baseSize: number, out: FileHandle, expectedSize: number): Promise<{ hash: string; size: number; literalBytes: number }> {
  const hasher = createHash('sha256');
  let written = 0;
  let literalBytes = 0;
  let pending = Buffer.alloc(0);
  let literalLeft = 0;
  const copyBuf = Buffer.allocUnsafe(1024 * 1024);

  const write = async (data: Buffer): Promise<void> => {
    if (written + data.length > expectedSize) throw invalid(`the delta produces more than the ${expectedSize} bytes announced`);
    hasher.update(data);
    let done = 0;
    while (done < data.length) done += (await out.write(data, done, data.length - done)).bytesWritten;
    written += data.length;
  };

  const copy = async (offset: number, length: number): Promise<void> => {
    if (offset + length > baseSize) throw invalid(`a copy of ${length} bytes at ${offset} lies outside the old file's ${baseSize} bytes`);
    let left = length;
    let at = offset;
    while (left > 0) {
      const { bytesRead } = await base.read(copyBuf, 0, Math.min(copyBuf.length, left), at);
      if (bytesRead === 0) throw invalid(`the old file ended at ${at} during a copy`);
      await write(copyBuf.subarray(0, bytesRead));
      left -= bytesRead;
      at += bytesRead;
    }
  };

  for await (const raw of body) {
    let chunk = typeof raw === 'string' ? Buffer.from(raw) : raw;
    while (chunk.length > 0) {
      if (literalLeft > 0) {
        const take = Math.min(literalLeft, chunk.length);
        await write(chunk.subarray(0, take));
        literalLeft -= take;
        literalBytes += take;
        chunk = chunk.subarray(take);
        continue;
      }
      const need = OP_HEADER_BYTES - pending.length;
      pending = Buffer.concat([pending, chunk.subarray(0, need)]);
      chunk = chunk.subarray(need);
      if (pending.length < OP_HEADER_BYTES) break;
      const kind = pending.readUInt8(0);
      const offset = Number(pending.readBigUInt64BE(1));
      const length = pending.readUInt32BE(9);
      pending = Buffer.alloc(0);
      if (kind === OP_COPY) await copy(offset, length);
      else if (kind === OP_LITERAL) {
        if (written + length > expectedSize) throw invalid(`a literal of ${length} bytes would pass the ${expectedSize} bytes announced`);
        literalLeft = length;
      } else throw invalid(`unknown operation ${kind}`);
    }
  }
  if (pending.length > 0 || literalLeft > 0) throw invalid('the delta ends in the middle of an operation');
  return { hash: hasher.digest('hex').toUpperCase(), size: written, literalBytes };
}
