/**
 * State messages and client status messages on the client side
 * (`StateMessage.log`; spec 30 section 3 step 6 and section 4 step 1).
 *
 * A component raises a state message; it is stored at once with the
 * client's next serial number and `MessageSent = 0`. At the end of each
 * reporting cycle (ClientSettings `stateReportingSeconds`, 15 minutes by
 * default) every unsent message goes to the MP relay in bulk, as `Report`s of
 * at most `MAX_MESSAGES_PER_REPORT`, and a message is marked sent only after
 * the MP answered 202 for its report. A refused or failed report leaves its
 * messages unsent for the next cycle: nothing is lost, and nothing is sent
 * twice on purpose (the state system's latest-state rule makes a repeat
 * harmless anyway).
 *
 * Client status messages (`/mp/v1/relay/status-messages`) are queued in the
 * same store and sent the same way at each status cycle
 * (`statusReportingSeconds`), then forgotten: the site keeps them.
 */
import type { ComponentLog } from '../shared/cmtrace-log.ts';
import { describeError } from '../shared/errors.ts';
import type { AgentStore, NewStateMessage } from './agent-store.ts';
import type { MpClient } from './mp-client.ts';
import { parseJsonReply } from './mp-client.ts';
import { buildStateReport } from './state-report-xml.ts';
import type { ReportSender } from './state-report-xml.ts';

/** Ours: about 500 KB of XML per report, well under the relay's 4 MiB limit. */
export const MAX_MESSAGES_PER_REPORT = 1000;
/** The relay's limit on status messages per request (src/mp/state-relay.ts). */
export const MAX_STATUS_PER_REQUEST = 500;
/** Ours: sent state messages are kept this long for an administrator looking at the client, then pruned. */
export const SENT_RETENTION_MS = 7 * 24 * 3600 * 1000;
/** Ours: per-message lines `logRecorded` writes per call; past this, a count. */
export const MAX_RECORDED_LINES = 100;

export interface ClientStatusMessage {
  readonly id: number;
  readonly severity: 'I' | 'W' | 'E';
  readonly level: 'M' | 'D';
  readonly component: string;
  readonly machine: string;
  readonly time: string;
  readonly pid: number;
  readonly tid: number;
  readonly istr: readonly string[];
  readonly attrs: readonly { id: number; value: string }[];
}

export class StateMessaging {
  readonly #store: AgentStore;
  readonly #mp: MpClient;
  readonly #log: ComponentLog;
  readonly #sender: ReportSender;
  #sendingState: Promise<number> | undefined;
  #sendingStatus: Promise<number> | undefined;

  constructor(o: { store: AgentStore; mp: MpClient; log: ComponentLog; sender: ReportSender }) {
    this.#store = o.store;
    this.#mp = o.mp;
    this.#log = o.log;
    this.#sender = o.sender;
  }

  get clientId(): string {
    return this.#sender.clientId;
  }

  raise(m: NewStateMessage): number {
    const serial = this.#store.addStateMessage(this.clientId, m);
    this.#log.info(`Stored state message ${serial}: topic type ${m.topicType}, topic ${m.topicId}, state ${m.stateId}${m.userParams?.length ? `, parameters ${m.userParams.join(' | ')}` : ''}; MessageSent = 0 until the next reporting cycle.`);
    return serial;
  }

  /**
   * Logs messages a component stored itself, in its own transaction (the
   * update store writes states and messages together): the seed's two
   * StateMessage.log lines per message, capped, then one summary line.
   */
  logRecorded(messages: readonly NewStateMessage[], serials: readonly number[]): void {
    if (!messages.length) return;
    for (const m of messages.slice(0, MAX_RECORDED_LINES)) {
      this.#log.info(`Adding message with TopicType ${m.topicType} and TopicId ${m.topicId} to WMI`);
      this.#log.info(`State message(State ID : ${m.stateId}) with TopicType ${m.topicType} and TopicId ${m.topicId} has been recorded for SYSTEM`);
    }
    if (messages.length > MAX_RECORDED_LINES) this.#log.info(`… and ${messages.length - MAX_RECORDED_LINES} more state messages recorded, not logged one by one.`);
    this.#log.info(`Stored ${messages.length} state messages (serials ${serials[0]}${serials.length > 1 ? `-${serials[serials.length - 1]}` : ''}); MessageSent = 0 until the next reporting cycle.`);
  }

