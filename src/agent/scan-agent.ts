/**
 * The scan agent (`ScanAgent.log`, with the update-source lines of
 * `WUAHandler.log`; spec 30 §§1-3, seeds 002/003, steps UC4-UC16): one per
 * client, using the process's one scanner.
 *
 * When scans happen (docs/adr/0010-scan-agent.md):
 * - a new or changed UpdateSource policy: at a random moment within the
 *   client setting `scanWindowSeconds` (2 hours by default, REFERENCE.md
 *   "first compliance scan");
 * - on a schedule: `scanScheduleSeconds` after the last completed scan
 *   (7 days by default, the product's software update scan schedule);
 * - on demand: `cairn agent scan --now` (a `scan.TRG` trigger file), which
 *   also retries a waiting job at once.
 * The next scheduled scan is stored, so a restart keeps the schedule.
 *
 * A scan job (`ScanJobs`, the seed's `CCM_ScanJobInstance`) has an ID and is
 * stored before each step, so a restart resumes it with the same ID: it asks
 * location services for update points holding at least the policy's content
 * version, adds the update source (the update point in use, kept in
 * `UpdateSources`: "already exists, increased version to V" when only the
 * version moved), raises the update-source state message (topic type 501,
 * state 2) and asks the scanner. When the update point in use does not
 * answer (`CAIRN_SCAN_UPDATE_POINT_UNREACHABLE`) it switches to the next one
 * of the reply and keeps it for later scans; when none holds the required
 * version yet (an empty reply, or `CAIRN_SCAN_CONTENT_VERSION_TOO_OLD`) the
 * job waits and retries with a bounded backoff (`SCAN_RETRY_MS`), and the
 * update store is not touched, so nothing is ever reported installed that was
 * not scanned. A completed scan goes to the update store, which raises the
 * topic 500 messages.
 *
 * It never scans without an UpdateSource policy, and never runs two jobs of
 * one client at once.
 */
import { randomUUID } from 'node:crypto';
import type { ComponentLog } from '../shared/cmtrace-log.ts';
import { describeError } from '../shared/errors.ts';
import type { Limiter } from '../shared/limit.ts';
import type { Machine } from '../catalog/rules.ts';
import type { AgentStore, ScanJob, ScanTrigger } from './agent-store.ts';
import type { LocationServices } from './location-services.ts';
import type { ScheduledTask, Scheduler } from './scheduler.ts';
import { jitter } from './scheduler.ts';
import type { StateMessaging } from './state-messages.ts';
import type { ScanResult, Scanner, UpdatePointLocation } from './scan/types.ts';
import type { UpdateStore } from './update-store.ts';

/** Topic type 501, update-source scan (REFERENCE.md). */
export const SCAN_TOPIC_TYPE = 501;
export const SCAN_STATES = { waitingForContent: 1, running: 2, complete: 3, pendingRetry: 4, failed: 5, completedWithErrors: 6 } as const;
/** The seed's scan type for a scan by update source. */
export const SCAN_TYPE = 1;
/** The seed's content type of a WSUS update source. */
export const CONTENT_TYPE_WSUS = 2;
/** The seed's search criteria (spec 30 §3 step 1). */
export const SCAN_CRITERIA = "(DeploymentAction=* AND Type='Software') OR (DeploymentAction=* AND Type='Driver')";

/**
 * Ours: waits before a waiting job tries again. Quick at first (an update
 * point that restarts, a sync that is finishing), then bounded at an hour so
 * that thousands of waiting clients cost the MP and update points little;
 * `cairn agent scan --now` retries at once.
 */
export const SCAN_RETRY_MS = [30_000, 60_000, 120_000, 300_000, 600_000, 1_800_000, 3_600_000] as const;

export interface ScanSettings {
  /** The first scan after a new or changed UpdateSource policy falls at a random moment within this many seconds (REFERENCE.md: 2 hours). */
  readonly scanWindowSeconds: number;
  /** Seconds between scheduled scans (the product's default: 7 days). */
  readonly scanScheduleSeconds: number;
}

export const DEFAULT_SCAN_SETTINGS: ScanSettings = Object.freeze({ scanWindowSeconds: 7200, scanScheduleSeconds: 604800 });

