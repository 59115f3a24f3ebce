/**
 * Policy agent (`PolicyAgent.log`; spec 30 section 1 step 4, spec 10 flow 7
 * step 5): at each policy poll, fetches this client's assignment list from
 * the MP, downloads the bodies that are new or changed, checks them, keeps
 * what it applied in the local store, and hands each category to its
 * handler.
 *
 * A policy is accepted only when (ADR 0005) the assignment list's signature
 * verifies with the pinned site key, the body's SHA-256 equals the
 * assignment's hash (algorithm 32780), and the body's own signature
 * verifies. Anything else is refused: logged with its code, raised as a
 * client status message (10010, docs/adr/0008-client-agent.md), and the
 * policy applied before stays applied. A list that fails its check changes
 * nothing at all, not even removals.
 *
 * Categories (ADR 0005, "Policy bodies"): `ClientSettings` → the agent's
 * schedules; `ContentDeployment` → the content transfer manager;
 * `UpdateSource` → stored for the scan agent (a later issue). An unknown
 * category is stored and logged, and otherwise left alone.
 */
import type { KeyObject } from 'node:crypto';
import type { ComponentLog } from '../shared/cmtrace-log.ts';
import { CairnError, describeError, isCairnError } from '../shared/errors.ts';
import type { ErrorCode } from '../shared/errors.ts';
import { HASH_ALGORITHM_HEADER, HASH_ALGORITHM_SHA256, HASH_HEADER, SIGNATURE_HEADER, policyHash, verifyDocument } from '../shared/client-auth.ts';
import type { AgentStore, AppliedPolicy } from './agent-store.ts';
import type { MpClient, MpReply } from './mp-client.ts';

export interface PolicyAssignment {
  readonly assignmentId: string;
  readonly assignmentVersion: string;
  readonly policyId: string;
  readonly policyVersion: string;
  readonly category: string;
  readonly hashAlgorithm: number;
  /** SHA-256 of the body bytes, hex upper. */
  readonly hash: string;
}

export interface AssignmentList {
  readonly clientId: string;
  readonly siteCode: string;
  readonly generatedAt: string;
  readonly assignments: readonly PolicyAssignment[];
}

export interface ClientSettings {
  readonly policyPollSeconds: number;
  readonly stateReportingSeconds: number;
  readonly statusReportingSeconds: number;
  /** The first scan after a new UpdateSource policy, at a random moment within this many seconds (REFERENCE.md: 2 hours; ADR 0010). */
  readonly scanWindowSeconds: number;
  /** Seconds between scheduled compliance scans (the product's 7 days; ADR 0010). */
  readonly scanScheduleSeconds: number;
}

/** ADR 0005's defaults (and ADR 0010's for scans), used until a ClientSettings policy says otherwise. */
export const DEFAULT_CLIENT_SETTINGS: ClientSettings = Object.freeze({ policyPollSeconds: 3600, stateReportingSeconds: 900, statusReportingSeconds: 900, scanWindowSeconds: 7200, scanScheduleSeconds: 604800 });

export interface ContentDeploymentPolicy {
  readonly deploymentId: string;
  readonly packageId: string;
  readonly contentId: string;
  readonly packageVersion: number | string;
  readonly collectionId: string;
  readonly files: readonly { path: string; size: number; hash: string }[];
}

const VERSION_RE = /^\d{1,9}\.\d{2}$/;
const ID_RE = /^[A-Za-z0-9{}._:-]{1,128}$/;
const HASH_RE = /^[0-9A-Fa-f]{64}$/;

function invalid(what: string): never {
  throw new CairnError('CAIRN_AGENT_POLICY_INVALID', what);
}

function str(o: Record<string, unknown>, k: string, re: RegExp, where: string): string {
  const v = o[k];
  if (typeof v !== 'string' || !re.test(v)) invalid(`${where}: ${k} is ${JSON.stringify(v)?.slice(0, 80) ?? 'missing'}`);
  return v;
}

function parseJsonObject(bytes: Buffer, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    invalid(`${what} is not JSON (${(err as Error).message})`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) invalid(`${what} is not a JSON object`);
  return v as Record<string, unknown>;
}

