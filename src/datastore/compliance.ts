/**
 * SQL for software-update compliance (migration 0007): update groups and
 * their deployments, the per-client compliance the state system keeps
 * (`Update_ComplianceStatus`, written in state-messages.ts), the summaries the
 * summarisation tasks compute, and the task table.
 *
 * Who counts: a site's clients are its approved registered clients plus any
 * client that has reported a detection state (a client whose messages reach
 * the site through the relay without registering still counts). A deployment
 * counts the members of its collection. A client with no state for an update,
 * or state 0, is unknown for it.
 *
 * Compliance of a client for a set of updates (an update group, a
 * deployment): non-compliant when any of them is required (2); otherwise
 * compliant when each has a known state (1 not required or 3 installed);
 * otherwise unknown. A group without updates requires nothing: every client is
 * compliant.
 */
import { sql } from 'kysely';
import type { Kysely, Transaction } from 'kysely';
import type { Database } from './schema.ts';
import { nowIso } from './time.ts';

type Db = Kysely<Database> | Transaction<Database>;

/** The summary tasks, named as the product's log names them (spec 30, section 5). */
export const SUMMARY_TASKS = ['Update Status Summarizer', 'Update Group Status Summarizer', 'Assignment Compliance Evaluator', 'Migrate Update Status', 'Delete Aged Status'] as const;
export type SummaryTaskName = (typeof SUMMARY_TASKS)[number];

/** Topic type 500 states (REFERENCE.md). */
export const UPDATE_STATE = { unknown: 0, notRequired: 1, required: 2, installed: 3 } as const;

const ROWS_PER_STATEMENT = 500;
const num = (v: unknown): number => Number(v ?? 0);

// ---------------------------------------------------------------- update groups and deployments

export interface UpdateGroupRow {
  readonly AuthListID: number;
  readonly Name: string;
  readonly CreatedTime: string;
  readonly LastModified: string;
}

export async function findUpdateGroup(db: Db, name: string): Promise<UpdateGroupRow | undefined> {
  const r = await db.selectFrom('CI_AuthList').selectAll().where('Name', '=', name).executeTakeFirst();
  return r && { ...r, AuthListID: Number(r.AuthListID) };
}

/** Inserts a group; undefined when the name is taken. */
export async function insertUpdateGroup(db: Db, name: string): Promise<UpdateGroupRow | undefined> {
  const now = nowIso();
  const res = await db.insertInto('CI_AuthList').values({ Name: name, CreatedTime: now, LastModified: now }).onConflict((oc) => oc.column('Name').doNothing()).executeTakeFirst();
  if (!Number(res.numInsertedOrUpdatedRows ?? 0)) return undefined;
  return findUpdateGroup(db, name);
}

/** Adds updates to a group; returns how many were not members yet. */
export async function addUpdateGroupMembers(db: Db, authListId: number, updateIds: readonly string[]): Promise<number> {
  const now = nowIso();
  let added = 0;
  for (let i = 0; i < updateIds.length; i += ROWS_PER_STATEMENT) {
    const res = await db
      .insertInto('CI_AuthListMembers')
      .values(updateIds.slice(i, i + ROWS_PER_STATEMENT).map((CI_UniqueID) => ({ AuthListID: authListId, CI_UniqueID, AddedTime: now })))
      .onConflict((oc) => oc.columns(['AuthListID', 'CI_UniqueID']).doNothing())
      .executeTakeFirst();
    added += Number(res.numInsertedOrUpdatedRows ?? 0);
  }
  if (added) await db.updateTable('CI_AuthList').set({ LastModified: now }).where('AuthListID', '=', authListId).execute();
  return added;
}

/** Which of `ids` are updates in the site's catalog. */
export async function existingUpdateIds(db: Db, ids: readonly string[]): Promise<Set<string>> {
  const out = new Set<string>();
  for (let i = 0; i < ids.length; i += ROWS_PER_STATEMENT) {
    const rows = await db.selectFrom('CI_ConfigurationItems').select('CI_UniqueID').where('CI_UniqueID', 'in', ids.slice(i, i + ROWS_PER_STATEMENT)).execute();
    for (const r of rows) out.add(r.CI_UniqueID);
  }
  return out;
}

export async function groupMembers(db: Db, authListId: number): Promise<string[]> {
  const rows = await db.selectFrom('CI_AuthListMembers').select('CI_UniqueID').where('AuthListID', '=', authListId).orderBy('CI_UniqueID').execute();
  return rows.map((r) => r.CI_UniqueID);
}

