/**
 * SQL for policies (`Policy`), policy assignments (`PolicyAssignment`), the
 * site-wide policies (`SettingsPolicy`) and the resource to policy mapping
 * (`ResPolicyMap`), migration 0005. The policy provider decides what to
 * build and signs; the MP reads. This file only reads and writes rows.
 */
import type { Kysely, Transaction } from 'kysely';
import type { Database, PolicyRow } from './schema.ts';
import { nowIso } from './time.ts';

type Db = Kysely<Database> | Transaction<Database>;

/** Policy versions are `N.00` and rise by 1.00 (ADR 0005). */
export function nextPolicyVersion(version: string | undefined): string {
  if (!version) return '1.00';
  const n = Math.floor(Number(version));
  return `${Number.isFinite(n) ? n + 1 : 1}.00`;
}

export interface PolicyWrite {
  readonly policyId: string;
  readonly version: string;
  readonly category: string;
  readonly body: string;
  readonly hash: string;
  readonly signature: string;
  readonly crc: string;
}

export async function getPolicy(db: Db, policyId: string): Promise<PolicyRow | undefined> {
  return db.selectFrom('Policy').selectAll().where('PolicyID', '=', policyId).executeTakeFirst();
}

export async function putPolicy(db: Db, p: PolicyWrite): Promise<void> {
  const set = { Version: p.version, Category: p.category, Body: p.body, BodyHash: p.hash, BodySignature: p.signature, SourceCRC: p.crc, LastModified: nowIso() };
  await db
    .insertInto('Policy')
    .values({ PolicyID: p.policyId, ...set })
    .onConflict((oc) => oc.column('PolicyID').doUpdateSet(set))
    .execute();
}

/** Creates or re-versions an assignment; returns its PADBID. */
export async function putAssignment(db: Db, a: { assignmentId: string; policyId: string; version: string; collectionId: string | null }): Promise<number> {
  const set = { PolicyID: a.policyId, Version: a.version, CollectionID: a.collectionId, LastModified: nowIso() };
  const row = await db
    .insertInto('PolicyAssignment')
    .values({ PolicyAssignmentID: a.assignmentId, ...set })
    .onConflict((oc) => oc.column('PolicyAssignmentID').doUpdateSet(set))
    .returning('PADBID')
    .executeTakeFirstOrThrow();
  return Number(row.PADBID);
}

export async function getAssignmentVersion(db: Db, assignmentId: string): Promise<string | undefined> {
  const r = await db.selectFrom('PolicyAssignment').select('Version').where('PolicyAssignmentID', '=', assignmentId).executeTakeFirst();
  return r?.Version;
}

export interface SettingsPolicyRef {
  readonly policyId: string;
  readonly assignmentId: string;
  readonly padbid: number;
  readonly sourceCrc: string;
}

/** Seed 002: `select PolicyID, PolicyAssignmentID, SourceCRC, PADBID from SettingsPolicy where SourceID = … and SourceType = …`. */
export async function getSettingsPolicy(db: Db, siteCode: string, sourceType: string): Promise<SettingsPolicyRef | undefined> {
  const r = await db.selectFrom('SettingsPolicy').selectAll().where('SourceID', '=', siteCode).where('SourceType', '=', sourceType).executeTakeFirst();
  return r ? { policyId: r.PolicyID, assignmentId: r.PolicyAssignmentID, padbid: Number(r.PADBID), sourceCrc: r.SourceCRC } : undefined;
}

export async function putSettingsPolicy(db: Db, siteCode: string, sourceType: string, ref: SettingsPolicyRef): Promise<void> {
  const set = { PolicyID: ref.policyId, PolicyAssignmentID: ref.assignmentId, PADBID: ref.padbid, SourceCRC: ref.sourceCrc };
  await db
    .insertInto('SettingsPolicy')
    .values({ SourceID: siteCode, SourceType: sourceType, ...set })
    .onConflict((oc) => oc.columns(['SourceID', 'SourceType']).doUpdateSet(set))
    .execute();
}

/** Every assignment with its target collection (null: every approved client). */
export async function listAssignmentTargets(db: Db): Promise<{ padbid: number; collectionId: string | null }[]> {
  const rows = await db.selectFrom('PolicyAssignment').select(['PADBID', 'CollectionID']).execute();
  return rows.map((r) => ({ padbid: Number(r.PADBID), collectionId: r.CollectionID }));
}

export async function readResPolicyMap(db: Db): Promise<Map<number, Set<number>>> {
  const out = new Map<number, Set<number>>();
  for (const r of await db.selectFrom('ResPolicyMap').select(['ResourceID', 'PADBID']).execute()) {
    const id = Number(r.ResourceID);
    let set = out.get(id);
    if (!set) out.set(id, (set = new Set()));
    set.add(Number(r.PADBID));
  }
  return out;
}

const ROWS_PER_INSERT = 300;

export async function changeResPolicyMap(db: Db, resourceId: number, add: readonly number[], remove: readonly number[]): Promise<void> {
  if (remove.length) await db.deleteFrom('ResPolicyMap').where('ResourceID', '=', resourceId).where('PADBID', 'in', [...remove]).execute();
  for (let i = 0; i < add.length; i += ROWS_PER_INSERT) {
    await db
      .insertInto('ResPolicyMap')
      .values(add.slice(i, i + ROWS_PER_INSERT).map((PADBID) => ({ ResourceID: resourceId, PADBID })))
      .onConflict((oc) => oc.columns(['ResourceID', 'PADBID']).doNothing())
      .execute();
  }
}

export interface AssignedPolicy {
  readonly assignmentId: string;
  readonly assignmentVersion: string;
  readonly policyId: string;
  readonly policyVersion: string;
  readonly category: string;
  readonly hash: string;
}

/** The assignments mapped to a resource, for the MP's assignment list. */
export async function assignmentsForResource(db: Db, resourceId: number): Promise<AssignedPolicy[]> {
  const rows = await db
    .selectFrom('ResPolicyMap as m')
    .innerJoin('PolicyAssignment as a', 'a.PADBID', 'm.PADBID')
    .innerJoin('Policy as p', 'p.PolicyID', 'a.PolicyID')
    .select(['a.PolicyAssignmentID', 'a.Version as AVersion', 'p.PolicyID', 'p.Version as PVersion', 'p.Category', 'p.BodyHash'])
    .where('m.ResourceID', '=', resourceId)
    .orderBy('a.PADBID')
    .execute();
  return rows.map((r) => ({ assignmentId: r.PolicyAssignmentID, assignmentVersion: r.AVersion, policyId: r.PolicyID, policyVersion: r.PVersion, category: r.Category, hash: r.BodyHash }));
}

/** A policy body, only when an assignment mapped to the resource delivers it. */
export async function policyForResource(db: Db, resourceId: number, policyId: string): Promise<PolicyRow | undefined> {
  return db
    .selectFrom('Policy as p')
    .selectAll('p')
    .where('p.PolicyID', '=', policyId)
    .where((eb) =>
      eb.exists(
        eb
          .selectFrom('ResPolicyMap as m')
          .innerJoin('PolicyAssignment as a', 'a.PADBID', 'm.PADBID')
          .select('m.PADBID')
          .where('m.ResourceID', '=', resourceId)
          .whereRef('a.PolicyID', '=', 'p.PolicyID'),
      ),
    )
    .executeTakeFirst();
}
