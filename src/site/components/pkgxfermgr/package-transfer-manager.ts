/**
 * PkgXferMgr, the package transfer manager (spec 10, flow 2 steps 5–7; seed
 * 001 step 11). Woken by `<PkgID>.PKN` in `PkgTransferMgr.box` (a new
 * `DistributionJobs` row) or by its rescan, it runs each runnable job in a
 * sending thread (at most `pkgxfermgr.sendingThreads` at once): report status
 * 0 to the distribution manager, upload every file the DP does not already
 * hold (the DP verifies each file's SHA-256 before it enters its library),
 * send the content definition, raise 8200, report status 3 through an `.STA`,
 * raise 8210.
 *
 * The job row is the durable state: a process killed mid-send restarts, finds
 * the job still started or in progress, and runs it again; files already on
 * the DP are not resent and a partial file resumes from the DP's offset.
 * An unreachable DP is retried with backoff (RETRY_STEPS) and reported as
 * "retrying"; a DP out of disk space fails the job with the reason.
 *
 * Issue 3: an update sends only the files the DP lacks, and a file of 1 MiB
 * or more, which the library keeps as content-defined chunks (ADR 0009),
 * sends only the chunks the DP lacks, then its manifest; the DP checks each
 * chunk's hash and the whole file's before it accepts the manifest. A DP
 * without the chunk routes gets the file whole. The content's signatures go
 * with it. A redistribute (Action 2) sends every
 * file whole and the DP rewrites its copies; a removal (Action 3) and a
 * validation (Action 4) are one request each, reported through `.STA` files
 * like a distribution.
 */
import path from 'node:path';
import { createComponentLog } from '../../../shared/cmtrace-log.ts';
import type { ComponentLog } from '../../../shared/cmtrace-log.ts';
import { listInboxFiles, removeInboxFile } from '../../../shared/inbox.ts';
import { Limiter } from '../../../shared/limit.ts';
import { WorkLoop } from '../../../shared/work-loop.ts';
import { createStatusReporter, ATTR } from '../../../shared/status-message.ts';
import type { StatusReporter } from '../../../shared/status-message.ts';
import { CairnError, describeError, isCairnError } from '../../../shared/errors.ts';
import { runnableJobs, setJobState } from '../../../datastore/distribution-jobs.ts';
import type { RunnableJob } from '../../../datastore/distribution-jobs.ts';
import { JOB_ACTION, JOB_STATE, PKG_STATUS } from '../../../datastore/enums.ts';
import { nowIso } from '../../../datastore/time.ts';
import { createDpClient } from '../../../dp/dp-client.ts';
import { BUNDLE_FILE_MAX_BYTES, PACKAGE_SHARE, SIGNATURE_SHARE, packBundles } from '../../../dp/protocol.ts';
import type { ContentDefinition } from '../../../content-library/types.ts';
import { CHUNKED_MIN_FILE_SIZE } from '../../../content-library/chunk-lib.ts';
import type { FileManifest } from '../../../content-library/chunk-lib.ts';
import { signaturesPath } from '../../../content-library/snapshot.ts';
import type { DpClient, UploadSource } from '../../../dp/dp-client.ts';
import { Readable } from 'node:stream';
import fsp from 'node:fs/promises';
import { newThreadId } from '../../site-context.ts';
import type { SiteContext } from '../../site-context.ts';
import { writeStaFile } from '../distmgr/sta-file.ts';
import type { StaAction } from '../distmgr/sta-file.ts';

export const PKGXFERMGR_COMPONENT = 'SMS_PACKAGE_TRANSFER_MANAGER';

export const PKGXFERMGR_MESSAGES = {
  finishedSending: 8200,
  reportedStatus: 8210,
} as const;

/**
 * Retry delays for a DP that cannot be reached, as multiples of
 * `pkgxfermgr.retryBaseMs`: quick at first (a DP restarting is back within
 * seconds), then backing off so a DP that is down for hours costs little.
 * The last step repeats until `pkgxfermgr.maxRetries` attempts.
 */