export async function listUpdateGroups(db: Db): Promise<UpdateGroupRow[]> {
  const rows = await db.selectFrom('CI_AuthList').selectAll().orderBy('Name').execute();
  return rows.map((r) => ({ ...r, AuthListID: Number(r.AuthListID) }));
}

export interface UpdateDeploymentRow {
  readonly AssignmentID: number;
  readonly DeploymentID: string;
  readonly AuthListID: number;
  readonly CollectionID: string;
  readonly CreatedTime: string;
}

const deploymentRow = (r: { AssignmentID: number | string; DeploymentID: string; AuthListID: number | string; CollectionID: string; CreatedTime: string }): UpdateDeploymentRow => ({ ...r, AssignmentID: Number(r.AssignmentID), AuthListID: Number(r.AuthListID) });

/** Deploys a group to a collection; the existing deployment when there is one. */
export async function insertUpdateDeployment(db: Db, d: { DeploymentID: string; AuthListID: number; CollectionID: string }): Promise<{ row: UpdateDeploymentRow; created: boolean }> {
  const res = await db
    .insertInto('CI_UpdateDeployments')
    .values({ ...d, CreatedTime: nowIso() })
    .onConflict((oc) => oc.columns(['AuthListID', 'CollectionID']).doNothing())
    .executeTakeFirst();
  const row = await db.selectFrom('CI_UpdateDeployments').selectAll().where('AuthListID', '=', d.AuthListID).where('CollectionID', '=', d.CollectionID).executeTakeFirstOrThrow();
  return { row: deploymentRow(row), created: Number(res.numInsertedOrUpdatedRows ?? 0) > 0 };
}

export async function listUpdateDeployments(db: Db): Promise<UpdateDeploymentRow[]> {
  return (await db.selectFrom('CI_UpdateDeployments').selectAll().orderBy('AssignmentID').execute()).map(deploymentRow);
}

/** A deployment by its number (`AssignmentID`) or `{guid}`. */
export async function findUpdateDeployment(db: Db, id: string): Promise<UpdateDeploymentRow | undefined> {
  const q = db.selectFrom('CI_UpdateDeployments').selectAll();
  const r = /^\d{1,15}$/.test(id) ? await q.where('AssignmentID', '=', Number(id)).executeTakeFirst() : await q.where('DeploymentID', '=', id).executeTakeFirst();
  return r && deploymentRow(r);
}

// ---------------------------------------------------------------- summarisation

/** The number of clients in the site (see the file comment). */
export async function countSiteClients(db: Db): Promise<number> {
  const population = db
    .selectFrom('ClientRegistration')
    .select('ClientID')
    .where('ApprovalStatus', '=', 'approved')
    .union(db.selectFrom('Update_ComplianceStatus').select('ClientID'));
  const r = await db.selectFrom(population.as('p')).select(sql<number>`count(*)`.as('n')).executeTakeFirstOrThrow();
  return num(r.n);
}

export interface UpdateCounts {
  readonly required: number;
  readonly installed: number;
  readonly notRequired: number;
  /** Explicit state 0 only; the summary adds the clients without a state. */
  readonly unknownState: number;
}

/** Counts per update over `Update_ComplianceStatus`: one aggregate, one pass. */
export async function countStatesPerUpdate(db: Db): Promise<Map<string, UpdateCounts>> {
  const rows = await db
    .selectFrom('Update_ComplianceStatus')
    .select([
      'CI_UniqueID',
      sql<number>`sum(case when "Status" = 2 then 1 else 0 end)`.as('req'),
      sql<number>`sum(case when "Status" = 3 then 1 else 0 end)`.as('inst'),
      sql<number>`sum(case when "Status" = 1 then 1 else 0 end)`.as('notreq'),
      sql<number>`sum(case when "Status" = 0 then 1 else 0 end)`.as('unk'),
    ])
    .groupBy('CI_UniqueID')
    .execute();
  return new Map(rows.map((r) => [r.CI_UniqueID, { required: num(r.req), installed: num(r.inst), notRequired: num(r.notreq), unknownState: num(r.unk) }]));
}

export interface UpdateSummary {
  readonly updateId: string;
  readonly required: number;
  readonly installed: number;
  readonly notRequired: number;
  readonly unknown: number;
  readonly total: number;
}

/** Pure: the summary rows from the counts, the catalog's updates and the number of clients. */
export function updateSummaries(counts: ReadonlyMap<string, UpdateCounts>, catalog: Iterable<string>, clients: number): UpdateSummary[] {
  const ids = new Set(catalog);
  for (const id of counts.keys()) ids.add(id);
  return [...ids].sort().map((updateId) => {
    const c = counts.get(updateId) ?? { required: 0, installed: 0, notRequired: 0, unknownState: 0 };
    const known = c.required + c.installed + c.notRequired;
    return { updateId, required: c.required, installed: c.installed, notRequired: c.notRequired, unknown: Math.max(0, clients - known), total: Math.max(clients, known) };
  });
}

