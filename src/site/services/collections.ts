/**
 * The collections service: named collections with rules (direct member, IP
 * range, subnet, name pattern), and content deployments (a package made
 * available to a collection). Every change drops a trigger in `policypv.box`
 * so the policy provider evaluates membership and builds policies at once;
 * the policy provider owns `CollectionMembers` and `ResPolicyMap`.
 */
import { randomUUID } from 'node:crypto';
import { CairnError } from '../../shared/errors.ts';
import { parseRange, parseSubnet } from '../../shared/ip-match.ts';
import {
  ALL_CLIENTS_COLLECTION,
  addCollectionRule,
  findCollection,
  insertCollection,
  insertDeployment,
  listCollectionRules,
  listCollections,
  listDeployments,
  nextCollectionId,
} from '../../datastore/collections.ts';
import type { CollectionRuleType } from '../../datastore/collections.ts';
import type { CollectionRow } from '../../datastore/schema.ts';
import { dropPolicyTrigger } from '../components/policypv/policy-triggers.ts';
import type { SiteContext } from '../site-context.ts';
import { requireClient } from './clients.ts';
import { requirePackage } from './packages.ts';

export interface CollectionView {
  readonly collectionId: string;
  readonly name: string;
  readonly memberCount: number;
  readonly rules: { type: string; value: string }[];
  readonly lastEvaluatedTime: string;
}

export interface DeploymentView {
  readonly deploymentId: string;
  readonly packageId: string;
  readonly collectionId: string;
  readonly policyId: string;
  readonly policyAssignmentId: string;
  readonly built: boolean;
}

export async function requireCollection(ctx: SiteContext, nameOrId: string): Promise<CollectionRow> {
  const c = await findCollection(ctx.db, nameOrId);
  if (!c) throw new CairnError('CAIRN_COLLECTION_NOT_FOUND', nameOrId.slice(0, 80));
  return c;
}

export async function listCollectionViews(ctx: SiteContext): Promise<CollectionView[]> {
  const rules = await listCollectionRules(ctx.db);
  // The built-in collections (SMS…) first, as the product lists them, then the site's by ID.
  const rows = (await listCollections(ctx.db)).sort((a, b) => Number(!a.CollectionID.startsWith('SMS')) - Number(!b.CollectionID.startsWith('SMS')) || a.CollectionID.localeCompare(b.CollectionID));
  return rows.map((c) => ({
    collectionId: c.CollectionID,
    name: c.Name,
    memberCount: Number(c.MemberCount),
    rules: rules.filter((r) => r.CollectionID === c.CollectionID).map((r) => ({ type: r.RuleType, value: r.Value })),
    lastEvaluatedTime: c.LastEvaluatedTime,
  }));
}

async function changed(ctx: SiteContext, collectionId: string, why: string, wake: () => void): Promise<void> {
  await dropPolicyTrigger(ctx.paths.policypvBox, collectionId, 'COL', why);
  wake();
}

export async function createCollection(ctx: SiteContext, name: string, wake: () => void): Promise<CollectionView> {
  if (!name.trim() || name.length > 128) throw new CairnError('CAIRN_REQUEST_INVALID', 'a collection name has 1-128 characters');
  if (await findCollection(ctx.db, name)) throw new CairnError('CAIRN_COLLECTION_EXISTS', name);
  const row = await ctx.db.transaction().execute(async (trx) => insertCollection(trx, { CollectionID: await nextCollectionId(trx, ctx.siteCode), Name: name.trim() }));
  await changed(ctx, row.CollectionID, 'created', wake);
  return { collectionId: row.CollectionID, name: row.Name, memberCount: 0, rules: [], lastEvaluatedTime: '' };
}