export const RETRY_STEPS = [1, 3, 6, 12, 30, 60] as const;

/** What one transfer sent, for its "Sending completed successfully" line. */
interface SendFigures {
  files: number;
  bytes: number;
  /** Files sent as chunks (ADR 0009), and the chunks the DP stored. */
  chunked: number;
  chunks: number;
  manifestBytes: number;
  signatureBytes: number;
}

/** Failures that retrying will not fix: the job fails at once. */
const PERMANENT = new Set(['CAIRN_DP_DISK_FULL', 'CAIRN_DP_CONTENT_INCOMPLETE', 'CAIRN_PACKAGE_NOT_FOUND']);

export class PackageTransferManager {
  readonly log: ComponentLog;
  readonly #ctx: SiteContext;
  readonly #status: StatusReporter;
  readonly #loop: WorkLoop;
  readonly #threads: Limiter;
  readonly #running = new Set<number>();
  readonly #busyTargets = new Set<string>();
  readonly #inflight = new Set<Promise<void>>();
  readonly #onStatusFile: () => void;
  #firstPass = true;
  #retryTimer: NodeJS.Timeout | undefined;

  constructor(ctx: SiteContext, onStatusFile: () => void) {
    this.#ctx = ctx;
    this.#onStatusFile = onStatusFile;
    this.log = createComponentLog({ dir: ctx.paths.logs, name: 'PkgXferMgr', component: PKGXFERMGR_COMPONENT });
    this.#status = createStatusReporter({ component: PKGXFERMGR_COMPONENT, site: ctx.siteCode, statmsgsDir: ctx.paths.statmsgs, log: this.log });
    this.#threads = new Limiter(ctx.settings['pkgxfermgr.sendingThreads']);
    this.#loop = new WorkLoop({ log: this.log, inboxes: [ctx.paths.pkgTransferMgrBox], rescanMs: ctx.settings['components.rescanMs'], work: () => this.#scan() });
  }

  start(): void {
    this.log.info(`SMS_PACKAGE_TRANSFER_MANAGER started; ${this.#threads.max} sending threads.`);
    this.#loop.start();
  }

  wake(): void {
    this.#loop.wake();
  }

