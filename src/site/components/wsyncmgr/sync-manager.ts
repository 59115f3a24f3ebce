/**
 * SMS_WSUS_SYNC_MANAGER, the update sync manager (spec 20; seed 004): syncs
 * the site's first software update point from upstream, the site database
 * from that update point, then every other update point (replicas) from the
 * first, with the seed's log lines (`wsyncmgr.log`) and status messages
 * 6701 (started), 6704 (update point ↔ upstream), 6705 (update point → site
 * database), 6706 (replicas), 6702 (done) and 6703 (failed, with the reason).
 *
 * Triggers, merged into one sync when several are pending (a `FULL.SYN`
 * among them makes it a full one): `.SYN` files in `WSyncMgr.box` (dropped by
 * the DB monitor for `cairn admin sync now`, or by hand), the schedule
 * (`wsyncmgr.scheduleSeconds`), the retry after a failure
 * (`wsyncmgr.retrySeconds`), and, once at start-up, a sync a killed process
 * left unfinished. Requests that arrive while a sync runs make one more sync
 * after it. Inbox files are deleted only once their sync has ended.
 *
 * Crash safety comes from the import (`src/catalog/catalog-import.ts`): the
 * site's content version and anchor move only at the end of the site-database
 * phase, rows of an unfinished sync sit above the content version (never
 * listed), and the next sync completes it. A failed sync never changes the
 * catalog or the content version; it records the reason and raises the sync
 * alert, which the next successful sync clears. It never throws out of a
 * pass: every failure is a 6703 with its reason.
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { importCatalog } from '../../../catalog/catalog-import.ts';
import type { Update } from '../../../catalog/catalog.ts';
import { createUpstreamClient } from '../../../catalog/upstream-client.ts';
import { readSettings } from '../../../datastore/site-control.ts';
import type { SiteSettings } from '../../../datastore/site-control.ts';
import { listUpdatePoints, recordUpdatePointSync } from '../../../datastore/update-points.ts';
import type { UpdatePointRow } from '../../../datastore/update-points.ts';
import { getSyncStatus, recordSyncEnd, recordSyncFailure, recordSyncStart } from '../../../datastore/updates.ts';
import type { SyncCriteria, SyncStatus } from '../../../datastore/updates.ts';
import { createComponentLog } from '../../../shared/cmtrace-log.ts';
import type { ComponentLog } from '../../../shared/cmtrace-log.ts';
import { CairnError, ERRORS, describeError } from '../../../shared/errors.ts';
import type { ErrorCode } from '../../../shared/errors.ts';
import { listInboxFiles, removeInboxFile } from '../../../shared/inbox.ts';
import { createStatusReporter } from '../../../shared/status-message.ts';
import type { StatusReporter } from '../../../shared/status-message.ts';
import { WorkLoop } from '../../../shared/work-loop.ts';
import { createSupClient } from '../../../sup/sup-client.ts';
import type { SupSyncResult } from '../../../sup/protocol.ts';
import { newThreadId } from '../../site-context.ts';
import type { SiteContext } from '../../site-context.ts';

export const WSYNCMGR_COMPONENT = 'SMS_WSUS_SYNC_MANAGER';

/** Status messages of the sync manager (spec 20; REFERENCE.md). */
export const SYNC_MESSAGES = { started: 6701, done: 6702, failed: 6703, updateServer: 6704, siteDatabase: 6705, replicas: 6706 } as const;

export type SyncKind = 'delta' | 'full';

/**
 * Updates listed one by one in a sync ("synchronizing update <id> - <title>",
 * as the seed); a full sync of 60,000 would otherwise roll the log over
 * several times and lose the sync's first lines.
 */
const LISTED_UPDATES = 200;

/** What the site syncs from, as `Update_SyncStatus.UpstreamSource` says: '' and 'none' leave it to the first update point. */
export function effectiveUpstream(status: SyncStatus): string {
  return status.upstreamSource === 'none' ? '' : status.upstreamSource;
}

/** "0d00h03m53s", the seed's duration format. */
export function formatSyncTime(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const p = (n: number) => String(n).padStart(2, '0');
  return `${Math.floor(s / 86400)}d${p(Math.floor((s % 86400) / 3600))}h${p(Math.floor((s % 3600) / 60))}m${p(s % 60)}s`;
}

/** The sync criteria as a predicate: empty lists accept everything; languages select nothing yet (the catalog has none). */
export function criteriaFilter(c: SyncCriteria): ((u: Update) => boolean) | undefined {
  if (!c.products.length && !c.classifications.length) return undefined;
  const products = new Set(c.products);
  const classifications = new Set(c.classifications);
  return (u) => (!classifications.size || classifications.has(u.classification)) && (!products.size || u.products.some((p) => products.has(p)));
}

