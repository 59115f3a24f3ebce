/**
 * Data transfer service (`DataTransferService.log`): downloads the files of a
 * content from distribution points over HTTP into the agent's cache
 * (`<cache>/<ContentID>/<path>`), the way the seed's content transfer manager
 * asks DTS to (spec 10, flow 7 step 6).
 *
 * Guarantees:
 * - **Resume.** Bytes arrive in `<cache>/.partial/<ContentID>/<path>`; after
 *   an interruption, a retry or a restart of the agent, the download goes on
 *   from the partial file's length with `Range: bytes=N-`. A server that
 *   answers 200 instead of 206 starts the file over; a 416 (the partial file
 *   is longer than the file) starts it over too.
 * - **Verified bytes.** A file enters the cache only when its size and
 *   SHA-256 are those the policy gives; a file that does not match is
 *   deleted, never accepted (`CAIRN_AGENT_CONTENT_HASH_MISMATCH`), and the
 *   next location is tried.
 * - **Failover.** Locations are tried in the order location services gave
 *   them; when a whole round fails, the next round starts after a backoff
 *   (`DEFAULT_RETRY_DELAYS_MS`), and after the last round the download fails
 *   with `CAIRN_AGENT_DOWNLOAD_FAILED`, keeping the partial file for later.
 * - **Paths from policy are not trusted.** An absolute path, a `..`, a
 *   backslash or an empty segment is `CAIRN_CONTENT_PATH_INVALID`, refused
 *   before anything is requested or written.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { createHash } from 'node:crypto';
import type { ComponentLog } from '../shared/cmtrace-log.ts';
import { CairnError, describeError, isCairnError } from '../shared/errors.ts';

/**
 * Ours: pauses between rounds over all locations. Short at first (a DP that
 * restarts is back within seconds), then longer, so that a DP that is down
 * for a while is not hammered by every client; four rounds in all, after
 * which the content transfer manager's own job retry takes over.
 */
export const DEFAULT_RETRY_DELAYS_MS = [2_000, 10_000, 30_000] as const;
/** Ours: a DP that sends nothing for this long is treated as gone. */
export const DOWNLOAD_IDLE_TIMEOUT_MS = 60_000;

export interface ContentFile {
  /** '/'-separated path inside the content, as the policy names it. */
  readonly path: string;
  readonly size: number;
  /** SHA-256 hex (either case). */
  readonly hash: string;
}

export interface ContentLocation {
  readonly name: string;
  /** The package's URL on the DP, ending in '/' (`<DP>/SMS_DP_SMSPKG$/<PkgID>/`). */
  readonly packageUrl: string;
}

export interface ContentDownload {
  readonly contentId: string;
  readonly files: readonly ContentFile[];
  /** Best first. */
  readonly locations: readonly ContentLocation[];
}

/** Checks a path from a policy; returns its segments. */
export function contentPathSegments(rel: string): string[] {
  const bad = (why: string): never => {
    throw new CairnError('CAIRN_CONTENT_PATH_INVALID', `${JSON.stringify(rel.slice(0, 200))}: ${why}`);
  };
  if (typeof rel !== 'string' || rel.length === 0) bad('empty');
  if (rel.length > 4096) bad('longer than 4096 characters');
  if (rel.includes('\0')) bad('contains a NUL character');
  if (rel.includes('\\')) bad('contains a backslash');
  if (rel.startsWith('/') || /^[A-Za-z]:/.test(rel)) bad('absolute');
  const segments = rel.split('/');
  for (const s of segments) {
    if (s === '' || s === '.' || s === '..') bad(`has a ${s === '' ? 'empty' : JSON.stringify(s)} segment`);
  }
  return segments;
}

/** A content ID from a policy: the library's `<PkgID>.<version>` shape, nothing that could be a path. */
export function checkContentId(contentId: string): void {
  if (typeof contentId !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(contentId) || contentId.includes('..')) {
    throw new CairnError('CAIRN_CONTENT_PATH_INVALID', `content ID ${JSON.stringify(String(contentId).slice(0, 200))} is not a plain name`);
  }
}

export function fileUrl(packageUrl: string, rel: string): string {
  const base = packageUrl.endsWith('/') ? packageUrl : `${packageUrl}/`;
  return base + contentPathSegments(rel).map(encodeURIComponent).join('/');
}