/** Update status summarizer: rewrites `Update_ComplianceSummary`; returns the rows written. */
export async function summarizeUpdateStatus(trx: Db, now: string): Promise<number> {
  const [counts, clients, catalog] = await Promise.all([countStatesPerUpdate(trx), countSiteClients(trx), trx.selectFrom('CI_ConfigurationItems').select('CI_UniqueID').where('IsExpired', '=', 0).execute()]);
  const rows = updateSummaries(
    counts,
    catalog.map((r) => r.CI_UniqueID),
    clients,
  ).map((s) => ({ CI_UniqueID: s.updateId, NumRequired: s.required, NumInstalled: s.installed, NumNotRequired: s.notRequired, NumUnknown: s.unknown, NumTotal: s.total, SummaryTime: now }));
  await trx.deleteFrom('Update_ComplianceSummary').execute();
  for (let i = 0; i < rows.length; i += ROWS_PER_STATEMENT) await trx.insertInto('Update_ComplianceSummary').values(rows.slice(i, i + ROWS_PER_STATEMENT)).execute();
  return rows.length;
}

export interface ComplianceCounts {
  readonly compliant: number;
  readonly nonCompliant: number;
  readonly unknown: number;
  readonly total: number;
}

/**
 * Pure: the compliance counts of a population of `total` clients, from the
 * clients with at least one state grouped as (required member updates, known
 * member updates, how many clients); `members` is the number of updates.
 */
export function complianceCounts(groups: readonly { required: number; known: number; clients: number }[], members: number, total: number): ComplianceCounts {
  if (members === 0) return { compliant: total, nonCompliant: 0, unknown: 0, total };
  let compliant = 0;
  let nonCompliant = 0;
  for (const g of groups) {
    if (g.required > 0) nonCompliant += g.clients;
    else if (g.known >= members) compliant += g.clients;
  }
  return { compliant, nonCompliant, unknown: Math.max(0, total - compliant - nonCompliant), total: Math.max(total, compliant + nonCompliant) };
}

/**
 * Per key (group or deployment) the clients' compliance, aggregated in SQL:
 * `perClient` is `(key, client, required, known)` rows grouped by key and client.
 */
async function aggregateCompliance(db: Db, perClient: ReturnType<typeof sql>): Promise<Map<number, { required: number; known: number; clients: number }[]>> {
  // Clients counted per (key, any required, known states): a few rows per key, whatever the number of clients.
  const rows = (
    await sql<{ k: number | string; req: number | string; known: number | string; n: number | string }>`
      select "k", case when "req" > 0 then 1 else 0 end as "req", case when "req" > 0 then 0 else "known" end as "known", count(*) as "n"
      from (${perClient}) as "pc"
      group by "k", case when "req" > 0 then 1 else 0 end, case when "req" > 0 then 0 else "known" end`.execute(db)
  ).rows;
  const out = new Map<number, { required: number; known: number; clients: number }[]>();
  for (const r of rows) {
    const k = Number(r.k);
    let e = out.get(k);
    if (!e) out.set(k, (e = []));
    e.push({ required: num(r.req), known: num(r.known), clients: num(r.n) });
  }
  return out;
}

const finish = (groups: readonly { required: number; known: number; clients: number }[] | undefined, members: number, total: number): ComplianceCounts => complianceCounts(groups ?? [], members, total);

const memberCounts = async (db: Db): Promise<Map<number, number>> =>
  new Map((await db.selectFrom('CI_AuthListMembers').select(['AuthListID', sql<number>`count(*)`.as('n')]).groupBy('AuthListID').execute()).map((r) => [Number(r.AuthListID), num(r.n)]));