/** Checks the list's signature with the site key, then its shape; it must be this client's list. */
export function verifyAssignmentList(bytes: Buffer, signature: string | undefined, siteKey: KeyObject, clientId: string): AssignmentList {
  if (!verifyDocument(siteKey, bytes, signature)) throw new CairnError('CAIRN_AGENT_POLICY_SIGNATURE_INVALID', `the assignment list's ${signature ? 'signature does not verify' : 'signature is missing'}`);
  const o = parseJsonObject(bytes, 'the assignment list');
  if (o.clientId !== clientId) invalid(`the assignment list is for ${JSON.stringify(o.clientId)}, not this client`);
  if (!Array.isArray(o.assignments)) invalid('the assignment list has no assignments array');
  const assignments = (o.assignments as unknown[]).map((a, i): PolicyAssignment => {
    if (!a || typeof a !== 'object' || Array.isArray(a)) invalid(`assignment ${i} is not an object`);
    const r = a as Record<string, unknown>;
    const where = `assignment ${i}`;
    if (r.hashAlgorithm !== HASH_ALGORITHM_SHA256) invalid(`${where}: hashAlgorithm ${JSON.stringify(r.hashAlgorithm)} is not ${HASH_ALGORITHM_SHA256}`);
    return {
      assignmentId: str(r, 'assignmentId', ID_RE, where),
      assignmentVersion: str(r, 'assignmentVersion', VERSION_RE, where),
      policyId: str(r, 'policyId', ID_RE, where),
      policyVersion: str(r, 'policyVersion', VERSION_RE, where),
      category: str(r, 'category', /^[A-Za-z][A-Za-z0-9_]{0,63}$/, where),
      hashAlgorithm: HASH_ALGORITHM_SHA256,
      hash: str(r, 'hash', HASH_RE, where).toUpperCase(),
    };
  });
  const ids = new Set(assignments.map((a) => a.policyId));
  if (ids.size !== assignments.length) invalid('a policy is assigned twice in the list');
  return { clientId, siteCode: typeof o.siteCode === 'string' ? o.siteCode : '', generatedAt: typeof o.generatedAt === 'string' ? o.generatedAt : '', assignments };
}

/** Checks a policy body against its assignment: hash first, then the body's signature, then its fields. */
export function verifyPolicyBody(a: PolicyAssignment, bytes: Buffer, headers: { signature?: string | undefined; hash?: string | undefined; hashAlgorithm?: string | undefined }, siteKey: KeyObject): Record<string, unknown> {
  const got = policyHash(bytes);
  if (got !== a.hash) throw new CairnError('CAIRN_AGENT_POLICY_HASH_MISMATCH', `policy ${a.policyId} ${a.policyVersion}: SHA-256 ${got}, the assignment says ${a.hash}`);
  if (headers.hash !== undefined && headers.hash.toUpperCase() !== a.hash) throw new CairnError('CAIRN_AGENT_POLICY_HASH_MISMATCH', `policy ${a.policyId} ${a.policyVersion}: the MP's X-Cairn-Hash ${headers.hash} is not the assignment's ${a.hash}`);
  if (headers.hashAlgorithm !== undefined && headers.hashAlgorithm !== String(HASH_ALGORITHM_SHA256)) invalid(`policy ${a.policyId}: hash algorithm ${headers.hashAlgorithm} is not ${HASH_ALGORITHM_SHA256}`);
  if (!verifyDocument(siteKey, bytes, headers.signature)) throw new CairnError('CAIRN_AGENT_POLICY_SIGNATURE_INVALID', `policy ${a.policyId} ${a.policyVersion}: the body's ${headers.signature ? 'signature does not verify' : 'signature is missing'}`);
  const body = parseJsonObject(bytes, `policy ${a.policyId}`);
  if (body.policyId !== a.policyId || body.version !== a.policyVersion || body.category !== a.category) {
    invalid(`policy ${a.policyId} ${a.policyVersion}: the body says ${JSON.stringify(body.policyId)} ${JSON.stringify(body.version)} ${JSON.stringify(body.category)}`);
  }
  parseCategory(a.category, body);
  return body;
}

function seconds(o: Record<string, unknown>, k: string, fallback: number, min = 5): number {
  const v = o[k];
  if (v === undefined) return fallback;
  // Ours: at least 5 seconds (tests and labs; 0 for the scan window: at once), at most 31 days.
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > 31 * 86400) invalid(`ClientSettings: ${k} must be an integer of seconds from ${min} to ${31 * 86400}`);
  return v;
}

export function parseClientSettings(body: Record<string, unknown>): ClientSettings {
  return {
    policyPollSeconds: seconds(body, 'policyPollSeconds', DEFAULT_CLIENT_SETTINGS.policyPollSeconds),
    stateReportingSeconds: seconds(body, 'stateReportingSeconds', DEFAULT_CLIENT_SETTINGS.stateReportingSeconds),
    statusReportingSeconds: seconds(body, 'statusReportingSeconds', DEFAULT_CLIENT_SETTINGS.statusReportingSeconds),
    scanWindowSeconds: seconds(body, 'scanWindowSeconds', DEFAULT_CLIENT_SETTINGS.scanWindowSeconds, 0),
    scanScheduleSeconds: seconds(body, 'scanScheduleSeconds', DEFAULT_CLIENT_SETTINGS.scanScheduleSeconds),
  };
}

