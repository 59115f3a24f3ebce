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

/**
 * The clients that report update state: one index probe per client on the
 * primary key's leading column (`ClientID`), instead of a pass over every
 * (client, update) row. The recursive form is the usual "loose index scan";
 * both engines run it as N lookups of the next ClientID.
 */
const reporters = sql`
  with recursive "r"("c") as (
    select min("ClientID") from "Update_ComplianceStatus"
    union all
    select (select min(s."ClientID") from "Update_ComplianceStatus" s where s."ClientID" > "r"."c") from "r" where "r"."c" is not null
  )
  select "c" as "ClientID" from "r" where "c" is not null`;

/** The number of clients in the site (see the file comment): approved registered clients and every client that reported a state. */
export async function countSiteClients(db: Db): Promise<number> {
  const r = await sql<{ n: number | string }>`
    select count(*) as "n" from (
      select "ClientID" from "ClientRegistration" where "ApprovalStatus" = 'approved'
      union
      select "ClientID" from (${reporters}) as "rep"
    ) as "p"`.execute(db);
  return num(r.rows[0]?.n);
}

export interface UpdateSummary {
  readonly updateId: string;
  readonly required: number;
  readonly installed: number;
  readonly notRequired: number;
  readonly unknown: number;
  readonly total: number;
}

/**
 * Update status summarizer: rewrites `Update_ComplianceSummary` (every
 * update in the catalog that is not expired, and any update that only has
 * states) and returns the rows written. The counts are one aggregate over
 * `Update_ComplianceStatus` grouped by update, a plain SELECT so PostgreSQL
 * can run it on parallel workers (it never does for an INSERT … SELECT, which
 * made that form 2.2–2.9× the aggregate, bench/summarize.ts); the summary
 * rows (one per update) then go back in multi-row INSERTs. Unknown is the
 * clients in scope minus those with a known state (1, 2 or 3), so a client
 * with no row or state 0 is unknown. Cost: the aggregate's one pass plus one
 * index probe per client.
 */