/** Update group status summarizer: rewrites `CI_AuthListSummary`; returns the rows written. */
export async function summarizeUpdateGroups(trx: Db, now: string): Promise<number> {
  const [groups, members, clients] = await Promise.all([listUpdateGroups(trx), memberCounts(trx), countSiteClients(trx)]);
  const agg = await aggregateCompliance(
    trx,
    sql`select m."AuthListID" as "k", s."ClientID" as "c",
               sum(case when s."Status" = 2 then 1 else 0 end) as "req",
               sum(case when s."Status" in (1, 3) then 1 else 0 end) as "known"
        from "CI_AuthListMembers" m join "Update_ComplianceStatus" s on s."CI_UniqueID" = m."CI_UniqueID"
        group by m."AuthListID", s."ClientID"`,
  );
  const rows = groups.map((g) => {
    const c = finish(agg.get(g.AuthListID), members.get(g.AuthListID) ?? 0, clients);
    return { AuthListID: g.AuthListID, NumCompliant: c.compliant, NumNonCompliant: c.nonCompliant, NumUnknown: c.unknown, NumTotal: c.total, SummaryTime: now };
  });
  await trx.deleteFrom('CI_AuthListSummary').execute();
  for (let i = 0; i < rows.length; i += ROWS_PER_STATEMENT) await trx.insertInto('CI_AuthListSummary').values(rows.slice(i, i + ROWS_PER_STATEMENT)).execute();
  return rows.length;
}

/** Assignment compliance evaluator: (re)writes `Deployment_ComplianceSummary`, for one deployment or all; returns the rows written. */
export async function evaluateAssignments(trx: Db, now: string, assignmentId?: number): Promise<number> {
  let deployments = await listUpdateDeployments(trx);
  if (assignmentId !== undefined) deployments = deployments.filter((d) => d.AssignmentID === assignmentId);
  if (!deployments.length) return 0;
  const only = assignmentId === undefined ? sql`` : sql`where d."AssignmentID" = ${assignmentId}`;
  const [members, totals] = await Promise.all([
    memberCounts(trx),
    sql<{ k: number | string; n: number | string }>`
      select d."AssignmentID" as "k", count(cm."ResourceID") as "n"
      from "CI_UpdateDeployments" d left join "CollectionMembers" cm on cm."CollectionID" = d."CollectionID" ${only}
      group by d."AssignmentID"`.execute(trx),
  ]);
  const total = new Map(totals.rows.map((r) => [Number(r.k), num(r.n)]));
  const agg = await aggregateCompliance(
    trx,
    sql`select d."AssignmentID" as "k", r."ClientID" as "c",
               sum(case when s."Status" = 2 then 1 else 0 end) as "req",
               sum(case when s."Status" in (1, 3) then 1 else 0 end) as "known"
        from "CI_UpdateDeployments" d
        join "CollectionMembers" cm on cm."CollectionID" = d."CollectionID"
        join "ClientRegistration" r on r."ResourceID" = cm."ResourceID"
        join "CI_AuthListMembers" m on m."AuthListID" = d."AuthListID"
        join "Update_ComplianceStatus" s on s."ClientID" = r."ClientID" and s."CI_UniqueID" = m."CI_UniqueID"
        ${only}
        group by d."AssignmentID", r."ClientID"`,
  );
  const rows = deployments.map((d) => {
    const c = finish(agg.get(d.AssignmentID), members.get(d.AuthListID) ?? 0, total.get(d.AssignmentID) ?? 0);
    return { AssignmentID: d.AssignmentID, NumCompliant: c.compliant, NumNonCompliant: c.nonCompliant, NumUnknown: c.unknown, NumTotal: c.total, SummaryTime: now };
  });
  if (assignmentId === undefined) await trx.deleteFrom('Deployment_ComplianceSummary').execute();
  else await trx.deleteFrom('Deployment_ComplianceSummary').where('AssignmentID', '=', assignmentId).execute();
  for (let i = 0; i < rows.length; i += ROWS_PER_STATEMENT) await trx.insertInto('Deployment_ComplianceSummary').values(rows.slice(i, i + ROWS_PER_STATEMENT)).execute();
  return rows.length;
}

/**
 * Migrate update status: brings `Update_ComplianceStatus` level with the
 * latest topic 500 states in `StateMsg` (states stored before migration 0007,
 * or rows an operator removed), by the same latest-wins rule. Returns the rows
 * inserted or moved forward; 0 when the two already agree.
 */
export async function migrateUpdateStatus(trx: Db): Promise<number> {
  const r = await sql`
    insert into "Update_ComplianceStatus" ("ClientID", "CI_UniqueID", "Status", "SerialNumber", "MessageTime", "LastStatusTime")
    select "ClientID", "TopicID", "StateID", "SerialNumber", "MessageTime", "ReceivedTime" from "StateMsg"
    where "TopicType" = 500 and "StateID" between 0 and 3
    on conflict ("ClientID", "CI_UniqueID") do update set
      "Status" = excluded."Status", "SerialNumber" = excluded."SerialNumber", "MessageTime" = excluded."MessageTime", "LastStatusTime" = excluded."LastStatusTime"
    where excluded."SerialNumber" > "Update_ComplianceStatus"."SerialNumber" and excluded."MessageTime" >= "Update_ComplianceStatus"."MessageTime"`.execute(trx);
  return num(r.numAffectedRows);
}

