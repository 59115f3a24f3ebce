/**
 * DistMgr, the distribution manager (spec 10, flows 1 and 2; seed 001 steps
 * 3 and 9). Woken by `<PkgID>.PKN` in `distmgr.box`, it queues the package
 * and runs at most `distmgr.packageThreads` package threads. A package thread
 * snapshots a new source version into the site's content library when the
 * source is newer than what is stored, then starts one DP thread per package
 * server with pending work (at most `distmgr.dpThreadsPerPackage` at once);
 * a DP thread only creates a `DistributionJobs` row: it never copies content.
 *
 * Its status thread applies `.STA` files from `distmgr.box/incoming` to
 * `PkgStatus` and raises 2330 (installed), 2391 (retrying) or 2328 (failed).
 *
 * Package actions (issue 3): after a new stored version every DP the package
 * is on gets an update job (flow 4); a package server with Action 1 and
 * RefreshTrigger 1 gets a redistribute job (flow 5), Action 3 a removal job,
 * Action 4 a validation job. A package with Action 3 is removed from every DP
 * and then deleted, rows and content. A schedule asks for a validation of
 * each installed package on each DP every `distmgr.validationIntervalSeconds`.
 *
 * Crash safety: notifications are deleted only after their work is
 * committed, and the `.PKN` only when no notification is left; at start-up
 * every package with a pending notification is queued again. Each step is
 * idempotent: a snapshot of an already stored version is not retaken, a DP
 * whose row was already reset gets no second job.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createComponentLog } from '../../../shared/cmtrace-log.ts';
import type { ComponentLog } from '../../../shared/cmtrace-log.ts';
import { listInboxFiles, removeInboxFile } from '../../../shared/inbox.ts';
import { Limiter } from '../../../shared/limit.ts';
import { WorkLoop } from '../../../shared/work-loop.ts';
import { createStatusReporter, ATTR } from '../../../shared/status-message.ts';
import type { StatusReporter } from '../../../shared/status-message.ts';
import { CairnError, describeError, isCairnError } from '../../../shared/errors.ts';
import { readSignatures, readSourceIndex, snapshotFolder, writeSignatures, writeSourceIndex, signatureHash } from '../../../content-library/snapshot.ts';
import { verifyAllMarker } from '../../services/packages.ts';
import { HASH_ALGORITHM } from '../../../content-library/types.ts';
import {
  deleteNotifications,
  deletePackageRows,
  deletePackageServer,
  getPackage,
  markPackageServersForUpdate,
  packageServersWithWork,
  pendingNotificationIds,
  recordPackageError,
  recordStoredVersion,
  recordValidation,
  requestPackageServerAction,
  resetPackageServer,
} from '../../../datastore/packages.ts';
import { readSettings } from '../../../datastore/site-control.ts';
import { cancelOlderJobs, insertJob } from '../../../datastore/distribution-jobs.ts';
import { findDistributionPoint } from '../../../datastore/distribution-points.ts';
import { siteStatusKey, upsertPkgStatus } from '../../../datastore/pkg-status.ts';
import { ACTION, JOB_ACTION, PKG_STATUS, PKG_STATUS_TYPE } from '../../../datastore/enums.ts';
import type { PackageRow, PkgServerRow } from '../../../datastore/schema.ts';
import { newThreadId } from '../../site-context.ts';
import type { SiteContext } from '../../site-context.ts';
import { parseStaFile } from './sta-file.ts';

export const DISTMGR_COMPONENT = 'SMS_DISTRIBUTION_MANAGER';

/** Status message IDs this component raises (REFERENCE.md). */
export const DISTMGR_MESSAGES = {
  started: 2300,
  processed: 2301,
  failed: 2302,
  sourceMissing: 2306,
  createdOrUpdated: 2311,
  copyFailed: 2328,
  distributed: 2330,
  /** Ours, in the product's range (not in REFERENCE.md): content failed validation on a DP. */
  validationFailed: 2383,
  /** Ours, in the product's range (not in REFERENCE.md): content validated on a DP. */
  validated: 2384,
  startedDp: 2342,
  jobCreated: 2357,
  contentAdded: 2376,
  connectFailed: 2391,
} as const;