export async function summarizeUpdateStatus(trx: Db, now: string): Promise<number> {
  const clients = await countSiteClients(trx);
  const counts = await sql<{ CI_UniqueID: string; req: number | string; inst: number | string; notreq: number | string }>`
    select "CI_UniqueID",
           count(*) filter (where "Status" = 2) as "req",
           count(*) filter (where "Status" = 3) as "inst",
           count(*) filter (where "Status" = 1) as "notreq"
    from "Update_ComplianceStatus" group by "CI_UniqueID"`.execute(trx);
  const catalog = await trx.selectFrom('CI_ConfigurationItems').select('CI_UniqueID').where('IsExpired', '=', 0).execute();
  const byId = new Map<string, [number, number, number]>(catalog.map((c) => [c.CI_UniqueID, [0, 0, 0]]));
  for (const r of counts.rows) byId.set(r.CI_UniqueID, [num(r.req), num(r.inst), num(r.notreq)]);
  const rows = [...byId].map(([id, [req, inst, notreq]]) => {
    const known = req + inst + notreq;
    return { CI_UniqueID: id, NumRequired: req, NumInstalled: inst, NumNotRequired: notreq, NumUnknown: Math.max(0, clients - known), NumTotal: Math.max(clients, known), SummaryTime: now };
  });
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

/** Update group status summarizer: (re)writes `CI_AuthListSummary`, for one update group or all; returns the rows written. */
export async function summarizeUpdateGroups(trx: Db, now: string, authListId?: number): Promise<number> {
  let groups = await listUpdateGroups(trx);
  if (authListId !== undefined) groups = groups.filter((g) => g.AuthListID === authListId);
  if (!groups.length) return 0;
  const [members, clients] = await Promise.all([memberCounts(trx), countSiteClients(trx)]);
  const agg = await aggregateCompliance(
    trx,
    sql`select m."AuthListID" as "k", s."ClientID" as "c",
               sum(case when s."Status" = 2 then 1 else 0 end) as "req",
               sum(case when s."Status" in (1, 3) then 1 else 0 end) as "known"
        from "CI_AuthListMembers" m join "Update_ComplianceStatus" s on s."CI_UniqueID" = m."CI_UniqueID"
        ${authListId === undefined ? sql`` : sql`where m."AuthListID" = ${authListId}`}
        group by m."AuthListID", s."ClientID"`,
  );
  const rows = groups.map((g) => {
    const c = finish(agg.get(g.AuthListID), members.get(g.AuthListID) ?? 0, clients);
    return { AuthListID: g.AuthListID, NumCompliant: c.compliant, NumNonCompliant: c.nonCompliant, NumUnknown: c.unknown, NumTotal: c.total, SummaryTime: now };
  });
  if (authListId === undefined) await trx.deleteFrom('CI_AuthListSummary').execute();
  else await trx.deleteFrom('CI_AuthListSummary').where('AuthListID', '=', authListId).execute();
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
        -- CROSS JOIN keeps SQLite's loop order: per member client, per update of the group, one primary-key probe,
        -- instead of reading each member's every state (2-2.5x faster at 3,000 clients x 1,000 updates, a group of
        -- 100: docs/performance.md, "Summarisation"). PostgreSQL plans it as the inner join it is.
        cross join "CI_AuthListMembers" m
        cross join "Update_ComplianceStatus" s
        where m."AuthListID" = d."AuthListID" and s."ClientID" = r."ClientID" and s."CI_UniqueID" = m."CI_UniqueID"
          ${assignmentId === undefined ? sql`` : sql`and d."AssignmentID" = ${assignmentId}`}
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

// ---------------------------------------------------------------- per-client detail (live, not summarised)

/** A client's state for one update as the state system last stored it. */
export interface ClientUpdateState {
  readonly updateId: string;
  /** Null when the update is not in the catalog (any more). */
  readonly title: string | null;
  readonly articleId: string | null;
  /** The update's revision in the catalog. */
  readonly revision: number | null;
  readonly state: number;
  /** From `SR_StateNames` (topic type 500). */
  readonly stateName: string | null;
  readonly serialNumber: number;
  readonly messageTime: string;
  readonly receivedTime: string;
}

export interface ClientStateCounts {
  readonly required: number;
  readonly installed: number;
  readonly notRequired: number;
  /** Updates the client reported as state 0. */
  readonly unknown: number;
  /** Updates of the catalog (not expired) the client has reported nothing for: unknown too. */
  readonly noState: number;
}

/** Required first, then unknown, installed and not required: what an administrator acts on comes first. */
const STATE_ORDER = sql`case s."Status" when 2 then 0 when 0 then 1 when 3 then 2 else 3 end`;

/** One client's update states (at most `limit`, most urgent first) and its counts per state. */
export async function clientUpdateStates(db: Db, clientId: string, limit: number): Promise<{ counts: ClientStateCounts; updates: ClientUpdateState[] }> {
  const rows = await sql<{ CI_UniqueID: string; Title: string | null; ArticleID: string | null; RevisionNumber: number | string | null; Status: number | string; StateName: string | null; SerialNumber: number | string; MessageTime: string; LastStatusTime: string }>`
    select s."CI_UniqueID", ci."Title", ci."ArticleID", ci."RevisionNumber", s."Status", n."StateName", s."SerialNumber", s."MessageTime", s."LastStatusTime"
    from "Update_ComplianceStatus" s
    left join "CI_ConfigurationItems" ci on ci."CI_UniqueID" = s."CI_UniqueID"
    left join "SR_StateNames" n on n."TopicType" = 500 and n."StateID" = s."Status"
    where s."ClientID" = ${clientId}
    order by ${STATE_ORDER}, s."CI_UniqueID"
    limit ${limit}`.execute(db);
  const byState = await sql<{ Status: number | string; n: number | string }>`
    select s."Status", count(*) as "n" from "Update_ComplianceStatus" s where s."ClientID" = ${clientId} group by s."Status"`.execute(db);
  const silent = await sql<{ n: number | string }>`
    select count(*) as "n" from "CI_ConfigurationItems" ci
    where ci."IsExpired" = 0 and not exists (select 1 from "Update_ComplianceStatus" s where s."ClientID" = ${clientId} and s."CI_UniqueID" = ci."CI_UniqueID")`.execute(db);
  const of = (st: number) => num(byState.rows.find((r) => Number(r.Status) === st)?.n);
  return {
    counts: { required: of(2), installed: of(3), notRequired: of(1), unknown: of(0), noState: num(silent.rows[0]?.n) },
    updates: rows.rows.map((r) => ({
      updateId: r.CI_UniqueID,
      title: r.Title,
      articleId: r.ArticleID,
      revision: r.RevisionNumber === null ? null : Number(r.RevisionNumber),
      state: Number(r.Status),
      stateName: r.StateName,
      serialNumber: Number(r.SerialNumber),
      messageTime: r.MessageTime,
      receivedTime: r.LastStatusTime,
    })),
  };
}

/** Whether a client that is not registered has reported update state under this client ID. */
export async function hasReportedUpdateState(db: Db, clientId: string): Promise<{ name: string } | undefined> {
  const r = await db.selectFrom('StateMsg').select('NetBIOSName').where('ClientID', '=', clientId).where('TopicType', '=', 500).limit(1).executeTakeFirst();
  if (r) return { name: r.NetBIOSName };
  const s = await db.selectFrom('Update_ComplianceStatus').select('ClientID').where('ClientID', '=', clientId).limit(1).executeTakeFirst();
  return s && { name: '' };
}

/** One client in a per-state list of an update. */
export interface UpdateClientState {
  readonly clientId: string;
  /** The registered name, else the name of its last state message; empty when neither is known. */
  readonly name: string;
  readonly state: number;
  /** Null when the client has sent no state for this update (unknown by silence). */
  readonly messageTime: string | null;
}

export interface UpdateClientList {
  /** All clients in this state now. */
  readonly count: number;
  /** The first `limit` by client ID. */
  readonly clients: UpdateClientState[];
  readonly truncated: boolean;
}

const clientName = sql`coalesce(r."NetBIOSName", (select m."NetBIOSName" from "StateMsg" m where m."ClientID" = x."ClientID" and m."TopicType" = 500 limit 1), '')`;

/**
 * The clients of one update per state, as stored now (not as of the last
 * summary): required, installed and not required from their rows; unknown
 * the clients in scope (see the file comment) with state 0 or no row.
 */
export async function updateClientsByState(db: Db, updateId: string, limit: number): Promise<{ required: UpdateClientList; installed: UpdateClientList; notRequired: UpdateClientList; unknown: UpdateClientList }> {
  const byState = await sql<{ Status: number | string; n: number | string }>`
    select "Status", count(*) as "n" from "Update_ComplianceStatus" where "CI_UniqueID" = ${updateId} group by "Status"`.execute(db);
  const of = (st: number) => num(byState.rows.find((r) => Number(r.Status) === st)?.n);
  const known = async (state: number): Promise<UpdateClientList> => {
    const rows = await sql<{ ClientID: string; name: string; MessageTime: string }>`
      select x."ClientID", ${clientName} as "name", x."MessageTime"
      from (select "ClientID", "MessageTime" from "Update_ComplianceStatus" where "CI_UniqueID" = ${updateId} and "Status" = ${state} order by "ClientID" limit ${limit}) as x
      left join "ClientRegistration" r on r."ClientID" = x."ClientID"
      order by x."ClientID"`.execute(db);
    return { count: of(state), clients: rows.rows.map((r) => ({ clientId: r.ClientID, name: r.name, state, messageTime: r.MessageTime })), truncated: of(state) > rows.rows.length };
  };
  const population = sql`
    select "ClientID" from "ClientRegistration" where "ApprovalStatus" = 'approved'
    union
    select "ClientID" from (${reporters}) as "rep"`;
  const unknownWhere = sql`not exists (select 1 from "Update_ComplianceStatus" s where s."ClientID" = p."ClientID" and s."CI_UniqueID" = ${updateId} and s."Status" in (1, 2, 3))`;
  const unknownCount = await sql<{ n: number | string }>`select count(*) as "n" from (${population}) as p where ${unknownWhere}`.execute(db);
  const unknownRows = await sql<{ ClientID: string; name: string; MessageTime: string | null }>`
    select x."ClientID", ${clientName} as "name", s0."MessageTime"
    from (select p."ClientID" from (${population}) as p where ${unknownWhere} order by p."ClientID" limit ${limit}) as x
    left join "ClientRegistration" r on r."ClientID" = x."ClientID"
    left join "Update_ComplianceStatus" s0 on s0."ClientID" = x."ClientID" and s0."CI_UniqueID" = ${updateId}
    order by x."ClientID"`.execute(db);
  const unknownN = num(unknownCount.rows[0]?.n);
  return {
    required: await known(2),
    installed: await known(3),
    notRequired: await known(1),
    unknown: { count: unknownN, clients: unknownRows.rows.map((r) => ({ clientId: r.ClientID, name: r.name, state: 0, messageTime: r.MessageTime ?? null })), truncated: unknownN > unknownRows.rows.length },
  };
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
