/**
 * `.STA` files: a DP's package status, dropped into `distmgr.box/incoming`
 * by the package transfer manager (and later the MP relay) for the
 * distribution manager's status thread (seed 001 steps 11-3 and 13).
 * The body is ours: JSON `{ "format": "cairn-sta/1", ... }`.
 */
import { writeInboxFile } from '../../../shared/inbox.ts';

export const STA_FORMAT = 'cairn-sta/1';

/** What the job that reports was doing; absent in files from before issue 3, meaning 'distribute'. */
export const STA_ACTIONS = ['distribute', 'redistribute', 'remove', 'validate'] as const;
export type StaAction = (typeof STA_ACTIONS)[number];

export interface PackageStatusReport {
  readonly packageId: string;
  readonly version: number;
  readonly dpName: string;
  readonly nalPath: string;
  readonly action: StaAction;
  /** PkgStatus.Status: 0 in progress, 3 installed (or valid), 4 retry, 5 failed (or invalid), 6 removed, 8 removal failed, 9 removal retrying. */
  readonly status: number;
  readonly reason: string;
  readonly httpUrl: string;
  readonly sigUrl: string;
  readonly location: string;
  readonly time: string;
}

let sequence = 0;

export async function writeStaFile(incomingDir: string, report: PackageStatusReport): Promise<string> {
  sequence += 1;
  // Names sort in write order, so the status thread applies reports in order.
  const name = `${Date.now().toString().padStart(14, '0')}-${process.pid}-${String(sequence).padStart(9, '0')}.STA`;
  return writeInboxFile(incomingDir, name, JSON.stringify({ format: STA_FORMAT, ...report }));
}

export function parseStaFile(body: string): PackageStatusReport {
  const o = JSON.parse(body) as Record<string, unknown>;
  if (!o || o.format !== STA_FORMAT) throw new Error('not a cairn-sta/1 document');
  const str = (k: string): string => {
    if (typeof o[k] !== 'string') throw new Error(`${k} is not a string`);
    return o[k] as string;
  };
  const int = (k: string): number => {
    if (!Number.isInteger(o[k])) throw new Error(`${k} is not an integer`);
    return o[k] as number;
  };
  const packageId = str('packageId');
  if (!/^[A-Z0-9]{3}[0-9A-F]{5}$/.test(packageId)) throw new Error('packageId is not a package ID');
  const status = int('status');
  if (![0, 3, 4, 5, 6, 8, 9].includes(status)) throw new Error(`status ${status} is not one a DP reports`);
  const action = o.action === undefined ? 'distribute' : o.action;
  if (typeof action !== 'string' || !(STA_ACTIONS as readonly string[]).includes(action)) throw new Error(`action ${String(action)} is not one a job reports`);
  return {
    packageId,
    action: action as StaAction,
    version: int('version'),
    dpName: str('dpName'),
    nalPath: str('nalPath'),
    status,
    reason: str('reason'),
    httpUrl: str('httpUrl'),
    sigUrl: str('sigUrl'),
    location: str('location'),
    time: str('time'),
  };
}