export class DistributionManager {
  readonly log: ComponentLog;
  readonly #ctx: SiteContext;
  readonly #status: StatusReporter;
  readonly #main: WorkLoop;
  readonly #statusThread: WorkLoop;
  readonly #packageThreads: Limiter;
  readonly #queue: string[] = [];
  readonly #busy = new Set<string>();
  readonly #again = new Set<string>();
  readonly #threads = new Set<Promise<void>>();
  #lastValidationCheck = 0;
  /** Package priorities seen by the main thread, for ordering the queue. */
  readonly #priority = new Map<string, number>();

  constructor(ctx: SiteContext) {
    this.#ctx = ctx;
    this.log = createComponentLog({ dir: ctx.paths.logs, name: 'distmgr', component: DISTMGR_COMPONENT });
    this.#status = createStatusReporter({ component: DISTMGR_COMPONENT, site: ctx.siteCode, statmsgsDir: ctx.paths.statmsgs, log: this.log });
    this.#packageThreads = new Limiter(ctx.settings['distmgr.packageThreads']);
    const rescanMs = ctx.settings['components.rescanMs'];
    this.#main = new WorkLoop({ log: this.log, inboxes: [ctx.paths.distmgrBox], rescanMs, work: () => this.#scanNotifications() });
    this.#statusThread = new WorkLoop({ log: this.log, inboxes: [ctx.paths.distmgrIncoming], rescanMs, work: () => this.#processIncoming() });
  }

  start(): void {
    this.log.info(`SMS_DISTRIBUTION_MANAGER started; ${this.#packageThreads.max} package processing threads, ${this.#ctx.settings['distmgr.dpThreadsPerPackage']} DP threads per package.`);
    this.#main.start();
    this.#statusThread.start();
  }

  wake(): void {
    this.#main.wake();
  }

  wakeStatusThread(): void {
    this.#statusThread.wake();
  }

