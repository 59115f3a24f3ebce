/**
 * The policy provider (`SMS_POLICY_PROVIDER`, `policypv.log`; spec 00; seed
 * 000 step 5, CD7.3–CD7.4; spec 30 §1 step 3, UC2): builds the site's
 * policies and policy assignments, signs them with the site signing key,
 * evaluates collection membership and keeps the resource to policy mapping
 * (`ResPolicyMap`) that the MP serves assignment lists from.
 *
 * Policies (bodies in ADR 0005):
 * - `ClientSettings`, site-wide (SettingsPolicy `ClientSettings`), from the
 *   `client.*` site settings;
 * - `UpdateSource`, site-wide (SettingsPolicy `UpdateSource`), from
 *   `Update_SyncStatus`, bumped on `{UpdateSourceID}.STN`;
 * - `ContentDeployment`, one per `ContentDeployments` row, with the files of
 *   the package's current stored content.
 * A policy's version rises by 1.00 only when its body's content changes
 * (`SourceCRC`), and its assignment's version with it.
 *
 * Woken by its inbox (`policypv.box`, src/site/components/policypv/
 * policy-triggers.ts), by `wake()`, and by the periodic rescan, on which it
 * also rebuilds a deployment whose package got a new stored version and the
 * ClientSettings policy when a setting changed (cheap database checks).
 *
 * Crash safety: each policy is written in one transaction with its
 * assignment (and its SettingsPolicy or deployment row); the mapping in one
 * transaction; a trigger file is deleted only after the commit of the work
 * it asked for. Everything is idempotent: a pass with nothing new changes
 * nothing and logs nothing.
 */
import { listUpdatePoints } from '../../../datastore/update-points.ts';
import path from 'node:path';
import { createHash, randomUUID } from 'node:crypto';
import type { Transaction } from 'kysely';
import { createComponentLog } from '../../../shared/cmtrace-log.ts';
import type { ComponentLog } from '../../../shared/cmtrace-log.ts';
import { listInboxFiles, removeInboxFile } from '../../../shared/inbox.ts';
import { WorkLoop } from '../../../shared/work-loop.ts';
import { policyHash, signDocument } from '../../../shared/client-auth.ts';
import { globToRegExp, parseRange, parseSubnet, spanHas } from '../../../shared/ip-match.ts';
import type { Database } from '../../../datastore/schema.ts';
import { readSettings } from '../../../datastore/site-control.ts';
import { getPolicy, getSettingsPolicy, listAssignmentTargets, nextPolicyVersion, putAssignment, putPolicy, putSettingsPolicy, readResPolicyMap, changeResPolicyMap } from '../../../datastore/policies.ts';
import { ALL_CLIENTS_COLLECTION, listCollectionRules, listCollections, listDeployments, readCollectionMembers, recordDeploymentPolicy, replaceCollectionMembers } from '../../../datastore/collections.ts';
import { clientAddresses, listClients } from '../../../datastore/clients.ts';
import { getPackage } from '../../../datastore/packages.ts';
import { getSyncStatus } from '../../../datastore/updates.ts';
import { loadSiteSigningKey } from '../../../mp/site-signing-key.ts';
import type { SiteSigningKey } from '../../../mp/site-signing-key.ts';
import type { SiteContext } from '../../site-context.ts';
import { POLICY_TRIGGER_EXTENSIONS } from './policy-triggers.ts';

export const POLICYPV_COMPONENT = 'SMS_POLICY_PROVIDER';

/** Ours: a full membership evaluation at least this often, in case a trigger file was lost. */
const MEMBERSHIP_EVERY_MS = 5 * 60 * 1000;

function newGuid(): string {
  return `{${randomUUID()}}`;
}

function crcOf(content: unknown): string {
  return createHash('sha256').update(JSON.stringify(content)).digest('hex').toUpperCase();
}

/** What one pass did, for tests. */
export interface PassResult {
  readonly policiesWritten: number;
  readonly resourcesRemapped: number;
  readonly files: number;
}

interface Built {
  readonly policyId: string;
  readonly version: string;
  readonly assignmentId: string;
  readonly assignmentVersion: string;
  readonly padbid: number;
  readonly created: boolean;
}

export class PolicyProvider {
  readonly log: ComponentLog;
  readonly #ctx: SiteContext;
  readonly #loop: WorkLoop;
  #key: SiteSigningKey | undefined;
  #lastMembership = 0;
  #waitingFor = new Set<string>();