  async stop(): Promise<void> {
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    await this.#loop.stop();
    await Promise.allSettled([...this.#inflight]);
  }

  async #scan(): Promise<void> {
    const box = this.#ctx.paths.pkgTransferMgrBox;
    const wakeFiles = await listInboxFiles(box, 'PKN');
    // Jobs left started or in progress by a process that died are resumed once, at start-up.
    const jobs = await runnableJobs(this.#ctx.db, { orphansToo: this.#firstPass });
    this.#firstPass = false;
    for (const job of jobs) {
      const target = `${job.PkgID}|${job.DPID}`;
      if (this.#running.has(Number(job.JobID)) || this.#busyTargets.has(target)) continue;
      if (!this.#threads.hasFreeSlot) break;
      this.#running.add(Number(job.JobID));
      this.#busyTargets.add(target);
      this.log.info(
        `Found send request with ID ${job.JobID}, Package ${job.PkgID}, Version ${job.PackageVersion}, Priority ${job.PkgPriority}, Destination ${job.DPName}, DPPriority ${job.DPPriority}`,
      );
      const tid = newThreadId();
      this.log.info(`Created sending thread (Thread ID = 0x${tid.toString(16).toUpperCase()})`);
      await setJobState(this.#ctx.db, Number(job.JobID), JOB_STATE.started);
      const p = this.#threads
        .run(() => this.#send(job, tid))
        .catch((err) => this.log.error(`Sending thread for job ${job.JobID} failed: ${describeError(err)}`, tid))
        .finally(() => {
          this.#running.delete(Number(job.JobID));
          this.#busyTargets.delete(target);
          this.#inflight.delete(p);
          this.#loop.wake();
        });
      this.#inflight.add(p);
    }
    // The .PKN files only wake us; the jobs they announce are durable rows.
    for (const name of wakeFiles) await removeInboxFile(path.join(box, name));
    await this.#scheduleRetryWake();
  }

  /** Wakes the loop when the earliest pending restart is due, so retries are not late by a rescan period. */
  async #scheduleRetryWake(): Promise<void> {
    const next = await this.#ctx.db
      .selectFrom('DistributionJobs')
      .select((eb) => eb.fn.min('RestartTime').as('t'))
      .where('State', '=', JOB_STATE.pendingRestart)
      .executeTakeFirst();
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    const t = next?.t ? Date.parse(String(next.t)) : NaN;
    if (Number.isNaN(t)) return;
    this.#retryTimer = setTimeout(() => this.#loop.wake(), Math.max(0, t - Date.now()) + 5);
    this.#retryTimer.unref();
  }

  async #send(job: RunnableJob, tid: number): Promise<void> {
    if (job.Action === JOB_ACTION.remove) return this.#remove(job, tid);
    if (job.Action === JOB_ACTION.validate) return this.#validate(job, tid);
    const { db, library } = this.#ctx;
    const jobId = Number(job.JobID);
    const version = job.PackageVersion;
    const contentId = `${job.PkgID}.${version}`;
    const redistribute = job.Action === JOB_ACTION.redistribute;
    const action: StaAction = redistribute ? 'redistribute' : 'distribute';
    const attrs = [
      { id: ATTR.packageId, value: job.PkgID },
      { id: ATTR.dp, value: job.NALPath },
      { id: ATTR.packageVersion, value: String(version) },
    ];
    this.log.info(
      `Sending thread starting for Job: ${jobId}, package: ${job.PkgID}, Version: ${version}, Priority: ${job.PkgPriority}, server: ${job.DPName}, DPPriority: ${job.DPPriority}`,
      tid,
    );
    await this.#report(job, 0, '', tid, action);
    this.log.info(`Sending legacy content ${contentId} for package ${job.PkgID}`, tid);
    this.log.info(`Redistribute=${redistribute ? 1 : 0}, Related=`, tid);
    await setJobState(db, jobId, JOB_STATE.inProgress);
    try {
      const def = await library.getContent(contentId);
      if (!def) throw new CairnError('CAIRN_PACKAGE_NOT_FOUND', `content ${contentId} is not in the site's content library`);
      const sent = await this.#transfer(job, def, redistribute, tid);
      this.log.info(`Finished the follow-up actions for remote DP ${job.DPName}`, tid);
      this.log.info(`Sending completed successfully (${sent.files} files, ${sent.bytes} bytes sent; ${sent.chunked} as chunks, ${sent.chunks} chunks sent, ${sent.manifestBytes} bytes of manifests; ${sent.signatureBytes} bytes of signatures)`, tid);
      this.log.info(`Finished sending SWD package ${job.PkgID} version ${version} to distribution point ${job.DPName}`, tid);
      await this.#status.raise(PKGXFERMGR_MESSAGES.finishedSending, { istr: [job.PkgID, String(version), job.DPName], attrs, tid });
      await this.#report(job, PKG_STATUS.installed, '', tid, action);
      await this.#status.raise(PKGXFERMGR_MESSAGES.reportedStatus, { istr: [job.PkgID, String(version), job.DPName], attrs, tid });
      await setJobState(db, jobId, JOB_STATE.complete, { LastError: '' });
      this.log.info('Sending thread complete', tid);
    } catch (err) {
      await this.#failed(job, err, tid, action);
    }
  }

  /** Action 3: the DP removes the package; files other contents use stay. */
  async #remove(job: RunnableJob, tid: number): Promise<void> {
    const jobId = Number(job.JobID);
    this.log.info(`Removal thread starting for Job: ${jobId}, package: ${job.PkgID}, server: ${job.DPName}`, tid);
    await setJobState(this.#ctx.db, jobId, JOB_STATE.inProgress);
    try {
      const r = await createDpClient({ url: job.URL, key: job.SharedKey }).removePackage(job.PkgID);
      this.log.info(`Removed package ${job.PkgID} from distribution point ${job.DPName}: ${r.contents.length} content(s), ${r.filesDeleted} file(s) deleted (${r.bytesFreed} bytes)`, tid);
      await this.#report(job, PKG_STATUS.removed, '', tid, 'remove');
      await setJobState(this.#ctx.db, jobId, JOB_STATE.complete, { LastError: '' });
    } catch (err) {
      await this.#failed(job, err, tid, 'remove');
    }
  }

  /** Action 4: the DP re-hashes the package's current content; problems are reported with the files and reasons. */
  async #validate(job: RunnableJob, tid: number): Promise<void> {
    const jobId = Number(job.JobID);
    this.log.info(`Validation thread starting for Job: ${jobId}, package: ${job.PkgID}, server: ${job.DPName}`, tid);
    await setJobState(this.#ctx.db, jobId, JOB_STATE.inProgress);
    try {
      let result;
      try {
        result = await createDpClient({ url: job.URL, key: job.SharedKey }).validatePackage(job.PkgID);
      } catch (err) {
        if (!(isCairnError(err) && err.code === 'CAIRN_DP_FILE_NOT_FOUND')) throw err;
        result = { contentId: '', version: 0, files: 0, problems: [{ path: '*', hash: '', problem: 'missing' as const }] };
      }
      const reason = result.problems.map((p) => (p.path === '*' ? `the package is not on the distribution point` : `${p.path}: ${p.problem}${p.chunk ? ` in chunk ${p.chunk}${p.actual ? ` (hashes to ${p.actual})` : ''}` : p.actual ? ` (hashes to ${p.actual}, expected ${p.hash})` : ''}`)).join('\n');
      if (result.problems.length) this.log.error(`Package ${job.PkgID} on ${job.DPName} failed validation: ${result.problems.length} problem(s): ${reason.split('\n').join('; ')}`, tid);
      else this.log.info(`Package ${job.PkgID} content ${result.contentId} on ${job.DPName} is valid (${result.files} files re-hashed)`, tid);
      const version = result.version || job.PackageVersion;
      await this.#report({ ...job, PackageVersion: version }, result.problems.length ? PKG_STATUS.failed : PKG_STATUS.installed, reason, tid, 'validate');
      await setJobState(this.#ctx.db, jobId, JOB_STATE.complete, { LastError: result.problems.length ? 'validation failed' : '' });
    } catch (err) {
      await this.#failed(job, err, tid, 'validate');
    }
  }

  /**
   * Uploads what the DP lacks (everything, for a redistribute): small files
   * in bundles, a chunked file (ADR 0009) as the chunks the DP lacks, in
   * bundles, then its manifest, and other files one by one; then the
   * signatures and the content definition. The definition goes last: the DP
   * makes the new version current only when every file is in its library, so
   * clients never see a mix.
   */
  async #transfer(job: RunnableJob, def: ContentDefinition, redistribute: boolean, tid: number): Promise<SendFigures> {
    const { library } = this.#ctx;
    const client = createDpClient({ url: job.URL, key: job.SharedKey });
    const unique = new Map<string, { path: string; size: number }>();
    for (const f of def.files) if (!unique.has(f.hash)) unique.set(f.hash, { path: f.path, size: f.size });
    const missing = redistribute ? [...unique.keys()] : await client.missing([...unique.keys()]);
    const sigText = await fsp.readFile(signaturesPath(library.root, def.contentId), 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    // A file stored as a manifest (ADR 0009: extents of whole files plus new
    // chunks) travels as its manifest and the chunks the DP lacks, when the DP
    // holds every whole file its extents read from; otherwise, and on a
    // redistribute, it is sent whole.
    const manifests = new Map<string, FileManifest>();
    for (const h of redistribute ? [] : missing) {
      if ((unique.get(h)?.size ?? 0) < CHUNKED_MIN_FILE_SIZE) continue;
      const m = await library.readManifest(h);
      if (m) manifests.set(h, m);
    }
    const sources = [...new Set([...manifests.values()].flatMap((m) => m.chunks.flatMap((c) => (c.src ? [c.src.file] : []))))];
    if (sources.length > 0) {
      const lacking = new Set(await client.missing(sources));
      for (const m of [...manifests.values()]) {
        const lacks = m.chunks.find((c) => c.src && lacking.has(c.src.file));
        if (!lacks?.src) continue;
        manifests.delete(m.hash);
        this.log.info(`${job.DPName} lacks file ${lacks.src.file} that '${unique.get(m.hash)?.path ?? m.hash}' shares bytes with; sending it whole.`, tid);
      }
    }
    const chunkSizes = new Map<string, number>();
    for (const m of manifests.values()) for (const c of m.chunks) if (!c.src) chunkSizes.set(c.hash, c.length);
    let missingChunks: string[] = [];
    if (chunkSizes.size > 0) {
      try {
        missingChunks = redistribute ? [...chunkSizes.keys()] : await client.missingChunks([...chunkSizes.keys()]);
      } catch (err) {
        if (!(isCairnError(err) && err.code === 'CAIRN_NOT_FOUND')) throw err;
        this.log.warn(`${job.DPName} does not take chunks (${describeError(err)}); sending chunked files whole.`, tid);
        manifests.clear();
      }
    }
    const chunkBytes = missingChunks.reduce((n, h) => n + (chunkSizes.get(h) ?? 0), 0);
    const needed = missing.reduce((n, h) => n + (manifests.has(h) ? 0 : (unique.get(h)?.size ?? 0)), 0) + chunkBytes;
    const dpStatus = await client.status();
    if (dpStatus.freeBytes < needed) {
      throw new CairnError('CAIRN_DP_DISK_FULL', `${job.DPName} has ${dpStatus.freeBytes} bytes free; package ${job.PkgID} version ${job.PackageVersion} needs ${needed} more`);
    }
    this.log.info(`${unique.size - missing.length} files already exist on ${job.DPName}, ${missing.length} files to send (${needed} bytes)`, tid);
    if (manifests.size > 0) {
      const extents = [...manifests.values()].reduce((n, m) => n + m.chunks.filter((c) => c.src).length, 0);
      this.log.info(`${manifests.size} of them stored as extents and chunks: ${extents} chunks read from files ${job.DPName} holds, ${chunkSizes.size - missingChunks.length} of their other ${chunkSizes.size} chunks already exist there, ${missingChunks.length} chunks to send (${chunkBytes} bytes)`, tid);
    }
    // The definition goes ahead of the files: the DP writes the per-file records while they arrive instead
    // of after the last one. A DP that cannot writes them when the content is added, as before.
    const prepared =
      missing.length > 0
        ? client.prepareContent(def).then(
            () => undefined,
            (err: unknown) => this.log.info(`${job.DPName} did not prepare the records of ${def.contentId} ahead of its files (${describeError(err)}); it writes them when the content is added.`, tid),
          )
        : Promise.resolve();
    const files = new Limiter(this.#ctx.settings['pkgxfermgr.filesInParallel']);
    const figures = { files: missing.length, bytes: 0, chunked: manifests.size, chunks: 0, manifestBytes: 0, signatureBytes: 0 };
    // Small files travel many to a request (`cairn-bundle/1`); the rest one by one.
    const small = missing.filter((h) => (unique.get(h)?.size ?? Infinity) <= BUNDLE_FILE_MAX_BYTES);
    const smallSet = new Set(small);
    const bundles = packBundles(small.map((h) => ({ hash: h, size: unique.get(h)!.size })));
    const sendWhole = async (hash: string): Promise<void> => {
      const entry = unique.get(hash)!;
      this.log.info(`Sending file '${job.URL}/SMS_DP$/${hash}-${def.contentId}.temp'`, tid);
      const sent = await this.#uploadWithResend(client, hash, def.contentId, entry.size, tid, redistribute);
      // Added after the await: `figures.bytes += await …` would add to the value read before it, losing other lanes' bytes.
      figures.bytes += sent;
      this.log.info(`Adding file ${entry.path} in ${def.contentId}.`, tid);
    };
    const one = (hash: string): Promise<void> => files.run(() => sendWhole(hash));
    let bundlesRefused = false;
    // A DP that does not take bundles gets their files one by one, each in a lane of its own once this lane is free.
    const fallbacks: Promise<void>[] = [];
    const fallbackErrors: unknown[] = [];
    const sendOneByOne = (b: readonly { hash: string }[]): void => {
      for (const f of b) fallbacks.push(one(f.hash).catch((err: unknown) => void fallbackErrors.push(err)));
    };
    const bundleTasks = bundles.map((b) => async (): Promise<void> => {
      if (bundlesRefused) return sendOneByOne(b);
      const size = b.reduce((n, f) => n + f.size, 0);
      this.log.info(`Sending ${b.length} files (${size} bytes) to '${job.URL}/SMS_DP$' in one bundle`, tid);
      for (const f of b) this.log.info(`Sending file '${job.URL}/SMS_DP$/${f.hash}-${def.contentId}.temp'`, tid);
      let r;
      try {
        r = await client.uploadBundle(def.contentId, b.map((f) => ({ ...f, path: library.filePath(f.hash) })), { replace: redistribute });
      } catch (err) {
        if (!(isCairnError(err) && err.code === 'CAIRN_NOT_FOUND')) throw err;
        if (!bundlesRefused) this.log.warn(`${job.DPName} does not take bundles (${describeError(err)}); sending small files one by one.`, tid);
        bundlesRefused = true;
        return sendOneByOne(b);
      }
      figures.bytes += r.bytes;
      const storedSet = new Set(r.stored);
      const rejectedBy = new Map(r.rejected.map((x) => [x.hash, x]));
      const unanswered = b.filter((f) => !storedSet.has(f.hash) && !rejectedBy.has(f.hash));
      if (unanswered.length) throw new CairnError('CAIRN_DP_REJECTED', `${job.DPName} neither stored nor rejected ${unanswered.length} file(s) of a bundle, e.g. ${unanswered[0]!.hash}`);
      for (const f of b) {
        const entry = unique.get(f.hash)!;
        const rej = storedSet.has(f.hash) ? undefined : rejectedBy.get(f.hash);
        if (rej) {
          // Sent again on its own, where a mismatch is resent twice before the job retries.
          this.log.warn(`The DP rejected file ${f.hash} of ${def.contentId} in a bundle (${rej.code}: ${rej.message}); sending it on its own.`, tid);
          const sent = await this.#uploadWithResend(client, f.hash, def.contentId, f.size, tid, redistribute);
          figures.bytes += sent;
        }
        this.log.info(`Adding file ${entry.path} in ${def.contentId}.`, tid);
      }
    });
    const chunkTasks = packBundles(missingChunks.map((h) => ({ hash: h, size: chunkSizes.get(h)! }))).map((b) => () => this.#sendChunks(client, job, def.contentId, b, figures, redistribute, tid));
    // Largest first, so that the longest upload does not start last.
    const wholeTasks = missing
      .filter((h) => !smallSet.has(h) && !manifests.has(h))
      .sort((a, b) => unique.get(b)!.size - unique.get(a)!.size)
      .map((hash) => () => sendWhole(hash));
    // Large files and bundles take turns in the lanes, largest first: a large upload is bound by
    // hashing and writing on the DP, a bundle by creating its files there, and the two overlap.
    await Promise.all(interleave(wholeTasks, [...bundleTasks, ...chunkTasks]).map((task) => files.run(task)));
    await Promise.all(fallbacks);
    if (fallbackErrors.length) throw fallbackErrors[0];
    // Each chunked file's manifest, now that its chunks are there; the DP checks the whole-file hash over them.
    await Promise.all(
      [...manifests.values()].map((m) =>
        files.run(async () => {
          const entry = unique.get(m.hash)!;
          for (let attempt = 1; ; attempt += 1) {
            const r = await client.putManifest(def.contentId, m, { replace: redistribute });
            figures.manifestBytes += r.bytes;
            if (!r.missing) break;
            if (r.sources.length > 0) {
              // A whole file its extents read from left the DP since it was asked: the file goes whole instead.
              this.log.warn(`${job.DPName} no longer holds file ${r.sources[0]} that '${entry.path}' shares bytes with; sending it whole.`, tid);
              this.log.info(`Sending file '${job.URL}/SMS_DP$/${m.hash}-${def.contentId}.temp'`, tid);
              const sent = await this.#uploadWithResend(client, m.hash, def.contentId, entry.size, tid, redistribute);
              figures.bytes += sent;
              this.log.info(`Adding file ${entry.path} in ${def.contentId}.`, tid);
              return;
            }
            // Chunks the DP lost since it was asked (a removal on the DP collected them): sent, then the manifest again.
            if (attempt >= 3) throw new CairnError('CAIRN_DP_CONTENT_INCOMPLETE', `${job.DPName} still lacks ${r.missing.length} chunk(s) of '${entry.path}' after they were sent`);
            this.log.warn(`${job.DPName} lacks ${r.missing.length} chunk(s) of '${entry.path}'; sending them again.`, tid);
            const sizes = new Map(m.chunks.map((c) => [c.hash, c.length] as const));
            for (const b of packBundles(r.missing.filter((h) => sizes.has(h)).map((h) => ({ hash: h, size: sizes.get(h)! })))) await this.#sendChunks(client, job, def.contentId, b, figures, redistribute, tid);
          }
          this.log.info(`Adding file ${entry.path} in ${def.contentId} (${m.chunks.length} chunks, ${m.chunks.filter((c) => c.src).length} of them read from files it holds).`, tid);
        }),
      ),
    );
    await prepared;
    if (sigText !== undefined) {
      figures.signatureBytes = await client.putSignatures(def.contentId, sigText);
      this.log.info(`Sent the signatures of ${def.contentId} (${figures.signatureBytes} bytes)`, tid);
    }
    const put = await client.putContent(def);
    if (put.removedContents.length) this.log.info(`${job.DPName} removed superseded content ${put.removedContents.join(', ')} and ${put.filesDeleted} file(s) no content there uses any more`, tid);
    if (put.supersededContents.length) this.log.info(`${job.DPName} removes superseded content ${put.supersededContents.join(', ')} after its answer`, tid);
    return figures;
  }

  /** One bundle of chunks; a chunk the DP rejected as corrupt is resent, twice at most, before the job retries. */
  async #sendChunks(client: DpClient, job: RunnableJob, contentId: string, bundle: readonly { hash: string; size: number }[], figures: SendFigures, replace: boolean, tid: number): Promise<void> {
    let left = bundle;
    for (let attempt = 1; left.length > 0; attempt += 1) {
      const size = left.reduce((n, c) => n + c.size, 0);
      this.log.info(`Sending ${left.length} chunks (${size} bytes) to '${job.URL}/SMS_DP$' in one bundle`, tid);
      const r = await client.uploadChunks(contentId, left.map((c) => ({ ...c, path: this.#ctx.library.chunkPath(c.hash) })), { replace });
      figures.bytes += r.bytes;
      const stored = new Set(r.stored);
      figures.chunks += left.filter((c) => stored.has(c.hash)).length;
      const again = left.filter((c) => !stored.has(c.hash));
      if (again.length === 0) return;
      const rej = r.rejected[0];
      if (attempt >= 3 || !rej) throw new CairnError(rej ? 'CAIRN_DP_HASH_MISMATCH' : 'CAIRN_DP_REJECTED', `${job.DPName} did not store ${again.length} chunk(s) of a bundle, e.g. ${again[0]!.hash}${rej ? ` (${rej.message})` : ''}`);
      this.log.warn(`The DP rejected ${again.length} chunk(s) of ${contentId} (${rej.code}: ${rej.message}); resending (attempt ${attempt + 1}/3).`, tid);
      left = again;
    }
  }

  /** A file the DP rejected as corrupt (hash mismatch) is resent at once, twice at most, before the job retries. */
  async #uploadWithResend(client: DpClient, hash: string, contentId: string, size: number, tid: number, replace: boolean): Promise<number> {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await client.upload(hash, contentId, await this.#source(hash), size, { replace });
      } catch (err) {
        if (!(isCairnError(err) && err.code === 'CAIRN_DP_HASH_MISMATCH') || attempt >= 3) throw err;
        this.log.warn(`The DP rejected file ${hash} of ${contentId} as not matching its hash; resending (attempt ${attempt + 1}/3).`, tid);
      }
    }
  }

  /** Where to read a library file from: its path, or (stored as chunks) a reader over its chunks. */
  async #source(hash: string): Promise<UploadSource> {
    const { library } = this.#ctx;
    const st = await library.statFile(hash);
    if (!st?.manifest) return library.filePath(hash);
    return (start) => {
      async function* bytes(): AsyncGenerator<Buffer> {
        yield* (await library.openFileReader(hash, { start, end: st!.size - 1 })).stream as AsyncIterable<Buffer>;
      }
      return Readable.from(bytes(), { objectMode: false });
    };
  }

  async #failed(job: RunnableJob, err: unknown, tid: number, action: StaAction): Promise<void> {
    const jobId = Number(job.JobID);
    const reason = describeError(err);
    const code = isCairnError(err) ? err.code : '';
    const maxRetries = this.#ctx.settings['pkgxfermgr.maxRetries'];
    const attempt = job.RetryCount + 1;
    if (PERMANENT.has(code) || attempt >= maxRetries) {
      this.log.error(`Failed to send package ${job.PkgID} version ${job.PackageVersion} to ${job.DPName}: ${reason}. The job has failed.`, tid);
      await setJobState(this.#ctx.db, jobId, JOB_STATE.failed, { LastError: reason, RetryCount: attempt });
      await this.#report(job, action === 'remove' ? PKG_STATUS.removeFailed : PKG_STATUS.failed, reason, tid, action);
      return;
    }
    const step = RETRY_STEPS[Math.min(job.RetryCount, RETRY_STEPS.length - 1)]!;
    const delayMs = step * this.#ctx.settings['pkgxfermgr.retryBaseMs'];
    const restart = new Date(Date.now() + delayMs).toISOString();
    this.log.warn(`Failed to send package ${job.PkgID} version ${job.PackageVersion} to ${job.DPName}: ${reason}. Will retry at ${restart} (attempt ${attempt}/${maxRetries}).`, tid);
    await setJobState(this.#ctx.db, jobId, JOB_STATE.pendingRestart, { LastError: reason, RetryCount: attempt, RestartTime: restart });
    await this.#report(job, action === 'remove' ? PKG_STATUS.retryRemove : PKG_STATUS.retry, reason, tid, action);
  }

  /** Reports a status to the distribution manager through an `.STA` (flow 2 step 7). */
  async #report(job: RunnableJob, status: number, reason: string, tid: number, action: StaAction): Promise<void> {
    this.log.info(`Sending status to Distribution manager for pkg ${job.PkgID}, version ${job.PackageVersion}, status ${status} and distribution point ${job.NALPath}`, tid);
    const base = job.URL.replace(/\/+$/, '');
    const url = `${base}/${PACKAGE_SHARE}/${job.PkgID}`;
    const installed = status === PKG_STATUS.installed && action !== 'validate';
    await writeStaFile(this.#ctx.paths.distmgrIncoming, {
      packageId: job.PkgID,
      action,
      version: job.PackageVersion,
      dpName: job.DPName,
      nalPath: job.NALPath,
      status,
      reason,
      httpUrl: installed ? url : '',
      sigUrl: installed ? `${base}/${SIGNATURE_SHARE}/${job.PkgID}.${job.PackageVersion}` : '',
      location: installed ? url : '',
      time: nowIso(),
    });
    this.#onStatusFile();
  }
}

/** [a0, b0, a1, b1, …], then what is left of the longer list. */
export function interleave<T>(a: readonly T[], b: readonly T[]): T[] {
  const out: T[] = [];
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (i < a.length) out.push(a[i]!);
    if (i < b.length) out.push(b[i]!);
  }
  return out;
}
