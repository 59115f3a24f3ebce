/**
 * The site's side of the DP protocol (`protocol.ts`), used by the package
 * transfer manager to send content to a distribution point (spec 10, flow 2
 * step 7): ask which files the DP lacks, upload each one to its temporary
 * name (resuming from what the DP already holds), then record the content
 * definition.
 *
 * It owns one keep-alive connection pool per client. Every request is signed,
 * and every answer must carry the DP's proof; an answer without a valid proof
 * is treated as coming from something that is not the DP. It turns every
 * failure into a CairnError with a DP code, so callers decide on retries by
 * code alone.
 *
 * It never buffers a large file in memory (files are streamed from disk);
 * small files travel in bundles of a few MiB (`uploadBundle`). It never
 * sends the shared key itself.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import type { ContentDefinition, ValidationProblem } from '../content-library/types.ts';
import { formatManifest } from '../content-library/chunk-lib.ts';
import type { FileManifest } from '../content-library/chunk-lib.ts';
import { CairnError, describeError } from '../shared/errors.ts';
import type { ErrorCode } from '../shared/errors.ts';
import { BUNDLE_FILE_MAX_BYTES, BUNDLE_MAX_BYTES, BUNDLE_MAX_FILES, PROOF_HEADER, encodeBundleHeader, signRequest, verifyProof } from './protocol.ts';
import type { DpStatus } from './protocol.ts';

export interface DpClient {
  status(): Promise<DpStatus>;
  missing(hashes: readonly string[]): Promise<string[]>;
  /**
   * Uploads one library file; resumes from the DP's offset; returns the bytes
   * sent by the request that completed the file (not counting what the DP
   * already held). Throws CairnError.
   */
  upload(hash: string, contentId: string, source: UploadSource, size: number, opts?: { readonly replace?: boolean }): Promise<number>;
  /** The chunk hashes of `hashes` the DP's ChunkLib lacks (ADR 0009). A DP without the route: CAIRN_NOT_FOUND. */
  missingChunks(hashes: readonly string[]): Promise<string[]>;
  /** Sends chunks in one `cairn-bundle/1` request to the DP's ChunkLib; each is hash-checked there, as files in a bundle are. */
  uploadChunks(contentId: string, chunks: readonly BundleFile[], opts?: { readonly replace?: boolean }): Promise<{ stored: string[]; rejected: { hash: string; code: string; message: string }[]; bytes: number }>;
  /**
   * Sends a chunked file's manifest once its chunks are on the DP. Returns
   * the bytes sent, or the chunks the DP still lacks (send them, then the
   * manifest again). CAIRN_DP_HASH_MISMATCH when the chunks in order do not
   * hash to the file.
   */
  putManifest(contentId: string, manifest: FileManifest, opts?: { readonly replace?: boolean }): Promise<{ bytes: number; missing?: undefined } | { missing: string[]; sources: string[]; bytes: number }>;
  /**
   * Sends small files (each at most BUNDLE_FILE_MAX_BYTES; together at most
   * BUNDLE_MAX_BYTES and BUNDLE_MAX_FILES) in one `cairn-bundle/1` request.
   * Returns what the DP stored and what it rejected (a file whose bytes do
   * not match its hash), and the bytes sent. A DP without the route answers
   * CAIRN_NOT_FOUND: send the files one by one then.
   */
  uploadBundle(contentId: string, files: readonly BundleFile[], opts?: { readonly replace?: boolean }): Promise<{ stored: string[]; rejected: { hash: string; code: string; message: string }[]; bytes: number }>;
  /**
   * Records the content on the DP. `removedContents`: superseded versions an
   * older DP removed before answering; `supersededContents`: those a current
   * DP removes after answering (ADR 0009, amendment 3).
   */
  putContent(def: ContentDefinition): Promise<{ removedContents: string[]; filesDeleted: number; supersededContents: string[] }>;
  /** Sends a content's definition ahead of its files, for the DP to write its per-file records meanwhile; true when it did. */
  prepareContent(def: ContentDefinition): Promise<boolean>;
  /** Stores a content's signature file (its text as written in SigLib); returns the bytes sent. */
  putSignatures(contentId: string, text: string): Promise<number>;
  /** The package's current content on the DP, or null. */
  packageContent(packageId: string): Promise<{ contentId: string | null; version: number | null }>;
  removePackage(packageId: string): Promise<{ contents: string[]; filesDeleted: number; bytesFreed: number }>;
  validatePackage(packageId: string): Promise<{ contentId: string; version: number; files: number; problems: ValidationProblem[] }>;
}

