/** Content-defined chunking (chunker.ts): cut points follow content, not offsets. */
import assert from 'node:assert/strict';
import { createCipheriv, createHash } from 'node:crypto';
import { test } from 'node:test';
import { CHUNKING, GearChunker, chunkBuffer } from '../../src/content-library/chunker.ts';

/** Deterministic pseudo-random bytes (AES-256-CTR of zeros): the same cut points on every run. */
function randomBytes(n: number, seed = 0): Buffer {
  const key = createHash('sha256').update(`chunker-test-${seed}-${n}`).digest();
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(n));
}

test('chunks cover the buffer exactly and stay within the minimum and maximum sizes', () => {
  const data = randomBytes(3 * 1024 * 1024 + 123);
  const chunks = chunkBuffer(data);
  assert.equal(chunks.reduce((n, [len]) => n + len, 0), data.length);
  for (const [len] of chunks.slice(0, -1)) assert.ok(len >= CHUNKING.minSize && len <= CHUNKING.maxSize, `chunk of ${len} bytes`);
  const avg = data.length / chunks.length;
  assert.ok(avg > CHUNKING.minSize && avg < CHUNKING.maxSize, `average ${avg}`);
});

test('an insertion near the start leaves the later chunks unchanged', () => {
  const data = randomBytes(2 * 1024 * 1024);
  const before = chunkBuffer(data);
  const edited = Buffer.concat([data.subarray(0, 100_000), Buffer.from('inserted bytes'), data.subarray(100_000)]);
  const after = chunkBuffer(edited);
  const known = new Set(before.map(([, h]) => h));
  const reused = after.filter(([, h]) => known.has(h)).reduce((n, [len]) => n + len, 0);
  // Only the chunk or two round the insertion are new.
  assert.ok(edited.length - reused <= 2 * CHUNKING.maxSize, `${edited.length - reused} new bytes`);
  assert.ok(reused > 0);
});

test('feeding the bytes in pieces finds the same cut points as feeding them at once', () => {
  const data = randomBytes(600_000);
  const whole = chunkBuffer(data);
  const chunker = new GearChunker();
  const lengths: number[] = [];
  let start = 0;
  for (let pos = 0; pos < data.length; pos += 7777) {
    const end = Math.min(pos + 7777, data.length);
    for (let p = pos; p < end; ) {
      const cut = chunker.feed(data, p, end);
      if (cut === -1) break;
      lengths.push(cut - start);
      start = cut;
      chunker.reset();
      p = cut;
    }
  }
  if (start < data.length) lengths.push(data.length - start);
  assert.deepEqual(lengths, whole.map(([len]) => len));
});
