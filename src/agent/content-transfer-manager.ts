/**
 * Content transfer manager (`ContentTransferManager.log`; spec 10 flow 7
 * step 6): one job per ContentDeployment policy. A job locates the package
 * through location services, has the data transfer service download and
 * verify every file into the cache, and reports (ADR 0005, "What the client
 * reports about a content deployment"):
 *
 * | moment | state message (topic type 901, topic = deployment ID) | client status message |
 * | --- | --- | --- |
 * | a job for a new policy version is created (once, not again after a restart) | state 1 downloading | 10002 download started |
 * | every file verified in the cache | state 2 downloaded and verified | 10003 download succeeded |
 * | the job failed (first failure of a try) | state 3 failed, parameter 1 = error code | 10004 download failed |
 *
 * Jobs are rows in the local store (`ContentJobs`), so a killed agent
 * resumes a download at start-up (the partial file too: see the data
 * transfer service). A failed job is tried again after `JOB_RETRY_DELAYS_MS`.
 */
import type { ComponentLog } from '../shared/cmtrace-log.ts';
import { ATTR, formatStatmsg } from '../shared/status-message.ts';
import { CairnError, describeError, isCairnError } from '../shared/errors.ts';
import type { AgentStore } from './agent-store.ts';
import type { DataTransferService } from './data-transfer-service.ts';
import type { LocationServices } from './location-services.ts';
import type { ContentDeploymentPolicy } from './policy-agent.ts';
import type { Scheduler, ScheduledTask } from './scheduler.ts';
import { jitter } from './scheduler.ts';
import type { ClientStatusMessage, StateMessaging } from './state-messages.ts';

/** Ours (ADR 0005): the content-deployment topic type and its states. */
export const TOPIC_CONTENT_DEPLOYMENT = 901;
export const CONTENT_STATE = { downloading: 1, downloaded: 2, failed: 3 } as const;
/** Ours (ADR 0005): client status message IDs of a content download. */
export const STATUS_DOWNLOAD_STARTED = 10002;
export const STATUS_DOWNLOAD_SUCCEEDED = 10003;
export const STATUS_DOWNLOAD_FAILED = 10004;

/**
 * Ours: waits before a failed job is tried again. The first retry comes soon
 * (a DP that was restarting), later ones back off to an hour so that a
 * package missing from every DP costs the MP one location request per client
 * per hour.
 */
export const JOB_RETRY_DELAYS_MS = [60_000, 5 * 60_000, 15 * 60_000, 60 * 60_000] as const;

export interface ContentTransferOptions {
  readonly clientId: string;
  readonly machine: string;
  readonly siteCode: () => string;
  readonly store: AgentStore;
  readonly scheduler: Scheduler;
  readonly location: LocationServices;
  readonly dts: DataTransferService;
  readonly state: StateMessaging;
  readonly log: ComponentLog;
  readonly retryDelaysMs?: readonly number[];
}

interface Pending {
  policyId: string;
  policyVersion: string;
  deployment: ContentDeploymentPolicy;
  task?: ScheduledTask;
  running: boolean;
  again: boolean;
}

export class ContentTransferManager {
  readonly #o: ContentTransferOptions;
  readonly #jobs = new Map<string, Pending>();
  #stopped = false;

  constructor(o: ContentTransferOptions) {
    this.#o = o;
  }

  /** A ContentDeployment policy was applied (new, changed, or replayed at start-up). */
  deploymentApplied(policyId: string, policyVersion: string, d: ContentDeploymentPolicy): void {
    const { store, clientId, log } = this.#o;
    const job = store.contentJob(clientId, d.deploymentId);
    if (job && job.policyVersion === policyVersion && job.state === 'downloaded') return;
    if (!job || job.policyVersion !== policyVersion) {
      store.saveContentJob(clientId, { deploymentId: d.deploymentId, policyId, policyVersion, state: 'downloading', attempts: 0, lastError: '' });
      log.info(`Created content job for deployment ${d.deploymentId}: package ${d.packageId} version ${d.packageVersion}, content ${d.contentId}, ${d.files.length} files (policy ${policyId} ${policyVersion}).`);
      // Once per job (a policy version), not per attempt: an agent restarted mid-download resumes without saying "started" again.
      this.#o.state.raise({ topicType: TOPIC_CONTENT_DEPLOYMENT, topicId: d.deploymentId, idType: 1, stateId: CONTENT_STATE.downloading, userParams: [d.packageId, String(d.packageVersion)] });
      this.#status(STATUS_DOWNLOAD_STARTED, 'I', d);
    } else {
      log.info(`Resuming content job for deployment ${d.deploymentId} (${job.state}, ${job.attempts} attempts so far).`);
    }
    const p = this.#jobs.get(d.deploymentId);
    if (p) {
      Object.assign(p, { policyId, policyVersion, deployment: d });
      p.task?.cancel();
      if (p.running) {
        p.again = true;
        return;
      }
    } else {
      this.#jobs.set(d.deploymentId, { policyId, policyVersion, deployment: d, running: false, again: false });
    }
    this.#schedule(d.deploymentId, 0);
  }