/** The UpdateSource policy body the policy provider builds (src/site/components/policypv/policy-provider.ts). */
export interface UpdateSourcePolicy {
  readonly policyId: string;
  readonly policyVersion: string;
  readonly updateSourceId: string;
  readonly contentVersion: number;
}

export interface ScanAgentLogs {
  readonly scan: ComponentLog;
  readonly wua: ComponentLog;
  readonly updatesStore: ComponentLog;
  readonly scanner: ComponentLog;
}

export interface ScanAgentOptions {
  readonly clientId: string;
  readonly store: AgentStore;
  readonly scheduler: Scheduler;
  /** The process's scans at once (scans are CPU work; the scheduler's slots stay free for the other cycles). */
  readonly scanLimit: Limiter;
  readonly location: LocationServices;
  readonly scanner: Scanner;
  /** The machine's inventory at scan time (the dpkg database, or a simulated client's facts). */
  readonly machine: () => Promise<Machine>;
  readonly state: StateMessaging;
  readonly updateStore: UpdateStore;
  readonly siteCode: () => string;
  readonly logs: ScanAgentLogs;
}

const isCode = (err: unknown, code: string): boolean => !!err && typeof err === 'object' && (err as { code?: unknown }).code === code;
const newGuid = (): string => `{${randomUUID().toUpperCase()}}`;

export class ScanAgent {
  readonly #o: ScanAgentOptions;
  #settings: ScanSettings = DEFAULT_SCAN_SETTINGS;
  #policy: UpdateSourcePolicy | undefined;
  #task: ScheduledTask | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #started = false;
  #stopped = false;
  readonly #abort = new AbortController();

  constructor(o: ScanAgentOptions) {
    this.#o = o;
  }

  get policy(): UpdateSourcePolicy | undefined {
    return this.#policy;
  }

  /** The client's current (or last) scan job. */
  get job(): ScanJob | undefined {
    return this.#o.store.scanJob(this.#o.clientId);
  }

