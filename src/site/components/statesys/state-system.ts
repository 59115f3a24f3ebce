/**
 * The state system (`SMS_STATE_SYSTEM`, spec 30 section 4 steps 3-4): reads
 * `.SMX` files from `inboxes/auth/statesys.box/incoming`, parses them on
 * worker threads, and keeps the latest state per (client, topic type, topic
 * ID) with the history (src/datastore/state-messages.ts holds the rule).
 *
 * Per batch (`statesys.batchSize` files) it logs, as the seed does:
 *   processed N records with M invalid records
 *   processed N message files in this batch, with M bad files
 *
 * Crash safety: a batch's records commit in one transaction and its files are
 * deleted only after the commit; storing is idempotent (history keyed by
 * client, topic and serial number; the latest-state rule ignores a message it
 * already applied), so a file read again after a kill changes nothing. A file
 * that cannot be parsed as a whole goes to `incoming/bad` with its error code
 * in the log and never blocks the good ones; a single bad `StateMessage` is
 * an invalid record and the rest of its report is stored.
 *
 * It must never trust a file: everything it stores came through the parser.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createComponentLog } from '../../../shared/cmtrace-log.ts';
import type { ComponentLog } from '../../../shared/cmtrace-log.ts';
import { listInboxFiles, removeInboxFile } from '../../../shared/inbox.ts';
import { WorkLoop } from '../../../shared/work-loop.ts';
import { MAX_REPORT_BYTES } from '../../../shared/state-report.ts';
import type { StateRecord } from '../../../shared/state-report.ts';
import { storeStateRecords } from '../../../datastore/state-messages.ts';
import { nowIso } from '../../../datastore/time.ts';
import type { SiteContext } from '../../site-context.ts';
import { ReportPool } from './report-pool.ts';
import type { ReportReply } from './report-worker.ts';

export const STATESYS_COMPONENT = 'SMS_STATE_SYSTEM';

/** What one batch did, for the log and for tests and the benchmark. */
export interface BatchResult {
  readonly files: number;
  readonly badFiles: number;
  readonly records: number;
  readonly invalidRecords: number;
  readonly applied: number;
  readonly duplicates: number;
}

export class StateSystem {
  readonly log: ComponentLog;
  readonly #ctx: SiteContext;
  readonly #loop: WorkLoop;
  readonly #pool: ReportPool;
  readonly #onBatch: ((r: BatchResult) => void) | undefined;

  constructor(ctx: SiteContext, options: { onBatch?: (r: BatchResult) => void } = {}) {
    this.#ctx = ctx;
    this.#onBatch = options.onBatch;
    this.log = createComponentLog({ dir: ctx.paths.logs, name: 'statesys', component: STATESYS_COMPONENT });
    this.#pool = new ReportPool(Math.max(1, ctx.settings['statesys.parseThreads']));
    this.#loop = new WorkLoop({ log: this.log, inboxes: [ctx.paths.statesysIncoming], rescanMs: ctx.settings['components.rescanMs'], work: () => this.#drain() });
  }

  start(): void {
    this.log.info(`${STATESYS_COMPONENT} started; inbox ${this.#ctx.paths.statesysIncoming}, ${this.#pool.size} processing threads, batches of ${this.#ctx.settings['statesys.batchSize']} files.`);
    this.#loop.start();
  }

  wake(): void {
    this.#loop.wake();
  }

  async stop(): Promise<void> {
    await this.#loop.stop();
    await this.#pool.close();
  }

  /** Processes every file in the inbox, batch after batch. */
  async drain(): Promise<void> {
    await this.#drain();
  }

  async #drain(): Promise<void> {
    const dir = this.#ctx.paths.statesysIncoming;
    const batchSize = Math.max(1, this.#ctx.settings['statesys.batchSize']);
    let announced = false;
    for (;;) {
      // A few batches at a time, pipelined: the workers parse batch k+1 while
      // the main thread commits batch k. Commits stay in file order.
      const names = (await listInboxFiles(dir, 'SMX')).slice(0, batchSize * 4);
      if (!names.length) return;
      if (!announced) {
        this.log.info(`Inbox notification triggered; loading message files in batches of up to ${batchSize}.`);
        announced = true;
      }
      const batches: string[][] = [];
      for (let i = 0; i < names.length; i += batchSize) batches.push(names.slice(i, i + batchSize));
      let next = this.#parse(dir, batches[0]!);
      for (const [i, batch] of batches.entries()) {
        const replies = await next;
        if (i + 1 < batches.length) {
          next = this.#parse(dir, batches[i + 1]!);
          // Awaited on the next turn; this only keeps a failure from being reported as unhandled meanwhile.
          next.catch(() => undefined);
        }
        await this.#commit(dir, batch, replies);
      }
    }
  }

  #parse(dir: string, names: readonly string[]): Promise<ReportReply[]> {
    const now = Date.now();
    return Promise.all(names.map((name) => this.#pool.parse(path.join(dir, name), MAX_REPORT_BYTES, now)));
  }

  async #commit(dir: string, names: readonly string[], replies: readonly ReportReply[]): Promise<void> {
    const records: StateRecord[] = [];
    const done: string[] = [];
    let badFiles = 0;
    let invalidRecords = 0;
    for (const [i, reply] of replies.entries()) {
      const name = names[i]!;
      const file = path.join(dir, name);
      if (!reply.ok) {
        if (reply.code === 'gone') continue;
        badFiles += 1;
        const badDir = path.join(dir, 'bad');
        await fsp.mkdir(badDir, { recursive: true });
        await fsp.rename(file, path.join(badDir, name));
        this.log.error(`Message file ${name} is bad (${reply.code}: ${reply.message}); moved it to ${badDir}.`);
        continue;
      }
      const { report } = reply;
      records.push(...report.records);
      invalidRecords += report.invalid.length;
      if (report.invalid.length) {
        const shown = report.invalid.slice(0, 5).map((r) => `#${r.index} ${r.code}: ${r.reason}`);
        this.log.warn(`Message file ${name} from ${report.client.clientId} has ${report.invalid.length} invalid records: ${shown.join('; ')}${report.invalid.length > 5 ? '; …' : ''}`);
      }
      done.push(file);
    }
    const stored = records.length ? await this.#ctx.db.transaction().execute((trx) => storeStateRecords(trx, records, nowIso())) : { applied: 0, duplicates: 0 };
    for (const file of done) await removeInboxFile(file);
    const result: BatchResult = { files: names.length, badFiles, records: records.length + invalidRecords, invalidRecords, applied: stored.applied, duplicates: stored.duplicates };
    this.log.info(`processed ${result.records} records with ${result.invalidRecords} invalid records`);
    this.log.info(`processed ${result.files} message files in this batch, with ${result.badFiles} bad files`);
    this.log.info(`${result.applied} records became the latest state of their topic; ${records.length - result.applied - result.duplicates} were older than the stored state; ${result.duplicates} were already stored.`);
    this.#onBatch?.(result);
  }
}
