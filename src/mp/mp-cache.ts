/**
 * The management point's caches (docs/adr/0013-mp-caches.md): what every
 * location request read from the database (`mp.locationFallback`, the
 * boundary groups, and the DPs holding each package version asked for), and
 * each client's signed policy assignment list.
 *
 * Both are keyed by the site database's change counter (`ChangeCounters`,
 * row `mp`, migration 0010), which triggers bump in the same transaction as
 * any change to the boundary, DP, package status, setting and policy tables.
 * Each request reads the counter in the same statement as the client's row
 * (src/mp/client-authenticator.ts, `changeCounter`): when it moved, the
 * caches are dropped and read again. So a change committed before a request starts
 * is seen by that request, on the in-process MP and on a remote one alike:
 * the staleness bound is zero, not a period.
 *
 * The counter is read per request and not cached itself; values can come
 * back out of order on PostgreSQL (a pool of connections), so a cache only
 * moves forward: a request that saw an older counter than the cache's is
 * answered from a fresh read and leaves the cache alone.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../datastore/schema.ts';
import { dpsHoldingPackageQuery, listBoundaryGroups, toHoldingDp } from '../datastore/boundaries.ts';
import type { HoldingDp } from '../datastore/boundaries.ts';
import { readSettings } from '../datastore/site-control.ts';
import { precompile } from '../datastore/precompiled.ts';
import { toLocationGroups } from './content-location.ts';
import type { LocationGroup } from './content-location.ts';

/** At most this many clients' signed assignment lists are kept; the least recently asked goes first. */
export const ASSIGNMENT_LIST_CACHE_SIZE = 20_000;
/** At most this many package versions' DP lists are kept. */
export const HOLDING_CACHE_SIZE = 2_000;

export interface LocationContext {
  readonly fallback: boolean;
  readonly groups: readonly LocationGroup[];
}

export interface SignedList {
  readonly bytes: string;
  readonly signature: string;
  /** The log line's summary of the list, kept with it. */
  readonly count: number;
  readonly summary: string;
}

export class MpCache {
  readonly #db: Kysely<Database>;
  readonly #readCounter: (name: string) => Promise<{ Counter: number }[]>;
  readonly #holding: (packageId: string, version: number) => Promise<{ DPID: number; Name: string; URL: string; Priority: number }[]>;
  #location: { version: number; context: Promise<LocationContext> } | undefined;
  #holdingVersion = -1;
  readonly #holdingCache = new Map<string, Promise<HoldingDp[]>>();
  #listsVersion = -1;
  readonly #lists = new Map<number, SignedList>();
  /** Counts for the bench and tests: how often a list came from the cache. */
  listHits = 0;
  listMisses = 0;

  constructor(db: Kysely<Database>) {
    this.#db = db;
    this.#readCounter = precompile(db, (name) => db.selectFrom('ChangeCounters').select('Counter').where('Name', '=', name));
    this.#holding = precompile(db, (pkg, version) => dpsHoldingPackageQuery(db, pkg, version));
  }

  /** The change counter now (requests get it with the client's row instead; tests and tools ask here). */
  async version(): Promise<number> {
    // A database without migration 0010 (a remote MP newer than its site, which migrates) has no counter: nothing is cached (-1).
    try {
      const [row] = await this.#readCounter('mp');
      return row ? Number(row.Counter) : -1;
    } catch {
      return -1;
    }
  }

  /** `mp.locationFallback` and the boundary groups as of `version` or later. */
  locationContext(version: number): Promise<LocationContext> {
    const cached = this.#location;
    if (version >= 0 && cached?.version === version) return cached.context;
    const context = (async (): Promise<LocationContext> => ({
      fallback: (await readSettings(this.#db))['mp.locationFallback'] === 1,
      groups: toLocationGroups(await listBoundaryGroups(this.#db)),
    }))();
    if (version >= 0 && (!cached || version > cached.version)) {
      this.#location = { version, context };
      // A failed read is not kept: the next request reads again.
      context.catch(() => {
        if (this.#location?.context === context) this.#location = undefined;
      });
    }
    return context;
  }

  /** The DPs holding a package version (`PkgStatus` joined to `DistributionPoints`), as of `version` or later. */
  dpsHolding(packageId: string, packageVersion: number, version: number): Promise<HoldingDp[]> {
    const key = `${packageId} ${packageVersion}`;
    if (version >= 0 && version === this.#holdingVersion) {
      const hit = this.#holdingCache.get(key);
      if (hit) return hit;
    }
    const read = this.#holding(packageId, packageVersion).then((rows) => rows.map(toHoldingDp));
    if (version >= 0 && version >= this.#holdingVersion) {
      if (version > this.#holdingVersion) {
        this.#holdingCache.clear();
        this.#holdingVersion = version;
      }
      this.#holdingCache.set(key, read);
      if (this.#holdingCache.size > HOLDING_CACHE_SIZE) this.#holdingCache.delete(this.#holdingCache.keys().next().value as string);
      read.catch(() => {
        if (this.#holdingCache.get(key) === read) this.#holdingCache.delete(key);
      });
    }
    return read;
  }

  /** A client's signed list built at `version`, if it is still current. */
  assignmentList(resourceId: number, version: number): SignedList | undefined {
    if (version < 0 || version !== this.#listsVersion) {
      this.listMisses += 1;
      return undefined;
    }
    const hit = this.#lists.get(resourceId);
    if (!hit) {
      this.listMisses += 1;
      return undefined;
    }
    this.#lists.delete(resourceId);
    this.#lists.set(resourceId, hit);
    this.listHits += 1;
    return hit;
  }

  /** Keeps a list built after reading `version`; a newer counter drops every older list. */
  keepAssignmentList(resourceId: number, version: number, list: SignedList): void {
    if (version < 0 || version < this.#listsVersion) return;
    if (version > this.#listsVersion) {
      this.#lists.clear();
      this.#listsVersion = version;
    }
    this.#lists.set(resourceId, list);
    if (this.#lists.size > ASSIGNMENT_LIST_CACHE_SIZE) this.#lists.delete(this.#lists.keys().next().value as number);
  }
}