export function parseContentDeployment(body: Record<string, unknown>): ContentDeploymentPolicy {
  const where = 'ContentDeployment';
  const files = body.files;
  if (!Array.isArray(files)) invalid(`${where}: files is not a list`);
  const pv = body.packageVersion;
  if (typeof pv !== 'number' && typeof pv !== 'string') invalid(`${where}: packageVersion is missing`);
  return {
    deploymentId: str(body, 'deploymentId', ID_RE, where),
    packageId: str(body, 'packageId', /^[A-Za-z0-9]{1,16}$/, where),
    contentId: str(body, 'contentId', /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, where),
    packageVersion: pv as number | string,
    collectionId: typeof body.collectionId === 'string' ? body.collectionId : '',
    files: (files as unknown[]).map((f, i) => {
      if (!f || typeof f !== 'object' || Array.isArray(f)) invalid(`${where}: file ${i} is not an object`);
      const r = f as Record<string, unknown>;
      if (typeof r.path !== 'string') invalid(`${where}: file ${i} has no path`);
      if (typeof r.size !== 'number' || !Number.isSafeInteger(r.size) || r.size < 0) invalid(`${where}: file ${i} has no valid size`);
      return { path: r.path as string, size: r.size as number, hash: str(r, 'hash', HASH_RE, `${where} file ${i}`) };
    }),
  };
}

function parseCategory(category: string, body: Record<string, unknown>): void {
  if (category === 'ClientSettings') parseClientSettings(body);
  else if (category === 'ContentDeployment') parseContentDeployment(body);
  else if (category === 'UpdateSource') {
    if (typeof body.updateSourceId !== 'string') invalid('UpdateSource: updateSourceId is missing');
    if (!Array.isArray(body.updatePoints)) invalid('UpdateSource: updatePoints is not a list');
  }
}

export interface AppliedPolicyView {
  readonly policy: AppliedPolicy;
  readonly body: Record<string, unknown>;
}

export interface PolicyHandlers {
  /** Called for each newly applied or changed policy, and for every stored one at start-up. */
  applied(p: AppliedPolicyView, reason: 'new' | 'changed' | 'startup'): void;
  removed(p: AppliedPolicyView): void;
  /** A policy or the list was refused. */
  refused(code: ErrorCode, detail: string): void;
}

export interface PolicyPollResult {
  readonly assignments: number;
  readonly applied: number;
  readonly unchanged: number;
  readonly refused: number;
  readonly removed: number;
}

export class PolicyAgent {
  readonly #clientId: string;
  readonly #mp: MpClient;
  readonly #store: AgentStore;
  readonly #siteKey: () => KeyObject;
  readonly #log: ComponentLog;
  readonly #handlers: PolicyHandlers;

  constructor(o: { clientId: string; mp: MpClient; store: AgentStore; siteKey: () => KeyObject; log: ComponentLog; handlers: PolicyHandlers }) {
    this.#clientId = o.clientId;
    this.#mp = o.mp;
    this.#store = o.store;
    this.#siteKey = o.siteKey;
    this.#log = o.log;
    this.#handlers = o.handlers;
  }

  /** Hands every stored policy to its handler again (start-up: settings, unfinished downloads). */
  replayApplied(): number {
    const all = this.#store.appliedPolicies(this.#clientId);
    for (const policy of all) {
      try {
        this.#handlers.applied({ policy, body: JSON.parse(policy.body) as Record<string, unknown> }, 'startup');
      } catch (err) {
        this.#log.error(`Cannot re-apply stored policy ${policy.policyId} ${policy.policyVersion}: ${describeError(err)}`);
      }
    }
    if (all.length) this.#log.info(`Re-applied ${all.length} stored ${all.length === 1 ? 'policy' : 'policies'} at start-up: ${all.map((p) => `${p.policyId} ${p.policyVersion} (${p.category})`).join(', ')}.`);
    return all.length;
  }

