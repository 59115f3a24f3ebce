/**
 * SQL for collections (`Collections`, `CollectionRules`, `CollectionMembers`)
 * and content deployments (`ContentDeployments`), migration 0005. The policy
 * provider evaluates membership; the admin API creates collections, rules
 * and deployments. This file only reads and writes rows.
 */
import { nextSiteObjectId } from './packages.ts';
import type { Kysely, Transaction } from 'kysely';
import type { CollectionRow, CollectionRuleRow, ContentDeploymentRow, Database } from './schema.ts';
import { nowIso } from './time.ts';

type Db = Kysely<Database> | Transaction<Database>;

/** "All Clients", as in the product. */
export const ALL_CLIENTS_COLLECTION = 'SMS00001';

export const COLLECTION_RULE_TYPES = ['direct', 'iprange', 'subnet', 'name'] as const;
export type CollectionRuleType = (typeof COLLECTION_RULE_TYPES)[number];

/** Next collection ID: site code + 5 hex digits, its own sequence (like package IDs). */
export function nextCollectionId(trx: Db, siteCode: string): Promise<string> {
  return nextSiteObjectId(trx, 'CollectionID', siteCode);
}

export async function insertCollection(db: Db, c: { CollectionID: string; Name: string; Comment?: string }): Promise<CollectionRow> {
  const now = nowIso();
  return db
    .insertInto('Collections')
    .values({ CollectionID: c.CollectionID, Name: c.Name, Comment: c.Comment ?? '', CreatedTime: now, LastChangeTime: now })
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** By name (case-insensitive) or by ID. */
export async function findCollection(db: Db, nameOrId: string): Promise<CollectionRow | undefined> {
  return db
    .selectFrom('Collections')
    .selectAll()
    .where((eb) => eb.or([eb('CollectionID', '=', nameOrId.toUpperCase()), eb(eb.fn('lower', ['Name']), '=', nameOrId.toLowerCase())]))
    .executeTakeFirst();
}

export async function listCollections(db: Db): Promise<CollectionRow[]> {
  return db.selectFrom('Collections').selectAll().orderBy('CollectionID').execute();
}

/** Adds a rule; adding the same rule twice is harmless. Returns true when it is new. */
export async function addCollectionRule(db: Db, collectionId: string, type: CollectionRuleType, value: string): Promise<boolean> {
  const r = await db
    .insertInto('CollectionRules')
    .values({ CollectionID: collectionId, RuleType: type, Value: value, CreatedTime: nowIso() })
    .onConflict((oc) => oc.columns(['CollectionID', 'RuleType', 'Value']).doNothing())
    .executeTakeFirst();
  await db.updateTable('Collections').set({ LastChangeTime: nowIso() }).where('CollectionID', '=', collectionId).execute();
  return Number(r.numInsertedOrUpdatedRows ?? 0) > 0;
}

export async function listCollectionRules(db: Db, collectionId?: string): Promise<CollectionRuleRow[]> {
  let q = db.selectFrom('CollectionRules').selectAll();
  if (collectionId) q = q.where('CollectionID', '=', collectionId);
  return q.orderBy('CollectionID').orderBy('RuleID').execute();
}

export async function readCollectionMembers(db: Db): Promise<Map<string, Set<number>>> {
  const out = new Map<string, Set<number>>();
  for (const r of await db.selectFrom('CollectionMembers').select(['CollectionID', 'ResourceID']).execute()) {
    let set = out.get(r.CollectionID);
    if (!set) out.set(r.CollectionID, (set = new Set()));
    set.add(Number(r.ResourceID));
  }
  return out;
}

/** Makes a collection's stored members exactly `members`; returns how many rows changed. */
export async function replaceCollectionMembers(db: Db, collectionId: string, before: ReadonlySet<number>, members: ReadonlySet<number>): Promise<number> {
  const add = [...members].filter((m) => !before.has(m));
  const remove = [...before].filter((m) => !members.has(m));
  if (remove.length) await db.deleteFrom('CollectionMembers').where('CollectionID', '=', collectionId).where('ResourceID', 'in', remove).execute();
  for (let i = 0; i < add.length; i += 300) {
    await db
      .insertInto('CollectionMembers')
      .values(add.slice(i, i + 300).map((ResourceID) => ({ CollectionID: collectionId, ResourceID })))
      .onConflict((oc) => oc.columns(['CollectionID', 'ResourceID']).doNothing())
      .execute();
  }
  await db.updateTable('Collections').set({ MemberCount: members.size, LastEvaluatedTime: nowIso() }).where('CollectionID', '=', collectionId).execute();
  return add.length + remove.length;
}

export async function insertDeployment(db: Db, d: { DeploymentID: string; PkgID: string; CollectionID: string; PolicyID: string; PolicyAssignmentID: string }): Promise<ContentDeploymentRow> {
  await db
    .insertInto('ContentDeployments')
    .values({ ...d, PADBID: null, CreatedTime: nowIso() })
    .onConflict((oc) => oc.columns(['PkgID', 'CollectionID']).doNothing())
    .execute();
  return db.selectFrom('ContentDeployments').selectAll().where('PkgID', '=', d.PkgID).where('CollectionID', '=', d.CollectionID).executeTakeFirstOrThrow();
}

export async function listDeployments(db: Db): Promise<ContentDeploymentRow[]> {
  return db.selectFrom('ContentDeployments').selectAll().orderBy('CreatedTime').orderBy('DeploymentID').execute();
}

export async function recordDeploymentPolicy(db: Db, deploymentId: string, padbid: number, sourceCrc: string): Promise<void> {
  await db.updateTable('ContentDeployments').set({ PADBID: padbid, SourceCRC: sourceCrc }).where('DeploymentID', '=', deploymentId).execute();
}
