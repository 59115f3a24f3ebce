/**
 * The distribution point role's HTTP server: the DP side of spec 10, flow 2
 * steps 7–8 (seed 001, steps 11–12). The site's package transfer manager
 * writes each file the DP lacks to a temporary name under `SMS_DP$`
 * (`<HASH>-<ContentID>.temp`), the DP verifies its SHA-256 and adopts it into
 * its content library, then the site records the content definition and the
 * DP logs "Content '<ContentID>' for package '<PkgID>' has been successfully
 * added to the content library" in `SMSDPProv.log`. Clients then download the
 * package's files, without authentication, from the stable URL
 * `/SMS_DP_SMSPKG$/<PkgID>/<path>`.
 *
 * It owns the DP's data folder: `ContentLib/` (through the content library),
 * `SMS_DP$/` (partial uploads, kept across restarts so transfers resume) and
 * `logs/SMSDPProv.log`. The wire protocol and its HMAC authentication are
 * defined in `protocol.ts`; this module implements them exactly.
 *
 * It must never open a path a client supplied: download paths are only looked
 * up in the package's content definition, and only `lib.filePath(hash)` is
 * ever served. It must never let a file into the library before its bytes have
 * been checked against their hash, and never buffer an upload in memory.
 */
import { createHash } from 'node:crypto';
import type { Hash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { send } from '@fastify/send';
import { fastify } from 'fastify';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { lookup as lookupMimeType } from 'mime-types';
import { createContentLibrary } from '../content-library/content-library.ts';
import { parseContentDefinition, parseContentId as parseContentIdOf, validatePackageId } from '../content-library/definition.ts';
import { ChunksMissingError, FilesMissingError } from '../content-library/content-library.ts';
import { parseManifestJson } from '../content-library/chunk-lib.ts';
import { sharedHashPool } from '../content-library/hash-pool.ts';
import { parseSignatureFile, signaturesPath } from '../content-library/snapshot.ts';
import { writeFileAtomic } from '../content-library/content-library.ts';
import type { ContentDefinition, ContentLibrary } from '../content-library/types.ts';
import { createComponentLog } from '../shared/cmtrace-log.ts';
import { listenUrl } from '../shared/listen.ts';
import type { ComponentLog } from '../shared/cmtrace-log.ts';
import { CairnError, ERRORS, describeError, isCairnError } from '../shared/errors.ts';
import type { ErrorCode } from '../shared/errors.ts';
import { BUNDLE_MAX_BYTES, BUNDLE_MAX_FILES, NonceCache, PACKAGE_SHARE, PROOF_HEADER, SIGNATURE_SHARE, parseBundle, proveResponse, verifyRequest } from './protocol.ts';
import type { DpStatus, PackageListing } from './protocol.ts';

/** Folder of partial uploads inside the data folder, named as the product's share. */
export const UPLOAD_SHARE = 'SMS_DP$';
/** Name of the content library folder inside the data folder. */
export const CONTENT_LIBRARY_FOLDER = 'ContentLib';
/** Most hashes one `files/missing` request may ask about. */
export const MAX_MISSING_QUERY = 100_000;

const HASH_RE = /^[0-9A-Fa-f]{64}$/;
const CONTENT_ID_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const PACKAGE_ID_RE = /^[A-Z0-9]{3}[0-9A-F]{5}$/;
const INTEGER_RE = /^\d{1,16}$/;
const MiB = 1024 * 1024;

export interface DpServerOptions {
  readonly dataDir: string;
  readonly key: string;
  /** Name reported by `/dp/v1/status`; default the host name. */
  readonly name?: string;
  /** Echo the SMSDPProv log to stdout (foreground `cairn dp`). */
  readonly logEcho?: boolean;
}

/** Where the DP keeps the partial upload of `hash` for `contentId`. */
export function uploadTempPath(dataDir: string, hash: string, contentId: string): string {
  return path.join(dataDir, UPLOAD_SHARE, `${hash.toUpperCase()}-${contentId}.temp`);
}

/** True for a content ID the DP accepts in a file name: `^[A-Za-z0-9_.-]{1,64}$` without `..`. */
export function isValidContentId(value: string): boolean {
  return CONTENT_ID_RE.test(value) && !value.includes('..');
}

/** An error answer that carries fields besides code and message (`offset`, `missing`). */
class DpReplyError extends CairnError {
  readonly statusOverride: number | undefined;
  readonly extra: Readonly<Record<string, unknown>>;
  constructor(code: ErrorCode, detail: string, extra: Readonly<Record<string, unknown>> = {}, statusOverride?: number) {
    super(code, detail);
    this.extra = extra;
    this.statusOverride = statusOverride;
  }
}

function parseHash(value: unknown): string {
  if (typeof value !== 'string' || !HASH_RE.test(value)) throw new CairnError('CAIRN_HASH_INVALID', `'${String(value).slice(0, 80)}'`);
  return value.toUpperCase();
}

function parseContentId(value: unknown): string {
  if (typeof value !== 'string' || !isValidContentId(value)) {
    throw new CairnError('CAIRN_REQUEST_INVALID', `content ID '${String(value).slice(0, 80)}' is not 1-64 of A-Z a-z 0-9 _ . - (without '..')`);
  }
  return value;
}

function parsePackageId(value: unknown): string {
  if (typeof value !== 'string' || !PACKAGE_ID_RE.test(value)) throw new CairnError('CAIRN_REQUEST_INVALID', `'${String(value).slice(0, 40)}' is not a package ID`);
  return validatePackageId(value);
}

function parseInteger(value: unknown, name: string): number {
  const n = typeof value === 'string' && INTEGER_RE.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n)) throw new CairnError('CAIRN_REQUEST_INVALID', `${name} must be a non-negative integer`);
  return n;
}

