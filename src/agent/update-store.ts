/**
 * The update store (`UpdatesStore.log`; spec 30 §3 step 5, seeds 002/003
 * "the update store records the state and raises a state message for each
 * update"): keeps each update's current state on this client (the seed's
 * `CCM_UpdateStatus`: ID, revision, title, article, product, status, time)
 * and raises a topic type 500 state message only when a state is new or has
 * changed, so that a client reports each change once and a rescan that finds
 * nothing new sends nothing.
 *
 * What counts as a change (docs/adr/0010-scan-agent.md): a state (0 unknown,
 * 1 not required, 2 required, 3 installed) the store has not recorded, a
 * different state, or a new revision of the update. An update the store holds
 * as required or unknown that a scan no longer returns (pruned because a newer
 * update supersedes it, or gone from the catalog) becomes not required, with
 * the reason, because the client no longer needs it; installed and
 * not-required ones stay as they are.
 *
 * Thousands of simulated clients × thousands of updates: the states and
 * their messages are written in one transaction per scan
 * (`AgentStore.recordUpdateStatuses`), never row by row, and the per-update
 * log lines are capped per scan. It never talks to the network: the
 * messages leave at the next reporting cycle (src/agent/state-messages.ts).
 */
import type { ComponentLog } from '../shared/cmtrace-log.ts';
import type { AgentStore, NewStateMessage, UpdateStatusRow } from './agent-store.ts';
import { UPDATE_STATES } from './scan/types.ts';
import type { ScanResult } from './scan/types.ts';
import type { StateMessaging } from './state-messages.ts';

/** Topic type 500, update detection (REFERENCE.md). */
export const UPDATE_TOPIC_TYPE = 500;
/** The seed's `IDType="3"` for an update's topic. */
export const UPDATE_TOPIC_ID_TYPE = 3;
/** Ours: per-update lines logged per scan; past this, a count. */
export const MAX_UPDATE_LINES_PER_SCAN = 100;

/** The status names the product's logs use. */
export const STATUS_NAMES: Readonly<Record<number, string>> = { 0: 'Unknown', 1: 'Not Required', 2: 'Missing', 3: 'Installed' };

export interface UpdateStoreResult {
  readonly created: number;
  readonly changed: number;
  readonly unchanged: number;
  /** Required or unknown updates the scan no longer returned, now not required. */
  readonly dropped: number;
  readonly raised: number;
}

export class UpdateStore {
  readonly #clientId: string;
  readonly #store: AgentStore;
  readonly #state: StateMessaging;
  readonly #log: ComponentLog;

  constructor(o: { clientId: string; store: AgentStore; state: StateMessaging; log: ComponentLog }) {
    this.#clientId = o.clientId;
    this.#store = o.store;
    this.#state = o.state;
    this.#log = o.log;
  }

  /** The client's current update states, by update ID. */
  statuses(): UpdateStatusRow[] {
    return this.#store.updateStatuses(this.#clientId);
  }

  /** Records a completed scan's results; returns what changed. */
  record(result: ScanResult): UpdateStoreResult {
    const log = this.#log;
    const before = new Map(this.statuses().map((r) => [r.updateId, r]));
    const now = new Date().toISOString();
    const rows: UpdateStatusRow[] = [];
    const messages: NewStateMessage[] = [];
    let created = 0;
    let changed = 0;
    let unchanged = 0;
    let dropped = 0;
    let lines = 0;
    const detail = (text: string): void => {
      if (lines < MAX_UPDATE_LINES_PER_SCAN) log.info(text);
      lines += 1;
    };
    const raise = (row: UpdateStatusRow): void => {
      messages.push({ topicType: UPDATE_TOPIC_TYPE, topicId: row.updateId, idType: UPDATE_TOPIC_ID_TYPE, stateId: row.status, userParams: [String(row.revision)], time: new Date(now) });
    };
    const seen = new Set<string>();
    for (const u of result.updates) {
      seen.add(u.id);
      const status = UPDATE_STATES[u.state];
      const old = before.get(u.id);
      const row: UpdateStatusRow = { updateId: u.id, revision: u.revision, title: u.title, articleId: u.articleId, productId: u.products[0] ?? '', status, reason: u.reason ?? '', statusTime: now };
      if (old && old.status === status && old.revision === u.revision) {
        unchanged += 1;
        // A new reason for the same unknown state, or a new title: kept, not reported.
        if (old.reason !== row.reason || old.title !== row.title || old.articleId !== row.articleId || old.productId !== row.productId) rows.push({ ...row, statusTime: old.statusTime });
        continue;
      }
      detail(`Processing update status from update (${u.id}) with ProductID = ${row.productId}`);
      if (!old) {
        created += 1;
        detail(`Status of update (${u.id}) has not been reported before, creating new instance.`);
      } else {
        changed += 1;
        detail(`Status of update (${u.id}) changed from (${STATUS_NAMES[old.status]}, revision ${old.revision}) to (${STATUS_NAMES[status]}, revision ${u.revision}), updating the instance.`);
      }
      rows.push(row);
      raise(row);
      detail(`Successfully raised state message for update (${u.id}) with status (${STATUS_NAMES[status]})${status === 0 && row.reason ? `: ${row.reason}` : ''}.`);
    }
    const supersededBy = new Map(result.pruned.map((p) => [p.id, p.supersededBy]));
    for (const old of before.values()) {
      if (seen.has(old.updateId) || (old.status !== UPDATE_STATES.required && old.status !== UPDATE_STATES.unknown)) continue;
      const by = supersededBy.get(old.updateId);
      const reason = by ? `superseded by ${by}` : `no longer in the catalog at content version ${result.contentVersion}`;
      const row: UpdateStatusRow = { ...old, status: UPDATE_STATES.notRequired, reason, statusTime: now };
      dropped += 1;
      detail(`Status of update (${old.updateId}) changed from (${STATUS_NAMES[old.status]}) to (${STATUS_NAMES[row.status]}): ${reason}.`);
      rows.push(row);
      raise(row);
    }
    if (lines > MAX_UPDATE_LINES_PER_SCAN) log.info(`… and ${lines - MAX_UPDATE_LINES_PER_SCAN} more lines for new or changed update states, not logged one by one (at most ${MAX_UPDATE_LINES_PER_SCAN} per scan).`);
    const serials = this.#store.recordUpdateStatuses(this.#clientId, rows, messages);
    this.#state.logRecorded(messages, serials);
    log.info(
      `Update store: ${result.updates.length} update states from the scan at content version ${result.contentVersion}: ${created} new, ${changed} changed, ${unchanged} unchanged${dropped ? `, ${dropped} no longer returned (now not required)` : ''}; raised ${messages.length} state messages (topic type 500) in one transaction.`,
    );
    return { created, changed, unchanged, dropped, raised: messages.length };
  }
}
