/**
 * The contract between the scan agent (issue 6, parts 1, 2 and 4: scan jobs,
 * update-point location, the update store) and the scanner (part 3: catalog
 * cache, inventory, rule evaluation, supersedence pruning). Types only; the
 * scanner lives in `scanner.ts`, the catalog cache in `catalog-cache.ts`,
 * inventories in `inventory.ts`.
 *
 * One process may run thousands of simulated clients: the catalog cache is
 * shared by every client of the process (one copy per update-point catalog,
 * fetched incrementally by content version), while each client evaluates it
 * against its own inventory.
 */
import type { ComponentLog } from '../../shared/cmtrace-log.ts';
import type { Machine } from '../../catalog/rules.ts';

/** An update point as the MP's `WSUSLocationReply` lists it (spec 30 §2). */
export interface UpdatePointLocation {
  /** `WSUSURL`: the update point's base URL (`http://host:port`). */
  readonly url: string;
  /** `ServerName`. */
  readonly serverName: string;
  /** `Version`: the content version the update point holds. */
  readonly contentVersion: number;
}

/**
 * Topic type 500 states (REFERENCE.md): 0 unknown, 1 not required,
 * 2 required (missing), 3 installed.
 */
export const UPDATE_STATES = { unknown: 0, notRequired: 1, required: 2, installed: 3 } as const;
export type UpdateStateName = keyof typeof UPDATE_STATES;
export type UpdateStateId = (typeof UPDATE_STATES)[UpdateStateName];

/** One update's result on one machine. */
export interface UpdateScanResult {
  readonly id: string;
  readonly revision: number;
  readonly title: string;
  readonly articleId: string;
  /** GUIDs of the update's products; the first is the one the update store records. */
  readonly products: readonly string[];
  readonly classification: string;
  readonly state: UpdateStateName;
  /** Why the state is `unknown` (a malformed or contradictory rule), otherwise absent. */
  readonly reason?: string;
}

export interface ScanResult {
  /** The catalog's content version the scan evaluated (≥ the required one). */
  readonly contentVersion: number;
  /** The update point the catalog came from (its `url`). */
  readonly updatePoint: string;
  /** Every update of the catalog not pruned, with its state. */
  readonly updates: readonly UpdateScanResult[];
  /** Updates dropped because another update present in the catalog supersedes them. */
  readonly pruned: readonly { readonly id: string; readonly supersededBy: string }[];
  /** Counts for the scanner's summary line ("found N updates and C categories in search; evaluated applicability rules of M out of K deployed entities"). */
  readonly categories: number;
  readonly evaluated: number;
  readonly total: number;
}

export interface ScanRequest {
  /** As the UpdateSource policy names it, braced (`{GUID}`); an unbraced GUID is accepted too. */
  readonly updateSourceId: string;
  /** The content version the UpdateSource policy requires; an update point holding less is not scanned against. */
  readonly requiredContentVersion: number;
  /** The update point to scan against, picked by the scan agent from the location reply. */
  readonly location: UpdatePointLocation;
  /** The machine's inventory: a real machine's dpkg database and os-release, or a simulated client's facts. */
  readonly machine: Machine;
  /** The client's scanner log (simulated clients' lines carry their `[name]` prefix through the log they are given). */
  readonly log: ComponentLog;
  readonly signal?: AbortSignal;
}

/**
 * The scanner, as the scan agent calls it. Errors are `CairnError`s:
 * `CAIRN_SCAN_UPDATE_POINT_UNREACHABLE` (switch to another location),
 * `CAIRN_SCAN_CONTENT_VERSION_TOO_OLD` (wait and retry; never a false
 * "installed").
 */
export interface Scanner {
  scan(request: ScanRequest): Promise<ScanResult>;
}
