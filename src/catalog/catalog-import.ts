/**
 * Imports the changes of a catalog source (an upstream over HTTP, or apt
 * lists) into the site database: the site-database phase of an update sync
 * (seed 004, step 4: "read categories, then updates … and insert/update them
 * as CIs"), written so that the update sync manager component can call it
 * and turn its callbacks into log lines and status messages.
 *
 * Pages are written one transaction each (idempotent by ID and revision);
 * the anchor and the content version move once, at the end, and only when
 * something changed, in this sync or in an earlier one that did not finish
 * (`Update_SyncStatus.PendingChanges`). So a sync that fails or is killed
 * leaves the content version and anchor where they were and the next sync
 * completes it. A failure is recorded (`LastSyncResult`, the alert) and
 * rethrown for the caller to report.
 *
 * Malformed items are counted and reported through `onRejected` with their
 * ID and code; they never stop the sync.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../datastore/schema.ts';
import { expireSuperseded, getSyncStatus, recordSyncFailure, recordSyncStart, recordSyncSuccess, upsertCategoryPage, upsertUpdatePage } from '../datastore/updates.ts';
import { describeError } from '../shared/errors.ts';
import type { CatalogItem, Update } from './catalog.ts';
import type { CatalogSource } from './catalog-source.ts';
import type { PageResult } from '../datastore/updates.ts';

export const IMPORT_PHASES = ['categories', 'updates'] as const;
export type ImportPhase = (typeof IMPORT_PHASES)[number];

export interface ImportProgress {
  readonly phase: ImportPhase;
  readonly processed: number;
  readonly total: number;
  readonly percent: number;
  /** Seconds left at the rate so far; undefined at the start and at the end. */
  readonly etaSeconds: number | undefined;
  /** "processed 122 of 130 items (93%), ETA in 00:00:03", as the seed's log line. */
  readonly line: string;
}

export interface RejectedItem {
  readonly phase: ImportPhase;
  readonly id: string;
  readonly code: string;
  readonly reason: string;
}

export interface ImportOptions {
  readonly siteCode: string;
  /** Ignore the stored anchor and ask for everything (`FULL.SYN`). */
  readonly full?: boolean;
  readonly onProgress?: (p: ImportProgress) => void;
  readonly onRejected?: (r: RejectedItem) => void;
  /** Called at the start of each phase, with how many items it will process. */
  readonly onPhase?: (phase: ImportPhase, total: number) => void;
  /** Stops between pages; the sync is then recorded as failed. */
  readonly signal?: AbortSignal;
  /** The caller recorded the sync's start already (the sync manager, before its update point phase). */
  readonly alreadyStarted?: boolean;
  /** Recorded with the sync's start (`LastSyncKind`, `LastSyncTrigger`). */
  readonly kind?: string;
  readonly trigger?: string;
  /** The sync criteria: an update it refuses is not stored (counted as `filtered`). Default: every update. */
  readonly accept?: (u: Update) => boolean;
  /** Called for each accepted update of a page before it is written (seed 004: "synchronizing update <id> - <title>"). */
  readonly onUpdate?: (u: Update) => void;
  /**
   * Once every page is in, expire the updates superseded by an update the
   * site has held this many days (0: any, even one stored by this sync), as
   * part of the same content version.
   */
  readonly expireSupersededAfterDays?: number;
}

export interface PhaseCounts {
  processed: number;
  inserted: number;
  updated: number;
  unchanged: number;
  rejected: number;
}

export interface ImportResult {
  readonly source: string;
  readonly full: boolean;
  readonly anchor: string;
  readonly categories: Readonly<PhaseCounts>;
  readonly updates: Readonly<PhaseCounts>;
  /** Items the source could not read at all (no ID). */
  readonly rejectedAtSource: number;
  /** Categories and updates inserted or replaced by this sync (expired updates included). */
  readonly itemsChanged: number;
  /** Updates left out by the sync criteria. */
  readonly filtered: number;
  /** Superseded updates expired by this sync. */
  readonly expired: number;
  readonly previousContentVersion: number;
  readonly contentVersion: number;
}

const pad = (n: number): string => String(n).padStart(2, '0');

export function formatEta(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  return `${pad(Math.floor(s / 3600))}:${pad(Math.floor((s % 3600) / 60))}:${pad(s % 60)}`;
}

/** The seed's progress line: "processed X of Y items (Z%)", with ", ETA in hh:mm:ss" while not done. */
export function progressLine(processed: number, total: number, etaSeconds: number | undefined): string {
  const percent = total ? Math.min(100, Math.floor((processed * 100) / total)) : 100;
  return `processed ${processed} of ${total} items (${percent}%)${etaSeconds !== undefined && processed < total ? `, ETA in ${formatEta(etaSeconds)}` : ''}`;
}