export class SyncManager {
  readonly log: ComponentLog;
  readonly #ctx: SiteContext;
  readonly #loop: WorkLoop;
  readonly #status: StatusReporter;
  readonly #abort = new AbortController();
  #firstPass = true;
  /** Until when a scheduled sync with no upstream anywhere is not asked about again (ms). */
  #noUpstreamUntil = 0;
  /** The reason last logged for skipping a scheduled sync: logged again only when it changes. */
  #skipReason = '';

  constructor(ctx: SiteContext) {
    this.#ctx = ctx;
    this.log = createComponentLog({ dir: ctx.paths.logs, name: 'wsyncmgr', component: WSYNCMGR_COMPONENT });
    this.#status = createStatusReporter({ component: WSYNCMGR_COMPONENT, site: ctx.siteCode, statmsgsDir: ctx.paths.statmsgs, log: this.log });
    this.#loop = new WorkLoop({ log: this.log, inboxes: [ctx.paths.wsyncmgrBox], rescanMs: ctx.settings['components.rescanMs'], work: () => this.#pass() });
  }

  start(): void {
    this.log.info('SMS_WSUS_SYNC_MANAGER started.');
    this.#loop.start();
  }

  wake(): void {
    this.#loop.wake();
  }

  async stop(): Promise<void> {
    this.#abort.abort(new CairnError('CAIRN_SYNC_INTERRUPTED', 'the site is stopping'));
    await this.#loop.stop();
  }