function query(request: FastifyRequest): Record<string, unknown> {
  return (request.query ?? {}) as Record<string, unknown>;
}

function param(request: FastifyRequest, name: string): unknown {
  return (request.params as Record<string, unknown>)[name];
}

async function fileSize(file: string): Promise<number> {
  try {
    return (await fsp.stat(file)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
}

async function hashFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(fs.createReadStream(file), hash);
  return hash.digest('hex').toUpperCase();
}

async function removeQuietly(file: string, log: ComponentLog): Promise<void> {
  try {
    await fsp.rm(file, { force: true });
  } catch (err) {
    log.error(`Cannot delete temporary file ${file}: ${describeError(err)}`);
  }
}

function isDiskFull(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** Splits the part of a raw request URL after the package share into decoded segments; undefined when malformed. */
function decodeSegments(rest: string): string[] | undefined {
  const out: string[] = [];
  for (const raw of rest.split('/')) {
    let seg: string;
    try {
      seg = decodeURIComponent(raw);
    } catch {
      return undefined;
    }
    out.push(seg);
  }
  return out;
}

/** A download path segment that could only be an attempt to leave the content, or is not a name at all. */
function isBadSegment(seg: string): boolean {
  return seg === '' || seg === '.' || seg === '..' || seg.includes('/') || seg.includes('\\') || seg.includes('\0');
}

function etagMatches(header: string, etag: string): boolean {
  return header.split(',').some((t) => {
    const tag = t.trim();
    return tag === '*' || tag === etag || tag === `W/${etag}`;
  });
}

/**
 * Appends an upload's bytes to its temporary file. A write failure (disk full)
 * or more bytes than announced does not fail the stream: the sink records it
 * and discards the rest of the body, so that the request is read to its end
 * and the DP can still answer 507 or 400 instead of resetting the connection.
 */
/** How much of an upload may arrive before the DP starts writing it to disk in the background. */
const FLUSH_EVERY_BYTES = 32 * 1024 * 1024;

class UploadSink extends Writable {
  readonly #file: FileHandle;
  readonly #expected: number;
  readonly #hasher: Hash | undefined;
  #closed = false;
  #unflushed = 0;
  #flushing: Promise<void> | undefined;
  /** Bytes appended to the file. */
  written = 0;
  failure: unknown = undefined;

  constructor(file: FileHandle, expected: number, hasher: Hash | undefined) {
    // Chunks that arrive while a write is in flight are written together by _writev: fewer, larger writes.
    super({ highWaterMark: 1024 * 1024 });
    this.#file = file;
    this.#expected = expected;
    this.#hasher = hasher;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.failure !== undefined) {
      callback();
      return;
    }
    if (this.written + chunk.length > this.#expected) {
      this.failure = new CairnError('CAIRN_REQUEST_INVALID', `received more than the ${this.#expected} bytes announced`);
      callback();
      return;
    }
    this.#hasher?.update(chunk);
    this.#append(chunk).then(
      () => callback(),
      (err: unknown) => {
        this.failure = err;
        callback();
      },
    );
  }

  override _writev(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    if (this.failure !== undefined) {
      callback();
      return;
    }
    if (chunks.length === 1) {
      this._write(chunks[0]!.chunk, 'binary', callback);
      return;
    }
    const buffers = chunks.map((c) => c.chunk);
    const total = buffers.reduce((n, b) => n + b.length, 0);
    if (this.written + total > this.#expected) {
      this.failure = new CairnError('CAIRN_REQUEST_INVALID', `received more than the ${this.#expected} bytes announced`);
      callback();
      return;
    }
    for (const b of buffers) this.#hasher?.update(b);
    // One writev(2) for everything that arrived while the last write was in flight, without copying it together.
    this.#appendv(buffers, total).then(
      () => callback(),
      (err: unknown) => {
        this.failure = err;
        callback();
      },
    );
  }

  async #appendv(buffers: Buffer[], total: number): Promise<void> {
    const { bytesWritten } = await this.#file.writev(buffers);
    this.written += bytesWritten;
    this.#unflushed += bytesWritten;
    // A short writev (rare: a full disk, a signal) leaves the rest to the one-buffer path.
    if (bytesWritten < total) await this.#append(Buffer.concat(buffers).subarray(bytesWritten));
    else this.#flushSometimes();
  }

  async #append(chunk: Buffer): Promise<void> {
    let done = 0;
    while (done < chunk.length) {
      const { bytesWritten } = await this.#file.write(chunk, done, chunk.length - done);
      done += bytesWritten;
      this.written += bytesWritten;
      this.#unflushed += bytesWritten;
    }
    this.#flushSometimes();
  }

  /**
   * Starts writing a large file to disk while it still arrives, so that the
   * flush before it is acknowledged has little left to do.
   */
  #flushSometimes(): void {
    if (this.#unflushed >= FLUSH_EVERY_BYTES && this.#flushing === undefined) {
      this.#unflushed = 0;
      this.#flushing = this.#file.datasync().then(
        () => void (this.#flushing = undefined),
        () => void (this.#flushing = undefined),
      );
    }
  }

  /** The SHA-256 of the bytes, when this request carried the whole file. */
  digest(): string | undefined {
    return this.#hasher?.digest('hex').toUpperCase();
  }

  /** Closes the temporary file; with `flush`, its bytes are on disk first (a complete file about to enter the library). */
  async closeFile(flush = false): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.#flushing;
      if (flush) await this.#file.datasync();
    } finally {
      await this.#file.close();
    }
  }
}

