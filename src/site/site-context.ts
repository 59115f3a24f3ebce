/**
 * What every component of a running site shares: the database, the paths,
 * the site code, the settings, the content library, and the wake-up calls
 * that let one component nudge another right after a commit (the periodic
 * rescan would find the work anyway, later).
 */
import type { Kysely } from 'kysely';
import type { Database } from '../datastore/schema.ts';
import type { Engine } from '../datastore/engine.ts';
import type { SiteSettings } from '../datastore/site-control.ts';
import type { ContentLibrary } from '../content-library/types.ts';
import type { SitePaths } from './site-paths.ts';

export interface Wakers {
  dbmon(): void;
}

export interface SiteContext {
  readonly db: Kysely<Database>;
  readonly engine: Engine;
  readonly paths: SitePaths;
  readonly siteCode: string;
  readonly settings: SiteSettings;
  readonly library: ContentLibrary;
  readonly wake: Wakers;
}

let nextThread = 1000;
/** A logical thread ID for log lines, like the seeds' TIDs: one per package, DP or sending thread. */
export function newThreadId(): number {
  nextThread += 1;
  return nextThread;
}
