/**
 * SMSDBMON, the DB notification monitor (spec 00; seed 001 step 2): drains
 * the change rows the triggers write and drops one inbox file per change:
 * `PkgNotify_Add` → `distmgr.box/<PkgID>.PKN`, `DistributionJob_Creation` →
 * `PkgTransferMgr.box/<PkgID>.PKN`; `SyncNotif_WSyncMgr` → `WSyncMgr.box/SELF.SYN`
 * (or `FULL.SYN`), then `Update_SyncStatus.SyncNow` back to null (seed 004);
 * `UpdateSourceNotif_PolicyPv` → `policypv.box/{UpdateSourceID}.STN` (spec 30,
 * section 1). It logs `RCV:` for what it received and `SND:` for what it
 * dropped, with the change ID, like the seed.
 *
 * Crash safety: a row is deleted only after its file is in place. Dropping
 * the same file twice is harmless (same name; the reader is idempotent).
 */
import path from 'node:path';
import { createComponentLog } from '../../../shared/cmtrace-log.ts';
import type { ComponentLog } from '../../../shared/cmtrace-log.ts';
import { writeInboxFile } from '../../../shared/inbox.ts';
import { WorkLoop } from '../../../shared/work-loop.ts';
import { deleteChanges, pendingChanges } from '../../../datastore/change-notifications.ts';
import { clearSyncNow } from '../../../datastore/updates.ts';
import type { SiteContext } from '../../site-context.ts';

export const DBMON_COMPONENT = 'SMS_DATABASE_NOTIFICATION_MONITOR';

/** Which inbox each trigger's change goes to. */
const ROUTES: Readonly<Record<string, (ctx: SiteContext) => string>> = Object.freeze({
  PkgNotify_Add: (ctx: SiteContext) => ctx.paths.distmgrBox,
  DistributionJob_Creation: (ctx: SiteContext) => ctx.paths.pkgTransferMgrBox,
  SyncNotif_WSyncMgr: (ctx: SiteContext) => ctx.paths.wsyncmgrBox,
  UpdateSourceNotif_PolicyPv: (ctx: SiteContext) => ctx.paths.policypvBox,
});

/** The file a change becomes, by trigger; `<key>.PKN` for the others. Null when the key is not one the reader accepts. */
const FILE_NAMES: Readonly<Record<string, (key: string) => string | null>> = Object.freeze({
  SyncNotif_WSyncMgr: (key: string) => (key === 'SELF' || key === 'FULL' ? `${key}.SYN` : null),
  UpdateSourceNotif_PolicyPv: (key: string) => (/^[0-9a-f-]{36}$/i.test(key) ? `{${key.toUpperCase()}}.STN` : null),
});

export class DbMonitor {
  readonly log: ComponentLog;
  readonly #ctx: SiteContext;
  readonly #loop: WorkLoop;
  readonly #onDropped: (inbox: string) => void;

  constructor(ctx: SiteContext, onDropped: (inbox: string) => void) {
    this.#ctx = ctx;
    this.#onDropped = onDropped;
    this.log = createComponentLog({ dir: ctx.paths.logs, name: 'SMSDBMON', component: DBMON_COMPONENT });
    // The monitor polls quickly: its queue is a small indexed table.
    this.#loop = new WorkLoop({ log: this.log, rescanMs: Math.min(500, ctx.settings['components.rescanMs']), work: () => this.#drain() });
  }

  start(): void {
    this.log.info('SMS_DATABASE_NOTIFICATION_MONITOR started.');
    this.#loop.start();
  }

  wake(): void {
    this.#loop.wake();
  }

  async stop(): Promise<void> {
    await this.#loop.stop();
  }

  async #drain(): Promise<void> {
    for (;;) {
      const rows = await pendingChanges(this.#ctx.db);
      if (!rows.length) return;
      const done: number[] = [];
      const woken = new Set<string>();
      for (const row of rows) {
        const id = Number(row.ChangeID);
        this.log.info(`RCV:${row.Operation} on ${row.TableName} for ${row.TriggerName} [${row.KeyValue}][${id}]`);
        const route = ROUTES[row.TriggerName];
        if (!route) {
          this.log.warn(`No inbox is registered for ${row.TriggerName}; change ${id} dropped.`);
          done.push(id);
          continue;
        }
        const inbox = route(this.#ctx);
        const name = FILE_NAMES[row.TriggerName]?.(row.KeyValue) ?? (row.TriggerName in FILE_NAMES ? null : `${row.KeyValue}.PKN`);
        if (!name) {
          this.log.warn(`${row.TriggerName} sent key '${row.KeyValue.slice(0, 60)}', which no inbox file can be made of; change ${id} dropped.`);
          done.push(id);
          continue;
        }
        const file = await writeInboxFile(inbox, name, `${row.TriggerName} ${row.KeyValue} ${id}\n`);
        this.log.info(`SND:Dropped ${file} [${id}]`);
        // Seed 004: once SELF.SYN is in the inbox, `update Update_SyncStatus set SyncNow = null`.
        if (row.TriggerName === 'SyncNotif_WSyncMgr') await clearSyncNow(this.#ctx.db, this.#ctx.siteCode);
        done.push(id);
        woken.add(inbox);
      }
      await deleteChanges(this.#ctx.db, done);
      for (const inbox of woken) this.#onDropped(path.resolve(inbox));
    }
  }
}
