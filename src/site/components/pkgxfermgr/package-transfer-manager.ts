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
 * Issue 3: an update sends only the files the DP lacks, and a changed file
 * of 1 MiB or more whose previous version the DP holds (same path in the
 * content the DP serves now) travels as a block-level delta (delta.ts) when
 * that is smaller; a delta the DP cannot use falls back to the whole file.
 * The content's signatures go with it. A redistribute (Action 2) sends every
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
import type { ContentDefinition, FileSignature } from '../../../content-library/types.ts';
import { planDelta } from '../../../content-library/delta.ts';
import { parseSignatureFile, readSignatures, signaturesPath } from '../../../content-library/snapshot.ts';
import type { DpClient } from '../../../dp/dp-client.ts';
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

/** A delta is used only when it puts at most this share of the file on the wire. */
const DELTA_WORTHWHILE = 0.8;

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
      this.log.info(`Sending completed successfully (${sent.files} files, ${sent.bytes} bytes sent; ${sent.deltas} as deltas; ${sent.signatureBytes} bytes of signatures)`, tid);
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
      const reason = result.problems.map((p) => (p.path === '*' ? `the package is not on the distribution point` : `${p.path}: ${p.problem}${p.actual ? ` (hashes to ${p.actual}, expected ${p.hash})` : ''}`)).join('\n');
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
   * Uploads what the DP lacks (everything, for a redistribute), as deltas
   * where that pays, then the signatures and the content definition. The
   * definition goes last: the DP makes the new version current only when
   * every file is in its library, so clients never see a mix.
   */
  async #transfer(job: RunnableJob, def: ContentDefinition, redistribute: boolean, tid: number): Promise<{ files: number; bytes: number; deltas: number; signatureBytes: number }> {
    const { library } = this.#ctx;
    const client = createDpClient({ url: job.URL, key: job.SharedKey });
    const unique = new Map<string, { path: string; size: number }>();
    for (const f of def.files) if (!unique.has(f.hash)) unique.set(f.hash, { path: f.path, size: f.size });
    const missing = redistribute ? [...unique.keys()] : await client.missing([...unique.keys()]);
    // The signature file is read once: sent to the DP as it is, and parsed for deltas.
    const sigText = await fsp.readFile(signaturesPath(library.root, def.contentId), 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    const newSigs = new Map((sigText === undefined ? undefined : parseSignatureFile(JSON.parse(sigText), def.contentId))?.map((sig) => [sig.hash, sig]) ?? []);
    // Only a missing file that has a signature (1 MiB or more) can travel as a delta.
    const deltaCandidates = missing.filter((h) => newSigs.has(h));
    const bases = redistribute || !deltaCandidates.length ? new Map<string, { hash: string; sig: FileSignature }>() : await this.#deltaBases(client, job, def, deltaCandidates, tid);
    const needed = missing.reduce((n, h) => n + (unique.get(h)?.size ?? 0), 0);
    const dpStatus = await client.status();
    if (dpStatus.freeBytes < needed) {
      throw new CairnError('CAIRN_DP_DISK_FULL', `${job.DPName} has ${dpStatus.freeBytes} bytes free; package ${job.PkgID} version ${job.PackageVersion} needs ${needed} more`);
    }
    this.log.info(`${unique.size - missing.length} files already exist on ${job.DPName}, ${missing.length} files to send (${needed} bytes)`, tid);
    const files = new Limiter(this.#ctx.settings['pkgxfermgr.filesInParallel']);
    let bytes = 0;
    let deltas = 0;
    // Small files travel many to a request (`cairn-bundle/1`); the rest one by one, as deltas where that pays.
    const small = missing.filter((h) => (unique.get(h)?.size ?? Infinity) <= BUNDLE_FILE_MAX_BYTES && !bases.has(h));
    const smallSet = new Set(small);
    const bundles = packBundles(small.map((h) => ({ hash: h, size: unique.get(h)!.size })));
    const one = (hash: string): Promise<void> =>
      files.run(async () => {
        const entry = unique.get(hash)!;
        this.log.info(`Sending file '${job.URL}/SMS_DP$/${hash}-${def.contentId}.temp'`, tid);
        bytes += await this.#uploadWithResend(client, hash, def.contentId, entry.size, tid, redistribute);
        this.log.info(`Adding file ${entry.path} in ${def.contentId}.`, tid);
      });
    let bundlesRefused = false;
    // A DP that does not take bundles gets their files one by one, each in a lane of its own once this lane is free.
    const fallbacks: Promise<void>[] = [];
    const fallbackErrors: unknown[] = [];
    const sendOneByOne = (b: readonly { hash: string }[]): void => {
      for (const f of b) fallbacks.push(one(f.hash).catch((err: unknown) => void fallbackErrors.push(err)));
    };
    await Promise.all([
      ...bundles.map((b) =>
        files.run(async () => {
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
          bytes += r.bytes;
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
              bytes += await this.#uploadWithResend(client, f.hash, def.contentId, f.size, tid, redistribute);
            }
            this.log.info(`Adding file ${entry.path} in ${def.contentId}.`, tid);
          }
        }),
      ),
      ...missing.filter((h) => !smallSet.has(h)).map((hash) =>
        files.run(async () => {
          const entry = unique.get(hash)!;
          const base = bases.get(hash);
          const target = newSigs.get(hash);
          if (base && target) {
            const plan = planDelta(target, base.sig);
            if (plan.wireBytes <= entry.size * DELTA_WORTHWHILE) {
              this.log.info(`Sending file '${entry.path}' (${hash}) as a delta against ${base.hash}: ${plan.literalBytes} of ${entry.size} bytes changed`, tid);
              try {
                bytes += await client.uploadDelta(hash, def.contentId, base.hash, entry.size, plan, library.filePath(hash));
                deltas += 1;
                this.log.info(`Adding file ${entry.path} in ${def.contentId}.`, tid);
                return;
              } catch (err) {
                const code = isCairnError(err) ? err.code : '';
                if (code !== 'CAIRN_DP_DELTA_BASE_MISSING' && code !== 'CAIRN_DP_DELTA_INVALID' && code !== 'CAIRN_DP_HASH_MISMATCH') throw err;
                this.log.warn(`The DP could not use the delta for '${entry.path}' (${describeError(err)}); sending the whole file.`, tid);
              }
            }
          }
          this.log.info(`Sending file '${job.URL}/SMS_DP$/${hash}-${def.contentId}.temp'`, tid);
          bytes += await this.#uploadWithResend(client, hash, def.contentId, entry.size, tid, redistribute);
          this.log.info(`Adding file ${entry.path} in ${def.contentId}.`, tid);
        }),
      ),
    ]);
    await Promise.all(fallbacks);
    if (fallbackErrors.length) throw fallbackErrors[0];
    let signatureBytes = 0;
    if (sigText !== undefined) {
      signatureBytes = await client.putSignatures(def.contentId, sigText);
      this.log.info(`Sent the signatures of ${def.contentId} (${signatureBytes} bytes)`, tid);
    }
    const put = await client.putContent(def);
    if (put.removedContents.length) this.log.info(`${job.DPName} removed superseded content ${put.removedContents.join(', ')} and ${put.filesDeleted} file(s) no content there uses any more`, tid);
    return { files: missing.length, bytes, deltas, signatureBytes };
  }

  /**
   * For each missing file of 1 MiB or more: the file at the same path in the
   * content the DP serves now, with its signature, when the site still has
   * both. The DP holds that file, since its current content is complete.
   */
  async #deltaBases(client: DpClient, job: RunnableJob, def: ContentDefinition, missing: readonly string[], tid: number): Promise<Map<string, { hash: string; sig: FileSignature }>> {
    const out = new Map<string, { hash: string; sig: FileSignature }>();
    const { library } = this.#ctx;
    const onDp = await client.packageContent(job.PkgID);
    if (!onDp.contentId || onDp.contentId === def.contentId) return out;
    const old = await library.getContent(onDp.contentId);
    const oldSigs = old ? await readSignatures(library.root, onDp.contentId) : undefined;
    if (!old || !oldSigs) {
      this.log.info(`The site no longer has the signatures of ${onDp.contentId} on ${job.DPName}; changed files are sent whole.`, tid);
      return out;
    }
    const sigByHash = new Map(oldSigs.map((s) => [s.hash, s]));
    const oldByPath = new Map(old.files.map((f) => [f.path, f.hash]));
    const missingSet = new Set(missing);
    for (const f of def.files) {
      if (!missingSet.has(f.hash) || out.has(f.hash)) continue;
      const baseHash = oldByPath.get(f.path);
      const sig = baseHash ? sigByHash.get(baseHash) : undefined;
      if (baseHash && sig) out.set(f.hash, { hash: baseHash, sig });
    }
    this.log.info(`${job.DPName} serves ${onDp.contentId}; ${out.size} changed file(s) can travel as deltas against it`, tid);
    return out;
  }

  /** A file the DP rejected as corrupt (hash mismatch) is resent at once, twice at most, before the job retries. */
  async #uploadWithResend(client: DpClient, hash: string, contentId: string, size: number, tid: number, replace: boolean): Promise<number> {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await client.upload(hash, contentId, this.#ctx.library.filePath(hash), size, { replace });
      } catch (err) {
        if (!(isCairnError(err) && err.code === 'CAIRN_DP_HASH_MISMATCH') || attempt >= 3) throw err;
        this.log.warn(`The DP rejected file ${hash} of ${contentId} as not matching its hash; resending (attempt ${attempt + 1}/3).`, tid);
      }
    }
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
