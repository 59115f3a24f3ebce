/**
 * The status manager (spec 10, flow 7 step 8): reads `.SVF` files from
 * `statmgr.box/statmsgs`, inserts their messages with insertion strings and
 * attributes in batched transactions, then deletes the files.
 *
 * Crash safety: files are deleted only after the transaction commits; each
 * message's DedupKey (`<file>#<index>`) makes a re-read file insert nothing
 * twice. A file that cannot be parsed is moved to `statmsgs/bad` and logged,
 * never silently dropped.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createComponentLog } from '../../../shared/cmtrace-log.ts';
import type { ComponentLog } from '../../../shared/cmtrace-log.ts';
import { listInboxFiles, removeInboxFile } from '../../../shared/inbox.ts';
import { WorkLoop } from '../../../shared/work-loop.ts';
import { parseSvf } from '../../../shared/status-message.ts';
import type { StatusMessage } from '../../../shared/status-message.ts';
import { describeError } from '../../../shared/errors.ts';
import { insertStatusMessage } from '../../../datastore/status-messages.ts';
import type { SiteContext } from '../../site-context.ts';

export const STATMGR_COMPONENT = 'SMS_STATUS_MANAGER';

export class StatusManager {
  readonly log: ComponentLog;
  readonly #ctx: SiteContext;
  readonly #loop: WorkLoop;

  constructor(ctx: SiteContext) {
    this.#ctx = ctx;
    this.log = createComponentLog({ dir: ctx.paths.logs, name: 'statmgr', component: STATMGR_COMPONENT });
    this.#loop = new WorkLoop({ log: this.log, inboxes: [ctx.paths.statmsgs], rescanMs: ctx.settings['components.rescanMs'], work: () => this.#drain() });
  }

  start(): void {
    this.log.info('SMS_STATUS_MANAGER started.');
    this.#loop.start();
  }

  wake(): void {
    this.#loop.wake();
  }

  async stop(): Promise<void> {
    await this.#loop.stop();
  }

  async #drain(): Promise<void> {
    const dir = this.#ctx.paths.statmsgs;
    const batchSize = this.#ctx.settings['statmgr.batchSize'];
    for (;;) {
      const names = (await listInboxFiles(dir, 'SVF')).slice(0, batchSize);
      if (!names.length) return;
      const good: { name: string; messages: StatusMessage[] }[] = [];
      let bad = 0;
      for (const name of names) {
        const file = path.join(dir, name);
        try {
          good.push({ name, messages: parseSvf(await fsp.readFile(file, 'utf8')) });
        } catch (err) {
          bad += 1;
          const badDir = path.join(dir, 'bad');
          await fsp.mkdir(badDir, { recursive: true });
          await fsp.rename(file, path.join(badDir, name));
          this.log.error(`Status message file ${file} is not valid (${describeError(err)}); moved it to ${badDir}.`);
        }
      }
      let inserted = 0;
      await this.#ctx.db.transaction().execute(async (trx) => {
        for (const f of good) {
          for (const [i, msg] of f.messages.entries()) if (await insertStatusMessage(trx, msg, `${f.name}#${i}`)) inserted += 1;
        }
      });
      for (const f of good) await removeInboxFile(path.join(dir, f.name));
      this.log.info(`Processed ${names.length} status message files (${bad} bad); inserted ${inserted} status messages in one transaction.`);
    }
  }
}
