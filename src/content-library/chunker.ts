/**
 * Content-defined chunking for file signatures (issue 3, "block-level
 * deltas"; REFERENCE.md, "Signatures … used for delta transfer").
 *
 * A file is cut where a rolling gear hash of the last bytes matches a mask,
 * so an insertion or deletion moves only the cut points next to it: the
 * chunks before and after keep their bytes and hashes, and a delta can name
 * them in the older version of the file. This is the gear hash of FastCDC
 * (Xia et al., 2016) with its "normalized chunking": a harder mask before the
 * average size and an easier one after it, so sizes cluster round the average.
 *
 * Every site and DP must cut the same way, so the gear table is derived from
 * a fixed seed and the parameters are written into every signature file; a
 * signature made with other parameters is not used for deltas.
 *
 * The loop is plain JavaScript over a Uint8Array: it runs in the hash
 * workers (about 440 MB/s a core here), never on the main thread.
 */
import { createHash } from 'node:crypto';

export const CHUNKING = Object.freeze({
  algorithm: 'gear-fastcdc/1',
  minSize: 8 * 1024,
  avgSize: 32 * 1024,
  maxSize: 128 * 1024,
});

/** Files smaller than this get no signature: a delta would save too little to be worth its bookkeeping. */
export const SIGNATURE_MIN_FILE_SIZE = 1024 * 1024;

/** Hex characters kept of each chunk's SHA-256 (128 bits): a collision could only fail the whole-file hash check, which then sends the file whole. */
export const CHUNK_HASH_HEX = 32;

function gearTable(): Int32Array {
  const table = new Int32Array(256);
  for (let i = 0; i < 256; i++) table[i] = createHash('sha256').update(`cairn-gear-${i}`).digest().readInt32LE(0);
  return table;
}

const GEAR = gearTable();
/** 17 high bits: hard to match before the average size. */
const MASK_SMALL = 0xffff8000 | 0;
/** 13 high bits: easy to match after it. */
const MASK_LARGE = 0xfff80000 | 0;

/**
 * Streaming cut finder. `feed` scans bytes of the current chunk and returns
 * the index just after a cut point, or -1 when the buffer ended first; the
 * caller then starts a new chunk with `reset()`.
 */
export class GearChunker {
  #len = 0;
  #h = 0;

  reset(): void {
    this.#len = 0;
    this.#h = 0;
  }

  /** Bytes in the current chunk so far. */
  get length(): number {
    return this.#len;
  }

  feed(buf: Uint8Array, start: number, end: number): number {
    const { minSize, avgSize, maxSize } = CHUNKING;
    let i = start;
    let len = this.#len;
    let h = this.#h;
    // Bytes before the minimum size are never a cut point and need no hashing.
    if (len < minSize) {
      const skip = Math.min(minSize - len, end - i);
      i += skip;
      len += skip;
      if (len < minSize) {
        this.#len = len;
        return -1;
      }
    }
    while (i < end) {
      h = ((h << 1) + (GEAR[buf[i] as number] as number)) | 0;
      i++;
      len++;
      if (len >= maxSize || (h & (len < avgSize ? MASK_SMALL : MASK_LARGE)) === 0) {
        this.#len = len;
        this.#h = h;
        return i;
      }
    }
    this.#len = len;
    this.#h = h;
    return -1;
  }
}

/** One chunk of a signature: its length and the first CHUNK_HASH_HEX hex digits of its SHA-256, upper case. */
export type Chunk = readonly [length: number, hash: string];

/** Chunks a whole buffer (tests and small callers; the hash worker streams). */
export function chunkBuffer(data: Uint8Array): Chunk[] {
  const chunker = new GearChunker();
  const out: Chunk[] = [];
  let start = 0;
  while (start < data.length) {
    const cut = chunker.feed(data, start, data.length);
    const end = cut === -1 ? data.length : cut;
    out.push([end - start, chunkHash(data.subarray(start, end))]);
    chunker.reset();
    start = end;
  }
  return out;
}

export function chunkHash(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex').slice(0, CHUNK_HASH_HEX).toUpperCase();
}
