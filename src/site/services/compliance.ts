/**
 * The compliance service (issue 6, parts 5 and 6): update groups, their
 * deployments to collections, the summarised compliance, and the summary
 * tasks, for the admin API. Validates input; the SQL is in
 * src/datastore/compliance.ts, the tasks in the summarizer component.
 *
 * A deployment here makes compliance of the group over the collection
 * measurable (the assignment compliance evaluator); it sends no policy to
 * clients yet (installing updates is not part of issue 6).
 */
import { randomUUID } from 'node:crypto';
import { CairnError } from '../../shared/errors.ts';
import {
  addUpdateGroupMembers,
  existingUpdateIds,
  findUpdateDeployment,
  findUpdateGroup,
  groupMembers,
  insertUpdateDeployment,
  insertUpdateGroup,
  listSummaryTasks,
  listUpdateDeployments,
  listUpdateGroups,
  clientUpdateStates,
  hasReportedUpdateState,
  readDeploymentSummary,
  readGroupSummary,
  readUpdateSummaries,
  updateClientsByState,
} from '../../datastore/compliance.ts';
import type { ClientStateCounts, ClientUpdateState, ComplianceCounts, UpdateClientList, UpdateDeploymentRow, UpdateGroupRow, UpdateSummary } from '../../datastore/compliance.ts';
import { findClientsByIdOrName } from '../../datastore/clients.ts';
import { readSettings } from '../../datastore/site-control.ts';
import type { SiteContext } from '../site-context.ts';
import { requireCollection } from './collections.ts';
import { resolveTask, TASK_DEFS } from '../components/summarizer/summarizer.ts';
import type { Scope, Summarizer, TaskRunResult } from '../components/summarizer/summarizer.ts';
import type { SummaryTaskName } from '../../datastore/compliance.ts';

const UPDATE_ID = /^[0-9A-Za-z][0-9A-Za-z._:+~-]{0,127}$/;
const MAX_UPDATES_PER_CALL = 1000;
/** Per-client lists in `compliance --update` and `--client`: the default and the most one call may ask for. */
export const DEFAULT_DETAIL_LIMIT = 100;
export const MAX_DETAIL_LIMIT = 10_000;

export interface SummaryCounts extends ComplianceCounts {
  readonly summaryTime: string;
}

export interface UpdateDeploymentView {
  readonly assignmentId: number;
  readonly deploymentId: string;
  readonly group: string;
  readonly collectionId: string;
  readonly collectionName: string;
  readonly createdTime: string;
  /** Null until the assignment compliance evaluator has run since it was created. */
  readonly summary: SummaryCounts | null;
}

export interface UpdateGroupView {
  readonly name: string;
  readonly id: number;
  readonly updates: string[];
  readonly deployments: { assignmentId: number; deploymentId: string; collectionId: string }[];
  readonly createdTime: string;
  readonly lastModified: string;
  /** Null until the update group status summarizer has run since it was created. */
  readonly summary: SummaryCounts | null;
}

export async function requireUpdateGroup(ctx: SiteContext, name: string): Promise<UpdateGroupRow> {
  const g = await findUpdateGroup(ctx.db, name);
  if (!g) throw new CairnError('CAIRN_UPDATE_GROUP_NOT_FOUND', `no update group is named '${name.slice(0, 80)}'; \`cairn admin update-group list\` shows them`);
  return g;
}

async function groupView(ctx: SiteContext, g: UpdateGroupRow, deployments?: readonly UpdateDeploymentRow[]): Promise<UpdateGroupView> {
  const deps = (deployments ?? (await listUpdateDeployments(ctx.db))).filter((d) => d.AuthListID === g.AuthListID);
  return {
    name: g.Name,
    id: g.AuthListID,
    updates: await groupMembers(ctx.db, g.AuthListID),
    deployments: deps.map((d) => ({ assignmentId: d.AssignmentID, deploymentId: d.DeploymentID, collectionId: d.CollectionID })),
    createdTime: g.CreatedTime,
    lastModified: g.LastModified,
    summary: (await readGroupSummary(ctx.db, g.AuthListID)) ?? null,
  };
}