/** Parses a rule at the edge into its stored form. */
export function parseCollectionRule(type: string, value: string): { type: CollectionRuleType; value: string } {
  const bad = (why: string): never => {
    throw new CairnError('CAIRN_COLLECTION_RULE_INVALID', why);
  };
  if (type === 'iprange') {
    if (!parseRange(value)) bad(`${value.slice(0, 80)} is not an IPv4 range A-B with A <= B`);
    return { type, value: value.replace(/\s+/g, '') };
  }
  if (type === 'subnet') {
    const span = parseSubnet(value);
    if (!span) bad(`${value.slice(0, 80)} is not an IPv4 subnet A.B.C.D/N`);
    return { type, value: value.trim() };
  }
  if (type === 'name') {
    if (!value || value.length > 128 || !/^[A-Za-z0-9*?._-]+$/.test(value)) bad('a name pattern has 1-128 letters, digits, . _ - and the wildcards * and ?');
    return { type, value };
  }
  return bad(`rule type ${type.slice(0, 40)} is not iprange, subnet or name`);
}

export async function addRule(ctx: SiteContext, collection: string, type: string, value: string, wake: () => void): Promise<{ collection: CollectionView; added: boolean }> {
  const c = await requireCollection(ctx, collection);
  if (c.CollectionID === ALL_CLIENTS_COLLECTION) throw new CairnError('CAIRN_COLLECTION_RULE_INVALID', 'All Clients (SMS00001) has every approved client and takes no rules');
  const rule = parseCollectionRule(type, value);
  const added = await addCollectionRule(ctx.db, c.CollectionID, rule.type, rule.value);
  await changed(ctx, c.CollectionID, `rule ${rule.type} ${rule.value}`, wake);
  return { collection: (await listCollectionViews(ctx)).find((v) => v.collectionId === c.CollectionID)!, added };
}

/** A direct member: a rule naming the client's ID (found by name or ID). */
export async function addMember(ctx: SiteContext, collection: string, client: string, wake: () => void): Promise<{ collection: CollectionView; clientId: string; added: boolean }> {
  const c = await requireCollection(ctx, collection);
  if (c.CollectionID === ALL_CLIENTS_COLLECTION) throw new CairnError('CAIRN_COLLECTION_RULE_INVALID', 'All Clients (SMS00001) has every approved client and takes no rules');
  const row = await requireClient(ctx, client);
  const added = await addCollectionRule(ctx.db, c.CollectionID, 'direct', row.ClientID);
  await changed(ctx, c.CollectionID, `member ${row.ClientID}`, wake);
  return { collection: (await listCollectionViews(ctx)).find((v) => v.collectionId === c.CollectionID)!, clientId: row.ClientID, added };
}

export async function deployPackage(ctx: SiteContext, pkgId: string, collection: string, wake: () => void): Promise<{ deployment: DeploymentView; created: boolean }> {
  const pkg = await requirePackage(ctx, pkgId);
  const c = await requireCollection(ctx, collection);
  const wanted = { DeploymentID: `{${randomUUID()}}`, PkgID: pkg.PkgID, CollectionID: c.CollectionID, PolicyID: `{${randomUUID()}}`, PolicyAssignmentID: `{${randomUUID()}}` };
  const row = await insertDeployment(ctx.db, wanted);
  await dropPolicyTrigger(ctx.paths.policypvBox, row.DeploymentID, 'DEP', `${pkg.PkgID} to ${c.CollectionID}`);
  wake();
  return { deployment: deploymentView(row), created: row.DeploymentID === wanted.DeploymentID };
}

function deploymentView(r: { DeploymentID: string; PkgID: string; CollectionID: string; PolicyID: string; PolicyAssignmentID: string; PADBID: number | null }): DeploymentView {
  return { deploymentId: r.DeploymentID, packageId: r.PkgID, collectionId: r.CollectionID, policyId: r.PolicyID, policyAssignmentId: r.PolicyAssignmentID, built: r.PADBID !== null };
}

export async function listDeploymentViews(ctx: SiteContext): Promise<DeploymentView[]> {
  return (await listDeployments(ctx.db)).map(deploymentView);
}