  async stop(): Promise<void> {
    await this.#main.stop();
    await this.#statusThread.stop();
    await Promise.allSettled([...this.#threads]);
  }

  /** Main thread: turn `.PKN` files and pending notification rows into queued packages. */
  async #scanNotifications(): Promise<void> {
    const ids = new Set<string>();
    for (const name of await listInboxFiles(this.#ctx.paths.distmgrBox, 'PKN')) ids.add(name.slice(0, -4));
    // The notification rows are the truth; the .PKN is only the wake-up. A
    // package with rows but no file (a crash between deleting the file and the
    // rows, or a file replaced while it was being removed) is found here.
    const rows = await this.#ctx.db.selectFrom('PkgNotification').select('PkgID').distinct().execute();
    for (const r of rows) ids.add(r.PkgID);
    try {
      await this.#scheduleValidations();
    } catch (err) {
      this.log.error(`Cannot schedule content validations: ${describeError(err)}`);
    }
    // Package priority (1 high, 2 medium, 3 low) orders the queue; equal priorities keep ID order.
    const priorities = ids.size
      ? new Map((await this.#ctx.db.selectFrom('SMSPackages').select(['PkgID', 'Priority']).where('PkgID', 'in', [...ids]).execute()).map((r) => [r.PkgID, r.Priority]))
      : new Map<string, number>();
    for (const [id, p] of priorities) this.#priority.set(id, p);
    for (const pkgId of [...ids].sort()) {
      if (this.#busy.has(pkgId)) {
        this.#again.add(pkgId);
        continue;
      }
      if (this.#queue.includes(pkgId)) continue;
      this.log.info(`Found package properties updated notification for package '${pkgId}'`);
      this.log.info(`Adding package '${pkgId}' to package processing queue.`);
      this.#queue.push(pkgId);
    }
    const rank = (id: string): number => this.#priority.get(id) ?? 2;
    this.#queue.sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
    this.#dispatch();
  }

  #dispatch(): void {
    while (this.#queue.length && this.#packageThreads.hasFreeSlot) {
      const pkgId = this.#queue.shift()!;
      this.log.info(`Currently using ${this.#packageThreads.active} out of ${this.#packageThreads.max} allowed package processing threads.`);
      const tid = newThreadId();
      this.#busy.add(pkgId);
      this.log.info(`Started package processing thread for package '${pkgId}', thread ID = 0x${tid.toString(16).toUpperCase()} (${tid})`);
      const thread = this.#packageThreads
        .run(() => this.#packageThread(pkgId, tid))
        .catch((err) => this.log.error(`Package processing thread for ${pkgId} failed: ${describeError(err)}`, tid))
        .finally(() => {
          this.#busy.delete(pkgId);
          this.#threads.delete(thread);
          if (this.#again.delete(pkgId)) this.#queue.push(pkgId);
          this.#dispatch();
        });
      this.#threads.add(thread);
    }
  }

  async #packageThread(pkgId: string, tid: number): Promise<void> {
    const { db } = this.#ctx;
    const notifications = await pendingNotificationIds(db, pkgId);
    const pkg = await getPackage(db, pkgId);
    if (!pkg) {
      this.log.warn(`Package ${pkgId} does not exist in the database; discarding its notifications.`, tid);
      await this.#finish(pkgId, notifications);
      return;
    }
    this.log.info(`Processing package ${pkgId} (SourceVersion:${pkg.SourceVersion};StoredVersion:${pkg.StoredPkgVersion})`, tid);
    let snapshotTaken = false;
    if (pkg.Action === ACTION.delete) {
      this.log.info(`Package ${pkgId} is marked for deletion; removing it from its distribution points first.`, tid);
    } else if (pkg.SourceVersion > pkg.StoredPkgVersion) {
      const ok = await this.#snapshot(pkg, tid);
      if (!ok) {
        await this.#finish(pkgId, notifications);
        this.log.info(`Exiting package processing thread for package ${pkgId}.`, tid);
        return;
      }
      snapshotTaken = true;
    } else {
      this.log.info(`No action specified for the package ${pkgId}, however there may be package server changes.`, tid);
    }

    const stored = (await getPackage(db, pkgId))!;
    const servers = await packageServersWithWork(db, pkgId);
    if (servers.length) {
      const dpThreads = new Limiter(this.#ctx.settings['distmgr.dpThreadsPerPackage']);
      const running: Promise<void>[] = [];
      for (const server of servers) {
        this.log.info(`Start adding package ${pkgId} to server ${server.NALPath}...`, tid);
        const dpTid = newThreadId();
        this.log.info(`Created DP processing thread ${dpTid} for adding or updating package ${pkgId} on server ${server.NALPath}`, tid);
        running.push(
          dpThreads.run(() => this.#dpThread(stored, server, dpTid)).catch((err) => this.log.error(`DP thread ${dpTid} for package ${pkgId} failed: ${describeError(err)}`, dpTid)),
        );
      }
      this.log.info(`Waiting for all DP threads to finish for package ${pkgId} processing thread.`, tid);
      await Promise.all(running);
      this.log.info(`All DP threads have finished for package ${pkgId} processing thread.`, tid);
    }
    if (snapshotTaken) await this.#status.raise(DISTMGR_MESSAGES.processed, { istr: [pkg.Name, pkgId], attrs: [{ id: ATTR.packageId, value: pkgId }], tid });
    if (pkg.Action === ACTION.delete) await this.#finishDeletionIfDone(pkgId, tid);
    await this.#finish(pkgId, notifications);
    this.log.info(`Exiting package processing thread for package ${pkgId}.`, tid);
  }

  /** Flow 1 step 4: snapshot the source into the content library as the next stored version. */
  async #snapshot(pkg: PackageRow, tid: number): Promise<boolean> {
    const { db, library } = this.#ctx;
    const pkgId = pkg.PkgID;
    const version = pkg.SourceVersion;
    const adding = pkg.StoredPkgVersion === 0;
    this.log.info(adding ? `Start adding package ${pkgId}...` : `Start updating package ${pkgId}...`, tid);
    this.log.info(`Package action is ${pkg.Action}, update mask is ${pkg.UpdateMask}, UpdateMaskEx is 0.`, tid);
    await this.#status.raise(DISTMGR_MESSAGES.started, { istr: [pkg.Name, pkgId], attrs: [{ id: ATTR.packageId, value: pkgId }], tid });
    this.log.info(`Taking package snapshot for package ${pkgId} from source ${pkg.Source}`, tid);
    let result;
    const marker = path.join(this.#ctx.paths.distmgrBox, verifyAllMarker(pkgId));
    const verifyAll = !adding && (await fsp.stat(marker).then(() => true, () => false));
    try {
      // An update reads only what changed since the stored version (the quick check in snapshot.ts), unless asked to verify all.
      const previousId = `${pkgId}.${pkg.StoredPkgVersion}`;
      const previousDef = adding ? undefined : await library.getContent(previousId);
      const previousSigs = previousDef ? await readSignatures(library.root, previousId) : undefined;
      const previousSources = previousDef ? await readSourceIndex(library.root, previousId) : undefined;
      const previous = previousDef ? { definition: previousDef, signatures: previousSigs ?? [], sources: previousSources } : undefined;
      if (verifyAll) this.log.info(`Re-hashing every file of package ${pkgId} (update --verify-all): the quick check is off for this snapshot`, tid);
      result = await snapshotFolder(library, pkg.Source, { packageId: pkgId, version, verifyAll, ...(previous ? { previous } : {}) });
      if (previous && !verifyAll) this.log.info(`${result.filesUnchanged} of ${result.definition.files.length} files are unchanged since version ${pkg.StoredPkgVersion} (same size, times${previousSources ? ', inode' : ''} and mode); ${result.bytesRead} bytes read from the source`, tid);
      if (verifyAll) this.log.info(`Read all ${result.definition.files.length} files (${result.bytesRead} bytes); ${result.quickCheckMissed.length} of them changed although their size, times${previousSources ? ', inode' : ''} and mode had not`, tid);
      for (const p of result.quickCheckMissed.slice(0, 100)) this.log.warn(`File ${p} of package ${pkgId} changed although its size, times and mode did not; found by --verify-all`, tid);
      if (result.chunksWritten > 0) this.log.info(`Stored ${result.chunksWritten} new chunk(s) of large files in the content library`, tid);
    } catch (err) {
      const reason = describeError(err);
      this.log.error(`Failed to take a snapshot of package ${pkgId} from source ${pkg.Source}: ${reason}`, tid);
      const code = isCairnError(err) ? err.code : '';
      const sourceProblem = code === 'CAIRN_PACKAGE_SOURCE_MISSING' || code === 'CAIRN_PACKAGE_SOURCE_UNREADABLE';
      if (sourceProblem) await this.#status.raise(DISTMGR_MESSAGES.sourceMissing, { severity: 'E', istr: [pkgId, pkg.Source, reason], attrs: [{ id: ATTR.packageId, value: pkgId }], tid });
      await this.#status.raise(DISTMGR_MESSAGES.failed, { severity: 'E', istr: [pkg.Name, pkgId, reason], attrs: [{ id: ATTR.packageId, value: pkgId }], tid });
      await recordPackageError(db, pkgId, reason);
      await upsertPkgStatus(db, siteStatusKey(pkgId, this.#ctx.siteCode), { Status: PKG_STATUS.failed, LastError: reason });
      return false;
    }
    const def = result.definition;
    this.log.info(`The size of package ${pkgId}, version ${version} is ${Math.ceil(def.size / 1024)} KBytes`, tid);
    this.log.info(`Writing package definition for ${pkgId}`, tid);
    await writeSignatures(library.root, def.contentId, result.signatures);
    await writeSourceIndex(library.root, def.contentId, result.sources);
    this.log.info(`Successfully created RDC signatures for package ${pkgId} version ${version}`, tid);
    this.log.info(`Creating hash for algorithm ${HASH_ALGORITHM}`, tid);
    this.log.info(`The hash for algorithm ${HASH_ALGORITHM} is ${def.hash}`, tid);
    this.log.info(`The RDC signature hash for algorithm ${HASH_ALGORITHM} is ${signatureHash(result.signatures)}`, tid);
    this.log.info(`Adding these contents to the package ${pkgId} version ${version}.`, tid);
    await library.addContent(def);
    await this.#status.raise(DISTMGR_MESSAGES.contentAdded, { istr: [pkgId], attrs: [{ id: ATTR.packageId, value: pkgId }], tid });
    if (!adding) {
      this.log.info(`The source of the package ${pkgId} has changed.`, tid);
    }
    await db.transaction().execute(async (trx) => {
      await recordStoredVersion(trx, pkgId, { version, sizeKb: Math.ceil(def.size / 1024), fileCount: def.files.length, hash: def.hash, storedPath: path.join(library.root, 'PkgLib', `${pkgId}.INI`) });
      await upsertPkgStatus(trx, siteStatusKey(pkgId, this.#ctx.siteCode), { Status: PKG_STATUS.received, SourceVersion: version, LastError: '' });
      // Flow 4 step 3: every DP the package is on gets the new version.
      if (!adding) await markPackageServersForUpdate(trx, pkgId);
    });
    this.log.info(`StoredPkgVersion (${version}) of package ${pkgId}. StoredPkgVersion in database is ${version}.`, tid);
    this.log.info(`SourceVersion (${version}) of package ${pkgId}. SourceVersion in database is ${version}.`, tid);
    // The re-hash that was asked for is done (and recorded): the next update uses the quick check again.
    if (verifyAll) await removeInboxFile(marker);
    if (!adding) await this.#status.raise(DISTMGR_MESSAGES.createdOrUpdated, { istr: [pkgId], attrs: [{ id: ATTR.packageId, value: pkgId }], tid });
    return true;
  }

  /** Flow 2 steps 4–8: a DP thread creates the transfer job and resets the package-server row. */
  async #dpThread(pkg: PackageRow, server: PkgServerRow, tid: number): Promise<void> {
    const { db } = this.#ctx;
    const pkgId = pkg.PkgID;
    const attrs = [
      { id: ATTR.packageId, value: pkgId },
      { id: ATTR.dp, value: server.NALPath },
    ];
    const removing = server.Action === ACTION.delete;
    const validating = server.Action === ACTION.validate;
    const redistributing = server.Action === ACTION.update && server.RefreshTrigger === 1;
    const action = removing ? JOB_ACTION.remove : validating ? JOB_ACTION.validate : redistributing ? JOB_ACTION.redistribute : JOB_ACTION.distribute;
    const verb = removing ? 'remove package' : validating ? 'validate package' : redistributing ? 'redistribute package' : 'add or update package';
    this.log.info(`DP thread: Attempting to ${verb} ${pkgId} on DP ${server.NALPath}`, tid);
    if (!removing && !validating) await this.#status.raise(DISTMGR_MESSAGES.startedDp, { istr: [pkg.Name, server.NALPath], attrs, tid });
    const dp = await findDistributionPoint(db, { id: Number(server.DPID) });
    if (!dp) {
      this.log.error(`DP thread: distribution point ${server.NALPath} no longer exists; nothing to do.`, tid);
      await db.transaction().execute(async (trx) => (removing ? deletePackageServer(trx, pkgId, server.NALPath) : resetPackageServer(trx, pkgId, server.NALPath)));
      return;
    }
    const dpKey = { ID: pkgId, Type: PKG_STATUS_TYPE.dp, SiteCode: server.SiteCode, PkgServer: server.NALPath };
    const jobId = await db.transaction().execute(async (trx) => {
      if (removing) {
        // Nothing queued for this DP matters once the package is leaving it.
        await cancelOlderJobs(trx, pkgId, Number(dp.DPID), Number.MAX_SAFE_INTEGER);
        const id = await insertJob(trx, { DPID: Number(dp.DPID), PkgID: pkgId, PackageVersion: pkg.StoredPkgVersion, Action: action });
        await upsertPkgStatus(trx, dpKey, { Status: PKG_STATUS.pendingRemove, LastError: '' });
        // The row goes now: the DP is no longer a target; the job and the status row carry the removal.
        await deletePackageServer(trx, pkgId, server.NALPath);
        return id;
      }
      if (!validating) await cancelOlderJobs(trx, pkgId, Number(dp.DPID), pkg.StoredPkgVersion);
      const id = await insertJob(trx, { DPID: Number(dp.DPID), PkgID: pkgId, PackageVersion: pkg.StoredPkgVersion, Action: action });
      // A DP with the package installed keeps showing it installed while a new version travels.
      if (!validating) {
        const current = await trx.selectFrom('PkgStatus').select('Status').where('ID', '=', pkgId).where('Type', '=', PKG_STATUS_TYPE.dp).where('PkgServer', '=', server.NALPath).executeTakeFirst();
        if (current?.Status !== PKG_STATUS.installed) await upsertPkgStatus(trx, dpKey, { Status: PKG_STATUS.none, LastError: '' });
      }
      await resetPackageServer(trx, pkgId, server.NALPath);
      return id;
    });
    this.#ctx.wake.dbmon();
    const what = removing ? 'remove package' : validating ? 'validate package' : redistributing ? 'redistribute package' : 'send package';
    this.log.info(`Created package transfer job ${jobId} to ${what} ${pkgId} ${removing ? 'from' : validating ? 'on' : 'to'} distribution point ${server.NALPath}.`, tid);
    await this.#status.raise(DISTMGR_MESSAGES.jobCreated, { istr: [pkgId, server.NALPath], attrs, tid });
    this.log.info(`DP thread for package ${pkgId} with thread ID ${tid} has exited.`, tid);
  }

  /**
   * The end of `package delete`: once no DP still has a removal pending, the
   * site's content and every row naming the package go. Until then the
   * package stays, marked Action 3.
   */
  async #finishDeletionIfDone(pkgId: string, tid: number): Promise<void> {
    const { db, library } = this.#ctx;
    const pkg = await getPackage(db, pkgId);
    if (!pkg || pkg.Action !== ACTION.delete) return;
    const servers = await db.selectFrom('PkgServers').select('NALPath').where('PkgID', '=', pkgId).execute();
    const pending = await db
      .selectFrom('PkgStatus')
      .select('PkgServer')
      .where('ID', '=', pkgId)
      .where('Type', '=', PKG_STATUS_TYPE.dp)
      .where('Status', 'in', [PKG_STATUS.pendingRemove, PKG_STATUS.retryRemove])
      .execute();
    if (servers.length || pending.length) {
      this.log.info(`Package ${pkgId} will be deleted once it is removed from ${servers.length + pending.length} distribution point(s).`, tid);
      return;
    }
    const failed = await db.selectFrom('PkgStatus').select('PkgServer').where('ID', '=', pkgId).where('Status', '=', PKG_STATUS.removeFailed).execute();
    for (const f of failed) this.log.warn(`Distribution point ${f.PkgServer} could not remove package ${pkgId}; its content stays there until removed by hand.`, tid);
    const removed = await library.removePackage(pkgId);
    await db.transaction().execute((trx) => deletePackageRows(trx, pkgId));
    this.log.info(`Deleted package ${pkgId}: ${removed.contents.length} content(s) and ${removed.filesDeleted} file(s) (${removed.bytesFreed} bytes) left the site's content library.`, tid);
  }

  /**
   * The validation schedule: asks for a validation of each installed package
   * on each DP whose last validation (or installation) is older than the
   * interval. Read from the database each time, so a changed setting applies
   * without a restart.
   */
  async #scheduleValidations(): Promise<void> {
    const now = Date.now();
    // The setting is one small read per pass; the packages are looked at no
    // more than once a minute, or once an interval when that is shorter.
    const seconds = (await readSettings(this.#ctx.db))['distmgr.validationIntervalSeconds'];
    if (!(seconds > 0)) return;
    if (now - this.#lastValidationCheck < Math.min(60_000, seconds * 1000)) return;
    this.#lastValidationCheck = now;
    const before = new Date(now - seconds * 1000).toISOString();
    const rows = await this.#ctx.db
      .selectFrom('PkgStatus as s')
      .innerJoin('PkgServers as ps', (j) => j.onRef('ps.PkgID', '=', 's.ID').onRef('ps.NALPath', '=', 's.PkgServer'))
      .leftJoin('ContentValidations as v', (j) => j.onRef('v.PkgID', '=', 's.ID').onRef('v.NALPath', '=', 's.PkgServer'))
      .select(['s.ID as PkgID', 's.PkgServer as NALPath', 's.UpdateTime as UpdateTime', 'v.ValidatedTime as ValidatedTime'])
      .where('s.Type', '=', PKG_STATUS_TYPE.dp)
      .where('s.Status', '=', PKG_STATUS.installed)
      .where('ps.Action', '=', ACTION.none)
      .execute();
    const due = rows.filter((r) => (r.ValidatedTime ?? r.UpdateTime) < before);
    for (const r of due) {
      this.log.info(`Content validation of package ${r.PkgID} on ${r.NALPath} is due (last ${r.ValidatedTime ?? 'never'}; every ${seconds} seconds).`);
      await this.#ctx.db.transaction().execute((trx) => requestPackageServerAction(trx, r.PkgID, [r.NALPath], ACTION.validate));
    }
    if (due.length) this.#ctx.wake.dbmon();
  }

  async #finish(pkgId: string, notifications: readonly number[]): Promise<void> {
    await deleteNotifications(this.#ctx.db, notifications);
    const left = await pendingNotificationIds(this.#ctx.db, pkgId);
    if (left.length) {
      this.#again.add(pkgId);
      return;
    }
    await removeInboxFile(path.join(this.#ctx.paths.distmgrBox, `${pkgId}.PKN`));
  }

  /** Status thread: apply `.STA` files in order (seed 001 step 13). */
  async #processIncoming(): Promise<void> {
    const dir = this.#ctx.paths.distmgrIncoming;
    for (const name of await listInboxFiles(dir, 'STA')) {
      const file = path.join(dir, name);
      const tid = newThreadId();
      this.log.info(`Processing incoming file ${file}.`, tid);
      let report;
      try {
        report = parseStaFile(await fsp.readFile(file, 'utf8'));
      } catch (err) {
        const bad = path.join(dir, 'bad');
        await fsp.mkdir(bad, { recursive: true });
        await fsp.rename(file, path.join(bad, name));
        this.log.error(`Status file ${file} is not valid (${describeError(err)}); moved it to ${bad}.`, tid);
        continue;
      }
      await this.#applyStatus(report, tid);
      await removeInboxFile(file);
      this.log.info(`Successfully deleted package status file ${file}`, tid);
    }
  }

  async #applyStatus(r: ReturnType<typeof parseStaFile>, tid: number): Promise<void> {
    const { db } = this.#ctx;
    this.log.info(`STA for regular DP ${r.nalPath}`, tid);
    this.log.info(`Processing status update for package ${r.packageId}${r.action === 'distribute' ? '' : ` (${r.action})`}`, tid);
    const key = { ID: r.packageId, Type: PKG_STATUS_TYPE.dp, SiteCode: this.#ctx.siteCode, PkgServer: r.nalPath };
    const current = await db.selectFrom('PkgStatus').selectAll().where('ID', '=', key.ID).where('Type', '=', key.Type).where('PkgServer', '=', key.PkgServer).executeTakeFirst();
    const attrs = [
      { id: ATTR.packageId, value: r.packageId },
      { id: ATTR.dp, value: r.nalPath },
    ];
    if (r.action === 'remove') return this.#applyRemoval(r, key, tid);
    if (r.action === 'validate') return this.#applyValidation(r, key, current?.SourceVersion ?? r.version, tid);
    // A report after the package left the DP (a late retry) changes nothing.
    if (current && (current.Status === PKG_STATUS.pendingRemove || current.Status === PKG_STATUS.removed || current.Status === PKG_STATUS.retryRemove)) {
      this.log.warn(`Ignoring a status for package ${r.packageId} on ${r.nalPath}: it is being removed or was removed from that DP.`, tid);
      return;
    }
    // A report about an older version than the DP already has installed is stale.
    if (current && current.Status === PKG_STATUS.installed && current.SourceVersion > r.version) {
      this.log.warn(`Ignoring a status for version ${r.version} of package ${r.packageId}: the DP already has version ${current.SourceVersion}.`, tid);
      return;
    }
    if (r.status === 0) {
      // In progress: keep the installed version visible until the new one is complete.
      await upsertPkgStatus(db, key, { Status: current?.Status === PKG_STATUS.installed ? PKG_STATUS.installed : PKG_STATUS.sent, LastError: '' });
      this.log.info(`Package ${r.packageId} version ${r.version} is being sent to ${r.nalPath}.`, tid);
      return;
    }
    if (r.status === PKG_STATUS.installed) {
      await upsertPkgStatus(db, key, { Status: PKG_STATUS.installed, SourceVersion: r.version, Location: r.location, HTTPUrl: r.httpUrl, SigURL: r.sigUrl, LastError: '' });
      this.log.info(`Successfully updated the package server status for ${r.nalPath} for package ${r.packageId}, Status 3`, tid);
      await this.#status.raise(DISTMGR_MESSAGES.distributed, { istr: [r.packageId, r.nalPath], attrs, tid });
      return;
    }
    if (r.status === PKG_STATUS.retry) {
      await upsertPkgStatus(db, key, { Status: PKG_STATUS.retry, LastError: r.reason });
      this.log.warn(`Package ${r.packageId} could not be sent to ${r.nalPath} and will be retried: ${r.reason}`, tid);
      await this.#status.raise(DISTMGR_MESSAGES.connectFailed, { severity: 'W', istr: [r.nalPath, r.packageId, r.reason], attrs, tid });
      return;
    }
    await upsertPkgStatus(db, key, { Status: PKG_STATUS.failed, LastError: r.reason });
    this.log.error(`Failed to distribute package ${r.packageId} to ${r.nalPath}: ${r.reason}`, tid);
    await this.#status.raise(DISTMGR_MESSAGES.copyFailed, { severity: 'E', istr: [r.packageId, r.nalPath, r.reason], attrs, tid });
  }

  /** A removal's outcome: 6 removed, 9 retrying, 8 failed; a deleted package may then be finished. */
  async #applyRemoval(r: ReturnType<typeof parseStaFile>, key: { ID: string; Type: number; SiteCode: string; PkgServer: string }, tid: number): Promise<void> {
    const { db } = this.#ctx;
    if (r.status === PKG_STATUS.removed) {
      await upsertPkgStatus(db, key, { Status: PKG_STATUS.removed, HTTPUrl: '', SigURL: '', Location: '', LastError: '' });
      this.log.info(`Package ${r.packageId} has been removed from ${r.nalPath}, Status 6`, tid);
    } else if (r.status === PKG_STATUS.retryRemove || r.status === PKG_STATUS.retry) {
      await upsertPkgStatus(db, key, { Status: PKG_STATUS.retryRemove, LastError: r.reason });
      this.log.warn(`Package ${r.packageId} could not be removed from ${r.nalPath} and the removal will be retried: ${r.reason}`, tid);
    } else if (r.status !== 0) {
      await upsertPkgStatus(db, key, { Status: PKG_STATUS.removeFailed, LastError: r.reason });
      this.log.error(`Failed to remove package ${r.packageId} from ${r.nalPath}: ${r.reason}`, tid);
    }
    if (r.status !== 0 && r.status !== PKG_STATUS.retryRemove && r.status !== PKG_STATUS.retry) await this.#finishDeletionIfDone(r.packageId, tid);
  }

  /** A validation's outcome: 3 valid (2384), 5 invalid with the files and reasons (2383), 4 retrying. */
  async #applyValidation(r: ReturnType<typeof parseStaFile>, key: { ID: string; Type: number; SiteCode: string; PkgServer: string }, installedVersion: number, tid: number): Promise<void> {
    const { db } = this.#ctx;
    const attrs = [
      { id: ATTR.packageId, value: r.packageId },
      { id: ATTR.dp, value: r.nalPath },
    ];
    if (r.status === 0) return;
    if (r.status === PKG_STATUS.retry) {
      this.log.warn(`Validation of package ${r.packageId} on ${r.nalPath} could not run and will be retried: ${r.reason}`, tid);
      return;
    }
    const dp = await findDistributionPoint(db, { nalPath: r.nalPath });
    const valid = r.status === PKG_STATUS.installed;
    const problems = r.reason.split('\n').join('; ');
    await db.transaction().execute(async (trx) => {
      await recordValidation(trx, { PkgID: r.packageId, NALPath: r.nalPath, DPID: Number(dp?.DPID ?? 0), SourceVersion: r.version || installedVersion, Valid: valid, Problems: valid ? '' : r.reason });
      if (!valid) await upsertPkgStatus(trx, key, { Status: PKG_STATUS.failed, LastError: describeError(new CairnError('CAIRN_DP_CONTENT_INVALID', problems)) });
    });
    if (valid) {
      this.log.info(`Package ${r.packageId} on distribution point ${r.nalPath} has been verified successfully.`, tid);
      await this.#status.raise(DISTMGR_MESSAGES.validated, { istr: [r.packageId, r.nalPath], attrs, tid });
      return;
    }
    this.log.error(`Package ${r.packageId} on distribution point ${r.nalPath} failed validation: ${problems}. Redistribute the package to that DP to repair it.`, tid);
    await this.#status.raise(DISTMGR_MESSAGES.validationFailed, { severity: 'E', istr: [r.packageId, r.nalPath, problems], attrs, tid });
  }
}