  deploymentRemoved(deploymentId: string): void {
    const p = this.#jobs.get(deploymentId);
    p?.task?.cancel();
    this.#jobs.delete(deploymentId);
    this.#o.store.removeContentJob(this.#o.clientId, deploymentId);
    this.#o.log.info(`Deployment ${deploymentId} is no longer in policy; its job is removed (content already in the cache stays).`);
  }

  stop(): void {
    this.#stopped = true;
    for (const p of this.#jobs.values()) p.task?.cancel();
  }

  #schedule(deploymentId: string, delayMs: number): void {
    const p = this.#jobs.get(deploymentId);
    if (!p || this.#stopped) return;
    p.task = this.#o.scheduler.at(delayMs, () => this.#run(deploymentId));
  }

  #status(id: number, severity: 'I' | 'W' | 'E', d: ContentDeploymentPolicy, extra: string[] = []): void {
    const m: ClientStatusMessage = {
      id,
      severity,
      level: 'M',
      component: 'ContentTransferManager',
      machine: this.#o.machine,
      time: new Date().toISOString(),
      pid: process.pid,
      tid: 0,
      istr: [d.packageId, String(d.packageVersion), d.contentId, d.deploymentId, ...extra],
      attrs: [
        { id: ATTR.packageId, value: d.packageId },
        { id: ATTR.clientId, value: this.#o.clientId },
      ],
    };
    this.#o.state.queueStatus(m);
    this.#o.log.info(formatStatmsg({ ...m, source: 'SMS Client', site: this.#o.siteCode(), istr: m.istr, attrs: m.attrs }));
  }

  async #run(deploymentId: string): Promise<void> {
    const p = this.#jobs.get(deploymentId);
    if (!p || this.#stopped) return;
    p.running = true;
    try {
      do {
        p.again = false;
        await this.#attempt(p);
      } while (p.again && !this.#stopped);
    } finally {
      p.running = false;
    }
  }

  async #attempt(p: Pending): Promise<void> {
    const { store, clientId, log, state } = this.#o;
    const d = p.deployment;
    const job = store.contentJob(clientId, d.deploymentId);
    if (!job || job.state === 'downloaded') return;
    const attempt = job.attempts + 1;
    log.info(`Starting download of ${d.contentId} for deployment ${d.deploymentId} (attempt ${attempt}).`);
    try {
      const locations = await this.#o.location.locateContent(d.packageId, d.packageVersion);
      if (!locations.length) {
        throw new CairnError('CAIRN_AGENT_NO_LOCATION', `${d.packageId} version ${d.packageVersion}`);
      }
      const r = await this.#o.dts.downloadContent({ contentId: d.contentId, files: d.files, locations: locations.map((l) => ({ name: l.dpName, packageUrl: l.packageUrl })) });
      store.saveContentJob(clientId, { deploymentId: d.deploymentId, policyId: p.policyId, policyVersion: p.policyVersion, state: 'downloaded', attempts: attempt, lastError: '' });
      const total = d.files.reduce((s, f) => s + f.size, 0);
      log.info(`Content ${d.contentId} for deployment ${d.deploymentId} is downloaded and verified: ${r.files} files, ${total} bytes (${r.bytesDownloaded} transferred in this attempt).`);
      state.raise({ topicType: TOPIC_CONTENT_DEPLOYMENT, topicId: d.deploymentId, idType: 1, stateId: CONTENT_STATE.downloaded, userParams: [d.packageId, String(d.packageVersion)] });
      this.#status(STATUS_DOWNLOAD_SUCCEEDED, 'I', d, [String(total)]);
    } catch (err) {
      if (this.#stopped) return;
      const code = isCairnError(err) ? err.code : 'CAIRN_INTERNAL';
      const firstFailure = job.state !== 'failed';
      store.saveContentJob(clientId, { deploymentId: d.deploymentId, policyId: p.policyId, policyVersion: p.policyVersion, state: 'failed', attempts: attempt, lastError: `${code}: ${describeError(err)}` });
      const delays = this.#o.retryDelaysMs ?? JOB_RETRY_DELAYS_MS;
      const delay = delays[Math.min(attempt - 1, delays.length - 1)]!;
      log.error(`Download of ${d.contentId} for deployment ${d.deploymentId} failed (attempt ${attempt}): ${describeError(err)}. Trying again in about ${Math.round(delay / 1000)} s.`);
      if (firstFailure) {
        state.raise({ topicType: TOPIC_CONTENT_DEPLOYMENT, topicId: d.deploymentId, idType: 1, stateId: CONTENT_STATE.failed, userParams: [code, d.packageId, String(d.packageVersion)] });
        this.#status(STATUS_DOWNLOAD_FAILED, 'E', d, [code]);
      }
      this.#schedule(d.deploymentId, jitter(delay));
    }
  }
}