/** Reads a bundle's body whole (a few MiB at most); a larger one is refused before it is read. */
async function readBundleBody(request: FastifyRequest): Promise<Buffer> {
  const body = request.body === undefined || request.body === null ? Readable.from([]) : request.body;
  if (!(body instanceof Readable)) throw new CairnError('CAIRN_REQUEST_INVALID', 'the body must be a bundle');
  const declared = Number(request.headers['content-length']);
  // Header line plus the files: generously above what a sender may put in one bundle.
  const limit = BUNDLE_MAX_BYTES + BUNDLE_MAX_FILES * 128 + 1024;
  if (declared > limit) {
    request.raw.resume();
    throw new CairnError('CAIRN_REQUEST_INVALID', `a bundle is at most ${limit} bytes; this one declares ${declared}`);
  }
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    length += chunk.length;
    if (length > limit) {
      request.raw.resume();
      throw new CairnError('CAIRN_REQUEST_INVALID', `a bundle is at most ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, length);
}

export async function buildDpServer(opts: DpServerOptions): Promise<FastifyInstance> {
  if (!opts.key) throw new CairnError('CAIRN_REQUEST_INVALID', 'the DP needs a shared key');
  const key = opts.key;
  const dataDir = path.resolve(opts.dataDir);
  const libRoot = path.join(dataDir, CONTENT_LIBRARY_FOLDER);
  const tempDir = path.join(dataDir, UPLOAD_SHARE);
  const name = opts.name ?? os.hostname();
  await fsp.mkdir(libRoot, { recursive: true });
  await fsp.mkdir(tempDir, { recursive: true });
  const log = createComponentLog({ dir: path.join(dataDir, 'logs'), name: 'SMSDPProv', component: 'SMS_DP_PROVIDER', echo: opts.logEcho ?? false });
  const lib: ContentLibrary = createContentLibrary(libRoot);
  // The hash workers start with the DP, not at the first chunk bundle of an update (about a second with tsx).
  sharedHashPool().warm();
  // ADR 0009: chunks half-written, and a removal of a chunked file cut short, are finished before anything else.
  const recovered = await lib.recover();
  if (recovered.referencesCollected > 0) log.info(`Finished ${recovered.referencesCollected} chunked file removal(s) cut short; deleted ${recovered.chunksDeleted} chunk(s) no file uses`);

  // Partial uploads are kept on purpose: the site resumes them from their
  // current size (GET /dp/v1/uploads/:hash). Only their number is reported.
  const inTemp = await fsp.readdir(tempDir);
  const partials = inTemp.filter((f) => f.endsWith('.temp')).length;
  // A file from a bundle is written whole and renamed at once; one left here was cut off by a stop.
  for (const f of inTemp.filter((n) => n.endsWith('.bundle'))) await fsp.rm(path.join(tempDir, f), { force: true });
  log.info(`Distribution point '${name}' starting; content library ${libRoot}; ${partials} partial upload(s) in ${tempDir}`);

  // Uploads in progress, by temporary file: two writers appending to one file would corrupt it.
  const busy = new Set<string>();

  /**
   * Removals of superseded versions, run after the DP has answered the
   * content that superseded them; one chain per package, so they run in
   * order. Each is the content library's ordinary, crash-safe removal.
   */
  const removals = new Map<string, Promise<void>>();
  const removalsSettled = async (): Promise<void> => {
    while (removals.size > 0) await Promise.allSettled([...removals.values()]);
  };
  function removeSuperseded(packageId: string, ids: readonly string[], current: string): void {
    const previous = removals.get(packageId) ?? Promise.resolve();
    const p: Promise<void> = previous
      .then(async () => {
        let filesDeleted = 0;
        let bytesFreed = 0;
        const removed: string[] = [];
        for (const id of ids) {
          const r = await lib.removeContent(id);
          filesDeleted += r.filesDeleted;
          bytesFreed += r.bytesFreed;
          for (const c of r.contents) {
            removed.push(c);
            log.info(`Removed content '${c}' of package '${packageId}' (superseded by '${current}')`);
          }
        }
        if (removed.length) log.info(`Deleted ${filesDeleted} file(s) (${bytesFreed} bytes) no content on this distribution point uses any more`);
      })
      .catch((err: unknown) => log.error(`Removing superseded content ${ids.join(', ')} of package '${packageId}' failed (it is retried at the next start): ${describeError(err)}`))
      .finally(() => {
        if (removals.get(packageId) === p) removals.delete(packageId);
      });
    removals.set(packageId, p);
  }
  // A removal of superseded versions that a stop cut short (or never started) is finished now, after the answer it followed.
  const leftOver = await lib.supersededContents();
  if (leftOver.length) {
    log.info(`Finishing the removal of ${leftOver.length} superseded content(s) left by an earlier run: ${leftOver.join(', ')}`);
    const byPackage = new Map<string, string[]>();
    for (const id of leftOver) {
      const { packageId } = parseContentIdOf(id);
      byPackage.set(packageId, [...(byPackage.get(packageId) ?? []), id]);
    }
    for (const [packageId, ids] of byPackage) removeSuperseded(packageId, ids, (await lib.currentContent(packageId))?.contentId ?? '?');
  }

  const app = fastify({
    logger: false,
    // Uploads are streams of any size and may take longer than Node's default 5-minute request timeout.
    requestTimeout: 0,
    forceCloseConnections: 'idle',
    exposeHeadRoutes: false,
    // A URL the router cannot decode (a broken percent escape) is bad input like any other.
    frameworkErrors: (err: FastifyError, _request: FastifyRequest, reply: FastifyReply) => {
      void reply.code(ERRORS.CAIRN_REQUEST_INVALID.status).send(new CairnError('CAIRN_REQUEST_INVALID', err.message).toJSON());
    },
  });

  app.setErrorHandler((err: FastifyError | CairnError, request, reply) => {
    if (isCairnError(err)) {
      const status = err instanceof DpReplyError && err.statusOverride ? err.statusOverride : err.status;
      const extra = err instanceof DpReplyError ? err.extra : {};
      if (status >= 500) log.error(`${request.method} ${request.url} failed: ${describeError(err)}`);
      return reply.code(status).send({ ...err.toJSON(), ...extra });
    }
    const status = err.statusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      // Fastify's own rejections: malformed JSON, body too large, unsupported media type.
      return reply.code(ERRORS.CAIRN_REQUEST_INVALID.status).send(new CairnError('CAIRN_REQUEST_INVALID', err.message).toJSON());
    }
    // A sender that went away mid-upload was already logged where it happened.
    if (!request.raw.destroyed) log.error(`${request.method} ${request.url} failed: ${describeError(err)}`);
    // The details (paths, errno) stay in the log: public routes answer anyone.
    return reply.code(500).send(new CairnError('CAIRN_INTERNAL', `see ${path.join('logs', 'SMSDPProv.log')} on the distribution point`).toJSON());
  });

  app.setNotFoundHandler((request, reply) => {
    return reply.code(404).send(new CairnError('CAIRN_NOT_FOUND', `${request.method} ${request.url.slice(0, 200)}`).toJSON());
  });

  app.addHook('onClose', async () => {
    await removalsSettled();
    log.info(`Distribution point '${name}' stopped`);
  });

  await app.register(
    async (dp) => {
      const nonces = new NonceCache();
      const requestNonces = new WeakMap<FastifyRequest, string>();

      dp.addHook('onRequest', async (request, reply) => {
        // The signature covers the path exactly as it was on the request line.
        const pathWithQuery = request.raw.url ?? '';
        const result = verifyRequest(key, request.headers.authorization, request.method, pathWithQuery, nonces);
        if (!result.ok) {
          log.warn(`Rejected ${request.method} ${pathWithQuery.slice(0, 200)} from ${request.ip}: ${result.reason}`);
          return reply.code(401).send({ code: result.code, message: `${ERRORS[result.code].message}: ${result.reason}` });
        }
        requestNonces.set(request, result.nonce);
        return undefined;
      });

      // Every answer to an authenticated request, errors included, proves the DP holds the key.
      dp.addHook('onSend', async (request, reply, payload) => {
        const nonce = requestNonces.get(request);
        if (nonce) reply.header(PROOF_HEADER, proveResponse(key, nonce, reply.statusCode));
        return payload;
      });

      // Unknown /dp/v1 routes answer 404 after authentication, with a proof.
      dp.setNotFoundHandler((request, reply) => {
        return reply.code(404).send(new CairnError('CAIRN_NOT_FOUND', `${request.method} ${request.url.slice(0, 200)}`).toJSON());
      });

      dp.get('/status', async (): Promise<DpStatus> => {
        const st = await fsp.statfs(dataDir);
        let contents = 0;
        try {
          contents = (await fsp.readdir(path.join(libRoot, 'DataLib'))).filter((f) => f.toUpperCase().endsWith('.INI')).length;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
        return { name, freeBytes: st.bavail * st.bsize, contents };
      });

      dp.post('/files/missing', { bodyLimit: 16 * MiB }, async (request) => {
        const body = request.body as { hashes?: unknown } | null | undefined;
        const hashes = body?.hashes;
        if (!Array.isArray(hashes)) throw new CairnError('CAIRN_REQUEST_INVALID', 'body must be {hashes: string[]}');
        if (hashes.length > MAX_MISSING_QUERY) throw new CairnError('CAIRN_REQUEST_INVALID', `at most ${MAX_MISSING_QUERY} hashes per request`);
        const parsed = hashes.map(parseHash);
        // A file a removal in progress is about to delete must not be reported as held.
        await removalsSettled();
        return { missing: await lib.missingFiles(parsed) };
      });

      dp.get('/uploads/:hash', async (request) => {
        const hash = parseHash(param(request, 'hash'));
        const contentId = parseContentId(query(request)['content']);
        return { offset: await fileSize(uploadTempPath(dataDir, hash, contentId)) };
      });

      dp.put('/contents/:contentId', { bodyLimit: 64 * MiB }, async (request) => {
        const contentId = parseContentId(param(request, 'contentId'));
        const def: ContentDefinition = parseContentDefinition(request.body);
        if (def.contentId !== contentId) throw new CairnError('CAIRN_REQUEST_INVALID', `the definition is for '${def.contentId}', not '${contentId}'`);
        if (query(request)['prepare'] === '1') {
          // Sent ahead of the files: the per-file records are written while they arrive, not after.
          const prepared = await lib.prepareContent(def);
          if (prepared) log.info(`Prepared the records of content '${contentId}' for package '${def.packageId}' (${def.files.length} files) while its files arrive`);
          return { prepared };
        }
        try {
          // addContent checks FileLib itself, in the same pass that writes the records.
          await lib.addContent(def);
        } catch (err) {
          if (!(err instanceof FilesMissingError)) throw err;
          const missing = [...err.missing];
          log.warn(`Content '${contentId}' for package '${def.packageId}' cannot be added: ${missing.length} file(s) are not in the content library`);
          throw new DpReplyError('CAIRN_DP_CONTENT_INCOMPLETE', `${missing.length} file(s) missing`, { missing });
        }
        // Seed 001, step 12: the line administrators look for in SMSDPProv.log.
        log.info(`Content '${contentId}' for package '${def.packageId}' has been successfully added to the content library`);
        // Flow 4 step 6: versions older than the current one go, and with
        // them every file no other content on this DP uses. The current one is
        // this content, or a newer one when this is a late retry of an older
        // version (which is then removed too). They go after the answer, off
        // the update's critical path (ADR 0009, amendment 3); a stop before
        // they are gone is finished at the next start.
        const current = (await lib.currentContent(def.packageId))?.contentId ?? contentId;
        const superseded = (await lib.listContents(def.packageId)).filter((id) => id !== current && parseContentIdOf(id).version < parseContentIdOf(current).version);
        if (superseded.length) removeSuperseded(def.packageId, superseded, current);
        return { contentId, removedContents: [], filesDeleted: 0, supersededContents: superseded };
      });

      dp.put('/signatures/:contentId', { bodyLimit: 64 * MiB }, async (request) => {
        const contentId = parseContentId(param(request, 'contentId'));
        const sigs = parseSignatureFile(request.body, contentId);
        if (!sigs) throw new CairnError('CAIRN_REQUEST_INVALID', 'the signatures were made with chunking parameters this DP does not use');
        const file = signaturesPath(libRoot, contentId);
        await fsp.mkdir(path.dirname(file), { recursive: true });
        await writeFileAtomic(file, JSON.stringify(request.body));
        return { contentId, files: sigs.length };
      });

      dp.get('/packages/:packageId', async (request) => {
        const packageId = parsePackageId(param(request, 'packageId'));
        const def = await lib.currentContent(packageId);
        return { packageId, contentId: def?.contentId ?? null, version: def?.version ?? null, contents: await lib.listContents(packageId) };
      });

      dp.delete('/packages/:packageId', async (request) => {
        const packageId = parsePackageId(param(request, 'packageId'));
        await removals.get(packageId);
        const removed = await lib.removePackage(packageId);
        log.info(`Removed package '${packageId}' (${removed.contents.length} content(s)); deleted ${removed.filesDeleted} file(s) (${removed.bytesFreed} bytes) no other content uses`);
        return { packageId, ...removed };
      });

      dp.post('/packages/:packageId/validate', async (request) => {
        const packageId = parsePackageId(param(request, 'packageId'));
        const def = await lib.currentContent(packageId);
        if (!def) throw new CairnError('CAIRN_DP_FILE_NOT_FOUND', `package ${packageId} is not on this distribution point`);
        log.info(`Validating content '${def.contentId}' of package '${packageId}' (${def.files.length} files)`);
        const problems = await lib.validateContent(def.contentId);
        if (problems.length === 0) log.info(`Content '${def.contentId}' of package '${packageId}' is valid`);
        for (const p of problems) log.error(`Content '${def.contentId}' of package '${packageId}' failed validation: file '${p.path}' (${p.hash}) ${p.problem}${p.chunk ? ` in chunk ${p.chunk}` : ''}${p.actual ? `; its bytes hash to ${p.actual}` : ''}`);
        return { packageId, contentId: def.contentId, version: def.version, files: def.files.length, problems };
      });

      // Uploads get their own context so that every body, whatever its type, reaches the handler as a stream.
      await dp.register(async (up) => {
        up.removeAllContentTypeParsers();
        up.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
        up.put('/uploads/:hash', { bodyLimit: Number.MAX_SAFE_INTEGER }, async (request, reply) => {
          const hash = parseHash(param(request, 'hash'));
          const q = query(request);
          const contentId = parseContentId(q['content']);
          const offset = parseInteger(q['offset'], 'offset');
          const size = parseInteger(q['size'], 'size');
          if (offset > size) throw new CairnError('CAIRN_REQUEST_INVALID', `offset ${offset} is beyond size ${size}`);
          const body = request.body === undefined || request.body === null ? Readable.from([]) : request.body;
          if (!(body instanceof Readable)) throw new CairnError('CAIRN_REQUEST_INVALID', 'the body must be the raw bytes');
          const temp = uploadTempPath(dataDir, hash, contentId);
          if (busy.has(temp)) {
            throw new DpReplyError('CAIRN_REQUEST_INVALID', 'another upload of this file is in progress', { offset: await fileSize(temp) }, 409);
          }
          busy.add(temp);
          try {
            return await receiveUpload(request, reply, { hash, contentId, offset, size, body, temp, replace: q['replace'] === '1' });
          } finally {
            busy.delete(temp);
          }
        });

        // Small files, many to a request (protocol.ts, `cairn-bundle/1`). The body is at most a few MiB, so it is read whole.
        up.put('/bundles', { bodyLimit: Number.MAX_SAFE_INTEGER }, async (request) => {
          const q = query(request);
          const contentId = parseContentId(q['content']);
          const replace = q['replace'] === '1';
          const bytes = await readBundleBody(request);
          const bundle = parseBundle(bytes);
          if ('error' in bundle) {
            log.warn(`Bundle for content ${contentId} from ${request.ip} refused: ${bundle.error}`);
            throw new CairnError('CAIRN_REQUEST_INVALID', `malformed bundle: ${bundle.error}`);
          }
          // Hashed and written in a hash worker with synchronous calls (records.ts): about ten thread-pool round trips a file cost more than the file.
          const r = await lib.storeFiles(bytes, bundle.files, { replace, tempDir });
          const rejected = r.rejected.map((x) => {
            log.error(`File ${x.hash} for content ${contentId} in a bundle failed hash verification (the bytes hash to ${x.actual}); it was not stored`);
            return { hash: x.hash, code: 'CAIRN_DP_HASH_MISMATCH' as ErrorCode, message: `the bytes hash to ${x.actual}, not ${x.hash}` };
          });
          for (const h of r.written) log.info(replace ? `Rewrote file ${h} for content ${contentId} in the content library` : `Added file ${h} for content ${contentId} to the content library`);
          if (r.writeError) {
            if (r.writeError.code === 'ENOSPC' || r.writeError.code === 'EDQUOT') {
              log.error(`Out of disk space storing a bundle for content ${contentId}: ${r.writeError.code}: ${r.writeError.message}; ${r.stored.length} of its files were stored`);
              throw new CairnError('CAIRN_DP_DISK_FULL', `no space left on the device holding ${dataDir} while storing a bundle for ${contentId}`);
            }
            throw new CairnError('CAIRN_INTERNAL', `storing a bundle for ${contentId}: ${r.writeError.code}: ${r.writeError.message}`);
          }
          return { stored: r.stored, rejected };
        });

        // Chunks of large files, many to a request (ADR 0009): a `cairn-bundle/1` body whose entries are chunks.
        up.put('/chunks', { bodyLimit: Number.MAX_SAFE_INTEGER }, async (request) => {
          const q = query(request);
          const contentId = parseContentId(q['content']);
          const replace = q['replace'] === '1';
          const bytes = await readBundleBody(request);
          const bundle = parseBundle(bytes);
          if ('error' in bundle) {
            log.warn(`Chunk bundle for content ${contentId} from ${request.ip} refused: ${bundle.error}`);
            throw new CairnError('CAIRN_REQUEST_INVALID', `malformed bundle: ${bundle.error}`);
          }
          // Hashed and written in a worker: neither the SHA-256 nor the file writes run on this thread.
          const r = await sharedHashPool().storeChunks(lib.chunkDir, bytes, bundle.files, replace);
          for (const x of r.rejected) log.error(`Chunk ${x.hash} for content ${contentId} failed hash verification (the bytes hash to ${x.actual}); it was not stored`);
          if (r.writeError) {
            if (r.writeError.code === 'ENOSPC' || r.writeError.code === 'EDQUOT') {
              log.error(`Out of disk space storing chunks for content ${contentId}: ${r.writeError.message}; ${r.stored.length} of the bundle's chunks were stored`);
              throw new CairnError('CAIRN_DP_DISK_FULL', `no space left on the device holding ${dataDir} while storing chunks for ${contentId}`);
            }
            throw new CairnError('CAIRN_INTERNAL', `storing chunks for ${contentId}: ${r.writeError.code}: ${r.writeError.message}`);
          }
          log.info(`${replace ? 'Rewrote' : 'Stored'} ${r.written} chunk(s) for content ${contentId} in the content library (${r.stored.length - r.written} already held, ${r.rejected.length} rejected)`);
          return { stored: r.stored, rejected: r.rejected.map((x) => ({ hash: x.hash, code: 'CAIRN_DP_HASH_MISMATCH', message: `the bytes hash to ${x.actual}, not ${x.hash}` })) };
        });
      });

      dp.post('/chunks/missing', { bodyLimit: 16 * MiB }, async (request) => {
        const body = request.body as { hashes?: unknown } | null | undefined;
        const hashes = body?.hashes;
        if (!Array.isArray(hashes)) throw new CairnError('CAIRN_REQUEST_INVALID', 'body must be {hashes: string[]}');
        if (hashes.length > MAX_MISSING_QUERY) throw new CairnError('CAIRN_REQUEST_INVALID', `at most ${MAX_MISSING_QUERY} hashes per request`);
        await removalsSettled();
        return { missing: await lib.missingChunks(hashes.map(parseHash)) };
      });

      // A chunked file's manifest, once its chunks are here: checked (every chunk present, the whole-file hash over them in order) before it enters FileLib.
      dp.put('/manifests/:hash', { bodyLimit: 64 * MiB }, async (request, reply) => {
        const hash = parseHash(param(request, 'hash'));
        const q = query(request);
        const contentId = parseContentId(q['content']);
        const replace = q['replace'] === '1';
        const manifest = parseManifestJson(request.body);
        if (manifest.hash !== hash) throw new CairnError('CAIRN_REQUEST_INVALID', `the manifest is for file ${manifest.hash}, not ${hash}`);
        let cost;
        try {
          cost = await lib.adoptManifest(manifest, { verify: true, replace });
        } catch (err) {
          if (err instanceof ChunksMissingError) {
            log.warn(`Manifest of file ${hash} for content ${contentId} not accepted yet: ${err.missing.length} of its ${manifest.chunks.length} chunks, and ${err.sources.length} whole file(s) its extents read from, are not in the content library`);
            throw new DpReplyError('CAIRN_DP_CONTENT_INCOMPLETE', err.detail ?? 'chunks missing', { missing: err.missing, sources: err.sources });
          }
          if (isCairnError(err) && err.code === 'CAIRN_DP_HASH_MISMATCH') log.error(`Manifest of file ${hash} for content ${contentId} refused: ${err.detail ?? err.message}`);
          throw err;
        }
        const extents = manifest.chunks.filter((c) => c.src).length;
        log.info(`${replace ? 'Rewrote' : 'Added'} file ${hash} for content ${contentId} ${replace ? 'in' : 'to'} the content library as ${manifest.chunks.length} chunks (${extents} of them read from files held whole; whole-file hash checked in ${(cost.verifyMs / 1000).toFixed(2)} s, ${cost.flushed} chunk(s) flushed in ${(cost.flushMs / 1000).toFixed(2)} s)`);
        return reply.code(201).send({ stored: true });
      });

      interface Upload {
        readonly hash: string;
        readonly contentId: string;
        readonly offset: number;
        readonly size: number;
        readonly body: Readable;
        readonly temp: string;
        /** A redistribute: the bytes replace the library's copy even when it has one. */
        readonly replace: boolean;
      }

      async function receiveUpload(request: FastifyRequest, reply: FastifyReply, u: Upload): Promise<FastifyReply> {
        let current = await fileSize(u.temp);
        if (current > u.size) {
          // A temporary file longer than the file it is for cannot be a prefix of it.
          log.warn(`Temporary file ${path.basename(u.temp)} holds ${current} bytes, more than the file's ${u.size}; discarding it`);
          await removeQuietly(u.temp, log);
          current = 0;
        }
        if (u.offset !== current) {
          throw new DpReplyError('CAIRN_REQUEST_INVALID', `offset ${u.offset} does not match the ${current} bytes held`, { offset: current }, 409);
        }
        // One pass when the whole file arrives in this request; a resumed upload is re-hashed from disk.
        const sink = new UploadSink(await fsp.open(u.temp, 'a'), u.size - u.offset, u.offset === 0 ? createHash('sha256') : undefined);
        try {
          await pipeline(u.body, sink);
        } catch (err) {
          // The sender went away: keep what arrived so that the upload resumes from it.
          log.warn(`Upload of file ${u.hash} for content ${u.contentId} interrupted after ${u.offset + sink.written} of ${u.size} bytes (${describeError(err)}); the partial file is kept for resume`);
          throw err;
        } finally {
          await sink.closeFile(sink.failure === undefined && u.offset + sink.written === u.size);
        }
        const failure = sink.failure;
        if (failure !== undefined) {
          await removeQuietly(u.temp, log);
          if (isCairnError(failure)) {
            log.warn(`Upload of file ${u.hash} for content ${u.contentId} from ${request.ip} rejected: ${failure.message}; the temporary file was deleted`);
            throw failure;
          }
          if (isDiskFull(failure)) {
            // The partial file is deleted rather than kept: it holds exactly the
            // space the DP lacks, and the site restarts the file from zero once
            // space has been freed.
            log.error(`Out of disk space writing file ${u.hash} for content ${u.contentId} to ${UPLOAD_SHARE}: ${describeError(failure)}; the temporary file was deleted`);
            throw new CairnError('CAIRN_DP_DISK_FULL', `no space left on the device holding ${dataDir} while writing file ${u.hash}`);
          }
          throw failure;
        }
        const received = sink.written;
        const held = u.offset + received;
        if (held < u.size) return reply.code(200).send({ offset: held });
        const actual = sink.digest() ?? (await hashFile(u.temp));
        if (actual !== u.hash) {
          await removeQuietly(u.temp, log);
          log.error(`File ${u.hash} for content ${u.contentId} failed hash verification (the bytes hash to ${actual}); the temporary file was deleted`);
          throw new CairnError('CAIRN_DP_HASH_MISMATCH', `the bytes hash to ${actual}, not ${u.hash}`);
        }
        await lib.adoptFile(u.temp, u.hash, { replace: u.replace });
        log.info(u.replace ? `Rewrote file ${u.hash} for content ${u.contentId} in the content library` : `Added file ${u.hash} for content ${u.contentId} to the content library`);
        return reply.code(201).send({ stored: true });
      }
    },
    { prefix: '/dp/v1' },
  );

  // Public content: the stable URL a client downloads from, without authentication.
  // The rest of the path is parsed from the raw URL, never handed to the file system.
  app.route({
    method: ['GET', 'HEAD'],
    url: `/${PACKAGE_SHARE}/*`,
    handler: async (request, reply) => {
      const raw = (request.raw.url ?? '').split('?')[0] ?? '';
      const m = /^\/SMS_DP_SMSPKG(?:\$|%24)\/(.*)$/i.exec(raw);
      const segments = m ? decodeSegments(m[1] ?? '') : undefined;
      if (!segments) throw new CairnError('CAIRN_REQUEST_INVALID', 'malformed package path');
      const packageId = segments[0] ?? '';
      if (!PACKAGE_ID_RE.test(packageId)) throw new CairnError('CAIRN_DP_FILE_NOT_FOUND', `'${packageId.slice(0, 40)}' is not a package ID`);
      const rest = segments.slice(1);
      const def = await lib.currentContent(packageId);
      if (rest.length === 0 || (rest.length === 1 && rest[0] === '')) {
        if (!def) throw new CairnError('CAIRN_DP_FILE_NOT_FOUND', `package ${packageId} is not on this distribution point`);
        return reply.send(listing(request, def));
      }
      if (rest.some(isBadSegment)) throw new CairnError('CAIRN_REQUEST_INVALID', 'a path segment is empty, . or .., or holds a separator');
      const logical = rest.join('/');
      const entry = def?.files.find((f) => f.path === logical);
      if (!def || !entry) throw new CairnError('CAIRN_DP_FILE_NOT_FOUND', `${packageId}/${logical}`);
      return serveFile(request, reply, entry.hash, logical);
    },
  });

  // Signatures beside the content (REFERENCE.md, "Content library layout"): `/SMS_DP_SMSSIG$/<ContentID>`.
  app.get(`/${SIGNATURE_SHARE}/:contentId`, async (request, reply) => {
    const contentId = parseContentId(param(request, 'contentId'));
    let text: string;
    try {
      text = await fsp.readFile(signaturesPath(libRoot, contentId), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new CairnError('CAIRN_DP_FILE_NOT_FOUND', `no signatures for content ${contentId}`);
      throw err;
    }
    return reply.type('application/json').send(text);
  });

  function listing(request: FastifyRequest, def: ContentDefinition): PackageListing {
    const base = `${request.protocol}://${request.headers.host ?? request.hostname}/${PACKAGE_SHARE}/${def.packageId}/`;
    return {
      packageId: def.packageId,
      contentId: def.contentId,
      version: def.version,
      hash: def.hash,
      files: def.files.map((f) => ({ path: f.path, size: f.size, hash: f.hash, url: base + f.path.split('/').map(encodeURIComponent).join('/') })),
    };
  }

  async function serveFile(request: FastifyRequest, reply: FastifyReply, hash: string, logical: string): Promise<FastifyReply> {
    // The file's identity is its hash, so it is the strong ETag; conditional
    // headers are decided here and @fastify/send only does ranges.
    const etag = `"${hash}"`;
    const headers = { ...request.headers };
    const ifNoneMatch = headers['if-none-match'];
    const ifMatch = headers['if-match'];
    const ifRange = headers['if-range'];
    reply.header('ETag', etag).header('x-cairn-sha256', hash);
    if (typeof ifMatch === 'string' && !etagMatches(ifMatch, etag)) {
      return reply.code(412).send(new CairnError('CAIRN_REQUEST_INVALID', 'If-Match does not match').toJSON());
    }
    if (typeof ifNoneMatch === 'string' && etagMatches(ifNoneMatch, etag)) return reply.code(304).send();
    if (typeof ifRange === 'string' && ifRange.trim() !== etag) delete headers.range;
    for (const h of ['if-none-match', 'if-match', 'if-range', 'if-modified-since', 'if-unmodified-since']) delete headers[h];

    const stored = await lib.statFile(hash);
    if (stored?.manifest) return serveChunked(request, reply, hash, logical, stored.size, headers.range);
    const file = lib.filePath(hash);
    const result = await send({ method: request.method, headers } as unknown as Readable, `/${path.basename(file)}`, {
      root: path.dirname(file),
      etag: false,
      lastModified: false,
      cacheControl: false,
      contentType: false,
      dotfiles: 'allow',
      index: false,
    });
    if (result.type !== 'file') {
      result.stream.destroy();
      if (result.statusCode === 416) {
        return reply
          .code(416)
          .header('Content-Range', result.headers['Content-Range'] ?? '')
          .send(new CairnError('CAIRN_REQUEST_INVALID', 'the range is not satisfiable').toJSON());
      }
      log.error(`File ${hash} (${logical}) is named by a content but cannot be read from the content library (HTTP ${result.statusCode})`);
      throw new CairnError('CAIRN_DP_FILE_NOT_FOUND', logical);
    }
    const type = lookupMimeType(path.posix.basename(logical)) || 'application/octet-stream';
    reply.code(result.statusCode).headers(result.headers).header('Content-Type', type);
    if (request.method === 'HEAD') {
      // No body, but the Content-Length of the body a GET would get.
      result.stream.destroy();
      return reply.send();
    }
    return reply.send(result.stream);
  }

  /**
   * A file stored as chunks (ADR 0009): the same answer @fastify/send gives
   * for a plain file — 200 with the whole, 206 with one range, 416 for a
   * range outside the file — built from the chunks in order. Several ranges
   * in one request get the whole file (200), which RFC 9110 allows.
   */
  async function serveChunked(request: FastifyRequest, reply: FastifyReply, hash: string, logical: string, size: number, range: string | string[] | undefined): Promise<FastifyReply> {
    let start = 0;
    let end = size - 1;
    let partial = false;
    if (typeof range === 'string') {
      const r = parseRange(range, size);
      if (r === 'unsatisfiable') {
        return reply
          .code(416)
          .header('Content-Range', `bytes */${size}`)
          .send(new CairnError('CAIRN_REQUEST_INVALID', 'the range is not satisfiable').toJSON());
      }
      if (r) {
        ({ start, end } = r);
        partial = true;
      }
    }
    const type = lookupMimeType(path.posix.basename(logical)) || 'application/octet-stream';
    reply.header('Accept-Ranges', 'bytes').header('Content-Type', type).header('Content-Length', String(Math.max(0, end - start + 1)));
    if (partial) reply.code(206).header('Content-Range', `bytes ${start}-${end}/${size}`);
    else reply.code(200);
    if (request.method === 'HEAD') return reply.send();
    const { stream } = await lib.openFileReader(hash, { start, end });
    stream.on('error', (err) => log.error(`File ${hash} (${logical}) is named by a content but its chunks cannot be read: ${describeError(err)}`));
    return reply.send(stream);
  }

  return app;
}