  #refuse(code: ErrorCode, detail: string, keep: string): void {
    this.#log.error(`Refused ${detail} (${code}); ${keep}`);
    this.#handlers.refused(code, detail);
  }

  /** One policy poll. Throws only when the MP cannot be asked (the caller logs and waits for the next poll). */
  async poll(): Promise<PolicyPollResult> {
    const log = this.#log;
    log.info('Requesting policy assignments from the MP.');
    const reply = await this.#mp.request('GET', '/mp/v1/policy/assignments');
    let list: AssignmentList;
    try {
      list = verifyAssignmentList(reply.body, header(reply, SIGNATURE_HEADER), this.#siteKey(), this.#clientId);
    } catch (err) {
      if (!isCairnError(err)) throw err;
      this.#refuse(err.code, `the policy assignment list: ${err.detail ?? err.message}`, 'every policy applied before stays applied.');
      return { assignments: 0, applied: 0, unchanged: 0, refused: 1, removed: 0 };
    }
    log.info(`Received ${list.assignments.length} policy assignments from site ${list.siteCode} (generated ${list.generatedAt}); the list's signature verifies with the pinned site key.`);
    const stored = new Map(this.#store.appliedPolicies(this.#clientId).map((p) => [p.policyId, p]));
    let applied = 0;
    let unchanged = 0;
    let refused = 0;
    for (const a of list.assignments) {
      const before = stored.get(a.policyId);
      if (before && before.policyVersion === a.policyVersion && before.hash === a.hash) {
        unchanged += 1;
        if (before.assignmentVersion !== a.assignmentVersion) this.#store.savePolicy(this.#clientId, { ...before, assignmentId: a.assignmentId, assignmentVersion: a.assignmentVersion });
        continue;
      }
      log.info(`Policy ${a.policyId} version ${a.policyVersion} (${a.category}, assignment ${a.assignmentId} ${a.assignmentVersion}) is ${before ? `new to this client (had ${before.policyVersion})` : 'new to this client'}; downloading it.`);
      let bodyReply: MpReply;
      try {
        bodyReply = await this.#mp.request('GET', `/mp/v1/policy/${encodeURIComponent(a.policyId)}/${encodeURIComponent(a.policyVersion)}`);
      } catch (err) {
        if (isCairnError(err) && err.code !== 'CAIRN_AGENT_MP_UNREACHABLE' && err.code !== 'CAIRN_AGENT_CLOCK_SKEW') {
          refused += 1;
          this.#refuse(err.code, `policy ${a.policyId} ${a.policyVersion}: ${err.detail ?? err.message}`, before ? `keeping version ${before.policyVersion}.` : 'it is not applied.');
          continue;
        }
        throw err;
      }
      let body: Record<string, unknown>;
      try {
        body = verifyPolicyBody(a, bodyReply.body, { signature: header(bodyReply, SIGNATURE_HEADER), hash: header(bodyReply, HASH_HEADER), hashAlgorithm: header(bodyReply, HASH_ALGORITHM_HEADER) }, this.#siteKey());
      } catch (err) {
        if (!isCairnError(err)) throw err;
        refused += 1;
        this.#refuse(err.code, `policy ${a.policyId} ${a.policyVersion}: ${err.detail ?? err.message}`, before ? `keeping version ${before.policyVersion} applied before.` : 'it is not applied.');
        continue;
      }
      const policy = { policyId: a.policyId, policyVersion: a.policyVersion, category: a.category, assignmentId: a.assignmentId, assignmentVersion: a.assignmentVersion, hash: a.hash, body: bodyReply.body.toString('utf8') };
      this.#store.savePolicy(this.#clientId, policy);
      applied += 1;
      log.info(`Verified policy ${a.policyId} version ${a.policyVersion}: SHA-256 ${a.hash} (algorithm ${HASH_ALGORITHM_SHA256}) matches its assignment and its signature verifies; stored and applied (${a.category}).`);
      try {
        this.#handlers.applied({ policy: { ...policy, appliedAt: new Date().toISOString() }, body }, before ? 'changed' : 'new');
      } catch (err) {
        log.error(`The ${a.category} handler failed for policy ${a.policyId} ${a.policyVersion}: ${describeError(err)}`);
      }
    }
    const assigned = new Set(list.assignments.map((a) => a.policyId));
    let removed = 0;
    for (const p of stored.values()) {
      if (assigned.has(p.policyId)) continue;
      this.#store.removePolicy(this.#clientId, p.policyId);
      removed += 1;
      log.info(`Policy ${p.policyId} version ${p.policyVersion} (${p.category}) is no longer assigned to this client; removed it.`);
      try {
        this.#handlers.removed({ policy: p, body: JSON.parse(p.body) as Record<string, unknown> });
      } catch (err) {
        log.error(`The ${p.category} handler failed to remove policy ${p.policyId}: ${describeError(err)}`);
      }
    }
    log.info(`Policy poll done: ${list.assignments.length} assignments, ${applied} applied, ${unchanged} unchanged, ${refused} refused, ${removed} removed.`);
    return { assignments: list.assignments.length, applied, unchanged, refused, removed };
  }
}

function header(reply: MpReply, name: string): string | undefined {
  const v = reply.headers[name];
  return Array.isArray(v) ? v[0] : v;
}