export async function createUpdateGroup(ctx: SiteContext, name: string): Promise<UpdateGroupView> {
  const trimmed = name.trim();
  if (!trimmed || trimmed.length > 256) throw new CairnError('CAIRN_REQUEST_INVALID', 'an update group name is 1 to 256 characters');
  const g = await insertUpdateGroup(ctx.db, trimmed);
  if (!g) throw new CairnError('CAIRN_UPDATE_GROUP_EXISTS', `an update group named '${trimmed.slice(0, 80)}' already exists`);
  return groupView(ctx, g, []);
}

export async function addUpdatesToGroup(ctx: SiteContext, name: string, updateIds: unknown): Promise<{ group: UpdateGroupView; added: number }> {
  if (!Array.isArray(updateIds) || !updateIds.length || updateIds.length > MAX_UPDATES_PER_CALL || !updateIds.every((u) => typeof u === 'string' && UPDATE_ID.test(u))) {
    throw new CairnError('CAIRN_REQUEST_INVALID', `updates must be a list of 1 to ${MAX_UPDATES_PER_CALL} update IDs (as \`cairn admin update list\` shows them)`);
  }
  const ids = [...new Set(updateIds as string[])];
  const g = await requireUpdateGroup(ctx, name);
  const known = await existingUpdateIds(ctx.db, ids);
  const missing = ids.filter((u) => !known.has(u));
  if (missing.length) throw new CairnError('CAIRN_UPDATE_NOT_FOUND', `not in the site's catalog: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? `, and ${missing.length - 5} more` : ''}`);
  const added = await addUpdateGroupMembers(ctx.db, g.AuthListID, ids);
  return { group: await groupView(ctx, (await findUpdateGroup(ctx.db, g.Name))!), added };
}

async function deploymentView(ctx: SiteContext, d: UpdateDeploymentRow, groups?: ReadonlyMap<number, string>): Promise<UpdateDeploymentView> {
  const col = await requireCollection(ctx, d.CollectionID);
  const group = groups?.get(d.AuthListID) ?? (await listUpdateGroups(ctx.db)).find((g) => g.AuthListID === d.AuthListID)?.Name ?? '';
  return { assignmentId: d.AssignmentID, deploymentId: d.DeploymentID, group, collectionId: d.CollectionID, collectionName: col.Name, createdTime: d.CreatedTime, summary: (await readDeploymentSummary(ctx.db, d.AssignmentID)) ?? null };
}

export async function deployUpdateGroup(ctx: SiteContext, name: string, collection: string): Promise<{ deployment: UpdateDeploymentView; created: boolean }> {
  const g = await requireUpdateGroup(ctx, name);
  const col = await requireCollection(ctx, collection);
  const { row, created } = await insertUpdateDeployment(ctx.db, { DeploymentID: `{${randomUUID()}}`, AuthListID: g.AuthListID, CollectionID: col.CollectionID });
  return { deployment: await deploymentView(ctx, row, new Map([[g.AuthListID, g.Name]])), created };
}

export async function listUpdateGroupViews(ctx: SiteContext): Promise<UpdateGroupView[]> {
  const deployments = await listUpdateDeployments(ctx.db);
  const out: UpdateGroupView[] = [];
  for (const g of await listUpdateGroups(ctx.db)) out.push(await groupView(ctx, g, deployments));
  return out;
}

export async function requireUpdateDeployment(ctx: SiteContext, id: string): Promise<UpdateDeploymentRow> {
  const d = await findUpdateDeployment(ctx.db, id);
  if (!d) throw new CairnError('CAIRN_UPDATE_DEPLOYMENT_NOT_FOUND', `no update deployment has the ID '${id.slice(0, 80)}'; \`cairn admin update-group list\` shows them`);
  return d;
}

type UpdateSummaryView = UpdateSummary & { summaryTime: string; title: string | null };

/** The clients of one update per state, now (`compliance --update ID`). */
export interface UpdateClientsView {
  /** When these lists were read; the counts in `updates` are as of their summary time. */
  readonly asOf: string;
  readonly limit: number;
  readonly required: UpdateClientList;
  readonly installed: UpdateClientList;
  readonly notRequired: UpdateClientList;
  readonly unknown: UpdateClientList;
}