  constructor(ctx: SiteContext) {
    this.#ctx = ctx;
    this.log = createComponentLog({ dir: ctx.paths.logs, name: 'policypv', component: POLICYPV_COMPONENT });
    this.#loop = new WorkLoop({ log: this.log, inboxes: [ctx.paths.policypvBox], rescanMs: ctx.settings['components.rescanMs'], work: async () => void (await this.runOnce()) });
  }

  start(): void {
    this.#key = loadSiteSigningKey(this.#ctx.paths.siteSigningKey);
    this.log.info(`${POLICYPV_COMPONENT} started; inbox ${this.#ctx.paths.policypvBox}; signing with the site key ${this.#key.fingerprint}.`);
    this.#loop.start();
  }

  wake(): void {
    this.#loop.wake();
  }

  async stop(): Promise<void> {
    await this.#loop.stop();
  }

  /** One pass: trigger files, site-wide policies, deployments, membership. */
  async runOnce(): Promise<PassResult> {
    this.#key ??= loadSiteSigningKey(this.#ctx.paths.siteSigningKey);
    const box = this.#ctx.paths.policypvBox;
    const files: string[] = [];
    for (const ext of POLICY_TRIGGER_EXTENSIONS) files.push(...(await listInboxFiles(box, ext)).map((n) => path.join(box, n)));
    let written = 0;

    // Scan tool notifications first (spec 30 §1 step 3): each is its own unit of work.
    for (const file of files.filter((f) => f.toUpperCase().endsWith('.STN'))) {
      const name = path.basename(file);
      this.log.info(`Found ${name}`);
      const id = name.slice(0, -4);
      this.log.info(`Added scan tool ID ${id}`);
      if (await this.#updateSource(id)) written += 1;
      this.log.info(`Add to delete list: ${file}`);
      await removeInboxFile(file);
    }
    const others = files.filter((f) => !f.toUpperCase().endsWith('.STN'));
    for (const file of others) this.log.info(`Found ${path.basename(file)}`);

    if (await this.#clientSettings()) written += 1;
    written += await this.#deployments(others.some((f) => f.toUpperCase().endsWith('.DEP')));

    let remapped = 0;
    if (others.length || written || Date.now() - this.#lastMembership > MEMBERSHIP_EVERY_MS) remapped = await this.#membership(others.length > 0 || written > 0);
    for (const file of others) await removeInboxFile(file);
    return { policiesWritten: written, resourcesRemapped: remapped, files: files.length };
  }

  /** Writes a policy body and its assignment in `trx`; bumps both versions when the content changed. */
  async #write(trx: Transaction<Database>, p: { policyId: string; assignmentId: string; category: string; content: Record<string, unknown>; collectionId: string | null }): Promise<Built | undefined> {
    const crc = crcOf({ category: p.category, ...p.content });
    const stored = await getPolicy(trx, p.policyId);
    if (stored && stored.SourceCRC === crc) return undefined;
    const version = nextPolicyVersion(stored?.Version);
    const body = JSON.stringify({ policyId: p.policyId, version, category: p.category, ...p.content });
    await putPolicy(trx, { policyId: p.policyId, version, category: p.category, body, hash: policyHash(body), signature: signDocument(this.#key!.privateKey, body), crc });
    const before = await trx.selectFrom('PolicyAssignment').select('Version').where('PolicyAssignmentID', '=', p.assignmentId).executeTakeFirst();
    const assignmentVersion = nextPolicyVersion(before?.Version);
    const padbid = await putAssignment(trx, { assignmentId: p.assignmentId, policyId: p.policyId, version: assignmentVersion, collectionId: p.collectionId });
    return { policyId: p.policyId, version, assignmentId: p.assignmentId, assignmentVersion, padbid, created: !stored };
  }

  /** A site-wide policy (SettingsPolicy row of `sourceType`), created on first use. */
  async #settingsPolicy(sourceType: 'ClientSettings' | 'UpdateSource', content: Record<string, unknown>, sourceCrc: string): Promise<Built | undefined> {
    const { db, siteCode } = this.#ctx;
    return db.transaction().execute(async (trx) => {
      const ref = await getSettingsPolicy(trx, siteCode, sourceType);
      const policyId = ref?.policyId ?? newGuid();
      const assignmentId = ref?.assignmentId ?? newGuid();
      const built = await this.#write(trx, { policyId, assignmentId, category: sourceType, content, collectionId: null });
      if (built) await putSettingsPolicy(trx, siteCode, sourceType, { policyId, assignmentId, padbid: built.padbid, sourceCrc });
      return built;
    });
  }

  async #clientSettings(): Promise<boolean> {
    const s = await readSettings(this.#ctx.db);
    const content = {
      policyPollSeconds: s['client.policyPollSeconds'],
      stateReportingSeconds: s['client.stateReportingSeconds'],
      statusReportingSeconds: s['client.statusReportingSeconds'],
      scanWindowSeconds: s['client.scanWindowSeconds'],
      scanScheduleSeconds: s['client.scanScheduleSeconds'],
    };
    const built = await this.#settingsPolicy('ClientSettings', content, crcOf(content));
    if (!built) return false;
    this.log.info(
      built.created
        ? `Successfully created policy ${built.policyId} and policy assignment ${built.assignmentId} based on the client settings`
        : `Successfully updated policy ${built.policyId} (version ${built.version}) and policy assignment ${built.assignmentId} (version ${built.assignmentVersion}) based on the client settings`,
    );
    return true;
  }

  /** Seed 002/003 step 3: the UpdateSource policy carries the update source and its content version. */
  async #updateSource(fileId: string): Promise<boolean> {
    const status = await getSyncStatus(this.#ctx.db, this.#ctx.siteCode);
    const norm = (s: string) => s.replace(/[{}]/g, '').toLowerCase();
    if (norm(fileId) !== norm(status.updateSourceId)) this.log.warn(`${fileId} does not name this site's update source {${status.updateSourceId.toUpperCase()}}; building the policy of the site's update source.`);
    const updateSourceId = `{${status.updateSourceId.toUpperCase()}}`;
    // The site's update points in install order (issue 5): where clients scan.
    const updatePoints = (await listUpdatePoints(this.#ctx.db, this.#ctx.siteCode)).map((p) => ({ serverName: p.Name, url: p.URL }));
    const content = { updateSourceId, contentVersion: status.contentVersion, updatePoints };
    const built = await this.#settingsPolicy('UpdateSource', content, `${status.contentVersion}|${updatePoints.map((p) => p.url).join(' ')}`);
    if (!built) {
      this.log.info(`The UpdateSource policy of ${updateSourceId} is already at content version ${status.contentVersion}; nothing to change.`);
      return false;
    }
    this.log.info(
      `${built.created ? 'Successfully created' : 'Successfully updated'} policy ${built.policyId} (version ${built.version}) and policy assignment ${built.assignmentId} (version ${built.assignmentVersion}) based on update source ${updateSourceId}, content version ${status.contentVersion}; signed (hash algorithm 32780).`,
    );
    return true;
  }

  /** One ContentDeployment policy per deployment, rebuilt when its package's stored content changes. */
  async #deployments(triggered: boolean): Promise<number> {
    const { db, library } = this.#ctx;
    let written = 0;
    for (const d of await listDeployments(db)) {
      const pkg = await getPackage(db, d.PkgID);
      if (!pkg) continue;
      if (pkg.StoredPkgVersion < 1) {
        if (triggered || !this.#waitingFor.has(d.DeploymentID)) this.log.info(`Deployment ${d.DeploymentID} of package ${d.PkgID} waits for the package's first stored version.`);
        this.#waitingFor.add(d.DeploymentID);
        continue;
      }
      const sourceCrc = `${pkg.PkgID}.${pkg.StoredPkgVersion}/${pkg.Hash}/${d.CollectionID}`;
      if (d.SourceCRC === sourceCrc && d.PADBID !== null) continue;
      const contentId = `${pkg.PkgID}.${pkg.StoredPkgVersion}`;
      const content = await library.getContent(contentId);
      if (!content) {
        this.log.warn(`Deployment ${d.DeploymentID}: content ${contentId} is not in the site's content library yet; will try again.`);
        continue;
      }
      this.#waitingFor.delete(d.DeploymentID);
      const body = {
        deploymentId: d.DeploymentID,
        packageId: pkg.PkgID,
        contentId,
        packageVersion: pkg.StoredPkgVersion,
        collectionId: d.CollectionID,
        files: content.files.map((f) => ({ path: f.path, size: f.size, hash: f.hash })),
      };
      const built = await db.transaction().execute(async (trx) => {
        const b = await this.#write(trx, { policyId: d.PolicyID, assignmentId: d.PolicyAssignmentID, category: 'ContentDeployment', content: body, collectionId: d.CollectionID });
        const padbid = b?.padbid ?? Number((await trx.selectFrom('PolicyAssignment').select('PADBID').where('PolicyAssignmentID', '=', d.PolicyAssignmentID).executeTakeFirstOrThrow()).PADBID);
        await recordDeploymentPolicy(trx, d.DeploymentID, padbid, sourceCrc);
        return b;
      });
      if (!built) continue;
      written += 1;
      this.log.info(
        built.created
          ? `Successfully created policy ${built.policyId} and policy assignment ${built.assignmentId} based on package ${pkg.PkgID}`
          : `Successfully updated policy ${built.policyId} (version ${built.version}) and policy assignment ${built.assignmentId} (version ${built.assignmentVersion}) based on package ${pkg.PkgID}`,
      );
      this.log.info(`Successfully updated policy and policy assignment based on package ${pkg.PkgID} (content ${contentId}, ${body.files.length} files, deployment ${d.DeploymentID} to collection ${d.CollectionID})`);
    }
    return written;
  }

  /** Evaluates every collection's members and the resource to policy mapping; returns the resources whose mapping changed. */
  async #membership(announce: boolean): Promise<number> {
    const { db } = this.#ctx;
    this.#lastMembership = Date.now();
    if (announce) this.log.info('Beginning to update the resource to policy mapping...');
    const result = await db.transaction().execute(async (trx) => {
      const clients = (await listClients(trx)).filter((c) => c.ApprovalStatus === 'approved');
      const collections = await listCollections(trx);
      const rules = await listCollectionRules(trx);
      const storedMembers = await readCollectionMembers(trx);
      const members = new Map<string, Set<number>>();
      let memberChanges = 0;
      for (const col of collections) {
        const set = new Set<number>();
        if (col.CollectionID === ALL_CLIENTS_COLLECTION) for (const c of clients) set.add(Number(c.ResourceID));
        for (const rule of rules.filter((r) => r.CollectionID === col.CollectionID)) {
          const span = rule.RuleType === 'subnet' ? parseSubnet(rule.Value) : rule.RuleType === 'iprange' ? parseRange(rule.Value) : undefined;
          const glob = rule.RuleType === 'name' ? globToRegExp(rule.Value) : undefined;
          for (const c of clients) {
            const hit = rule.RuleType === 'direct' ? c.ClientID === rule.Value : span ? spanHas(span, clientAddresses(c)) : glob ? glob.test(c.NetBIOSName) : false;
            if (hit) set.add(Number(c.ResourceID));
          }
        }
        members.set(col.CollectionID, set);
        const before = storedMembers.get(col.CollectionID) ?? new Set<number>();
        if (before.size !== set.size || [...set].some((m) => !before.has(m)) || col.MemberCount !== set.size) {
          memberChanges += await replaceCollectionMembers(trx, col.CollectionID, before, set);
          this.log.info(`Collection ${col.CollectionID} (${col.Name}) has ${set.size} members.`);
        }
      }
      const desired = new Map<number, Set<number>>();
      for (const c of clients) desired.set(Number(c.ResourceID), new Set());
      for (const t of await listAssignmentTargets(trx)) {
        const targets = t.collectionId === null ? clients.map((c) => Number(c.ResourceID)) : [...(members.get(t.collectionId) ?? [])];
        for (const r of targets) desired.get(r)?.add(t.padbid);
      }
      const current = await readResPolicyMap(trx);
      let changed = 0;
      for (const id of new Set([...desired.keys(), ...current.keys()])) {
        const want = desired.get(id) ?? new Set<number>();
        const have = current.get(id) ?? new Set<number>();
        const add = [...want].filter((p) => !have.has(p));
        const remove = [...have].filter((p) => !want.has(p));
        if (!add.length && !remove.length) continue;
        await changeResPolicyMap(trx, id, add, remove);
        changed += 1;
      }
      return { changed, memberChanges };
    });
    if (announce || result.changed) this.log.info(`Successfully updated the resource to policy mapping for ${result.changed} resources`);
    return result.changed;
  }
}