async function runPhase<T>(
  phase: ImportPhase,
  pages: AsyncIterable<readonly CatalogItem<T>[]>,
  total: number,
  write: (items: T[]) => Promise<PageResult>,
  opts: ImportOptions,
  keep: (item: T) => boolean = () => true,
): Promise<{ counts: PhaseCounts; filtered: number }> {
  const counts: PhaseCounts = { processed: 0, inserted: 0, updated: 0, unchanged: 0, rejected: 0 };
  let filtered = 0;
  const started = performance.now();
  opts.onPhase?.(phase, total);
  for await (const page of pages) {
    opts.signal?.throwIfAborted();
    const good: T[] = [];
    for (const it of page) {
      if (it.ok) {
        if (keep(it.value)) good.push(it.value);
        else filtered += 1;
      } else {
        counts.rejected += 1;
        opts.onRejected?.({ phase, id: it.id, code: it.code, reason: it.reason });
      }
    }
    if (good.length) {
      const r = await write(good);
      counts.inserted += r.inserted;
      counts.updated += r.updated;
      counts.unchanged += r.unchanged;
    }
    counts.processed += page.length;
    if (opts.onProgress) {
      const elapsed = (performance.now() - started) / 1000;
      const left = Math.max(0, total - counts.processed);
      const eta = counts.processed && left ? (elapsed / counts.processed) * left : undefined;
      opts.onProgress({ phase, processed: counts.processed, total: Math.max(total, counts.processed), percent: total ? Math.min(100, Math.floor((counts.processed * 100) / total)) : 100, etaSeconds: eta, line: progressLine(counts.processed, Math.max(total, counts.processed), eta) });
    }
  }
  return { counts, filtered };
}

/** Syncs `source` into the site database of `siteCode`; see the module comment. */
export async function importCatalog(db: Kysely<Database>, source: CatalogSource, opts: ImportOptions): Promise<ImportResult> {
  const start = opts.alreadyStarted ? await getSyncStatus(db, opts.siteCode) : await recordSyncStart(db, opts.siteCode, { ...(opts.kind ? { kind: opts.kind } : {}), ...(opts.trigger ? { trigger: opts.trigger } : {}) });
  try {
    const anchor = !opts.full && start.sourceUrl === source.url ? start.anchor : '';
    const changes = await source.changesSince(anchor);
    // Rows changed now appear in the next content version; it is only published by recordSyncSuccess.
    const nextVersion = start.contentVersion + 1;
    const { counts: categories } = await runPhase('categories', changes.categoryPages(), changes.totals.categories, (items) => upsertCategoryPage(db, opts.siteCode, items, nextVersion), opts);
    const keep = (u: Update): boolean => {
      if (opts.accept && !opts.accept(u)) return false;
      opts.onUpdate?.(u);
      return true;
    };
    const { counts: updates, filtered } = await runPhase('updates', changes.updatePages(), changes.totals.updates, (items) => upsertUpdatePage(db, opts.siteCode, items, nextVersion), opts, keep);
    opts.signal?.throwIfAborted();
    // The cutoff is taken now, after the pages: a superseder this sync stored is "held 0 days".
    const expired = opts.expireSupersededAfterDays === undefined ? 0 : await expireSuperseded(db, opts.siteCode, new Date(Date.now() - opts.expireSupersededAfterDays * 86_400_000).toISOString(), nextVersion);
    const itemsChanged = categories.inserted + categories.updated + updates.inserted + updates.updated + expired;
    const done = await recordSyncSuccess(db, opts.siteCode, { sourceUrl: source.url, anchor: changes.anchor, itemsChanged, rejected: categories.rejected + updates.rejected + changes.rejectedAtSource, expired });
    return {
      source: source.url,
      full: changes.full,
      anchor: changes.anchor,
      categories,
      updates,
      rejectedAtSource: changes.rejectedAtSource,
      itemsChanged,
      filtered,
      expired,
      previousContentVersion: start.contentVersion,
      contentVersion: done.contentVersion,
    };
  } catch (err) {
    // The sync's own error is the one to report; if the database cannot even record the failure,
    // that is written to stderr and the caller's next database step will report it too.
    await recordSyncFailure(db, opts.siteCode, describeError(err)).catch((e: unknown) => process.stderr.write(`cairn: cannot record the failed sync: ${describeError(e)}\n`));
    throw err;
  }
}