/** One client's update states, now (`compliance --client NAME`). */
export interface ClientComplianceView {
  readonly clientId: string;
  readonly name: string;
  /** `approved`, `pending` or `revoked`; null for a client that reports without being registered. */
  readonly registration: string | null;
  readonly asOf: string;
  readonly counts: ClientStateCounts;
  readonly limit: number;
  readonly truncated: boolean;
  readonly updates: ClientUpdateState[];
}

export type ComplianceView =
  | { readonly kind: 'updates'; readonly updates: UpdateSummaryView[]; readonly clients?: UpdateClientsView }
  | { readonly kind: 'group'; readonly group: UpdateGroupView; readonly updates: UpdateSummaryView[] }
  | { readonly kind: 'deployment'; readonly deployment: UpdateDeploymentView }
  | { readonly kind: 'client'; readonly client: ClientComplianceView };

function parseLimit(v: string | undefined): number {
  if (v === undefined) return DEFAULT_DETAIL_LIMIT;
  const n = /^\d{1,6}$/.test(v) ? Number(v) : NaN;
  if (!(n >= 1 && n <= MAX_DETAIL_LIMIT)) throw new CairnError('CAIRN_REQUEST_INVALID', `limit must be a whole number from 1 to ${MAX_DETAIL_LIMIT}`);
  return n;
}

/**
 * A client by client ID or name among the registered clients; a client that
 * reports without registering is found by its client ID only (a name search
 * over every state message would read them all).
 */
async function requireComplianceClient(ctx: SiteContext, idOrName: string): Promise<{ clientId: string; name: string; registration: string | null }> {
  if (!idOrName.trim() || idOrName.length > 256) throw new CairnError('CAIRN_REQUEST_INVALID', 'client must be a client name or client ID');
  const rows = await findClientsByIdOrName(ctx.db, idOrName);
  if (rows.length > 1) throw new CairnError('CAIRN_CLIENT_AMBIGUOUS', `${idOrName.slice(0, 80)}: ${rows.map((r) => r.ClientID).join(', ')}`);
  if (rows[0]) return { clientId: rows[0].ClientID, name: rows[0].NetBIOSName, registration: rows[0].ApprovalStatus };
  const clientId = idOrName.trim().toUpperCase();
  const reported = await hasReportedUpdateState(ctx.db, clientId);
  if (reported) return { clientId, name: reported.name, registration: null };
  throw new CairnError('CAIRN_CLIENT_NOT_FOUND', `${idOrName.slice(0, 80)}: no registered client has this name or client ID, and no client reported update state under it`);
}

/**
 * The summarised compliance: every update, one update (with its clients per
 * state), one group (with its updates), one deployment, or one client's
 * update states.
 */
export async function complianceView(ctx: SiteContext, q: { update?: string | undefined; group?: string | undefined; deployment?: string | undefined; client?: string | undefined; limit?: string | undefined }): Promise<ComplianceView> {
  const given = [q.update, q.group, q.deployment, q.client].filter((v) => v !== undefined);
  if (given.length > 1) throw new CairnError('CAIRN_REQUEST_INVALID', 'give at most one of update, group, deployment and client');
  const limit = parseLimit(q.limit);
  if (q.limit !== undefined && q.update === undefined && q.client === undefined) throw new CairnError('CAIRN_REQUEST_INVALID', 'limit goes with update or client');
  if (q.deployment !== undefined) return { kind: 'deployment', deployment: await deploymentView(ctx, await requireUpdateDeployment(ctx, q.deployment)) };
  if (q.group !== undefined) {
    const group = await groupView(ctx, await requireUpdateGroup(ctx, q.group));
    const members = new Set(group.updates);
    return { kind: 'group', group, updates: (await readUpdateSummaries(ctx.db)).filter((u) => members.has(u.updateId)) };
  }
  if (q.client !== undefined) {
    const c = await requireComplianceClient(ctx, q.client);
    const asOf = new Date().toISOString();
    const { counts, updates } = await clientUpdateStates(ctx.db, c.clientId, limit);
    const withState = counts.required + counts.installed + counts.notRequired + counts.unknown;
    return { kind: 'client', client: { ...c, asOf, counts, limit, truncated: withState > updates.length, updates } };
  }
  if (q.update !== undefined) {
    if (!UPDATE_ID.test(q.update)) throw new CairnError('CAIRN_REQUEST_INVALID', 'update must be an update ID');
    const updates = await readUpdateSummaries(ctx.db, q.update);
    if (!updates.length && !(await existingUpdateIds(ctx.db, [q.update])).size) throw new CairnError('CAIRN_UPDATE_NOT_FOUND', `no update ${q.update} in the site's catalog or its summaries`);
    const asOf = new Date().toISOString();
    return { kind: 'updates', updates, clients: { asOf, limit, ...(await updateClientsByState(ctx.db, q.update, limit)) } };
  }
  return { kind: 'updates', updates: await readUpdateSummaries(ctx.db) };
}

