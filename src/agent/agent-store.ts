/**
 * The agent's durable local store: one SQLite database (`<data>/agent.db`)
 * with a `ClientID` column in every table, so that one agent and five
 * thousand simulated clients use the same code and the same single file
 * (issue 4, "keep per-client cost small").
 *
 * What it owns:
 * - state messages with their serial numbers (monotonic per client, never
 *   reused, persisted in `Serials`) and the `MessageSent` flag (spec 30,
 *   section 3 step 6: the seed's `CCM_StateMsg`);
 * - client status messages waiting to be sent;
 * - the policies this client applied (body, version, hash), so that a
 *   tampered or failed download never replaces them;
 * - content-download jobs, so that a killed agent resumes them;
 * - registration state, and the identities of simulated clients (the real
 *   agent keeps its identity in `client.json`/`client.key`, ADR 0005);
 * - scan jobs, the update source in use and the next scheduled scan, so a
 *   restart resumes a job and keeps the update point it switched to, and the
 *   update store (`UpdateStatus`, the seed's `CCM_UpdateStatus`), each
 *   update's current state, written with its state messages in one
 *   transaction (docs/adr/0010-scan-agent.md).
 *
 * Every write is one statement or one transaction, committed before the
 * caller goes on: a message is "stored" only when the insert is committed,
 * and it is marked sent only after the MP answered 202. It never talks to
 * the network.
 */