  async #pass(): Promise<void> {
    const { db, siteCode, paths } = this.#ctx;
    if (this.#abort.signal.aborted) return;
    const settings = await readSettings(db);
    const files = await listInboxFiles(paths.wsyncmgrBox, 'SYN');
    const status = await getSyncStatus(db, siteCode);
    const now = Date.now();
    const firstPass = this.#firstPass;
    this.#firstPass = false;

    let trigger: string;
    let kind: SyncKind = 'delta';
    if (files.length) {
      // An administrator asking for a sync has likely just configured one: ask about upstreams afresh.
      this.#noUpstreamUntil = 0;
      this.log.info('Wakeup by inbox notification');
      for (const f of files) {
        const base = f.slice(0, -4).toUpperCase();
        if (base === 'SELF' || base === 'FULL') this.log.info(`Found local sync request file ${f}`);
        else this.log.info(`Found parent sync notification file ${f}`);
        if (base === 'FULL') kind = 'full';
      }
      if (files.length > 1) this.log.info(`${files.length} sync requests are pending; they are merged into one ${kind} sync`);
      trigger = files.every((f) => !['SELF.SYN', 'FULL.SYN'].includes(f.toUpperCase())) ? 'parent request' : 'local request';
    } else if (firstPass && status.lastSyncStartTime && status.lastSyncStartTime > status.lastSyncEndTime) {
      this.log.info(`The sync started at ${status.lastSyncStartTime} did not finish (the site stopped); completing it`);
      trigger = 'restart';
      kind = status.lastSyncKind === 'full' ? 'full' : 'delta';
    } else if (status.lastSyncResult === 'failed' && settings['wsyncmgr.retrySeconds'] > 0 && now - Date.parse(status.lastSyncEndTime) >= settings['wsyncmgr.retrySeconds'] * 1000) {
      if (!(await this.#canScheduledSync(status))) return;
      this.log.info('Wakeup for a retry of the failed sync');
      trigger = 'retry';
    } else if (settings['wsyncmgr.scheduleSeconds'] > 0 && (!status.lastSyncStartTime || now - Date.parse(status.lastSyncStartTime) >= settings['wsyncmgr.scheduleSeconds'] * 1000)) {
      if (!(await this.#canScheduledSync(status))) return;
      this.log.info('Wakeup for a scheduled regular sync');
      trigger = 'regular schedule';
    } else return;

    await this.#sync(kind, trigger, settings);
    // A sync cut short by the site stopping leaves its requests for the next start.
    if (this.#abort.signal.aborted) return;
    // The requests this sync answered are done, whatever its outcome (a failure is retried per the setting).
    for (const f of files) await removeInboxFile(path.join(paths.wsyncmgrBox, f));
  }

  /**
   * A scheduled sync (or its retry) runs only when there is something to sync:
   * an update point, and an upstream (the site's, or the first update
   * point's own). Otherwise it is skipped with one log line, not failed.
   */
  async #canScheduledSync(status: SyncStatus): Promise<boolean> {
    if (Date.now() < this.#noUpstreamUntil) return false;
    const sups = await listUpdatePoints(this.#ctx.db, this.#ctx.siteCode);
    let reason = '';
    if (!sups.length) reason = 'the site has no software update point';
    else if (!effectiveUpstream(status)) {
      try {
        if (!(await createSupClient({ url: sups[0]!.URL, key: sups[0]!.SharedKey }).status()).upstream) reason = `no upstream is configured for the site or for update point ${sups[0]!.Name}`;
      } catch {
        // Unreachable: let the sync run and fail with the reason.
      }
    }
    if (!reason) {
      this.#skipReason = '';
      return true;
    }
    if (reason !== this.#skipReason) this.log.info(`Scheduled sync skipped: ${reason} (cairn admin sup add; cairn admin sync upstream)`);
    this.#skipReason = reason;
    // Asked again a minute later, quietly: configuring an upstream starts the overdue sync without a restart.
    this.#noUpstreamUntil = Date.now() + 60_000;
    return false;
  }

  async #sync(kind: SyncKind, trigger: string, settings: SiteSettings): Promise<void> {
    const { db, siteCode } = this.#ctx;
    const tid = newThreadId();
    const log = (text: string) => this.log.info(text, tid);
    const started = Date.now();
    const full = kind === 'full';
    log(`Starting Sync (${kind})`);
    log(`Performing sync on ${trigger}`);
    const sups = await listUpdatePoints(db, siteCode);
    log(`Read SUPs from site settings for ${siteCode}`);
    log(`Found ${sups.length} SUPs`);
    for (const s of sups) log(`Found active SUP ${s.Name} (${s.URL}) from the site settings.`);
    const status = await recordSyncStart(db, siteCode, { kind, trigger });
    await this.#status.raise(SYNC_MESSAGES.started, { tid, istr: [siteCode] });
    try {
      const first = sups[0];
      if (!first) throw new CairnError('CAIRN_SYNC_NO_UPDATE_POINT', 'cairn admin sup add NAME --url URL');

      // Phase 1: the first update point syncs from upstream (seed 004, steps 2–3).
      await this.#status.raise(SYNC_MESSAGES.updateServer, { tid, istr: [first.Name] });
      log(`Synchronizing update server ${first.Name} ...`);
      log('sync: Starting update point synchronization');
      const r1 = await this.#syncUpdatePoint(first, effectiveUpstream(status), full, 'update point', settings, tid);
      log(`Done synchronizing update server ${first.Name}`);
      log(`Update point ${first.Name} is at content version ${r1.contentVersion} (${r1.itemsChanged} items changed from ${r1.source})`);

      // Phase 2: the site database syncs from the first update point (seed 004, step 4).
      await this.#status.raise(SYNC_MESSAGES.siteDatabase, { tid, istr: [first.Name] });
      log(`Synchronizing SMS database with update server ${first.Name} ...`);
      const days = settings['wsyncmgr.expireSupersededAfterDays'];
      const accept = criteriaFilter(status.criteria);
      let listed = 0;
      const r2 = await importCatalog(db, createUpstreamClient(first.URL, { pageSize: settings['wsyncmgr.pageSize'] }), {
        siteCode,
        full,
        alreadyStarted: true,
        signal: this.#abort.signal,
        ...(accept ? { accept } : {}),
        expireSupersededAfterDays: days,
        onPhase: (phase, total) => log(`sync: SMS synchronizing ${phase} (${total} changed)`),
        onUpdate: (u) => {
          listed += 1;
          if (listed <= LISTED_UPDATES) log(`Synchronizing update ${u.id} - ${u.title}`);
          else if (listed === LISTED_UPDATES + 1) log(`Further updates of this sync are not listed one by one (more than ${LISTED_UPDATES}); the progress lines count them`);
        },
        onProgress: (p) => log(`sync: SMS synchronizing ${p.phase}, ${p.line}`),
        onRejected: (x) => this.log.warn(`sync: rejected ${x.phase === 'updates' ? 'update' : 'category'} ${x.id}: ${x.code}: ${x.reason}`, tid),
      });
      log(`Done synchronizing SMS with update server ${first.Name}`);
      if (r2.filtered) log(`${r2.filtered} update(s) left out by the sync criteria`);
      if (r2.expired) log(`Expired ${r2.expired} superseded update(s) (superseded for more than ${days} days)`);
      if (r2.contentVersion !== r2.previousContentVersion) log(`Set content version of update source {${status.updateSourceId.toUpperCase()}} for site ${siteCode} to ${r2.contentVersion}`);
      else log(`No changes: content version of update source {${status.updateSourceId.toUpperCase()}} for site ${siteCode} stays ${r2.contentVersion}`);

      // Replicas: every other update point syncs from the first (seed 004, step 5).
      if (sups.length > 1) {
        log('Synchronizing replica update servers');
        await this.#status.raise(SYNC_MESSAGES.replicas, { tid, istr: [sups.slice(1).map((s) => s.Name).join(', ')] });
        for (const replica of sups.slice(1)) {
          log(`Synchronizing update server ${replica.Name} ...`);
          log('sync: Starting replica update point synchronization');
          const r = await this.#syncUpdatePoint(replica, first.URL, full, 'replica update point', settings, tid);
          log(`Done synchronizing update server ${replica.Name} (content version ${r.contentVersion})`);
        }
      }

      const rejected = r1.rejected + r2.categories.rejected + r2.updates.rejected + r2.rejectedAtSource;
      await recordSyncEnd(db, siteCode, { rejected });
      await this.#status.raise(SYNC_MESSAGES.done, { tid, istr: [siteCode, String(r2.contentVersion)] });
      log(`Sync succeeded. Setting sync alert to canceled state on site ${siteCode}`);
      if (rejected) this.log.warn(`${rejected} malformed item(s) were rejected (their IDs are above)`, tid);
      log(`Updated ${r2.itemsChanged} items in SMS database, new update source content version is ${r2.contentVersion}`);
    } catch (err) {
      const reason = describeError(err);
      await recordSyncFailure(db, siteCode, reason);
      await this.#status.raise(SYNC_MESSAGES.failed, { severity: 'E', tid, istr: [reason.slice(0, 500)] });
      this.log.error(`Sync failed: ${reason}. Setting sync alert to active state on site ${siteCode}`, tid);
      const retry = settings['wsyncmgr.retrySeconds'];
      log(retry > 0 ? `Sync failed. Will retry in ${retry} seconds` : 'Sync failed. Will retry at the next scheduled sync');
    }
    log(`Sync time: ${formatSyncTime(Date.now() - started)}`);
  }

  /**
   * Asks update point `sup` to sync from `source` and follows it, logging its
   * phases and progress lines, until it ends. Throws with the update
   * point's reason when its sync fails.
   */
  async #syncUpdatePoint(sup: UpdatePointRow, source: string, full: boolean, who: string, settings: SiteSettings, tid: number): Promise<SupSyncResult> {
    const log = (text: string) => this.log.info(text, tid);
    const client = createSupClient({ url: sup.URL, key: sup.SharedKey });
    try {
      let st = await client.startSync(source, full);
      const syncId = st.syncId;
      let phase = '';
      let line = '';
      const report = (): void => {
        if (st.phase && st.phase !== phase) {
          // Categories always come first; a fast categories phase can end between two polls.
          if (st.phase === 'updates' && !phase) log(`sync: ${who} synchronizing categories`);
          phase = st.phase;
          line = '';
          log(`sync: ${who} synchronizing ${phase}`);
        }
        if (st.line && st.line !== line) {
          line = st.line;
          log(`sync: ${who} synchronizing ${phase}, ${line}`);
        }
      };
      for (;;) {
        report();
        if (st.state !== 'running') break;
        await sleep(settings['wsyncmgr.pollMs'], undefined, { signal: this.#abort.signal });
        st = await client.syncState();
        if (st.syncId !== syncId) throw new CairnError('CAIRN_SYNC_INTERRUPTED', `update point ${sup.Name} is no longer running sync ${syncId}`);
      }
      for (const x of st.rejectedItems) this.log.warn(`sync: ${who} rejected ${x.phase === 'updates' ? 'update' : 'category'} ${x.id}: ${x.code}: ${x.reason}`, tid);
      if (st.result && st.result.rejected > st.rejectedItems.length) this.log.warn(`sync: ${who} rejected ${st.result.rejected - st.rejectedItems.length} more item(s); see its SoftwareDistribution.log`, tid);
      if (st.state !== 'succeeded' || !st.result) {
        const code = st.error?.code && st.error.code in ERRORS ? (st.error.code as ErrorCode) : 'CAIRN_SUP_REJECTED';
        // The update point's message repeats its code and the code's text: keep only the detail.
        const message = st.error?.message ?? 'the sync ended without a result';
        const prefix = `${code}: ${ERRORS[code].message}: `;
        throw new CairnError(code, `update point ${sup.Name}: ${message.startsWith(prefix) ? message.slice(prefix.length) : message}`);
      }
      await recordUpdatePointSync(this.#ctx.db, sup.SUPID, { ok: true, contentVersion: st.result.contentVersion });
      return st.result;
    } catch (err) {
      await recordUpdatePointSync(this.#ctx.db, sup.SUPID, { ok: false, error: describeError(err) });
      throw err;
    }
  }
}
