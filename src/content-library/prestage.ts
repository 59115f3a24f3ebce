/**
 * Prestaged content files (issue 3, "prestaged content"): one version of a
 * package in a single file that can travel by other means (a disk, a copy
 * over a slow link) and be loaded into a DP's content library, so that a
 * later distribution to that DP sends no file bytes.
 *
 * Format `cairn-prestage/1`, all of it covered by the trailing hash:
 *
 *   "CAIRNPKG1\n"                       magic, 10 bytes
 *   u32 big-endian                      length of the header
 *   header (JSON)                       {format, definition, signatures, files: [{hash, size}]}
 *   file bytes                          each distinct file once, in `files` order
 *   64 hex characters                   SHA-256 of every byte before them, upper case
 *
 * Import reads the file twice: first to check the trailing hash and every
 * file's own hash, so that a truncated or tampered file is refused before
 * anything is written; then to store the files and record the content.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import type { Writable } from 'node:stream';
import { CairnError } from '../shared/errors.ts';
import { fileLibTempDir, writeFileAtomic } from './content-library.ts';
import { parseContentDefinition } from './definition.ts';
import { parseSignatureFile, signaturesPath } from './snapshot.ts';
import type { ContentDefinition, ContentLibrary } from './types.ts';

export const PRESTAGE_FORMAT = 'cairn-prestage/1';
const MAGIC = Buffer.from('CAIRNPKG1\n');
const TRAILER_BYTES = 64;
const MAX_HEADER_BYTES = 256 * 1024 * 1024;

interface Header {
  readonly format: string;
  readonly definition: ContentDefinition;
  /** The content's signature file text, or null. */
  readonly signatures: string | null;
  readonly files: readonly { readonly hash: string; readonly size: number }[];
}

function invalid(detail: string): CairnError {
  return new CairnError('CAIRN_PRESTAGE_INVALID', detail);
}

async function writeAll(out: Writable, data: Buffer, hasher: ReturnType<typeof createHash>): Promise<void> {
  hasher.update(data);
  if (!out.write(data)) await new Promise<void>((resolve, reject) => {
    out.once('drain', resolve);
    out.once('error', reject);
  });
}