  /** New client settings (ClientSettings policy); a shorter schedule applies from the next scan on. */
  setSettings(s: ScanSettings): void {
    const changed = s.scanWindowSeconds !== this.#settings.scanWindowSeconds || s.scanScheduleSeconds !== this.#settings.scanScheduleSeconds;
    this.#settings = s;
    if (!changed) return;
    const log = this.#o.logs.scan;
    log.info(`Scan settings: first scan after a new UpdateSource policy within ${s.scanWindowSeconds} s, then every ${s.scanScheduleSeconds} s.`);
    // A policy's first scan planned with a longer window (the settings arrived after the UpdateSource policy) moves into the new window.
    const next = this.#o.store.nextScan(this.#o.clientId);
    const windowMs = s.scanWindowSeconds * 1000;
    if (next?.reason === 'policy' && Date.parse(next.at) > Date.now() + windowMs) {
      const at = new Date(Date.now() + Math.floor(Math.random() * (windowMs + 1)));
      this.#o.store.setNextScan(this.#o.clientId, at, 'policy');
      log.info(`Moved the first scan for the UpdateSource policy into the new window: ${at.toISOString()}.`);
      if (this.#started) this.#arm();
    }
  }

  /**
   * The UpdateSource policy was applied (UC4): at start-up it only restores
   * the policy; new or changed, it schedules a scan within the window.
   */
  policyApplied(p: UpdateSourcePolicy, reason: 'new' | 'changed' | 'startup'): void {
    const log = this.#o.logs.scan;
    if (p.contentVersion < 1) {
      this.#policy = undefined;
      log.info(`UpdateSource policy ${p.policyId} version ${p.policyVersion} has no content yet (content version ${p.contentVersion}): nothing to scan until the site's first sync.`);
      return;
    }
    this.#policy = p;
    if (reason === 'startup') {
      if (this.#started) this.#arm();
      return;
    }
    log.info('Inside CScanAgent::Notify()');
    log.info('CScanAgent::OnPolicyChange- Policy InstanceModificationEvent notification received');
    log.info(`UpdateSource policy ${p.policyId} version ${p.policyVersion}: update source ${p.updateSourceId}, content version ${p.contentVersion}.`);
    const job = this.job;
    if (job && (job.state === 'locating' || job.state === 'scanning' || job.state === 'waiting') && job.requiredContentVersion !== p.contentVersion) {
      // The job in progress asks for the old version; the next attempt asks for the new one.
      this.#o.store.saveScanJob(this.#o.clientId, { ...job, policyContentVersion: p.contentVersion, requiredContentVersion: p.contentVersion });
      log.info(`ScanJob(${job.jobId}): the policy now requires content version ${p.contentVersion}; the job's next attempt asks for it.`);
    }
    const windowMs = this.#settings.scanWindowSeconds * 1000;
    const at = new Date(Date.now() + Math.floor(Math.random() * (windowMs + 1)));
    const next = this.#o.store.nextScan(this.#o.clientId);
    if (next && Date.parse(next.at) <= at.getTime()) {
      log.info(`A scan is already scheduled at ${next.at} (${next.reason}), before the random moment of the window; keeping it.`);
    } else {
      this.#o.store.setNextScan(this.#o.clientId, at, 'policy');
      log.info(`Scheduled the first scan for this policy at a random moment within the next ${this.#settings.scanWindowSeconds} s: ${at.toISOString()}.`);
    }
    if (this.#started) this.#arm();
  }

  policyRemoved(): void {
    this.#policy = undefined;
    this.#task?.cancel();
    this.#o.store.setNextScan(this.#o.clientId, undefined, 'schedule');
    this.#o.logs.scan.info('The UpdateSource policy is no longer assigned to this client: no more scans until it is again.');
  }

  /** The client is approved and its policies replayed: resume a persisted job, or arm the stored schedule. */
  start(): void {
    if (this.#started || this.#stopped) return;
    this.#started = true;
    const job = this.job;
    if (job && (job.state === 'locating' || job.state === 'scanning' || job.state === 'waiting')) {
      this.#o.logs.scan.info(`ScanJob(${job.jobId}): resuming the job persisted in state ${job.state} (${job.trigger}, ${job.attempts} attempt(s) so far${job.state === 'waiting' ? `, next at ${job.nextAttemptAt}` : ', continuing now'}).`);
    }
    this.#arm();
  }

  stop(): void {
    this.#stopped = true;
    this.#abort.abort();
    this.#task?.cancel();
  }

  /** On demand (`cairn agent scan --now`): a scan now, or a waiting job's retry now. */
  scanNow(): void {
    if (this.#stopped) return;
    if (!this.#policy) {
      this.#o.logs.scan.warn('A scan was requested, but this client has no UpdateSource policy yet: nothing to scan against (the site has not synced its update points, or the policy poll has not run).');
      return;
    }
    this.#o.logs.scan.info('A scan was requested on demand (cairn agent scan --now).');
    this.#task?.cancel();
    this.#task = this.#o.scheduler.at(0, async () => this.#run('on demand'));
  }

  /** Arms the one task: a job to resume or retry, or the next scheduled scan. */
  #arm(): void {
    if (this.#stopped || !this.#started) return;
    this.#task?.cancel();
    this.#task = undefined;
    if (!this.#policy) return;
    const job = this.job;
    if (job && (job.state === 'locating' || job.state === 'scanning')) {
      this.#task = this.#o.scheduler.at(0, async () => this.#run(job.trigger));
      return;
    }
    if (job && job.state === 'waiting') {
      const next = this.#o.store.nextScan(this.#o.clientId);
      // A scheduled scan that falls before the retry runs the job then.
      const at = Math.min(Date.parse(job.nextAttemptAt) || Date.now(), next ? Date.parse(next.at) : Infinity);
      this.#task = this.#o.scheduler.at(Math.max(0, at - Date.now()), async () => this.#run(job.trigger));
      return;
    }
    const next = this.#o.store.nextScan(this.#o.clientId);
    if (next) this.#task = this.#o.scheduler.at(Math.max(0, Date.parse(next.at) - Date.now()), async () => this.#run(next.reason));
  }

  /** Runs one pass of the client's job, never two at once; a trigger during a pass runs another after it. */
  async #run(trigger: ScanTrigger): Promise<void> {
    if (this.#stopped) return;
    if (this.#running) {
      // An on-demand scan during a pass runs one more pass after it; other triggers are re-armed after the pass anyway.
      if (trigger === 'on demand') this.#again = true;
      return;
    }
    const pass = this.#o.scanLimit.run(() => this.#pass(trigger));
    this.#running = pass.catch((err: unknown) => this.#o.logs.scan.error(`The scan agent failed: ${describeError(err)}`));
    await this.#running;
    this.#running = undefined;
    if (this.#again && !this.#stopped) {
      this.#again = false;
      await this.#run('on demand');
      return;
    }
    this.#arm();
  }

  /** One attempt of the job: creates it when there is none in progress. */
  async #pass(trigger: ScanTrigger): Promise<void> {
    const o = this.#o;
    const log = o.logs.scan;
    const policy = this.#policy;
    if (this.#stopped || !policy) return;
    let job = this.job;
    if (!job || job.state === 'complete' || job.state === 'failed') {
      // UC5: the scan request from the policy.
      log.info(`CScanAgent::ScanByUpdates- Policy available for UpdateSourceID=${policy.updateSourceId} ContentVersion=${policy.contentVersion}`);
      log.info(`CScanAgent::ScanByUpdates- Added Policy to final ScanRequest List UpdateSourceID=${policy.updateSourceId}, Policy-ContentVersion=${policy.contentVersion}, Required-ContentVersion=${policy.contentVersion}`);
      log.info('Inside CScanAgent::ProcessScanRequest()');
      log.info('CScanJobManager::Scan- entered');
      const now = new Date().toISOString();
      job = { jobId: newGuid(), updateSourceId: policy.updateSourceId, policyContentVersion: policy.contentVersion, requiredContentVersion: policy.contentVersion, locationRequestId: '', state: 'locating', trigger, attempts: 0, nextAttemptAt: '', lastError: '', scannedContentVersion: 0, updatePoint: '', createdAt: now, updatedAt: now };
      log.info(`ScanJob(${job.jobId}): CScanJob::Initialize- entered`);
      log.info(`ScanJob(${job.jobId}): CScanJob::Scan- entered`);
      // The schedule is consumed: the next one is set when this job completes.
      o.store.setNextScan(o.clientId, undefined, trigger);
    } else {
      log.info(`ScanJob(${job.jobId}): attempt ${job.attempts + 1} of the job (${job.state}${job.lastError ? `, last error: ${job.lastError}` : ''}).`);
      o.store.setNextScan(o.clientId, undefined, trigger);
    }
    const id = job.jobId;
    // UC6: locations requested; the job persisted with its location request ID.
    const locationRequestId = newGuid();
    log.info(`ScanJob(${id}): CScanJob::RequestLocations- entered`);
    log.info(`- - - - - -Requesting WSUS Server Locations from LS for ${job.updateSourceId} version ${job.requiredContentVersion}`);
    log.info(`- - - - - -Location Request ID = ${locationRequestId}`);
    job = { ...job, locationRequestId, state: 'locating', attempts: job.attempts + 1 };
    o.store.saveScanJob(o.clientId, job);
    log.info('CScanAgentCache::PersistInstanceInCache- Persisted Instance CCM_ScanJobInstance');
    log.info(`ScanJob(${id}): - - - - - -Locations requested for ScanJobID=${id} (LocationRequestID=${locationRequestId}), will process the scan request once locations are available.`);

    let locations: UpdatePointLocation[];
    try {
      locations = await o.location.locateUpdatePoints({ locationRequestId, contentId: job.updateSourceId, version: job.requiredContentVersion, siteCode: o.siteCode() });
    } catch (err) {
      this.#wait(job, SCAN_STATES.pendingRetry, `the update-point location request failed: ${describeError(err)}`);
      return;
    }
    log.info(`WSUSLocationUpdate received for location request guid=${locationRequestId}`);
    if (!locations.length) {
      this.#wait(job, SCAN_STATES.waitingForContent, `CAIRN_AGENT_NO_UPDATE_POINT: no update point holding content version ${job.requiredContentVersion} or later serves this client yet`);
      return;
    }
    // Keep the update point in use when the reply still lists it (switching is sticky, UC30); otherwise the MP's order.
    const source = o.store.updateSource(o.clientId, job.updateSourceId);
    const current = source ? locations.findIndex((l) => l.url === source.location) : -1;
    const order = current > 0 ? [locations[current]!, ...locations.filter((_, i) => i !== current)] : locations;

    let machine;
    try {
      machine = await o.machine();
    } catch (err) {
      this.#wait(job, SCAN_STATES.failed, `the machine's inventory cannot be read: ${describeError(err)}`);
      return;
    }
    const failures: string[] = [];
    let tooOld = false;
    let raised = false;
    for (const [k, loc] of order.entries()) {
      if (this.#stopped) return;
      log.info(`ScanJob(${id}): CScanJob::OnLocationUpdate- Received Location=${loc.url}, Version=${loc.contentVersion}`);
      log.info(`ScanJob(${id}): CScanJob::Execute- Adding UpdateSource=${job.updateSourceId}, ContentType=${CONTENT_TYPE_WSUS}, ContentLocation=${loc.url}, ContentVersion=${job.requiredContentVersion}`);
      this.#addUpdateSource(job.updateSourceId, loc, job.requiredContentVersion, k > 0 ? failures[failures.length - 1] : undefined);
      if (!raised) {
        // UC12: the update-source state message, state 2 (running).
        o.state.raise({ topicType: SCAN_TOPIC_TYPE, topicId: job.updateSourceId, idType: 3, stateId: SCAN_STATES.running, userParams: [String(job.requiredContentVersion), loc.url] });
        log.info(`ScanJob(${id}): Raised UpdateSource (${job.updateSourceId}) state message successfully. StateId = ${SCAN_STATES.running}`);
        raised = true;
      }
      log.info(`ScanJob(${id}): CScanJob::Execute - Successfully requested Scan, ScanType=${SCAN_TYPE}`);
      job = { ...job, state: 'scanning', updatePoint: loc.url };
      o.store.saveScanJob(o.clientId, job);
      const wua = o.logs.wua;
      wua.info('Scan results will include superseded updates only when they are superseded by service packs and definition updates.');
      wua.info(`Search Criteria is ${SCAN_CRITERIA}`);
      wua.info('Running single-call scan of updates.');
      wua.info('Async searching of updates using WUAgent started.');
      let result: ScanResult;
      try {
        result = await o.scanner.scan({ updateSourceId: job.updateSourceId, requiredContentVersion: job.requiredContentVersion, location: loc, machine, log: o.logs.scanner, signal: this.#abort.signal });
      } catch (err) {
        if (this.#stopped) return;
        const why = `${loc.url}: ${describeError(err)}`;
        failures.push(why);
        if (isCode(err, 'CAIRN_SCAN_UPDATE_POINT_UNREACHABLE')) {
          wua.warn(`Async searching failed: the update point ${loc.url} does not answer (${describeError(err)}).`);
          log.warn(`ScanJob(${id}): the update point ${loc.url} does not answer; ${k + 1 < order.length ? `switching to ${order[k + 1]!.url} from the location reply.` : 'no other update point in the location reply.'}`);
          continue;
        }
        if (isCode(err, 'CAIRN_SCAN_CONTENT_VERSION_TOO_OLD')) {
          tooOld = true;
          wua.warn(`Async searching failed: the update point ${loc.url} holds an older catalog than content version ${job.requiredContentVersion} (${describeError(err)}).`);
          log.warn(`ScanJob(${id}): the update point ${loc.url} does not hold content version ${job.requiredContentVersion} yet; ${k + 1 < order.length ? `trying ${order[k + 1]!.url}.` : 'no other update point in the location reply.'}`);
          continue;
        }
        wua.error(`Async searching failed: ${describeError(err)}`);
        this.#wait(job, SCAN_STATES.failed, `CAIRN_AGENT_SCAN_FAILED: ${why}`);
        return;
      }
      this.#complete(job, loc, result);
      return;
    }
    this.#wait(job, tooOld ? SCAN_STATES.waitingForContent : SCAN_STATES.pendingRetry, `${tooOld ? 'no update point holds' : 'no update point of the reply answers with'} content version ${job.requiredContentVersion}: ${failures.join('; ')}`);
  }

  /** UC10/UC11: the WUA handler's update source (the update point in use), persisted. */
  #addUpdateSource(updateSourceId: string, loc: UpdatePointLocation, version: number, switchedBecause: string | undefined): void {
    const o = this.#o;
    const wua = o.logs.wua;
    const before = o.store.updateSource(o.clientId, updateSourceId);
    wua.info(`Its a WSUS Update Source type (${updateSourceId}), adding it.`);
    if (!before) {
      wua.info('Its a completely new WSUS Update Source.');
      wua.info(`Enabling WUA Managed server policy to use server: ${loc.url}`);
      wua.info(`Added Update Source (${updateSourceId}) of content type: ${CONTENT_TYPE_WSUS}`);
    } else if (before.location !== loc.url) {
      wua.info(`Switching the WSUS update source from ${before.location} to ${loc.url}${switchedBecause ? ` (${switchedBecause})` : ''}; the new update point stays in use for later scans.`);
      wua.info(`Enabling WUA Managed server policy to use server: ${loc.url}`);
      if (before.contentVersion !== version) wua.info(`WSUS update source already exists, increased version to ${version}.`);
    } else if (before.contentVersion !== version) {
      wua.info(`WSUS update source already exists, increased version to ${version}.`);
    } else {
      wua.info(`WSUS update source already exists at version ${version} on ${loc.url}; nothing to change.`);
    }
    o.store.saveUpdateSource(o.clientId, { updateSourceId, contentVersion: version, location: loc.url, serverName: loc.serverName });
  }

  /** UC15-UC17: the scan's results logged, handed to the update store, the job completed and the next scan scheduled. */
  #complete(job: ScanJob, loc: UpdatePointLocation, result: ScanResult): void {
    const o = this.#o;
    const wua = o.logs.wua;
    const log = o.logs.scan;
    // The scanner logs its own search (Scanner.log: contacting the update point, "found N updates …", pruning, one line per update).
    const unknown = result.updates.filter((u) => u.state === 'unknown').length;
    const count = (s: string): number => result.updates.filter((u) => u.state === s).length;
    wua.info(`Scan results: ${result.updates.length} updates at content version ${result.contentVersion} from ${result.updatePoint}: ${count('required')} missing, ${count('installed')} installed, ${count('notRequired')} not required, ${unknown} unknown; ${result.pruned.length} pruned as superseded.`);
    wua.info('Successfully completed scan.');
    o.updateStore.record(result);
    const state = unknown ? SCAN_STATES.completedWithErrors : SCAN_STATES.complete;
    o.state.raise({ topicType: SCAN_TOPIC_TYPE, topicId: job.updateSourceId, idType: 3, stateId: state, userParams: [String(result.contentVersion), loc.url] });
    const done: ScanJob = { ...job, state: 'complete', nextAttemptAt: '', lastError: unknown ? `${unknown} updates unknown (malformed or contradictory rules)` : '', scannedContentVersion: result.contentVersion, updatePoint: loc.url };
    o.store.saveScanJob(o.clientId, done);
    log.info(`ScanJob(${job.jobId}): CScanJob::OnScanComplete -Scan completed successfully, ScanType=${SCAN_TYPE}${unknown ? ` (with errors: ${unknown} updates unknown)` : ''}`);
    log.info(`- - - - - -Scan Completed for ScanJobID=${job.jobId}; raised UpdateSource (${job.updateSourceId}) state message, StateId = ${state}.`);
    const next = new Date(Date.now() + jitter(this.#settings.scanScheduleSeconds * 1000));
    o.store.setNextScan(o.clientId, next, 'schedule');
    log.info(`Next scheduled scan at ${next.toISOString()} (every ${this.#settings.scanScheduleSeconds} s).`);
  }

  /** A job that cannot finish now: state 501 raised, retried with backoff (or, failed, left to the schedule). */
  #wait(job: ScanJob, state: number, why: string): void {
    const o = this.#o;
    const log = o.logs.scan;
    o.state.raise({ topicType: SCAN_TOPIC_TYPE, topicId: job.updateSourceId, idType: 3, stateId: state, userParams: [String(job.requiredContentVersion), why.slice(0, 500)] });
    const wait = jitter(SCAN_RETRY_MS[Math.min(job.attempts - 1, SCAN_RETRY_MS.length - 1)]!);
    const next = new Date(Date.now() + wait);
    o.store.saveScanJob(o.clientId, { ...job, state: 'waiting', nextAttemptAt: next.toISOString(), lastError: why });
    log.warn(`ScanJob(${job.jobId}): ${why}. Raised UpdateSource (${job.updateSourceId}) state message, StateId = ${state}; retrying at ${next.toISOString()} (in about ${Math.round(wait / 1000)} s; cairn agent scan --now retries at once). No update state changes.`);
  }
}