import Database from 'better-sqlite3';
import type { Database as Db } from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS Serials (ClientID TEXT PRIMARY KEY, LastSerial INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS StateMessages (
  ClientID TEXT NOT NULL, SerialNumber INTEGER NOT NULL, MessageTime TEXT NOT NULL,
  TopicType INTEGER NOT NULL, TopicID TEXT NOT NULL, IDType INTEGER NOT NULL,
  StateID INTEGER NOT NULL, Criticality INTEGER NOT NULL, UserFlags INTEGER NOT NULL,
  UserParams TEXT NOT NULL, MessageSent INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (ClientID, SerialNumber));
CREATE INDEX IF NOT EXISTS StateMessages_Unsent ON StateMessages (ClientID, MessageSent, SerialNumber);
CREATE TABLE IF NOT EXISTS StatusMessagesOut (
  Seq INTEGER PRIMARY KEY AUTOINCREMENT, ClientID TEXT NOT NULL, Body TEXT NOT NULL, Sent INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS StatusMessagesOut_Unsent ON StatusMessagesOut (ClientID, Sent, Seq);
CREATE TABLE IF NOT EXISTS Policies (
  ClientID TEXT NOT NULL, PolicyID TEXT NOT NULL, PolicyVersion TEXT NOT NULL, Category TEXT NOT NULL,
  AssignmentID TEXT NOT NULL, AssignmentVersion TEXT NOT NULL, Hash TEXT NOT NULL, Body TEXT NOT NULL,
  AppliedAt TEXT NOT NULL, PRIMARY KEY (ClientID, PolicyID));
CREATE TABLE IF NOT EXISTS ContentJobs (
  ClientID TEXT NOT NULL, DeploymentID TEXT NOT NULL, PolicyID TEXT NOT NULL, PolicyVersion TEXT NOT NULL,
  State TEXT NOT NULL, Attempts INTEGER NOT NULL DEFAULT 0, LastError TEXT NOT NULL DEFAULT '', UpdatedAt TEXT NOT NULL,
  PRIMARY KEY (ClientID, DeploymentID));
CREATE TABLE IF NOT EXISTS Registration (ClientID TEXT PRIMARY KEY, Status TEXT NOT NULL, UpdatedAt TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS SimulatedClients (
  Idx INTEGER PRIMARY KEY, ClientID TEXT NOT NULL UNIQUE, Name TEXT NOT NULL, PrivateKey TEXT NOT NULL, PublicKey TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ScanJobs (
  ClientID TEXT PRIMARY KEY, JobID TEXT NOT NULL, UpdateSourceID TEXT NOT NULL,
  PolicyContentVersion INTEGER NOT NULL, RequiredContentVersion INTEGER NOT NULL,
  LocationRequestID TEXT NOT NULL DEFAULT '', State TEXT NOT NULL, Trigger TEXT NOT NULL,
  Attempts INTEGER NOT NULL DEFAULT 0, NextAttemptAt TEXT NOT NULL DEFAULT '', LastError TEXT NOT NULL DEFAULT '',
  ScannedContentVersion INTEGER NOT NULL DEFAULT 0, UpdatePoint TEXT NOT NULL DEFAULT '',
  CreatedAt TEXT NOT NULL, UpdatedAt TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS UpdateSources (
  ClientID TEXT NOT NULL, UpdateSourceID TEXT NOT NULL, ContentVersion INTEGER NOT NULL,
  Location TEXT NOT NULL, ServerName TEXT NOT NULL, UpdatedAt TEXT NOT NULL,
  PRIMARY KEY (ClientID, UpdateSourceID));
CREATE TABLE IF NOT EXISTS ScanSchedule (ClientID TEXT PRIMARY KEY, NextScanAt TEXT NOT NULL, Reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS UpdateStatus (
  ClientID TEXT NOT NULL, UpdateID TEXT NOT NULL, Revision INTEGER NOT NULL, Title TEXT NOT NULL,
  ArticleID TEXT NOT NULL, ProductID TEXT NOT NULL, Status INTEGER NOT NULL, Reason TEXT NOT NULL,
  StatusTime TEXT NOT NULL, PRIMARY KEY (ClientID, UpdateID));
`;

export interface NewStateMessage {
  readonly topicType: number;
  readonly topicId: string;
  readonly idType: number;
  readonly stateId: number;
  readonly criticality?: number;
  readonly userFlags?: number;
  readonly userParams?: readonly string[];
  /** Defaults to now. */
  readonly time?: Date;
}

export interface StoredStateMessage {
  readonly serialNumber: number;
  /** ISO 8601 UTC. */
  readonly messageTime: string;
  readonly topicType: number;
  readonly topicId: string;
  readonly idType: number;
  readonly stateId: number;
  readonly criticality: number;
  readonly userFlags: number;
  readonly userParams: readonly string[];
  readonly sent: boolean;
}

export interface AppliedPolicy {
  readonly policyId: string;
  readonly policyVersion: string;
  readonly category: string;
  readonly assignmentId: string;
  readonly assignmentVersion: string;
  readonly hash: string;
  /** The exact body bytes, as UTF-8 text. */
  readonly body: string;
  readonly appliedAt: string;
}

export const CONTENT_JOB_STATES = ['downloading', 'downloaded', 'failed'] as const;
export type ContentJobState = (typeof CONTENT_JOB_STATES)[number];

export interface ContentJob {
  readonly deploymentId: string;
  readonly policyId: string;
  readonly policyVersion: string;
  readonly state: ContentJobState;
  readonly attempts: number;
  readonly lastError: string;
}

export const REGISTRATION_STATES = ['none', 'pending', 'approved', 'revoked'] as const;
export type RegistrationState = (typeof REGISTRATION_STATES)[number];

/**
 * A scan job's life (docs/adr/0010-scan-agent.md): `locating` (waiting for
 * the MP's update points), `scanning`, then `complete`; or `waiting` (no
 * update point holds the required content version yet, or none answers:
 * retried at `nextAttemptAt`) and `failed` (an error the agent cannot
 * retry away; the next scheduled scan starts a new job).
 */
export const SCAN_JOB_STATES = ['locating', 'scanning', 'waiting', 'complete', 'failed'] as const;
export type ScanJobState = (typeof SCAN_JOB_STATES)[number];
export const SCAN_TRIGGERS = ['policy', 'schedule', 'on demand'] as const;
export type ScanTrigger = (typeof SCAN_TRIGGERS)[number];

export interface ScanJob {
  readonly jobId: string;
  readonly updateSourceId: string;
  readonly policyContentVersion: number;
  readonly requiredContentVersion: number;
  readonly locationRequestId: string;
  readonly state: ScanJobState;
  readonly trigger: ScanTrigger;
  readonly attempts: number;
  /** ISO time of the next attempt of a waiting job; '' otherwise. */
  readonly nextAttemptAt: string;
  readonly lastError: string;
  /** The content version and update point of the completed scan. */
  readonly scannedContentVersion: number;
  readonly updatePoint: string;
  readonly createdAt: string;
  readonly updatedAt: string;
}

/** The update source as the client's "WUA handler" holds it: the update point in use and the content version. */
export interface UpdateSourceRow {
  readonly updateSourceId: string;
  readonly contentVersion: number;
  readonly location: string;
  readonly serverName: string;
}

/** One update's current state on a client (the seed's `CCM_UpdateStatus`). */
export interface UpdateStatusRow {
  readonly updateId: string;
  readonly revision: number;
  readonly title: string;
  readonly articleId: string;
  readonly productId: string;
  /** Topic type 500 state: 0 unknown, 1 not required, 2 required, 3 installed. */
  readonly status: number;
  /** Why the state is unknown (a malformed rule), or why it changed without a scan result (pruned); '' otherwise. */
  readonly reason: string;
  /** ISO time the state was last set. */
  readonly statusTime: string;
}

export interface SimulatedIdentityRow {
  readonly idx: number;
  readonly clientId: string;
  readonly name: string;
  readonly privateKey: string;
  readonly publicKey: string;
}

interface StateRow {
  SerialNumber: number;
  MessageTime: string;
  TopicType: number;
  TopicID: string;
  IDType: number;
  StateID: number;
  Criticality: number;
  UserFlags: number;
  UserParams: string;
  MessageSent: number;
}

function toState(r: StateRow): StoredStateMessage {
  return {
    serialNumber: r.SerialNumber,
    messageTime: r.MessageTime,
    topicType: r.TopicType,
    topicId: r.TopicID,
    idType: r.IDType,
    stateId: r.StateID,
    criticality: r.Criticality,
    userFlags: r.UserFlags,
    userParams: JSON.parse(r.UserParams) as string[],
    sent: r.MessageSent === 1,
  };
}

export class AgentStore {
  readonly file: string;
  readonly #db: Db;

  constructor(file: string, options: { readonly?: boolean } = {}) {
    this.file = file;
    if (options.readonly) {
      // A reader beside the running agent (`cairn agent updates`): WAL lets it read while the agent writes.
      this.#db = new Database(file, { readonly: true, fileMustExist: true });
      this.#db.pragma('busy_timeout = 5000');
      return;
    }
    fs.mkdirSync(path.dirname(file), { recursive: true });
    this.#db = new Database(file);
    // WAL with NORMAL sync: a committed transaction survives a killed process
    // (what "never lose an accepted message" needs); only a power cut may lose
    // the last few, which the agent then simply raises again.
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = NORMAL');
    this.#db.pragma('busy_timeout = 5000');
    this.#db.exec(SCHEMA);
  }

  close(): void {
    this.#db.close();
  }

  // --- state messages -------------------------------------------------------

  /** Stores a state message with the client's next serial number, in one transaction; returns the serial. */
  addStateMessage(clientId: string, m: NewStateMessage): number {
    return this.#db.transaction((): number => {
      const row = this.#db
        .prepare('INSERT INTO Serials (ClientID, LastSerial) VALUES (?, 1) ON CONFLICT (ClientID) DO UPDATE SET LastSerial = LastSerial + 1 RETURNING LastSerial')
        .get(clientId) as { LastSerial: number };
      this.#db
        .prepare('INSERT INTO StateMessages (ClientID, SerialNumber, MessageTime, TopicType, TopicID, IDType, StateID, Criticality, UserFlags, UserParams) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
        .run(clientId, row.LastSerial, (m.time ?? new Date()).toISOString(), m.topicType, m.topicId, m.idType, m.stateId, m.criticality ?? 0, m.userFlags ?? 0, JSON.stringify(m.userParams ?? []));
      return row.LastSerial;
    })();
  }

  /** Unsent messages, lowest serial first. */
  unsentStateMessages(clientId: string, limit: number): StoredStateMessage[] {
    return (this.#db.prepare('SELECT * FROM StateMessages WHERE ClientID = ? AND MessageSent = 0 ORDER BY SerialNumber LIMIT ?').all(clientId, limit) as StateRow[]).map(toState);
  }

  stateMessages(clientId: string): StoredStateMessage[] {
    return (this.#db.prepare('SELECT * FROM StateMessages WHERE ClientID = ? ORDER BY SerialNumber').all(clientId) as StateRow[]).map(toState);
  }

  /** Marks exactly these serials sent (after the MP answered 202). */
  markStateMessagesSent(clientId: string, serials: readonly number[]): void {
    const stmt = this.#db.prepare('UPDATE StateMessages SET MessageSent = 1 WHERE ClientID = ? AND SerialNumber = ?');
    this.#db.transaction(() => {
      for (const s of serials) stmt.run(clientId, s);
    })();
  }

  /**
   * Forgets sent messages older than `before`, but always keeps the last
   * serial in `Serials`, so a serial is never reused.
   */
  pruneSentStateMessages(clientId: string, before: Date): number {
    return this.#db.prepare('DELETE FROM StateMessages WHERE ClientID = ? AND MessageSent = 1 AND MessageTime < ?').run(clientId, before.toISOString()).changes;
  }

  // --- client status messages ----------------------------------------------

  addStatusMessage(clientId: string, message: object): void {
    this.#db.prepare('INSERT INTO StatusMessagesOut (ClientID, Body) VALUES (?, ?)').run(clientId, JSON.stringify(message));
  }

  unsentStatusMessages(clientId: string, limit: number): { seq: number; message: Record<string, unknown> }[] {
    return (this.#db.prepare('SELECT Seq, Body FROM StatusMessagesOut WHERE ClientID = ? AND Sent = 0 ORDER BY Seq LIMIT ?').all(clientId, limit) as { Seq: number; Body: string }[]).map((r) => ({
      seq: r.Seq,
      message: JSON.parse(r.Body) as Record<string, unknown>,
    }));
  }

  /** Status messages are not kept once sent: the site holds them. */
  markStatusMessagesSent(seqs: readonly number[]): void {
    const stmt = this.#db.prepare('DELETE FROM StatusMessagesOut WHERE Seq = ?');
    this.#db.transaction(() => {
      for (const s of seqs) stmt.run(s);
    })();
  }

  // --- policies -------------------------------------------------------------

  appliedPolicies(clientId: string): AppliedPolicy[] {
    return (this.#db.prepare('SELECT * FROM Policies WHERE ClientID = ? ORDER BY PolicyID').all(clientId) as Record<string, string>[]).map((r) => ({
      policyId: r.PolicyID!,
      policyVersion: r.PolicyVersion!,
      category: r.Category!,
      assignmentId: r.AssignmentID!,
      assignmentVersion: r.AssignmentVersion!,
      hash: r.Hash!,
      body: r.Body!,
      appliedAt: r.AppliedAt!,
    }));
  }

  savePolicy(clientId: string, p: Omit<AppliedPolicy, 'appliedAt'>): void {
    this.#db
      .prepare(
        'INSERT INTO Policies (ClientID, PolicyID, PolicyVersion, Category, AssignmentID, AssignmentVersion, Hash, Body, AppliedAt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ' +
          'ON CONFLICT (ClientID, PolicyID) DO UPDATE SET PolicyVersion = excluded.PolicyVersion, Category = excluded.Category, AssignmentID = excluded.AssignmentID, AssignmentVersion = excluded.AssignmentVersion, Hash = excluded.Hash, Body = excluded.Body, AppliedAt = excluded.AppliedAt',
      )
      .run(clientId, p.policyId, p.policyVersion, p.category, p.assignmentId, p.assignmentVersion, p.hash, p.body, new Date().toISOString());
  }

  removePolicy(clientId: string, policyId: string): void {
    this.#db.prepare('DELETE FROM Policies WHERE ClientID = ? AND PolicyID = ?').run(clientId, policyId);
  }

  // --- content jobs ---------------------------------------------------------

  contentJob(clientId: string, deploymentId: string): ContentJob | undefined {
    const r = this.#db.prepare('SELECT * FROM ContentJobs WHERE ClientID = ? AND DeploymentID = ?').get(clientId, deploymentId) as Record<string, string | number> | undefined;
    return r
      ? { deploymentId: String(r.DeploymentID), policyId: String(r.PolicyID), policyVersion: String(r.PolicyVersion), state: r.State as ContentJobState, attempts: Number(r.Attempts), lastError: String(r.LastError) }
      : undefined;
  }

  saveContentJob(clientId: string, job: ContentJob): void {
    this.#db
      .prepare(
        'INSERT INTO ContentJobs (ClientID, DeploymentID, PolicyID, PolicyVersion, State, Attempts, LastError, UpdatedAt) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ' +
          'ON CONFLICT (ClientID, DeploymentID) DO UPDATE SET PolicyID = excluded.PolicyID, PolicyVersion = excluded.PolicyVersion, State = excluded.State, Attempts = excluded.Attempts, LastError = excluded.LastError, UpdatedAt = excluded.UpdatedAt',
      )
      .run(clientId, job.deploymentId, job.policyId, job.policyVersion, job.state, job.attempts, job.lastError, new Date().toISOString());
  }

  removeContentJob(clientId: string, deploymentId: string): void {
    this.#db.prepare('DELETE FROM ContentJobs WHERE ClientID = ? AND DeploymentID = ?').run(clientId, deploymentId);
  }

  // --- scan jobs, update sources and the update store ----------------------

  scanJob(clientId: string): ScanJob | undefined {
    const r = this.#db.prepare('SELECT * FROM ScanJobs WHERE ClientID = ?').get(clientId) as Record<string, string | number> | undefined;
    if (!r) return undefined;
    return {
      jobId: String(r.JobID),
      updateSourceId: String(r.UpdateSourceID),
      policyContentVersion: Number(r.PolicyContentVersion),
      requiredContentVersion: Number(r.RequiredContentVersion),
      locationRequestId: String(r.LocationRequestID),
      state: r.State as ScanJobState,
      trigger: r.Trigger as ScanTrigger,
      attempts: Number(r.Attempts),
      nextAttemptAt: String(r.NextAttemptAt),
      lastError: String(r.LastError),
      scannedContentVersion: Number(r.ScannedContentVersion),
      updatePoint: String(r.UpdatePoint),
      createdAt: String(r.CreatedAt),
      updatedAt: String(r.UpdatedAt),
    };
  }

  /** Stores the client's current scan job (one per client: a new job replaces the last one). */
  saveScanJob(clientId: string, j: Omit<ScanJob, 'updatedAt'>): void {
    this.#db
      .prepare(
        'INSERT INTO ScanJobs (ClientID, JobID, UpdateSourceID, PolicyContentVersion, RequiredContentVersion, LocationRequestID, State, Trigger, Attempts, NextAttemptAt, LastError, ScannedContentVersion, UpdatePoint, CreatedAt, UpdatedAt) ' +
          'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ClientID) DO UPDATE SET JobID = excluded.JobID, UpdateSourceID = excluded.UpdateSourceID, PolicyContentVersion = excluded.PolicyContentVersion, ' +
          'RequiredContentVersion = excluded.RequiredContentVersion, LocationRequestID = excluded.LocationRequestID, State = excluded.State, Trigger = excluded.Trigger, Attempts = excluded.Attempts, NextAttemptAt = excluded.NextAttemptAt, ' +
          'LastError = excluded.LastError, ScannedContentVersion = excluded.ScannedContentVersion, UpdatePoint = excluded.UpdatePoint, CreatedAt = excluded.CreatedAt, UpdatedAt = excluded.UpdatedAt',
      )
      .run(clientId, j.jobId, j.updateSourceId, j.policyContentVersion, j.requiredContentVersion, j.locationRequestId, j.state, j.trigger, j.attempts, j.nextAttemptAt, j.lastError, j.scannedContentVersion, j.updatePoint, j.createdAt, new Date().toISOString());
  }

  updateSource(clientId: string, updateSourceId: string): UpdateSourceRow | undefined {
    const r = this.#db.prepare('SELECT * FROM UpdateSources WHERE ClientID = ? AND UpdateSourceID = ?').get(clientId, updateSourceId) as Record<string, string | number> | undefined;
    return r ? { updateSourceId: String(r.UpdateSourceID), contentVersion: Number(r.ContentVersion), location: String(r.Location), serverName: String(r.ServerName) } : undefined;
  }

  saveUpdateSource(clientId: string, u: UpdateSourceRow): void {
    this.#db
      .prepare(
        'INSERT INTO UpdateSources (ClientID, UpdateSourceID, ContentVersion, Location, ServerName, UpdatedAt) VALUES (?, ?, ?, ?, ?, ?) ' +
          'ON CONFLICT (ClientID, UpdateSourceID) DO UPDATE SET ContentVersion = excluded.ContentVersion, Location = excluded.Location, ServerName = excluded.ServerName, UpdatedAt = excluded.UpdatedAt',
      )
      .run(clientId, u.updateSourceId, u.contentVersion, u.location, u.serverName, new Date().toISOString());
  }

  nextScan(clientId: string): { at: string; reason: ScanTrigger } | undefined {
    const r = this.#db.prepare('SELECT NextScanAt, Reason FROM ScanSchedule WHERE ClientID = ?').get(clientId) as { NextScanAt: string; Reason: ScanTrigger } | undefined;
    return r ? { at: r.NextScanAt, reason: r.Reason } : undefined;
  }

  setNextScan(clientId: string, at: Date | undefined, reason: ScanTrigger): void {
    if (!at) {
      this.#db.prepare('DELETE FROM ScanSchedule WHERE ClientID = ?').run(clientId);
      return;
    }
    this.#db
      .prepare('INSERT INTO ScanSchedule (ClientID, NextScanAt, Reason) VALUES (?, ?, ?) ON CONFLICT (ClientID) DO UPDATE SET NextScanAt = excluded.NextScanAt, Reason = excluded.Reason')
      .run(clientId, at.toISOString(), reason);
  }

  updateStatuses(clientId: string): UpdateStatusRow[] {
    return (this.#db.prepare('SELECT * FROM UpdateStatus WHERE ClientID = ? ORDER BY UpdateID').all(clientId) as Record<string, string | number>[]).map((r) => ({
      updateId: String(r.UpdateID),
      revision: Number(r.Revision),
      title: String(r.Title),
      articleId: String(r.ArticleID),
      productId: String(r.ProductID),
      status: Number(r.Status),
      reason: String(r.Reason),
      statusTime: String(r.StatusTime),
    }));
  }

  /**
   * The update store's write (spec 30 §3 step 5): the new or changed update
   * states and the state messages they raise, in one transaction, so that a
   * state is never recorded without its message nor a message raised for a
   * state that was not recorded. Returns the messages' serial numbers.
   */
  recordUpdateStatuses(clientId: string, rows: readonly UpdateStatusRow[], messages: readonly NewStateMessage[]): number[] {
    const upsert = this.#db.prepare(
      'INSERT INTO UpdateStatus (ClientID, UpdateID, Revision, Title, ArticleID, ProductID, Status, Reason, StatusTime) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ' +
        'ON CONFLICT (ClientID, UpdateID) DO UPDATE SET Revision = excluded.Revision, Title = excluded.Title, ArticleID = excluded.ArticleID, ProductID = excluded.ProductID, Status = excluded.Status, Reason = excluded.Reason, StatusTime = excluded.StatusTime',
    );
    const insertMsg = this.#db.prepare(
      'INSERT INTO StateMessages (ClientID, SerialNumber, MessageTime, TopicType, TopicID, IDType, StateID, Criticality, UserFlags, UserParams) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    );
    return this.#db.transaction((): number[] => {
      for (const r of rows) upsert.run(clientId, r.updateId, r.revision, r.title, r.articleId, r.productId, r.status, r.reason, r.statusTime);
      if (!messages.length) return [];
      const last = this.#db
        .prepare('INSERT INTO Serials (ClientID, LastSerial) VALUES (?, ?) ON CONFLICT (ClientID) DO UPDATE SET LastSerial = LastSerial + ? RETURNING LastSerial')
        .get(clientId, messages.length, messages.length) as { LastSerial: number };
      const first = last.LastSerial - messages.length + 1;
      const now = new Date().toISOString();
      return messages.map((m, i) => {
        insertMsg.run(clientId, first + i, (m.time ?? new Date(now)).toISOString(), m.topicType, m.topicId, m.idType, m.stateId, m.criticality ?? 0, m.userFlags ?? 0, JSON.stringify(m.userParams ?? []));
        return first + i;
      });
    })();
  }

  // --- registration and simulated identities --------------------------------

  registration(clientId: string): RegistrationState {
    const r = this.#db.prepare('SELECT Status FROM Registration WHERE ClientID = ?').get(clientId) as { Status: RegistrationState } | undefined;
    return r?.Status ?? 'none';
  }

  setRegistration(clientId: string, status: RegistrationState): void {
    this.#db
      .prepare('INSERT INTO Registration (ClientID, Status, UpdatedAt) VALUES (?, ?, ?) ON CONFLICT (ClientID) DO UPDATE SET Status = excluded.Status, UpdatedAt = excluded.UpdatedAt')
      .run(clientId, status, new Date().toISOString());
  }

  simulatedIdentities(): SimulatedIdentityRow[] {
    return (this.#db.prepare('SELECT Idx, ClientID, Name, PrivateKey, PublicKey FROM SimulatedClients ORDER BY Idx').all() as Record<string, string | number>[]).map((r) => ({
      idx: Number(r.Idx),
      clientId: String(r.ClientID),
      name: String(r.Name),
      privateKey: String(r.PrivateKey),
      publicKey: String(r.PublicKey),
    }));
  }

  saveSimulatedIdentities(rows: readonly SimulatedIdentityRow[]): void {
    const stmt = this.#db.prepare(
      'INSERT INTO SimulatedClients (Idx, ClientID, Name, PrivateKey, PublicKey) VALUES (?, ?, ?, ?, ?) ON CONFLICT (Idx) DO UPDATE SET Name = excluded.Name',
    );
    this.#db.transaction(() => {
      for (const r of rows) stmt.run(r.idx, r.clientId, r.name, r.privateKey, r.publicKey);
    })();
  }
}