/** One `bytes=` range of a file of `size` bytes: undefined when absent, malformed or several (serve the whole), 'unsatisfiable' when outside it. */
export function parseRange(header: string, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  const m = /^bytes=\s*(\d*)\s*-\s*(\d*)\s*$/.exec(header.trim());
  if (!m) return undefined;
  const [, a, b] = m as unknown as [string, string, string];
  if (a === '' && b === '') return undefined;
  let start: number;
  let end: number;
  if (a === '') {
    // The last `b` bytes.
    const n = Number(b);
    if (n === 0) return 'unsatisfiable';
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(a);
    end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
    if (b !== '' && Number(b) < start) return undefined;
  }
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

export interface RunningDp {
  readonly url: string;
  close(): Promise<void>;
}

/** Builds the DP and listens; `host` defaults to every interface. */
export async function startDp(opts: { dataDir: string; port: number; host?: string; key: string; name?: string; logEcho?: boolean }): Promise<RunningDp> {
  const app = await buildDpServer({ dataDir: opts.dataDir, key: opts.key, ...(opts.name !== undefined ? { name: opts.name } : {}), logEcho: opts.logEcho ?? false });
  return {
    url: await listenUrl(app, opts.port, opts.host ?? '0.0.0.0'),
    close: async () => {
      await app.close();
    },
  };
}
