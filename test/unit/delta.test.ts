/** Block-level deltas (delta.ts): plan from signatures, stream, rebuild on the receiving side. */
import assert from 'node:assert/strict';
import { createCipheriv, createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { chunkBuffer, CHUNKING } from '../../src/content-library/chunker.ts';
import { applyDelta, deltaStream, OP_HEADER_BYTES, planDelta } from '../../src/content-library/delta.ts';
import type { FileSignature } from '../../src/content-library/types.ts';
import { CairnError } from '../../src/shared/errors.ts';

/** Deterministic pseudo-random bytes (AES-256-CTR of zeros), so that chunk boundaries, and so these tests, are the same on every run. */
function bytes(n: number, seed: number): Buffer {
  const key = createHash('sha256').update(`delta-test-${seed}`).digest();
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(n));
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex').toUpperCase();
const sig = (b: Buffer): FileSignature => ({ hash: sha(b), size: b.length, chunks: chunkBuffer(b) });

async function rebuild(t: { after: (fn: () => Promise<void>) => void }, oldData: Buffer, newData: Buffer): Promise<{ out: Buffer; literal: number; wire: number }> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cairn-delta-'));
  t.after(() => fsp.rm(dir, { recursive: true, force: true }));
  await fsp.writeFile(path.join(dir, 'old'), oldData);
  await fsp.writeFile(path.join(dir, 'new'), newData);
  const plan = planDelta(sig(newData), sig(oldData));
  const base = await fsp.open(path.join(dir, 'old'), 'r');
  const out = await fsp.open(path.join(dir, 'out'), 'w');
  try {
    const r = await applyDelta(deltaStream(plan, path.join(dir, 'new')), base, oldData.length, out, newData.length);
    assert.equal(r.hash, sha(newData));
    assert.equal(r.size, newData.length);
    assert.equal(r.literalBytes, plan.literalBytes);
  } finally {
    await base.close();
    await out.close();
  }
  return { out: await fsp.readFile(path.join(dir, 'out')), literal: plan.literalBytes, wire: plan.wireBytes };
}

test('a file with two changed regions travels as little more than the changed bytes', async (t) => {
  const oldData = bytes(8 * 1024 * 1024, 1);
  const newData = Buffer.from(oldData);
  bytes(256 * 1024, 2).copy(newData, 1024 * 1024);
  bytes(256 * 1024, 3).copy(newData, 5 * 1024 * 1024);
  const { out, literal, wire } = await rebuild(t, oldData, newData);
  assert.ok(out.equals(newData));
  const changed = 512 * 1024;
  assert.ok(literal >= changed, `${literal} literal bytes for ${changed} changed`);
  // The chunks round each changed region travel too, until the cut points fall back into step: a few chunks, not the file.
  assert.ok(literal <= changed + 8 * CHUNKING.maxSize, `${literal} literal bytes for ${changed} changed`);
  assert.ok(wire - literal < 100 * OP_HEADER_BYTES);
});

test('an insertion shifts the rest of the file without resending it', async (t) => {
  const oldData = bytes(4 * 1024 * 1024, 4);
  const newData = Buffer.concat([oldData.subarray(0, 3_000_000), Buffer.from('a few new bytes'), oldData.subarray(3_000_000)]);
  const { out, literal } = await rebuild(t, oldData, newData);
  assert.ok(out.equals(newData));
  assert.ok(literal <= 2 * CHUNKING.maxSize, `${literal} literal bytes`);
});

test('a delta that copies outside the old file, or overruns the announced size, is refused', async (t) => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cairn-delta-'));
  t.after(() => fsp.rm(dir, { recursive: true, force: true }));
  await fsp.writeFile(path.join(dir, 'old'), 'old bytes');
  const base = await fsp.open(path.join(dir, 'old'), 'r');
  const out = await fsp.open(path.join(dir, 'out'), 'w');
  t.after(async () => {
    await base.close();
    await out.close();
  });
  const op = (kind: number, offset: number, length: number): Buffer => {
    const b = Buffer.alloc(OP_HEADER_BYTES);
    b.writeUInt8(kind, 0);
    b.writeBigUInt64BE(BigInt(offset), 1);
    b.writeUInt32BE(length, 9);
    return b;
  };
  const isInvalid = (re: RegExp) => (err: unknown) => err instanceof CairnError && err.code === 'CAIRN_DP_DELTA_INVALID' && re.test(err.message);
  await assert.rejects(applyDelta(Readable.from([op(1, 5, 100)]), base, 9, out, 100), isInvalid(/outside the old file/));
  await assert.rejects(applyDelta(Readable.from([op(2, 0, 50), Buffer.alloc(50)]), base, 9, out, 10), isInvalid(/pass the 10 bytes/));
  await assert.rejects(applyDelta(Readable.from([op(9, 0, 1)]), base, 9, out, 10), isInvalid(/unknown operation/));
  await assert.rejects(applyDelta(Readable.from([op(2, 0, 5), Buffer.from('ab')]), base, 9, out, 10), isInvalid(/middle of an operation/));
});