export interface SummaryTaskView {
  readonly name: string;
  readonly shortName: string;
  readonly scheduleSeconds: number;
  readonly setting: string;
  readonly onDemand: boolean;
  readonly lastRunStart: string;
  readonly lastRunEnd: string;
  readonly lastRunResult: string;
  readonly lastRunError: string;
  readonly lastRowsTouched: number;
  readonly lastDurationMs: number;
  readonly lastTrigger: string;
}

export async function listSummaryTaskViews(ctx: SiteContext): Promise<SummaryTaskView[]> {
  const settings = await readSettings(ctx.db);
  return (await listSummaryTasks(ctx.db)).map((t) => {
    const def = TASK_DEFS[t.TaskName as SummaryTaskName];
    return {
      name: t.TaskName,
      shortName: def.aliases[0]!,
      scheduleSeconds: settings[def.setting],
      setting: def.setting,
      onDemand: def.onDemand,
      lastRunStart: t.LastRunStart,
      lastRunEnd: t.LastRunEnd,
      lastRunResult: t.LastRunResult,
      lastRunError: t.LastRunError,
      lastRowsTouched: t.LastRowsTouched,
      lastDurationMs: t.LastDurationMs,
      lastTrigger: t.LastTrigger,
    };
  });
}

/**
 * Runs summary tasks now and waits for them; a failed run is an error with
 * the task's reason. `deployment` runs the assignment compliance evaluator
 * for that deployment only, `group` the update group status summarizer for
 * that group only (spec 30, section 5: on demand per deployment, per update
 * group, all updates).
 */
export async function summarizeNow(ctx: SiteContext, summarizer: Summarizer, q: { task?: unknown; deployment?: unknown; group?: unknown }): Promise<{ runs: TaskRunResult[] }> {
  if (q.task !== undefined && (typeof q.task !== 'string' || !q.task)) throw new CairnError('CAIRN_REQUEST_INVALID', 'task must be a task name');
  if (q.deployment !== undefined && (typeof q.deployment !== 'string' || !q.deployment)) throw new CairnError('CAIRN_REQUEST_INVALID', 'deployment must be a deployment ID');
  if (q.group !== undefined && (typeof q.group !== 'string' || !q.group)) throw new CairnError('CAIRN_REQUEST_INVALID', 'group must be an update group name');
  if (q.deployment !== undefined && q.group !== undefined) throw new CairnError('CAIRN_REQUEST_INVALID', 'give deployment or group, not both');
  const tasks = q.task === undefined ? [] : [resolveTask(q.task as string)];
  let scope: Scope = {};
  if (q.deployment !== undefined) {
    scope = { assignmentId: (await requireUpdateDeployment(ctx, q.deployment as string)).AssignmentID };
    if (tasks.length && tasks[0] !== 'Assignment Compliance Evaluator') throw new CairnError('CAIRN_REQUEST_INVALID', 'deployment goes with the assignment compliance evaluator only');
    if (!tasks.length) tasks.push('Assignment Compliance Evaluator');
  }
  if (q.group !== undefined) {
    const g = await requireUpdateGroup(ctx, q.group as string);
    scope = { authListId: g.AuthListID, groupName: g.Name };
    if (tasks.length && tasks[0] !== 'Update Group Status Summarizer') throw new CairnError('CAIRN_REQUEST_INVALID', 'group goes with the update group status summarizer only');
    if (!tasks.length) tasks.push('Update Group Status Summarizer');
  }
  const runs = await summarizer.runOnDemand(tasks, scope);
  const failed = runs.find((r) => r.result === 'failed');
  if (failed) throw new CairnError('CAIRN_SUMMARY_TASK_FAILED', `${failed.task}: ${failed.error}`);
  return { runs };
}