/** A file to upload: its path, or (a chunked file in the library) a function that opens its bytes from `start`. */
export type UploadSource = string | ((start: number) => Readable);

export interface BundleFile {
  readonly hash: string;
  readonly size: number;
  /** Where the site's library holds it. */
  readonly path: string;
}

export interface DpClientOptions {
  /** The DP's base URL, e.g. `http://dp1.example:8090`. */
  readonly url: string;
  readonly key: string;
  /** Socket inactivity limit per request; default 60 s. */
  readonly timeoutMs?: number;
}

/** Largest JSON answer the client reads; DP answers are small. */
const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;
/** Hashes per `files/missing` request (the DP accepts at most 100 000). */
const MISSING_BATCH = 50_000;
/** Files this large ask the DP for a partial copy before sending; smaller ones are sent whole at once. */
const OFFSET_QUERY_MIN_BYTES = 1024 * 1024;
/** Reads of a file being sent: larger than the stream default (64 KiB) for fewer reads and socket writes. */
const READ_CHUNK_BYTES = 1024 * 1024;

/** A file body; `total` is the whole file's size, which the DP may re-hash before it answers. */
type Body =
  | { readonly kind: 'json'; readonly value: unknown }
  | { readonly kind: 'text'; readonly value: string }
  | { readonly kind: 'file'; readonly path: string; readonly start: number; readonly length: number; readonly total: number }
  | { readonly kind: 'stream'; readonly open: () => Readable; readonly length: number; readonly total: number };

/**
 * After the last byte of a resumed upload, the DP re-reads the whole file to
 * hash it before it answers, so the connection is silent for a while. Allow
 * one extra second per 50 MiB of file (a slow disk) on top of the usual
 * inactivity limit rather than mistake a large file for a dead DP.
 */
const HASH_BYTES_PER_SECOND = 50 * 1024 * 1024;

interface Answer {
  readonly status: number;
  readonly body: unknown;
}

/** A transport failure before any answer arrived; `retryable` when it hit a reused keep-alive socket. */
class TransportError extends Error {
  readonly retryable: boolean;
  constructor(message: string, retryable: boolean, cause: unknown) {
    super(message, { cause });
    this.retryable = retryable;
  }
}

function field(body: unknown, name: string): unknown {
  return typeof body === 'object' && body !== null ? (body as Record<string, unknown>)[name] : undefined;
}

function dpMessage(body: unknown, status: number): string {
  const code = field(body, 'code');
  const message = field(body, 'message');
  const text = typeof message === 'string' ? message : `HTTP ${status}`;
  return typeof code === 'string' ? `${code}: ${text}` : text;
}

/**
 * Sends `length` bytes of a file from `start` as the request body through two
 * reused buffers: the next chunk is read while the previous one is written,
 * and nothing is allocated per chunk (a gigabyte through fresh buffers costs
 * the site more in garbage collection than in reading). When a write fails
 * or the request is gone, it destroys the request, so that no socket is left
 * half-used, and stops quietly: the answer handler reports the failure.
 */