async function sha256OfFile(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function sizeOf(file: string): Promise<number | undefined> {
  try {
    return (await fsp.stat(file)).size;
  } catch {
    return undefined;
  }
}

export interface DataTransferOptions {
  readonly log: ComponentLog;
  /** Folder holding `<ContentID>/` and `.partial/`. */
  readonly cacheDir: string;
  readonly retryDelaysMs?: readonly number[];
  /** Shared keep-alive agents (one per simulation). */
  readonly httpAgent?: http.Agent;
  readonly httpsAgent?: https.Agent;
  /** Aborts waits and transfers when the agent stops. */
  readonly signal?: AbortSignal;
}

type Attempt = { ok: true; bytes: number } | { ok: false; reason: string; hashMismatch?: boolean };

export class DataTransferService {
  readonly #o: DataTransferOptions;

  constructor(options: DataTransferOptions) {
    this.#o = options;
  }

  /** Where an accepted file of a content lives. */
  cachedPath(contentId: string, rel: string): string {
    checkContentId(contentId);
    return path.join(this.#o.cacheDir, contentId, ...contentPathSegments(rel));
  }

  #partialPath(contentId: string, rel: string): string {
    return path.join(this.#o.cacheDir, '.partial', contentId, ...contentPathSegments(rel));
  }

  /** Downloads every file of a content; resolves when all are verified in the cache. */
  async downloadContent(d: ContentDownload): Promise<{ files: number; bytesDownloaded: number }> {
    checkContentId(d.contentId);
    // Every path is checked before the first byte moves, so a hostile policy writes nothing.
    for (const f of d.files) contentPathSegments(f.path);
    let bytes = 0;
    for (const f of d.files) bytes += await this.downloadFile(d.contentId, f, d.locations);
    return { files: d.files.length, bytesDownloaded: bytes };
  }

  /** Downloads one file (or finds it already verified in the cache); returns the bytes transferred. */
  async downloadFile(contentId: string, file: ContentFile, locations: readonly ContentLocation[]): Promise<number> {
    const log = this.#o.log;
    const final = this.cachedPath(contentId, file.path);
    const partial = this.#partialPath(contentId, file.path);
    const want = file.hash.toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(want)) throw new CairnError('CAIRN_HASH_INVALID', `${file.path}: ${JSON.stringify(file.hash)}`);
    if ((await sizeOf(final)) === file.size && (await sha256OfFile(final)) === want) {
      log.info(`${contentId}/${file.path} is already in the cache and verified; nothing to download.`);
      return 0;
    }
    if (locations.length === 0) throw new CairnError('CAIRN_AGENT_NO_LOCATION', `${contentId}: no location to download ${file.path} from`);
    await fsp.mkdir(path.dirname(partial), { recursive: true });
    const delays = this.#o.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS;
    const reasons: string[] = [];
    let transferred = 0;
    for (let round = 0; round <= delays.length; round += 1) {
      for (const loc of locations) {
        if (this.#o.signal?.aborted) throw new CairnError('CAIRN_AGENT_DOWNLOAD_FAILED', `${contentId}/${file.path}: the agent is stopping`);
        const url = fileUrl(loc.packageUrl, file.path);
        const before = (await sizeOf(partial)) ?? 0;
        const r = await this.#attempt(url, loc.name, contentId, file, partial, want);
        transferred += Math.max(0, ((await sizeOf(partial)) ?? (r.ok ? file.size : 0)) - before);
        if (r.ok) {
          await fsp.mkdir(path.dirname(final), { recursive: true });
          await fsp.rename(partial, final);
          log.info(`Accepted ${contentId}/${file.path} into the cache (${file.size} bytes, SHA-256 ${want.toUpperCase()} verified) from ${loc.name}.`);
          return transferred;
        }
        reasons.push(`${loc.name}: ${r.reason}`);
      }
      const delay = delays[round];
      if (delay === undefined) break;
      log.warn(`Every location failed for ${contentId}/${file.path} (round ${round + 1} of ${delays.length + 1}); trying again in ${Math.round(delay / 1000)} s. The partial file is kept.`);
      await this.#sleep(delay);
    }
    log.error(`Giving up on ${contentId}/${file.path} for now (CAIRN_AGENT_DOWNLOAD_FAILED): ${reasons.slice(-locations.length).join('; ')}. The partial file is kept for the next attempt.`);
    throw new CairnError('CAIRN_AGENT_DOWNLOAD_FAILED', `${contentId}/${file.path}: ${reasons.slice(-locations.length).join('; ')}`);
  }

  async #sleep(ms: number): Promise<void> {
    const signal = this.#o.signal;
    await new Promise<void>((resolve) => {
      const onAbort = (): void => {
        clearTimeout(t);
        resolve();
      };
      const t = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  async #attempt(url: string, locName: string, contentId: string, file: ContentFile, partial: string, want: string): Promise<Attempt> {
    const log = this.#o.log;
    let offset = (await sizeOf(partial)) ?? 0;
    if (offset > file.size) {
      log.warn(`The partial file of ${contentId}/${file.path} is longer (${offset}) than the file (${file.size}); starting over.`);
      await fsp.rm(partial, { force: true });
      offset = 0;
    }
    if (file.size === 0) {
      // Nothing to fetch: an empty file is made here and verified like any other (its hash is that of no bytes).
      await fsp.writeFile(partial, '');
    } else if (offset < file.size) {
      if (offset > 0) log.info(`Resuming ${contentId}/${file.path} at byte ${offset} of ${file.size} from ${locName} (${url}).`);
      else log.info(`Downloading ${contentId}/${file.path} (${file.size} bytes) from ${locName} (${url}).`);
      const r = await this.#fetchInto(url, partial, offset, file.size);
      if (!r.ok) {
        const have = (await sizeOf(partial)) ?? 0;
        log.warn(`Download of ${contentId}/${file.path} from ${locName} stopped at byte ${have} of ${file.size}: ${r.reason}.`);
        return r;
      }
    }
    const size = (await sizeOf(partial)) ?? 0;
    const got = size === file.size ? await sha256OfFile(partial) : '';
    if (got !== want) {
      await fsp.rm(partial, { force: true });
      const reason = `CAIRN_AGENT_CONTENT_HASH_MISMATCH: got ${size} bytes with SHA-256 ${got ? got.toUpperCase() : '(not hashed)'}, the policy says ${file.size} bytes with ${want.toUpperCase()}`;
      log.error(`Refused ${contentId}/${file.path} from ${locName}: ${reason}. The bytes were discarded.`);
      return { ok: false, reason, hashMismatch: true };
    }
    return { ok: true, bytes: size };
  }

  /** One HTTP GET, appending to `partial` from `offset`. */
  #fetchInto(url: string, partial: string, offset: number, size: number): Promise<Attempt> {
    return new Promise<Attempt>((resolve) => {
      let settled = false;
      const onAbort = (): void => {
        current.req?.destroy(new Error('the agent is stopping'));
      };
      const done = (a: Attempt): void => {
        if (!settled) {
          settled = true;
          this.#o.signal?.removeEventListener('abort', onAbort);
          resolve(a);
        }
      };
      // Set once the request exists; an abort before that has nothing to cancel.
      const current: { req?: http.ClientRequest } = {};
      let u: URL;
      try {
        u = new URL(url);
      } catch {
        done({ ok: false, reason: `bad URL ${url}` });
        return;
      }
      const isHttps = u.protocol === 'https:';
      const agent = isHttps ? this.#o.httpsAgent : this.#o.httpAgent;
      const req = (isHttps ? https : http).get(u, { headers: offset > 0 ? { range: `bytes=${offset}-` } : {}, ...(agent ? { agent } : {}), timeout: DOWNLOAD_IDLE_TIMEOUT_MS }, (res) => {
        const status = res.statusCode ?? 0;
        let flags: 'a' | 'w';
        if (status === 206 && offset > 0) {
          const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(String(res.headers['content-range'] ?? ''));
          if (!m || Number(m[1]) !== offset) {
            res.resume();
            // A range we did not ask for: start the file over on the next try.
            fsp.rm(partial, { force: true }).then(() => done({ ok: false, reason: `the server answered range ${String(res.headers['content-range'])} for bytes=${offset}-; starting over` }), () => done({ ok: false, reason: 'cannot remove the partial file' }));
            return;
          }
          flags = 'a';
        } else if (status === 200) {
          flags = 'w';
        } else if (status === 416) {
          res.resume();
          fsp.rm(partial, { force: true }).then(() => done({ ok: false, reason: 'HTTP 416 for the resume range; starting over' }), () => done({ ok: false, reason: 'HTTP 416' }));
          return;
        } else {
          res.resume();
          done({ ok: false, reason: `HTTP ${status}` });
          return;
        }
        const out = fs.createWriteStream(partial, { flags });
        let written = flags === 'a' ? offset : 0;
        res.on('data', (chunk: Buffer) => {
          written += chunk.length;
          if (written > size) {
            req.destroy(new Error(`the server sent more than the ${size} bytes the policy gives`));
          }
        });
        res.pipe(out);
        const fail = (err: unknown): void => {
          out.end(() => done({ ok: false, reason: describeError(err) }));
        };
        res.on('error', fail);
        res.on('aborted', () => fail(new Error('the connection was closed mid-file')));
        req.on('error', fail);
        out.on('error', (err) => done({ ok: false, reason: `cannot write ${partial}: ${err.message}` }));
        out.on('finish', () => {
          if (res.complete && written <= size) done({ ok: true, bytes: written });
          else done({ ok: false, reason: written > size ? `more than ${size} bytes` : 'the connection was closed mid-file' });
        });
      });
      current.req = req;
      req.on('timeout', () => req.destroy(new Error(`nothing received for ${DOWNLOAD_IDLE_TIMEOUT_MS / 1000} s`)));
      req.on('error', (err) => done({ ok: false, reason: isCairnError(err) ? err.message : describeError(err) }));
      this.#o.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