  queueStatus(m: ClientStatusMessage): void {
    this.#store.addStatusMessage(this.clientId, m);
  }

  /**
   * Sends every unsent state message. Returns how many the MP accepted. One
   * send at a time per client: a reporting cycle asked for while one is
   * sending (`cairn agent report --now` during a long cycle) joins it rather
   * than sending the same unsent batch a second time; the running cycle
   * already goes on until nothing is unsent, new messages included.
   */
  sendStateMessages(): Promise<number> {
    this.#sendingState ??= this.#sendStateMessages().finally(() => (this.#sendingState = undefined));
    return this.#sendingState;
  }

  async #sendStateMessages(): Promise<number> {
    let accepted = 0;
    for (;;) {
      const batch = this.#store.unsentStateMessages(this.clientId, MAX_MESSAGES_PER_REPORT);
      if (!batch.length) break;
      const xml = buildStateReport(this.#sender, batch);
      const serials = batch.map((m) => m.serialNumber);
      const range = `${serials[0]}${serials.length > 1 ? `-${serials[serials.length - 1]}` : ''}`;
      try {
        const reply = await this.#mp.request('POST', '/mp/v1/relay/state-messages', { body: xml, contentType: 'text/xml; charset=utf-8' });
        let detail = '';
        try {
          const j = parseJsonReply<{ file?: unknown; records?: unknown; invalidRecords?: unknown }>(reply, 'relay');
          detail = `, relayed as ${String(j.file)}, ${String(j.records)} records, ${String(j.invalidRecords)} invalid`;
        } catch {
          // The 202 is what counts; the body is only for the log.
        }
        this.#store.markStateMessagesSent(this.clientId, serials);
        accepted += batch.length;
        this.#log.info(`Sent ${batch.length} state messages (serials ${range}) in one report of ${Buffer.byteLength(xml)} bytes; the MP accepted it (${reply.status}${detail}). Marked them sent.`);
      } catch (err) {
        this.#log.warn(`Could not send ${batch.length} state messages (serials ${range}): ${describeError(err)}. They stay unsent (MessageSent = 0) for the next reporting cycle.`);
        break;
      }
    }
    if (accepted === 0 && !this.#store.unsentStateMessages(this.clientId, 1).length) this.#log.info('Reporting cycle: no unsent state messages.');
    this.#store.pruneSentStateMessages(this.clientId, new Date(Date.now() - SENT_RETENTION_MS));
    return accepted;
  }

  /** Sends every queued client status message. Returns how many the MP accepted. One send at a time per client, as for state messages. */
  sendStatusMessages(): Promise<number> {
    this.#sendingStatus ??= this.#sendStatusMessages().finally(() => (this.#sendingStatus = undefined));
    return this.#sendingStatus;
  }

  async #sendStatusMessages(): Promise<number> {
    let accepted = 0;
    for (;;) {
      const batch = this.#store.unsentStatusMessages(this.clientId, MAX_STATUS_PER_REQUEST);
      if (!batch.length) break;
      try {
        const reply = await this.#mp.request('POST', '/mp/v1/relay/status-messages', { body: JSON.stringify({ messages: batch.map((b) => b.message) }) });
        this.#store.markStatusMessagesSent(batch.map((b) => b.seq));
        accepted += batch.length;
        this.#log.info(`Sent ${batch.length} client status messages (${batch.map((b) => String(b.message.id)).join(', ')}); the MP accepted them (${reply.status}).`);
      } catch (err) {
        this.#log.warn(`Could not send ${batch.length} client status messages: ${describeError(err)}. They stay queued for the next status cycle.`);
        break;
      }
    }
    return accepted;
  }
}