async function pumpFile(req: http.ClientRequest, file: string, start: number, length: number): Promise<void> {
  const fh = await fsp.open(file, 'r');
  try {
    const buffers = [Buffer.allocUnsafe(READ_CHUNK_BYTES), Buffer.allocUnsafe(READ_CHUNK_BYTES)] as const;
    let writing: Promise<boolean> = Promise.resolve(true);
    let pos = start;
    let left = length;
    for (let i = 0; left > 0; i++) {
      const buf = buffers[i % 2]!;
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, left), pos);
      if (bytesRead === 0) throw new Error(`the file ended ${left} bytes early`);
      // The buffer read into now was last written two chunks ago, and that write has finished.
      if (!(await writing) || req.destroyed) return void req.destroy();
      writing = new Promise<boolean>((resolve) => req.write(buf.subarray(0, bytesRead), (err) => resolve(!err)));
      pos += bytesRead;
      left -= bytesRead;
    }
    if (!(await writing) || req.destroyed) return void req.destroy();
    req.end();
  } finally {
    await fh.close();
  }
}

export function createDpClient(opts: DpClientOptions): DpClient {
  const base = new URL(opts.url);
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new CairnError('CAIRN_DP_URL_INVALID', opts.url);
  const secure = base.protocol === 'https:';
  const mod = secure ? https : http;
  const agent = new mod.Agent({ keepAlive: true, maxSockets: 8 });
  const prefix = base.pathname.replace(/\/+$/, '');
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const where = base.origin;

  function once(method: string, route: string, body: Body | undefined): Promise<Answer> {
    const pathWithQuery = prefix + route;
    const signed = signRequest(opts.key, method, pathWithQuery);
    const headers: Record<string, string | number> = { authorization: signed.authorization, accept: 'application/json' };
    let payload: Buffer | undefined;
    if (body?.kind === 'json' || body?.kind === 'text') {
      payload = Buffer.from(body.kind === 'json' ? JSON.stringify(body.value) : body.value);
      headers['content-type'] = 'application/json';
      headers['content-length'] = payload.length;
    } else if (body?.kind === 'file' || body?.kind === 'stream') {
      headers['content-type'] = 'application/octet-stream';
      headers['content-length'] = body.length;
    }
    return new Promise<Answer>((resolve, reject) => {
      let settled = false;
      let answered = false;
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        reject(err);
      };
      const req = mod.request({ protocol: base.protocol, hostname: base.hostname, port: base.port, method, path: pathWithQuery, headers, agent });
      req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error(`no activity for ${timeoutMs} ms`), { code: 'ETIMEDOUT' })));
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (answered) return;
        fail(new TransportError(`${where}: ${describeError(err)}`, req.reusedSocket && err.code === 'ECONNRESET', err));
      });
      req.on('response', (res) => {
        answered = true;
        const status = res.statusCode ?? 0;
        const proof = res.headers[PROOF_HEADER];
        const chunks: Buffer[] = [];
        let length = 0;
        res.on('data', (chunk: Buffer) => {
          length += chunk.length;
          if (length > MAX_RESPONSE_BYTES) {
            res.destroy();
            fail(new CairnError('CAIRN_DP_REJECTED', `${where}: the answer to ${method} ${route} is larger than ${MAX_RESPONSE_BYTES} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('error', (err) => fail(new CairnError('CAIRN_DP_UNREACHABLE', `${where}: the connection failed while reading the answer: ${describeError(err)}`, { cause: err })));
        res.on('end', () => {
          if (settled) return;
          settled = true;
          // A 401 carries no proof: the DP refused our signature (wrong key or clock).
          if (status === 401) {
            let body: unknown;
            try {
              body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
            } catch {
              body = undefined;
            }
            reject(new CairnError('CAIRN_DP_AUTH_FAILED', `${where} refused the request (${dpMessage(body, status)})`));
            return;
          }
          if (!verifyProof(opts.key, signed.nonce, status, typeof proof === 'string' ? proof : undefined)) {
            reject(new CairnError('CAIRN_DP_AUTH_FAILED', `the answer from ${where} (HTTP ${status}) carries no valid proof: it is not this DP, or the DP holds another key`));
            return;
          }
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = text === '' ? undefined : JSON.parse(text);
          } catch {
            reject(new CairnError('CAIRN_DP_REJECTED', `${where}: the answer to ${method} ${route} (HTTP ${status}) is not JSON`));
            return;
          }
          resolve({ status, body: parsed });
        });
      });
      if (body?.kind === 'file' || body?.kind === 'stream') {
        req.on('finish', () => req.setTimeout(timeoutMs + Math.ceil(body.total / HASH_BYTES_PER_SECOND) * 1000));
        if (body.length === 0) {
          req.end();
          return;
        }
        if (body.kind === 'file') {
          pumpFile(req, body.path, body.start, body.length).catch((err: unknown) => {
            if (req.destroyed) return;
            req.destroy();
            fail(new CairnError('CAIRN_INTERNAL', `cannot read ${body.path}: ${describeError(err)}`, { cause: err }));
          });
          return;
        }
        const file: Readable = body.open();
        file.on('error', (err) => {
          req.destroy();
          fail(new CairnError('CAIRN_INTERNAL', `cannot read the file: ${describeError(err)}`, { cause: err }));
        });
        file.pipe(req);
      } else {
        req.end(payload);
      }
    });
  }

  /** One request; retried once when a reused keep-alive socket turns out to be closed. */
  async function call(method: string, route: string, body?: Body): Promise<Answer> {
    try {
      return await once(method, route, body);
    } catch (err) {
      if (err instanceof TransportError && err.retryable) {
        try {
          return await once(method, route, body);
        } catch (again) {
          throw toCairn(again);
        }
      }
      throw toCairn(err);
    }
  }

  function toCairn(err: unknown): CairnError {
    if (err instanceof CairnError) return err;
    return new CairnError('CAIRN_DP_UNREACHABLE', err instanceof Error ? err.message : String(err), { cause: err });
  }

  /** Maps a non-2xx answer to the registry code the caller acts on. */
  function rejection(answer: Answer, what: string): CairnError {
    const text = `${where}: ${what}: ${dpMessage(answer.body, answer.status)}`;
    const byStatus: Partial<Record<number, ErrorCode>> = { 507: 'CAIRN_DP_DISK_FULL', 422: 'CAIRN_DP_HASH_MISMATCH' };
    const passed: readonly string[] = ['CAIRN_DP_CONTENT_INCOMPLETE', 'CAIRN_DP_FILE_NOT_FOUND'];
    const dpCode = field(answer.body, 'code');
    const code = byStatus[answer.status] ?? (typeof dpCode === 'string' && passed.includes(dpCode) ? (dpCode as ErrorCode) : 'CAIRN_DP_REJECTED');
    return new CairnError(code, text);
  }

  const ok = (a: Answer): boolean => a.status >= 200 && a.status < 300;

  async function uploadOffset(hash: string, contentId: string): Promise<number> {
    const a = await call('GET', `/dp/v1/uploads/${hash}?content=${encodeURIComponent(contentId)}`);
    const offset = field(a.body, 'offset');
    if (!ok(a)) throw rejection(a, `asking for the upload offset of ${hash}`);
    if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) throw new CairnError('CAIRN_DP_REJECTED', `${where}: malformed upload offset for ${hash}`);
    return offset;
  }

  return {
    async status() {
      const a = await call('GET', '/dp/v1/status');
      if (!ok(a)) throw rejection(a, 'status');
      const name = field(a.body, 'name');
      const freeBytes = field(a.body, 'freeBytes');
      const contents = field(a.body, 'contents');
      if (typeof name !== 'string' || typeof freeBytes !== 'number' || typeof contents !== 'number') throw new CairnError('CAIRN_DP_REJECTED', `${where}: malformed status`);
      return { name, freeBytes, contents };
    },

    async missing(hashes) {
      const out: string[] = [];
      for (let i = 0; i < hashes.length; i += MISSING_BATCH) {
        const batch = hashes.slice(i, i + MISSING_BATCH).map((h) => h.toUpperCase());
        const a = await call('POST', '/dp/v1/files/missing', { kind: 'json', value: { hashes: batch } });
        if (!ok(a)) throw rejection(a, 'asking which files are missing');
        const missing = field(a.body, 'missing');
        if (!Array.isArray(missing) || !missing.every((h): h is string => typeof h === 'string')) throw new CairnError('CAIRN_DP_REJECTED', `${where}: malformed missing list`);
        out.push(...missing);
      }
      return [...new Set(out)];
    },

    async upload(hash, contentId, source, size, uploadOpts = {}) {
      const h = hash.toUpperCase();
      if (typeof source === 'string') {
        let actual: number;
        try {
          actual = (await fsp.stat(source)).size;
        } catch (err) {
          throw new CairnError('CAIRN_INTERNAL', `cannot read ${source}: ${describeError(err)}`, { cause: err });
        }
        if (actual !== size) throw new CairnError('CAIRN_INTERNAL', `${source} holds ${actual} bytes, not the ${size} its content says`);
      }
      // A 409 means the DP holds a different number of bytes than we were
      // told a moment ago (another sender, or a write still settling): ask
      // again and continue once; a second 409 is an error.
      // A small file is sent from its start without asking first: one request
      // instead of two. A DP holding part of it answers 409 with its offset,
      // and the loop asks and resumes as it does for a large file.
      let asked = size >= OFFSET_QUERY_MIN_BYTES;
      for (let attempt = 0; ; attempt++) {
        let start = asked ? await uploadOffset(h, contentId) : 0;
        // The DP discards a temporary file longer than the file, so start over.
        if (start > size) start = 0;
        const route = `/dp/v1/uploads/${h}?content=${encodeURIComponent(contentId)}&offset=${start}&size=${size}${uploadOpts.replace ? '&replace=1' : ''}`;
        const body: Body =
          typeof source === 'string' ? { kind: 'file', path: source, start, length: size - start, total: size } : { kind: 'stream', open: () => source(start), length: size - start, total: size };
        const a = await call('PUT', route, body);
        if (a.status === 409 && attempt === 0) {
          asked = true;
          continue;
        }
        if (a.status === 201 && field(a.body, 'stored') === true) return size - start;
        if (ok(a)) throw new CairnError('CAIRN_DP_REJECTED', `${where}: the upload of ${h} ended without the file being stored (${JSON.stringify(a.body)})`);
        throw rejection(a, `uploading ${h} for ${contentId}`);
      }
    },

    uploadBundle(contentId, files, bundleOpts = {}) {
      return sendBundle('/dp/v1/bundles', 'files', contentId, files, bundleOpts.replace === true);
    },

    uploadChunks(contentId, chunks, chunkOpts = {}) {
      return sendBundle('/dp/v1/chunks', 'chunks', contentId, chunks, chunkOpts.replace === true);
    },

    async missingChunks(hashes) {
      const out: string[] = [];
      for (let i = 0; i < hashes.length; i += MISSING_BATCH) {
        const batch = hashes.slice(i, i + MISSING_BATCH).map((h) => h.toUpperCase());
        const a = await call('POST', '/dp/v1/chunks/missing', { kind: 'json', value: { hashes: batch } });
        if (a.status === 404 && field(a.body, 'code') === 'CAIRN_NOT_FOUND') throw new CairnError('CAIRN_NOT_FOUND', `${where} does not take chunks`);
        if (!ok(a)) throw rejection(a, 'asking which chunks are missing');
        const missing = field(a.body, 'missing');
        if (!Array.isArray(missing) || !missing.every((h): h is string => typeof h === 'string')) throw new CairnError('CAIRN_DP_REJECTED', `${where}: malformed missing list`);
        out.push(...missing);
      }
      return [...new Set(out)];
    },

    async putManifest(contentId, manifest, manifestOpts = {}) {
      const text = formatManifest(manifest);
      const json = text.slice(text.indexOf('\n') + 1);
      const route = `/dp/v1/manifests/${manifest.hash.toUpperCase()}?content=${encodeURIComponent(contentId)}${manifestOpts.replace ? '&replace=1' : ''}`;
      const a = await call('PUT', route, { kind: 'text', value: json });
      const bytes = Buffer.byteLength(json);
      if (a.status === 201 && field(a.body, 'stored') === true) return { bytes };
      const missing = field(a.body, 'missing');
      const sources = field(a.body, 'sources') ?? [];
      const strings = (x: unknown): x is string[] => Array.isArray(x) && x.every((h): h is string => typeof h === 'string');
      if (a.status === 409 && strings(missing) && strings(sources)) return { missing, sources, bytes };
      throw rejection(a, `recording the manifest of ${manifest.hash} for ${contentId}`);
    },

    async putSignatures(contentId, text) {
      const a = await call('PUT', `/dp/v1/signatures/${encodeURIComponent(contentId)}`, { kind: 'text', value: text });
      if (!ok(a)) throw rejection(a, `storing the signatures of ${contentId}`);
      return Buffer.byteLength(text);
    },

    async packageContent(packageId) {
      const a = await call('GET', `/dp/v1/packages/${encodeURIComponent(packageId)}`);
      if (!ok(a)) throw rejection(a, `asking for package ${packageId}`);
      const contentId = field(a.body, 'contentId');
      const version = field(a.body, 'version');
      return { contentId: typeof contentId === 'string' ? contentId : null, version: typeof version === 'number' ? version : null };
    },

    async removePackage(packageId) {
      const a = await call('DELETE', `/dp/v1/packages/${encodeURIComponent(packageId)}`);
      if (!ok(a)) throw rejection(a, `removing package ${packageId}`);
      const contents = field(a.body, 'contents');
      const filesDeleted = field(a.body, 'filesDeleted');
      const bytesFreed = field(a.body, 'bytesFreed');
      if (!Array.isArray(contents) || typeof filesDeleted !== 'number' || typeof bytesFreed !== 'number') throw new CairnError('CAIRN_DP_REJECTED', `${where}: malformed removal answer`);
      return { contents: contents.map(String), filesDeleted, bytesFreed };
    },

    async validatePackage(packageId) {
      const a = await call('POST', `/dp/v1/packages/${encodeURIComponent(packageId)}/validate`, { kind: 'json', value: {} });
      if (!ok(a)) throw rejection(a, `validating package ${packageId}`);
      const contentId = field(a.body, 'contentId');
      const version = field(a.body, 'version');
      const files = field(a.body, 'files');
      const problems = field(a.body, 'problems');
      if (typeof contentId !== 'string' || typeof version !== 'number' || typeof files !== 'number' || !Array.isArray(problems)) throw new CairnError('CAIRN_DP_REJECTED', `${where}: malformed validation answer`);
      const parsed: ValidationProblem[] = problems.map((p: unknown) => {
        const path = field(p, 'path');
        const hash = field(p, 'hash');
        const problem = field(p, 'problem');
        const actual = field(p, 'actual');
        if (typeof path !== 'string' || typeof hash !== 'string' || (problem !== 'missing' && problem !== 'hash mismatch' && problem !== 'size mismatch')) {
          throw new CairnError('CAIRN_DP_REJECTED', `${where}: malformed validation problem`);
        }
        const chunk = field(p, 'chunk');
        return { path, hash, problem, ...(typeof actual === 'string' ? { actual } : {}), ...(typeof chunk === 'string' ? { chunk } : {}) };
      });
      return { contentId, version, files, problems: parsed };
    },

    async prepareContent(def) {
      const a = await call('PUT', `/dp/v1/contents/${encodeURIComponent(def.contentId)}?prepare=1`, { kind: 'json', value: def });
      if (ok(a)) return field(a.body, 'prepared') === true;
      throw rejection(a, `preparing the records of content ${def.contentId}`);
    },

    async putContent(def) {
      const a = await call('PUT', `/dp/v1/contents/${encodeURIComponent(def.contentId)}`, { kind: 'json', value: def });
      if (ok(a)) {
        const removed = field(a.body, 'removedContents');
        const filesDeleted = field(a.body, 'filesDeleted');
        const superseded = field(a.body, 'supersededContents');
        return {
          removedContents: Array.isArray(removed) ? removed.map(String) : [],
          filesDeleted: typeof filesDeleted === 'number' ? filesDeleted : 0,
          supersededContents: Array.isArray(superseded) ? superseded.map(String) : [],
        };
      }
      const missing = field(a.body, 'missing');
      const err = rejection(a, `recording content ${def.contentId}`);
      if (err.code === 'CAIRN_DP_CONTENT_INCOMPLETE' && Array.isArray(missing)) {
        throw new CairnError('CAIRN_DP_CONTENT_INCOMPLETE', `${where}: content ${def.contentId} lacks ${missing.length} file(s): ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`);
      }
      throw err;
    },
  };

  async function sendBundle(routeBase: string, what: string, contentId: string, files: readonly BundleFile[], replace: boolean): Promise<{ stored: string[]; rejected: { hash: string; code: string; message: string }[]; bytes: number }> {
    const total = files.reduce((n, f) => n + f.size, 0);
    if (files.length === 0 || files.length > BUNDLE_MAX_FILES || total > BUNDLE_MAX_BYTES || files.some((f) => f.size > BUNDLE_FILE_MAX_BYTES)) {
      throw new CairnError('CAIRN_INTERNAL', `a bundle of ${files.length} files and ${total} bytes is outside the limits`);
    }
    const parts: Buffer[] = [encodeBundleHeader(files)];
    // Read with synchronous calls: a bundle is at most a few MiB from the page cache, a few
    // milliseconds, where four thread-pool round trips a file cost more than the reads (performance.md).
    for (const f of files) {
      let data: Buffer;
      try {
        data = fs.readFileSync(f.path);
      } catch (err) {
        throw new CairnError('CAIRN_INTERNAL', `cannot read ${f.path}: ${describeError(err)}`, { cause: err });
      }
      if (data.length !== f.size) throw new CairnError('CAIRN_INTERNAL', `${f.path} holds ${data.length} bytes, not the ${f.size} its content says`);
      parts.push(data);
    }
    const payload = Buffer.concat(parts);
    const route = `${routeBase}?content=${encodeURIComponent(contentId)}${replace ? '&replace=1' : ''}`;
    const a = await call('PUT', route, { kind: 'stream', open: () => Readable.from([payload]), length: payload.length, total: payload.length });
    if (!ok(a)) {
      if (a.status === 404 && field(a.body, 'code') === 'CAIRN_NOT_FOUND') throw new CairnError('CAIRN_NOT_FOUND', `${where} does not take bundles of ${what}`);
      throw rejection(a, `uploading a bundle of ${files.length} ${what} for ${contentId}`);
    }
    const stored = field(a.body, 'stored');
    const rejected = field(a.body, 'rejected');
    const isRejection = (r: unknown): r is { hash: string; code: string; message: string } =>
      typeof field(r, 'hash') === 'string' && typeof field(r, 'code') === 'string' && typeof field(r, 'message') === 'string';
    if (!Array.isArray(stored) || !stored.every((h): h is string => typeof h === 'string') || !Array.isArray(rejected) || !rejected.every(isRejection)) {
      throw new CairnError('CAIRN_DP_REJECTED', `${where}: malformed answer to a bundle`);
    }
    return { stored, rejected, bytes: payload.length };
  }
}
