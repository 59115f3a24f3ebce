/** The benchmarks' tree: 1,000 small files (1-64 KiB) in 10 folders and four large files making up the rest of `totalBytes`. */
import fsp from 'node:fs/promises';
import path from 'node:path';

export async function makeBenchTree(dir: string, totalBytes: number): Promise<number> {
  await fsp.mkdir(dir, { recursive: true });
  let written = 0;
  // 1,000 small files of 1-64 KiB in 10 folders.
  for (let i = 0; i < 1000; i += 1) {
    const folder = path.join(dir, `folder-${i % 10}`);
    await fsp.mkdir(folder, { recursive: true });
    const size = 1024 + ((i * 7919) % (63 * 1024));
    const buf = Buffer.alloc(size);
    for (let j = 0; j < size; j += 4) buf.writeUInt32LE((i * 2654435761 + j) >>> 0, j - (j + 4 > size ? j + 4 - size : 0));
    await fsp.writeFile(path.join(folder, `small-${i}.dat`), buf);
    written += size;
  }
  // The rest in four large files.
  const large = Math.max(0, Math.floor((totalBytes - written) / 4));
  const block = Buffer.alloc(4 * 1024 * 1024);
  for (let f = 0; f < 4; f += 1) {
    const fd = await fsp.open(path.join(dir, `large-${f}.bin`), 'w');
    for (let done = 0; done < large; done += block.length) {
      for (let j = 0; j < block.length; j += 4) block.writeUInt32LE((f * 7 + done + j) * 2246822519 >>> 0, j);
      await fd.write(block, 0, Math.min(block.length, large - done));
    }
    await fd.close();
    written += large;
  }
  return written;
}