/**
 * Delete aged status: removes update state (topic types 500 and 501) whose
 * message time is older than `cutoff` from the compliance table, the latest
 * states and the history. Returns the rows deleted.
 */
export async function deleteAgedStatus(trx: Db, cutoff: string): Promise<number> {
  const a = await trx.deleteFrom('Update_ComplianceStatus').where('MessageTime', '<', cutoff).executeTakeFirst();
  const b = await trx.deleteFrom('StateMsg').where('TopicType', 'in', [500, 501]).where('MessageTime', '<', cutoff).executeTakeFirst();
  const c = await trx.deleteFrom('StateMsgHistory').where('TopicType', 'in', [500, 501]).where('MessageTime', '<', cutoff).executeTakeFirst();
  return num(a.numDeletedRows) + num(b.numDeletedRows) + num(c.numDeletedRows);
}

// ---------------------------------------------------------------- reading summaries

export async function readUpdateSummaries(db: Db, updateId?: string): Promise<(UpdateSummary & { summaryTime: string; title: string | null })[]> {
  let q = db
    .selectFrom('Update_ComplianceSummary as s')
    .leftJoin('CI_ConfigurationItems as ci', 'ci.CI_UniqueID', 's.CI_UniqueID')
    .select(['s.CI_UniqueID', 's.NumRequired', 's.NumInstalled', 's.NumNotRequired', 's.NumUnknown', 's.NumTotal', 's.SummaryTime', 'ci.Title']);
  if (updateId) q = q.where('s.CI_UniqueID', '=', updateId);
  const rows = await q.orderBy('s.CI_UniqueID').execute();
  return rows.map((r) => ({ updateId: r.CI_UniqueID, title: r.Title, required: num(r.NumRequired), installed: num(r.NumInstalled), notRequired: num(r.NumNotRequired), unknown: num(r.NumUnknown), total: num(r.NumTotal), summaryTime: r.SummaryTime }));
}

export async function readGroupSummary(db: Db, authListId: number): Promise<(ComplianceCounts & { summaryTime: string }) | undefined> {
  const r = await db.selectFrom('CI_AuthListSummary').selectAll().where('AuthListID', '=', authListId).executeTakeFirst();
  return r && { compliant: num(r.NumCompliant), nonCompliant: num(r.NumNonCompliant), unknown: num(r.NumUnknown), total: num(r.NumTotal), summaryTime: r.SummaryTime };
}

export async function readDeploymentSummary(db: Db, assignmentId: number): Promise<(ComplianceCounts & { summaryTime: string }) | undefined> {
  const r = await db.selectFrom('Deployment_ComplianceSummary').selectAll().where('AssignmentID', '=', assignmentId).executeTakeFirst();
  return r && { compliant: num(r.NumCompliant), nonCompliant: num(r.NumNonCompliant), unknown: num(r.NumUnknown), total: num(r.NumTotal), summaryTime: r.SummaryTime };
}

// ---------------------------------------------------------------- the task table

export interface SummaryTaskRow {
  readonly TaskName: string;
  readonly ScheduleSeconds: number;
  readonly LastRunStart: string;
  readonly LastRunEnd: string;
  readonly LastRunResult: string;
  readonly LastRunError: string;
  readonly LastRowsTouched: number;
  readonly LastDurationMs: number;
  readonly LastTrigger: string;
}

export async function listSummaryTasks(db: Db): Promise<SummaryTaskRow[]> {
  const rows = await db.selectFrom('SR_SummaryTasks').selectAll().execute();
  const order = (n: string) => SUMMARY_TASKS.indexOf(n as SummaryTaskName);
  return rows.map((r) => ({ ...r, ScheduleSeconds: num(r.ScheduleSeconds), LastRowsTouched: num(r.LastRowsTouched), LastDurationMs: num(r.LastDurationMs) })).sort((a, b) => order(a.TaskName) - order(b.TaskName));
}

export async function recordTaskRun(db: Db, name: SummaryTaskName, run: { scheduleSeconds: number; start: string; end: string; result: 'success' | 'failed'; error: string; rows: number; durationMs: number; trigger: string }): Promise<void> {
  await db
    .updateTable('SR_SummaryTasks')
    .set({ ScheduleSeconds: run.scheduleSeconds, LastRunStart: run.start, LastRunEnd: run.end, LastRunResult: run.result, LastRunError: run.error, LastRowsTouched: run.rows, LastDurationMs: run.durationMs, LastTrigger: run.trigger })
    .where('TaskName', '=', name)
    .execute();
}
