/** SQL for package transfer jobs (`DistributionJobs`), the package transfer manager's durable work. */
import type { Kysely, Transaction } from 'kysely';
import type { Database, DistributionJobRow } from './schema.ts';
import { JOB_STATE } from './enums.ts';
import { nowIso } from './time.ts';

type Db = Kysely<Database> | Transaction<Database>;

/** Inserts a job in State 0 (flow 2 step 4). Returns its ID. */
export async function insertJob(trx: Db, job: { DPID: number; PkgID: string; PackageVersion: number; Action: number }): Promise<number> {
  const now = nowIso();
  const row = await trx
    .insertInto('DistributionJobs')
    .values({ ...job, State: JOB_STATE.pending, SendAction: '', CreationTime: now, LastUpdateTime: now, RestartTime: '', RetryCount: 0, LastError: '' })
    .returning('JobID')
    .executeTakeFirstOrThrow();
  return Number(row.JobID);
}

export interface RunnableJob extends DistributionJobRow {
  readonly DPName: string;
  readonly URL: string;
  readonly NALPath: string;
  readonly SharedKey: string;
  readonly DPPriority: number;
  readonly PkgPriority: number;
}

/**
 * Jobs the transfer manager may run now: pending, ready, or pending restart
 * whose restart time has passed; also started/in-progress jobs left by a
 * process that died (`orphansToo`, used once at start-up). Ordered by package
 * priority, then DP priority, then age (flow 2 step 6).
 */
export async function runnableJobs(db: Db, opts: { now?: string; orphansToo?: boolean } = {}): Promise<RunnableJob[]> {
  const now = opts.now ?? nowIso();
  const states: number[] = [JOB_STATE.pending, JOB_STATE.ready, JOB_STATE.pendingRestart];
  if (opts.orphansToo) states.push(JOB_STATE.started, JOB_STATE.inProgress);
  const rows = await db
    .selectFrom('DistributionJobs as j')
    .innerJoin('DistributionPoints as d', 'd.DPID', 'j.DPID')
    .innerJoin('SMSPackages as p', 'p.PkgID', 'j.PkgID')
    .selectAll('j')
    .select(['d.Name as DPName', 'd.URL as URL', 'd.NALPath as NALPath', 'd.SharedKey as SharedKey', 'd.Priority as DPPriority', 'p.Priority as PkgPriority'])
    .where('j.State', 'in', states)
    .where((eb) => eb.or([eb('j.State', '<>', JOB_STATE.pendingRestart), eb('j.RestartTime', '<=', now)]))
    .orderBy('p.Priority')
    .orderBy('d.Priority')
    .orderBy('j.JobID')
    .execute();
  return rows as RunnableJob[];
}

export async function setJobState(db: Db, jobId: number, state: number, extra: { RestartTime?: string; RetryCount?: number; LastError?: string } = {}): Promise<void> {
  await db
    .updateTable('DistributionJobs')
    .set({ State: state, LastUpdateTime: nowIso(), ...extra })
    .where('JobID', '=', jobId)
    .execute();
}

/** Jobs for (package, DP) superseded by a newer version are canceled so only the newest runs. */
export async function cancelOlderJobs(db: Db, pkgId: string, dpId: number, version: number): Promise<void> {
  await db
    .updateTable('DistributionJobs')
    .set({ State: JOB_STATE.canceled, LastUpdateTime: nowIso() })
    .where('PkgID', '=', pkgId)
    .where('DPID', '=', dpId)
    .where('PackageVersion', '<', version)
    .where('State', 'in', [JOB_STATE.pending, JOB_STATE.ready, JOB_STATE.pendingRestart])
    .execute();
}

export async function getJob(db: Db, jobId: number): Promise<DistributionJobRow | undefined> {
  return db.selectFrom('DistributionJobs').selectAll().where('JobID', '=', jobId).executeTakeFirst();
}

export async function listJobs(db: Db, pkgId?: string): Promise<DistributionJobRow[]> {
  let q = db.selectFrom('DistributionJobs').selectAll();
  if (pkgId) q = q.where('PkgID', '=', pkgId);
  return q.orderBy('JobID').execute();
}
