/**
 * The report worker: a worker thread (started by report-pool.ts) that reads
 * one `.SMX` file at a time and parses it into typed state records, so that
 * XML parsing never runs on the site's event loop (spec 30, section 4 step 3:
 * "starts processing threads").
 *
 * It never writes anything and never lets one bad file kill the worker:
 * every failure is answered as the result of that task, with its error code.
 */
import fs from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { isCairnError } from '../../../shared/errors.ts';
import type { ErrorCode } from '../../../shared/errors.ts';
import { parseStateReport } from '../../../shared/state-report.ts';
import type { StateReport } from '../../../shared/state-report.ts';

export interface ReportTask {
  readonly id: number;
  readonly file: string;
  readonly maxBytes: number;
  /** The site's clock when the batch started, for the future-time check. */
  readonly now: number;
}

export type ReportReply =
  | { readonly id: number; readonly ok: true; readonly report: StateReport }
  /** `gone`: the file vanished before it was read (nothing to move). */
  | { readonly id: number; readonly ok: false; readonly code: ErrorCode | 'gone'; readonly message: string };

export function parseReportFile(task: ReportTask): ReportReply {
  try {
    const size = fs.statSync(task.file).size;
    if (size > task.maxBytes) return { id: task.id, ok: false, code: 'CAIRN_STATE_TOO_LARGE', message: `the file is ${size} bytes, more than ${task.maxBytes}` };
    const xml = fs.readFileSync(task.file, 'utf8');
    return { id: task.id, ok: true, report: parseStateReport(xml, { now: task.now, maxBytes: task.maxBytes }) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { id: task.id, ok: false, code: 'gone', message: 'the file is gone' };
    if (isCairnError(err)) return { id: task.id, ok: false, code: err.code, message: err.message };
    return { id: task.id, ok: false, code: 'CAIRN_INTERNAL', message: (err as Error).message };
  }
}

if (parentPort) {
  const port = parentPort;
  port.on('message', (task: ReportTask) => port.postMessage(parseReportFile(task)));
}
