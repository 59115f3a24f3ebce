/**
 * One client: its registration, its schedules and its components (policy
 * agent, location services, data transfer service, content transfer
 * manager, state messaging), wired to the process's shared store, scheduler,
 * HTTP transport and logs. The real agent runs one; `--simulate N` runs N.
 *
 * Life of a client (docs/adr/0008-client-agent.md):
 * 1. not registered: `POST /mp/v1/register` (ADR 0005), then
 * 2. pending: `GET /mp/v1/registration` with a bounded backoff
 *    (`REGISTRATION_BACKOFF_MS`) until approved;
 * 3. approved: re-apply the stored policies, then a policy poll at once (a
 *    simulated client: at a random moment of the spread window), and the
 *    state and status reporting cycles, each re-armed with ±10 % jitter so
 *    that clients drift apart.
 * An MP that later says the client is unknown (the site forgot it) sends it
 * back to step 1; "not approved" back to step 2; "revoked" stops its
 * requests but for a registration check every hour.
 */
import type http from 'node:http';
import type { ComponentLog } from '../shared/cmtrace-log.ts';
import { CairnError, describeError } from '../shared/errors.ts';
import type { AgentStore, RegistrationState } from './agent-store.ts';
import { ContentTransferManager } from './content-transfer-manager.ts';
import { DataTransferService } from './data-transfer-service.ts';
import type { ClientIdentity, SiteKey } from './identity.ts';
import { LocationServices } from './location-services.ts';
import { MpClient, MpRefusal, parseJsonReply } from './mp-client.ts';
import type { MpTransport } from './mp-client.ts';
import { DEFAULT_CLIENT_SETTINGS, PolicyAgent, parseClientSettings, parseContentDeployment } from './policy-agent.ts';
import type { AppliedPolicyView, ClientSettings } from './policy-agent.ts';
import type { ScheduledTask, Scheduler } from './scheduler.ts';
import { jitter } from './scheduler.ts';
import { StateMessaging } from './state-messages.ts';
import { ScanAgent } from './scan-agent.ts';
import type { UpdateSourcePolicy } from './scan-agent.ts';
import { UpdateStore } from './update-store.ts';
import type { Limiter } from '../shared/limit.ts';
import type { Machine } from '../catalog/rules.ts';
import type { Scanner } from './scan/types.ts';

/**
 * Ours: waits between registration checks while the client is pending.
 * Quick at first (auto-approval, or an administrator who approves at once),
 * then bounded at five minutes so a pending client costs the MP little.
 */
export const REGISTRATION_BACKOFF_MS = [5_000, 10_000, 30_000, 60_000, 120_000, 300_000] as const;
/** Ours: a revoked client checks once an hour whether it was approved again. */
export const REVOKED_CHECK_MS = 3600_000;
/** Ours: the status message a refused policy raises (component PolicyAgent; ADR 0008). */
export const STATUS_POLICY_REFUSED = 10010;

export interface ClientFacts {
  readonly name: string;
  readonly ipAddresses: () => readonly string[];
  readonly osFamily: string;
  readonly osVersion: string;
}

export interface ClientLogs {
  readonly id: ComponentLog;
  readonly ccm: ComponentLog;
  readonly policy: ComponentLog;
  readonly location: ComponentLog;
  readonly dts: ComponentLog;
  readonly ctm: ComponentLog;
  readonly state: ComponentLog;
  readonly scan: ComponentLog;
  readonly wua: ComponentLog;
  readonly updatesStore: ComponentLog;
  readonly scanner: ComponentLog;
}

/** What the scan agent needs from the process: the one scanner, the scans-at-once limit, and this client's inventory. */
export interface ClientScanOptions {
  readonly scanner: Scanner;
  readonly limit: Limiter;
  readonly machine: () => Promise<Machine>;
}

export interface ClientAgentOptions {
  readonly identity: ClientIdentity;
  readonly facts: ClientFacts;
  readonly store: AgentStore;
  readonly scheduler: Scheduler;
  readonly transport: MpTransport;
  readonly logs: ClientLogs;
  readonly siteKey: () => SiteKey;
  readonly cacheDir: string;
  readonly agentVersion: string;
  /** Delay before the first registration step and policy poll (a simulated client's place in the spread). */
  readonly firstDelayMs: number;
  /** Spread each cycle's first run over its whole interval (simulated clients), rather than running it one interval after start. */
  readonly spreadCycles: boolean;
  readonly httpAgent?: http.Agent;
  /** The scan agent's share of the process (issue 6); without it the client never scans. */
  readonly scan?: ClientScanOptions;
}

