/**
 * The software update point's routes (issue 5, part 3). No I/O here.
 *
 * Anonymous, the same incremental protocol as `cairn upstream`
 * (`src/upstream/protocol.ts`, docs/adr/0004-catalog-protocol.md), served
 * from the update point's own catalog store, for replicas, child sites and
 * clients' scans:
 *   GET /upstream/v1/changes?anchor=A
 *   GET /upstream/v1/categories|updates?since=A&until=B[&cursor=C][&limit=N]
 * An update point's anchor is `<catalogId>-<contentVersion>`: a client that
 * scanned at content version V asks for what changed since V.
 *   GET /sup/v1/version → { catalogId, contentVersion } (anonymous: what a scan agent checks first)
 *
 * Signed by the site (HMAC with the key issued by `cairn admin sup add`,
 * the scheme of `src/dp/protocol.ts`; the answer carries the proof header):
 *   GET  /sup/v1/status → SupStatus
 *   POST /sup/v1/sync?source=S&full=0|1 → 202 SupSyncState: starts a sync of
 *        the update point's store from S (or from its own `--upstream` when S
 *        is empty); a sync already running is joined, not started twice
 *   GET  /sup/v1/sync → SupSyncState: progress and, once done, the result
 * The parameters are in the query string because the signature covers the
 * path and query, not the body.
 */
export const SUP_PREFIX = '/sup/v1';

export const SUP_SYNC_STATES = ['idle', 'running', 'succeeded', 'failed'] as const;
export type SupSyncStateName = (typeof SUP_SYNC_STATES)[number];

export interface SupStatus {
  readonly name: string;
  readonly catalogId: string;
  readonly contentVersion: number;
  /** The update point's own upstream (`--upstream` / `--apt`), '' for none. */
  readonly upstream: string;
}

export interface SupRejected {
  readonly phase: string;
  readonly id: string;
  readonly code: string;
  readonly reason: string;
}

export interface SupSyncResult {
  readonly source: string;
  readonly full: boolean;
  readonly itemsChanged: number;
  readonly categories: number;
  readonly updates: number;
  readonly rejected: number;
  readonly previousContentVersion: number;
  readonly contentVersion: number;
}

export interface SupSyncState {
  /** Changes with every sync the update point starts; a different one mid-poll means it restarted. */
  readonly syncId: string;
  readonly state: SupSyncStateName;
  readonly source: string;
  readonly full: boolean;
  /** 'categories' or 'updates' while running. */
  readonly phase: string;
  readonly processed: number;
  readonly total: number;
  /** The last progress line, "processed X of Y items (Z%), ETA in hh:mm:ss". */
  readonly line: string;
  readonly startedAt: string;
  readonly endedAt: string;
  /** Rejected items, the first 100 with their IDs (the count is in `result.rejected`). */
  readonly rejectedItems: readonly SupRejected[];
  readonly result?: SupSyncResult;
  readonly error?: { readonly code: string; readonly message: string };
}

/** Rejected items kept with their IDs in a sync state; the rest are only counted. */
export const MAX_REJECTED_LISTED = 100;