/** Writes content `contentId` of the library as a prestaged content file to `out`; returns the bytes written. */
export async function writePrestage(lib: ContentLibrary, contentId: string, out: Writable): Promise<number> {
  const def = await lib.getContent(contentId);
  if (!def) throw new CairnError('CAIRN_PACKAGE_NOT_FOUND', `content ${contentId} is not in the content library`);
  const files = [...new Map(def.files.map((f) => [f.hash, { hash: f.hash, size: f.size }])).values()];
  let signatures: string | null = null;
  try {
    signatures = await fsp.readFile(signaturesPath(lib.root, contentId), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const header: Header = { format: PRESTAGE_FORMAT, definition: def, signatures, files };
  const headerBytes = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(headerBytes.length);
  const hasher = createHash('sha256');
  let total = 0;
  for (const part of [MAGIC, len, headerBytes]) {
    await writeAll(out, part, hasher);
    total += part.length;
  }
  for (const f of files) {
    // Whole or chunked in the library, a prestaged file carries the file's bytes.
    for await (const chunk of (await lib.openFileReader(f.hash)).stream) {
      await writeAll(out, chunk as Buffer, hasher);
      total += (chunk as Buffer).length;
    }
  }
  const trailer = Buffer.from(hasher.digest('hex').toUpperCase());
  out.write(trailer);
  return total + trailer.length;
}

/** Reads exactly `length` bytes at `position`; a short read means the file is truncated. */
async function readExactly(fd: fsp.FileHandle, length: number, position: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fd.read(buf, done, length - done, position + done);
    if (bytesRead === 0) throw invalid('the file ends early (truncated)');
    done += bytesRead;
  }
  return buf;
}

function parseHeader(json: unknown): Header {
  const h = (typeof json === 'object' && json !== null ? json : {}) as Record<string, unknown>;
  if (h.format !== PRESTAGE_FORMAT) throw invalid(`not a ${PRESTAGE_FORMAT} file`);
  let definition: ContentDefinition;
  try {
    definition = parseContentDefinition(h.definition);
  } catch (err) {
    throw invalid(`the content definition is not valid: ${(err as Error).message}`);
  }
  if (!Array.isArray(h.files)) throw invalid('the file list is missing');
  const files = h.files.map((f: unknown) => {
    const o = (typeof f === 'object' && f !== null ? f : {}) as Record<string, unknown>;
    if (typeof o.hash !== 'string' || !/^[0-9A-F]{64}$/.test(o.hash) || !Number.isSafeInteger(o.size) || (o.size as number) < 0) throw invalid('a file entry is malformed');
    return { hash: o.hash, size: o.size as number };
  });
  const listed = new Set(files.map((f) => f.hash));
  for (const f of definition.files) if (!listed.has(f.hash)) throw invalid(`the file ${f.path} is not in the file`);
  const signatures = typeof h.signatures === 'string' ? h.signatures : null;
  if (signatures !== null) {
    try {
      parseSignatureFile(JSON.parse(signatures), definition.contentId);
    } catch (err) {
      throw invalid(`the signatures are not valid: ${(err as Error).message}`);
    }
  }
  return { format: PRESTAGE_FORMAT, definition, signatures, files };
}

/** Checks the whole file (trailing hash, header, every file's hash) and returns its header and where the file bytes start. */
export async function verifyPrestage(file: string): Promise<{ header: Header; dataStart: number }> {
  let fd: fsp.FileHandle;
  try {
    fd = await fsp.open(file, 'r');
  } catch (err) {
    throw invalid(`${file} cannot be opened: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    const size = (await fd.stat()).size;
    if (size < MAGIC.length + 4 + TRAILER_BYTES) throw invalid('the file is too short to be a prestaged content file');
    const magic = await readExactly(fd, MAGIC.length, 0);
    if (!magic.equals(MAGIC)) throw invalid(`not a ${PRESTAGE_FORMAT} file`);
    const lengthBytes = await readExactly(fd, 4, MAGIC.length);
    const headerLength = lengthBytes.readUInt32BE(0);
    if (headerLength > MAX_HEADER_BYTES || MAGIC.length + 4 + headerLength + TRAILER_BYTES > size) throw invalid('the header length does not fit the file (truncated)');
    const headerBytes = await readExactly(fd, headerLength, MAGIC.length + 4);
    let header: Header;
    try {
      header = parseHeader(JSON.parse(headerBytes.toString('utf8')));
    } catch (err) {
      if (err instanceof CairnError) throw err;
      throw invalid('the header is not JSON');
    }
    const dataStart = MAGIC.length + 4 + headerLength;
    const dataBytes = header.files.reduce((n, f) => n + f.size, 0);
    if (dataStart + dataBytes + TRAILER_BYTES !== size) throw invalid(`the file holds ${size} bytes, its header says ${dataStart + dataBytes + TRAILER_BYTES} (truncated or padded)`);
    const whole = createHash('sha256');
    whole.update(magic).update(lengthBytes).update(headerBytes);
    let pos = dataStart;
    for (const f of header.files) {
      const h = createHash('sha256');
      if (f.size > 0) {
        for await (const chunk of fd.createReadStream({ start: pos, end: pos + f.size - 1, autoClose: false })) {
          h.update(chunk as Buffer);
          whole.update(chunk as Buffer);
        }
      }
      const actual = h.digest('hex').toUpperCase();
      if (actual !== f.hash) throw invalid(`a file's bytes hash to ${actual}, not ${f.hash} (tampered or damaged)`);
      pos += f.size;
    }
    const trailer = (await readExactly(fd, TRAILER_BYTES, pos)).toString('latin1');
    if (trailer !== whole.digest('hex').toUpperCase()) throw invalid('the trailing hash does not match the contents (tampered or damaged)');
    return { header, dataStart };
  } finally {
    await fd.close();
  }
}

/** Verifies, then loads a prestaged content file into the library. Nothing is written unless the whole file verifies. */
export async function importPrestage(lib: ContentLibrary, file: string): Promise<{ contentId: string; files: number; bytes: number }> {
  const { header, dataStart } = await verifyPrestage(file);
  const tmpDir = fileLibTempDir(lib.root);
  await fsp.mkdir(tmpDir, { recursive: true });
  let pos = dataStart;
  let bytes = 0;
  for (const f of header.files) {
    if (!(await lib.hasFile(f.hash))) {
      const temp = path.join(tmpDir, `${randomBytes(12).toString('hex')}.prestage`);
      const out = await fsp.open(temp, 'wx', 0o644);
      const h = createHash('sha256');
      try {
        if (f.size > 0) {
          for await (const chunk of fs.createReadStream(file, { start: pos, end: pos + f.size - 1 })) {
            h.update(chunk as Buffer);
            await out.write(chunk as Buffer);
          }
        }
        await out.datasync();
      } finally {
        await out.close();
      }
      // Read again, so checked again: the file could have changed since it was verified.
      if (h.digest('hex').toUpperCase() !== f.hash) {
        await fsp.rm(temp, { force: true });
        throw invalid(`the file changed while it was imported (${f.hash})`);
      }
      await lib.adoptFile(temp, f.hash);
      bytes += f.size;
    }
    pos += f.size;
  }
  if (header.signatures !== null) {
    const sigFile = signaturesPath(lib.root, header.definition.contentId);
    await fsp.mkdir(path.dirname(sigFile), { recursive: true });
    await writeFileAtomic(sigFile, header.signatures);
  }
  await lib.addContent(header.definition);
  return { contentId: header.definition.contentId, files: header.files.length, bytes };
}