export class ClientAgent {
  readonly #o: ClientAgentOptions;
  readonly mp: MpClient;
  readonly policy: PolicyAgent;
  readonly state: StateMessaging;
  readonly content: ContentTransferManager;
  readonly updates: UpdateStore;
  readonly scan: ScanAgent | undefined;
  readonly #abort = new AbortController();
  #settings: ClientSettings = DEFAULT_CLIENT_SETTINGS;
  #tasks: { register?: ScheduledTask; policy?: ScheduledTask; state?: ScheduledTask; status?: ScheduledTask } = {};
  #registrationAttempt = 0;
  #approved = false;
  #stopped = false;

  constructor(o: ClientAgentOptions) {
    this.#o = o;
    const id = o.identity.clientId;
    this.mp = new MpClient(o.transport, { clientId: id, privateKey: o.identity.privateKey }, o.logs.ccm);
    this.state = new StateMessaging({ store: o.store, mp: this.mp, log: o.logs.state, sender: { clientId: id, netbiosName: o.facts.name, clientVersion: o.agentVersion } });
    const location = new LocationServices({ mp: this.mp, log: o.logs.location, ipAddresses: o.facts.ipAddresses });
    const dts = new DataTransferService({ log: o.logs.dts, cacheDir: o.cacheDir, signal: this.#abort.signal, ...(o.httpAgent ? { httpAgent: o.httpAgent } : {}) });
    this.updates = new UpdateStore({ clientId: id, store: o.store, state: this.state, log: o.logs.updatesStore });
    this.scan = o.scan
      ? new ScanAgent({
          clientId: id,
          store: o.store,
          scheduler: o.scheduler,
          scanLimit: o.scan.limit,
          location,
          scanner: o.scan.scanner,
          machine: o.scan.machine,
          state: this.state,
          updateStore: this.updates,
          siteCode: () => o.siteKey().siteCode,
          logs: { scan: o.logs.scan, wua: o.logs.wua, updatesStore: o.logs.updatesStore, scanner: o.logs.scanner },
        })
      : undefined;
    this.content = new ContentTransferManager({ clientId: id, machine: o.facts.name, siteCode: () => o.siteKey().siteCode, store: o.store, scheduler: o.scheduler, location, dts, state: this.state, log: o.logs.ctm });
    this.policy = new PolicyAgent({
      clientId: id,
      mp: this.mp,
      store: o.store,
      siteKey: () => o.siteKey().publicKey,
      log: o.logs.policy,
      handlers: {
        applied: (p, reason) => this.#applied(p, reason),
        removed: (p) => this.#removed(p),
        refused: (code, detail) =>
          this.state.queueStatus({ id: STATUS_POLICY_REFUSED, severity: 'E', level: 'M', component: 'PolicyAgent', machine: o.facts.name, time: new Date().toISOString(), pid: process.pid, tid: 0, istr: [code, detail.slice(0, 1000)], attrs: [{ id: 408, value: id }] }),
      },
    });
  }

  get clientId(): string {
    return this.#o.identity.clientId;
  }
  get name(): string {
    return this.#o.facts.name;
  }
  get settings(): ClientSettings {
    return this.#settings;
  }
  get registration(): RegistrationState {
    return this.#o.store.registration(this.clientId);
  }

  start(): void {
    this.#tasks.register = this.#o.scheduler.at(this.#o.firstDelayMs, () => this.#registrationStep());
  }

  stop(): void {
    this.#stopped = true;
    this.#abort.abort();
    for (const t of Object.values(this.#tasks)) t?.cancel();
    this.content.stop();
    this.scan?.stop();
  }

  /** On demand (`cairn agent scan --now`): a compliance scan now, or a waiting scan job's retry. */
  scanNow(): void {
    if (!this.#approved || this.#stopped) return;
    this.scan?.scanNow();
  }

  /** On demand (`cairn agent policy --now`): a policy poll as soon as the scheduler allows. */
  pollPolicyNow(): void {
    if (!this.#approved || this.#stopped) return;
    this.#tasks.policy?.cancel();
    this.#tasks.policy = this.#o.scheduler.at(0, () => this.#policyCycle());
  }

  /** On demand: send state and status messages now. */
  reportNow(): void {
    if (!this.#approved || this.#stopped) return;
    this.#tasks.state?.cancel();
    this.#tasks.status?.cancel();
    this.#tasks.state = this.#o.scheduler.at(0, () => this.#stateCycle());
    this.#tasks.status = this.#o.scheduler.at(0, () => this.#statusCycle());
  }

  #setRegistration(s: RegistrationState): void {
    this.#o.store.setRegistration(this.clientId, s);
  }

  async #registrationStep(): Promise<void> {
    if (this.#stopped) return;
    const log = this.#o.logs.id;
    let status = this.registration;
    if (status === 'approved') {
      this.#onApproved();
      return;
    }
    try {
      if (status === 'none') {
        const f = this.#o.facts;
        const body = { clientId: this.clientId, name: f.name, publicKey: this.#o.identity.publicKeyPem, ipAddresses: [...f.ipAddresses()], osFamily: f.osFamily, osVersion: f.osVersion, agentVersion: this.#o.agentVersion };
        log.info(`Registering ${f.name} as ${this.clientId} with the MP ${this.#o.transport.baseUrl.origin} (addresses ${body.ipAddresses.join(', ')}).`);
        const reply = await this.mp.request('POST', '/mp/v1/register', { body: JSON.stringify(body) });
        status = readStatus(parseJsonReply<{ status?: unknown }>(reply, 'POST /mp/v1/register').status);
        log.info(`Registration accepted by the MP: status ${status}.`);
      } else {
        const reply = await this.mp.request('GET', '/mp/v1/registration');
        status = readStatus(parseJsonReply<{ status?: unknown }>(reply, 'GET /mp/v1/registration').status);
      }
      this.#setRegistration(status);
    } catch (err) {
      if (err instanceof MpRefusal && err.mpCode === 'CAIRN_CLIENT_UNKNOWN') {
        log.warn(`The MP does not know ${this.clientId}; registering again.`);
        this.#setRegistration('none');
      } else if (err instanceof MpRefusal && err.mpCode === 'CAIRN_CLIENT_KEY_MISMATCH') {
        log.error(`The MP holds another key for ${this.clientId} (CAIRN_CLIENT_KEY_MISMATCH). This client cannot register with this identity; an administrator must delete the client on the site, or the agent's client.json and client.key must be moved away for a new identity.`);
      } else if (err instanceof MpRefusal && err.mpCode === 'CAIRN_CLIENT_REVOKED') {
        this.#setRegistration('revoked');
      } else {
        log.warn(`Registration step failed: ${describeError(err)}.`);
      }
      status = this.registration;
    }
    if (status === 'approved') {
      log.info(`${this.name} (${this.clientId}) is approved by the site.`);
      this.#onApproved();
      return;
    }
    if (status === 'revoked') {
      log.error(`${this.name} (${this.clientId}) is revoked by the site: no policy, no reports. Checking again in ${REVOKED_CHECK_MS / 60000} minutes.`);
      this.#setRegistration('pending');
      this.#tasks.register = this.#o.scheduler.at(jitter(REVOKED_CHECK_MS), () => this.#registrationStep());
      return;
    }
    const wait = REGISTRATION_BACKOFF_MS[Math.min(this.#registrationAttempt, REGISTRATION_BACKOFF_MS.length - 1)]!;
    this.#registrationAttempt += 1;
    if (status === 'pending') log.info(`Waiting for the site to approve ${this.name} (${this.clientId}); checking again in ${wait / 1000} s (cairn admin client approve ${this.name}).`);
    else log.info(`Trying to register again in ${wait / 1000} s.`);
    this.#tasks.register = this.#o.scheduler.at(jitter(wait), () => this.#registrationStep());
  }

  #onApproved(): void {
    if (this.#approved || this.#stopped) return;
    this.#approved = true;
    this.#registrationAttempt = 0;
    this.policy.replayApplied();
    this.scan?.start();
    this.#tasks.policy = this.#o.scheduler.at(0, () => this.#policyCycle());
    this.#armCycles(true);
  }

  /** (Re-)arms the reporting cycles with the current settings. */
  #armCycles(first: boolean): void {
    const s = this.#settings;
    const firstDelay = (ms: number): number => (first && this.#o.spreadCycles ? Math.floor(Math.random() * ms) : jitter(ms));
    this.#tasks.state?.cancel();
    this.#tasks.status?.cancel();
    this.#tasks.state = this.#o.scheduler.at(firstDelay(s.stateReportingSeconds * 1000), () => this.#stateCycle());
    this.#tasks.status = this.#o.scheduler.at(firstDelay(s.statusReportingSeconds * 1000), () => this.#statusCycle());
  }

  /** What a refusal from the MP means for this client's registration. */
  #handleMpError(err: unknown, log: ComponentLog, what: string): void {
    if (err instanceof MpRefusal && (err.mpCode === 'CAIRN_CLIENT_UNKNOWN' || err.mpCode === 'CAIRN_CLIENT_NOT_APPROVED' || err.mpCode === 'CAIRN_CLIENT_REVOKED')) {
      log.error(`${what} refused: ${err.mpCode}. Going back to registration.`);
      this.#setRegistration(err.mpCode === 'CAIRN_CLIENT_UNKNOWN' ? 'none' : err.mpCode === 'CAIRN_CLIENT_REVOKED' ? 'revoked' : 'pending');
      this.#approved = false;
      for (const t of Object.values(this.#tasks)) t?.cancel();
      this.#tasks = { register: this.#o.scheduler.at(jitter(REGISTRATION_BACKOFF_MS[0]), () => this.#registrationStep()) };
      return;
    }
    log.warn(`${what} failed: ${describeError(err)}. Trying again at the next cycle.`);
  }

  async #policyCycle(): Promise<void> {
    if (this.#stopped || !this.#approved) return;
    try {
      await this.policy.poll();
    } catch (err) {
      this.#handleMpError(err, this.#o.logs.policy, 'The policy poll');
      if (!this.#approved) return;
    }
    if (this.#stopped) return;
    const next = jitter(this.#settings.policyPollSeconds * 1000);
    this.#o.logs.policy.info(`Next policy poll in about ${Math.round(next / 1000)} s.`);
    this.#tasks.policy = this.#o.scheduler.at(next, () => this.#policyCycle());
  }

  async #stateCycle(): Promise<void> {
    if (this.#stopped || !this.#approved) return;
    try {
      await this.state.sendStateMessages();
    } catch (err) {
      this.#handleMpError(err, this.#o.logs.state, 'The reporting cycle');
      if (!this.#approved) return;
    }
    if (!this.#stopped) this.#tasks.state = this.#o.scheduler.at(jitter(this.#settings.stateReportingSeconds * 1000), () => this.#stateCycle());
  }

  async #statusCycle(): Promise<void> {
    if (this.#stopped || !this.#approved) return;
    try {
      await this.state.sendStatusMessages();
    } catch (err) {
      this.#handleMpError(err, this.#o.logs.state, 'The status cycle');
      if (!this.#approved) return;
    }
    if (!this.#stopped) this.#tasks.status = this.#o.scheduler.at(jitter(this.#settings.statusReportingSeconds * 1000), () => this.#statusCycle());
  }

  #applied(p: AppliedPolicyView, reason: 'new' | 'changed' | 'startup'): void {
    const { category, policyId, policyVersion } = p.policy;
    if (category === 'ClientSettings') {
      const s = parseClientSettings(p.body);
      const changed = s.stateReportingSeconds !== this.#settings.stateReportingSeconds || s.statusReportingSeconds !== this.#settings.statusReportingSeconds || s.policyPollSeconds !== this.#settings.policyPollSeconds;
      this.#settings = s;
      this.scan?.setSettings({ scanWindowSeconds: s.scanWindowSeconds, scanScheduleSeconds: s.scanScheduleSeconds });
      this.#o.logs.policy.info(`Client settings from policy ${policyId} ${policyVersion}: policy poll every ${s.policyPollSeconds} s, state messages every ${s.stateReportingSeconds} s, status messages every ${s.statusReportingSeconds} s.`);
      // At start-up the cycles are armed after the replay; later, a changed interval applies from now on.
      if (changed && reason !== 'startup' && this.#approved) this.#armCycles(false);
    } else if (category === 'ContentDeployment') {
      this.content.deploymentApplied(policyId, policyVersion, parseContentDeployment(p.body));
    } else if (category === 'UpdateSource') {
      this.#o.logs.policy.info(`Stored update source ${String(p.body.updateSourceId)} (content version ${String(p.body.contentVersion)}, ${Array.isArray(p.body.updatePoints) ? p.body.updatePoints.length : 0} update points) for the scan agent.`);
      this.scan?.policyApplied(parseUpdateSource(p), reason);
    } else {
      this.#o.logs.policy.warn(`Policy ${policyId} has category ${category}, which this agent does not handle; stored only.`);
    }
  }

  #removed(p: AppliedPolicyView): void {
    if (p.policy.category === 'ClientSettings') {
      this.#settings = DEFAULT_CLIENT_SETTINGS;
      this.#o.logs.policy.info('No client settings policy any more: back to the defaults (3600 s, 900 s, 900 s).');
      if (this.#approved) this.#armCycles(false);
    } else if (p.policy.category === 'ContentDeployment' && typeof p.body.deploymentId === 'string') {
      this.content.deploymentRemoved(p.body.deploymentId);
    } else if (p.policy.category === 'UpdateSource') {
      this.scan?.policyRemoved();
    }
  }
}

/** The UpdateSource body's fields the scan agent uses (the policy agent checked the ID is there). */
function parseUpdateSource(p: AppliedPolicyView): UpdateSourcePolicy {
  const v = p.body.contentVersion;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new CairnError('CAIRN_AGENT_POLICY_INVALID', `UpdateSource ${p.policy.policyId}: contentVersion ${JSON.stringify(v)} is not a content version`);
  return { policyId: p.policy.policyId, policyVersion: p.policy.policyVersion, updateSourceId: String(p.body.updateSourceId), contentVersion: v };
}

function readStatus(v: unknown): RegistrationState {
  if (v === 'approved' || v === 'pending' || v === 'revoked') return v;
  throw new CairnError('CAIRN_AGENT_MP_REPLY_INVALID', `registration status ${JSON.stringify(v)} is not approved, pending or revoked`);
}
