/**
 * The scanner's catalog cache (issue 6, part 3): one per process, shared by
 * every client of the process, so that thousands of simulated clients hold
 * and fetch one copy of each update point's catalog.
 *
 * Keyed by the update point's catalog ID (the anchor `<catalogId>-<contentVersion>`
 * of ADR 0007): two locations serving one catalog share an entry. Fetched
 * incrementally with the upstream protocol's client (`upstream-client.ts`):
 * "changes since the content version I hold". Every item is validated at the
 * client (`catalog-input.ts`); an update that fails is kept as *bad* with its
 * reason, so that the scan reports it unknown instead of dropping it.
 *
 * On disk under `<cacheDir>/<catalogId>/`: `state.json` (content version and
 * the segment files, written last, atomically) and one NDJSON segment per
 * fetch, so an agent restart reads its catalog back instead of fetching it;
 * a full fetch or more than `MAX_SEGMENTS` segments rewrites one segment.
 * `<cacheDir>/locations.json` remembers which catalog each location served.
 * A cache file that does not read back is dropped and the catalog fetched
 * again. Items were validated when they arrived; `state.json` holds each
 * segment's SHA-256 and the cache format, so a damaged, truncated or edited
 * segment, or one written by another version of the cache, is never trusted
 * (re-validating 60,000 updates at every agent start would cost seconds).
 *
 * Concurrent refreshes of one location coalesce into one fetch; a catalog
 * already at the wanted content version is not fetched at all.
 *
 * Errors: CAIRN_SCAN_UPDATE_POINT_UNREACHABLE (connection refused, timeout,
 * an error answer or a malformed one: the scan agent switches to another
 * location) and CAIRN_SCAN_CONTENT_VERSION_TOO_OLD (the update point holds
 * less than required: wait and retry). It never serves a catalog older than
 * asked for.
 */
import fsp from 'node:fs/promises';
import type http from 'node:http';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { checkUpdate } from '../../catalog/catalog-input.ts';
import type { CatalogItem, Category, Update } from '../../catalog/catalog.ts';
import { createUpstreamClient } from '../../catalog/upstream-client.ts';
import { CairnError, describeError, isCairnError } from '../../shared/errors.ts';
import { MAX_PAGE_SIZE, parseAnchor } from '../../upstream/protocol.ts';

/** An update as the cache holds it: valid, or rejected at the client with why. */
export type CachedUpdate =
  | { readonly ok: true; readonly update: Update }
  | { readonly ok: false; readonly id: string; readonly revision: number; readonly title: string; readonly articleId: string; readonly code: string; readonly reason: string };

/** One catalog at one content version. Immutable: a refresh makes a new one, so a scan in progress keeps its own. */
export interface CachedCatalog {
  readonly catalogId: string;
  readonly contentVersion: number;
  readonly categories: ReadonlyMap<string, Category>;
  readonly updates: ReadonlyMap<string, CachedUpdate>;
}

/** What one refresh did, for the client's log. */
export interface RefreshResult {
  readonly catalog: CachedCatalog;
  /** 'cached': no request (already at the wanted version); 'fetched': this call fetched; 'joined': another client's fetch served it. */
  readonly how: 'cached' | 'fetched' | 'joined';
  /** The version held before the fetch (0 for none), and what the fetch brought. */
  readonly previousContentVersion: number;
  readonly full: boolean;
  readonly categoriesChanged: number;
  readonly updatesChanged: number;
  /** Updates rejected at the client in this fetch (kept as bad), and items with no usable ID (dropped, counted). */
  readonly rejected: number;
  readonly unusable: number;
}

export interface CatalogCache {
  /**
   * The catalog `url` serves, at content version `required` or later.
   * Fetches only when the cached copy is older than `wanted` (default
   * `required`; the scanner passes the version the location reply says the
   * update point holds); throws CAIRN_SCAN_CONTENT_VERSION_TOO_OLD when the
   * update point itself holds less than `required`,
   * CAIRN_SCAN_UPDATE_POINT_UNREACHABLE when it cannot be read.
   */
  refresh(url: string, required: number, opts?: { readonly wanted?: number; readonly signal?: AbortSignal }): Promise<RefreshResult>;
  /** The catalog cached for `url`, if any, without any request. */
  cached(url: string): Promise<CachedCatalog | undefined>;
}

export interface CatalogCacheOptions {
  readonly dir: string;
  readonly httpAgent?: http.Agent;
  /** Items per page asked of the update point (default: the protocol's largest, 5,000). */
  readonly pageSize?: number;
  /** Per request; default 60 s. */
  readonly timeoutMs?: number;
}

/** Segments of one catalog on disk before they are rewritten into one. */
export const MAX_SEGMENTS = 8;
const GUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A line of a segment file. */
type SegmentLine = { readonly c: unknown } | { readonly u: unknown } | { readonly b: CachedUpdate & { ok: false } };

/** Bumped whenever what a segment line holds changes: a cache of another format is fetched again. */
const CACHE_FORMAT = 1;

interface Segment {
  readonly file: string;
  /** SHA-256 (hex) of the file's bytes. */
  readonly sha256: string;
}

interface StateFile {
  readonly format: number;
  readonly catalogId: string;
  readonly contentVersion: number;
  readonly segments: readonly Segment[];
}

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

/** Validates a raw update and, when it fails, keeps what the scan can still report about it. */
function checkAndKeep(raw: unknown): CatalogItem<Update> {
  const r = checkUpdate(raw);
  if (r.ok) return r;
  const o = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
  const bad = {
    ...r,
    revision: typeof o.revision === 'number' && Number.isSafeInteger(o.revision) && o.revision > 0 ? o.revision : 0,
    title: typeof o.title === 'string' ? o.title.slice(0, 1000) : '',
    articleId: typeof o.articleId === 'string' ? o.articleId.slice(0, 100) : '',
  };
  return bad;
}

function badFrom(item: CatalogItem<Update> & { ok: false }): CachedUpdate & { ok: false } {
  const x = item as typeof item & Partial<{ revision: number; title: string; articleId: string }>;
  return { ok: false, id: item.id.toLowerCase(), revision: x.revision ?? 0, title: x.title ?? '', articleId: x.articleId ?? '', code: item.code, reason: item.reason };
}

function isBadShape(v: unknown): v is CachedUpdate & { ok: false } {
  const o = v as Record<string, unknown> | null;
  return !!o && o.ok === false && typeof o.id === 'string' && GUID_RE.test(o.id) && typeof o.revision === 'number' && typeof o.title === 'string' && typeof o.articleId === 'string' && typeof o.code === 'string' && typeof o.reason === 'string';
}

/** Applies one item to maps being built; a valid update never goes back to a lower revision. */
function applyUpdate(updates: Map<string, CachedUpdate>, next: CachedUpdate): void {
  const id = next.ok ? next.update.id : next.id;
  const cur = updates.get(id);
  if (cur?.ok && next.ok && next.update.revision < cur.update.revision) return;
  updates.set(id, next);
}

async function writeAtomic(file: string, text: string): Promise<void> {
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  await fsp.writeFile(tmp, text);
  await fsp.rename(tmp, file);
}

export function createCatalogCache(opts: CatalogCacheOptions): CatalogCache {
  const dir = path.resolve(opts.dir);
  const catalogs = new Map<string, CachedCatalog>();
  /** Segment files of each catalog on disk. */
  const segmentsOf = new Map<string, Segment[]>();
  /** Which catalog each location served last. */
  let locations: Record<string, string> | undefined;
  const inflight = new Map<string, Promise<RefreshResult>>();
  const loading = new Map<string, Promise<CachedCatalog | undefined>>();

  async function readLocations(): Promise<Record<string, string>> {
    if (locations) return locations;
    try {
      const v = JSON.parse(await fsp.readFile(path.join(dir, 'locations.json'), 'utf8')) as unknown;
      locations = {};
      if (v && typeof v === 'object') for (const [k, id] of Object.entries(v)) if (typeof id === 'string' && /^[0-9a-f]{16}$/.test(id)) locations[k] = id;
    } catch {
      locations = {};
    }
    return locations;
  }

  async function loadFromDisk(catalogId: string): Promise<CachedCatalog | undefined> {
    const cdir = path.join(dir, catalogId);
    try {
      const state = JSON.parse(await fsp.readFile(path.join(cdir, 'state.json'), 'utf8')) as StateFile;
      if (state.format !== CACHE_FORMAT || state.catalogId !== catalogId || !Number.isSafeInteger(state.contentVersion) || !Array.isArray(state.segments)) throw new Error('state.json is malformed or of another format');
      const categories = new Map<string, Category>();
      const updates = new Map<string, CachedUpdate>();
      for (const seg of state.segments) {
        if (typeof seg?.file !== 'string' || !/^seg-[0-9a-z-]+\.ndjson$/.test(seg.file) || typeof seg.sha256 !== 'string') throw new Error('a segment entry is malformed');
        const bytes = await fsp.readFile(path.join(cdir, seg.file));
        if (sha256(bytes) !== seg.sha256) throw new Error(`${seg.file} does not match its hash`);
        for (const line of bytes.toString('utf8').split('\n')) {
          if (!line) continue;
          // Validated when it arrived, and the hash says the file is what was written then.
          const o = JSON.parse(line) as SegmentLine;
          if ('c' in o) {
            const c = o.c as Category;
            categories.set(c.id, c);
          } else if ('u' in o) {
            applyUpdate(updates, { ok: true, update: o.u as Update });
          } else if ('b' in o && isBadShape(o.b)) {
            applyUpdate(updates, o.b);
          } else {
            throw new Error(`${seg.file}: a line is neither a category nor an update`);
          }
        }
      }
      segmentsOf.set(catalogId, [...state.segments]);
      return { catalogId, contentVersion: state.contentVersion, categories, updates };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        // A damaged cache costs one full fetch, never a wrong scan.
        await fsp.rm(cdir, { recursive: true, force: true }).catch(() => undefined);
      }
      return undefined;
    }
  }

  /** The catalog `catalogId` in memory, read from disk the first time. */
  async function load(catalogId: string): Promise<CachedCatalog | undefined> {
    const inMemory = catalogs.get(catalogId);
    if (inMemory) return inMemory;
    let p = loading.get(catalogId);
    if (!p) {
      p = loadFromDisk(catalogId).finally(() => loading.delete(catalogId));
      loading.set(catalogId, p);
    }
    const c = await p;
    if (c && !catalogs.has(catalogId)) catalogs.set(catalogId, c);
    return catalogs.get(catalogId);
  }

  async function persist(next: CachedCatalog, full: boolean, lines: string[]): Promise<void> {
    const cdir = path.join(dir, next.catalogId);
    await fsp.mkdir(cdir, { recursive: true });
    let segments = full ? [] : [...(segmentsOf.get(next.catalogId) ?? [])];
    const old = segmentsOf.get(next.catalogId) ?? [];
    if (segments.length + 1 > MAX_SEGMENTS) {
      // Rewrite the whole catalog as one segment.
      segments = [];
      lines = [...[...next.categories.values()].map((c) => JSON.stringify({ c })), ...[...next.updates.values()].map((u) => JSON.stringify(u.ok ? { u: u.update } : { b: u }))];
    }
    const file = `seg-${String(next.contentVersion).padStart(12, '0')}-${randomBytes(4).toString('hex')}.ndjson`;
    const text = lines.length ? lines.join('\n') + '\n' : '';
    await writeAtomic(path.join(cdir, file), text);
    segments.push({ file, sha256: sha256(text) });
    const state: StateFile = { format: CACHE_FORMAT, catalogId: next.catalogId, contentVersion: next.contentVersion, segments };
    await writeAtomic(path.join(cdir, 'state.json'), JSON.stringify(state) + '\n');
    segmentsOf.set(next.catalogId, segments);
    const kept = new Set(segments.map((x) => x.file));
    for (const x of old) if (!kept.has(x.file)) await fsp.rm(path.join(cdir, x.file), { force: true }).catch(() => undefined);
  }

  async function rememberLocation(url: string, catalogId: string): Promise<void> {
    const locs = await readLocations();
    if (locs[url] === catalogId) return;
    locs[url] = catalogId;
    await fsp.mkdir(dir, { recursive: true });
    await writeAtomic(path.join(dir, 'locations.json'), JSON.stringify(locs, null, 2) + '\n');
  }

  function unreachable(url: string, err: unknown): CairnError {
    if (isCairnError(err) && err.code.startsWith('CAIRN_SCAN_')) return err;
    const detail = isCairnError(err) && err.detail ? err.detail : describeError(err);
    return new CairnError('CAIRN_SCAN_UPDATE_POINT_UNREACHABLE', `${url}: ${detail}`, { cause: err });
  }

  /** One fetch of `url`'s changes since the catalog held for it. */
  async function fetchChanges(url: string, signal: AbortSignal | undefined): Promise<RefreshResult> {
    const client = createUpstreamClient(url, {
      checkUpdate: checkAndKeep,
      ...(opts.httpAgent ? { httpAgent: opts.httpAgent } : {}),
      // Big pages: fewer round trips; a page of 5,000 updates is a few MiB.
      pageSize: opts.pageSize ?? MAX_PAGE_SIZE,
      ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
      ...(signal ? { signal } : {}),
    });
    const knownId = (await readLocations())[url];
    let held = knownId ? await load(knownId) : undefined;
    let changes = await client.changesSince(held ? `${held.catalogId}-${held.contentVersion}` : '');
    let served = parseAnchor(changes.anchor);
    if (!served) throw new CairnError('CAIRN_SCAN_UPDATE_POINT_UNREACHABLE', `${url}: the /changes answer has no anchor`);
    if (served.catalogId !== held?.catalogId) {
      // Another catalog than we thought (a new location, or its store was replaced): ask again from the copy we may hold of it.
      const other = await load(served.catalogId);
      if (other) {
        held = other;
        changes = await client.changesSince(`${other.catalogId}-${other.contentVersion}`);
        served = parseAnchor(changes.anchor);
        if (!served || served.catalogId !== other.catalogId) throw new CairnError('CAIRN_SCAN_UPDATE_POINT_UNREACHABLE', `${url}: the catalog changed between two requests`);
      } else {
        held = undefined;
      }
    }
    const catalogId = served.catalogId;
    const full = changes.full || !held;
    const base = full ? undefined : held;
    const previousContentVersion = held?.contentVersion ?? 0;
    if (base && served.seq <= base.contentVersion) {
      await rememberLocation(url, catalogId);
      return { catalog: base, how: 'fetched', previousContentVersion, full: false, categoriesChanged: 0, updatesChanged: 0, rejected: 0, unusable: 0 };
    }
    const categories = new Map(base?.categories ?? []);
    const updates = new Map(base?.updates ?? []);
    const lines: string[] = [];
    let categoriesChanged = 0;
    let updatesChanged = 0;
    let rejected = 0;
    let unusable = 0;
    for await (const page of changes.categoryPages()) {
      for (const c of page) {
        if (!c.ok) {
          unusable += 1;
          continue;
        }
        categories.set(c.value.id, c.value);
        lines.push(JSON.stringify({ c: c.value }));
        categoriesChanged += 1;
      }
    }
    for await (const page of changes.updatePages()) {
      for (const u of page) {
        if (u.ok) {
          applyUpdate(updates, { ok: true, update: u.value });
          lines.push(JSON.stringify({ u: u.value }));
        } else if (GUID_RE.test(u.id)) {
          const bad = badFrom(u);
          applyUpdate(updates, bad);
          lines.push(JSON.stringify({ b: bad }));
          rejected += 1;
        } else {
          unusable += 1;
          continue;
        }
        updatesChanged += 1;
      }
    }
    const next: CachedCatalog = { catalogId, contentVersion: served.seq, categories, updates };
    await persist(next, full, lines);
    catalogs.set(catalogId, next);
    await rememberLocation(url, catalogId);
    return { catalog: next, how: 'fetched', previousContentVersion, full, categoriesChanged, updatesChanged, rejected, unusable };
  }

  return {
    async cached(url) {
      const id = (await readLocations())[url];
      return id ? load(id) : undefined;
    },

    async refresh(url, required, o = {}) {
      const signal = o.signal;
      const id = (await readLocations())[url];
      const held = id ? await load(id) : undefined;
      if (held && held.contentVersion >= Math.max(required, o.wanted ?? 0)) {
        return { catalog: held, how: 'cached', previousContentVersion: held.contentVersion, full: false, categoriesChanged: 0, updatesChanged: 0, rejected: 0, unusable: 0 };
      }
      let p = inflight.get(url);
      let how: RefreshResult['how'] = 'joined';
      if (!p) {
        how = 'fetched';
        // A fetch serves every client waiting on it: one client's abort must not cancel it for the others.
        p = fetchChanges(url, undefined)
          .catch(async (err: unknown) => {
            // The update point's store was replaced mid-fetch (CAIRN_CATALOG_CHANGED): once more, from scratch.
            if (isCairnError(err) && err.code === 'CAIRN_CATALOG_CHANGED') return fetchChanges(url, undefined);
            throw err;
          })
          .catch((err: unknown) => {
            throw unreachable(url, err);
          })
          .finally(() => inflight.delete(url));
        inflight.set(url, p);
      }
      const r = signal ? await Promise.race([p, new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true }))]) : await p;
      if (r.catalog.contentVersion < required) {
        throw new CairnError('CAIRN_SCAN_CONTENT_VERSION_TOO_OLD', `${url} holds catalog ${r.catalog.catalogId} at content version ${r.catalog.contentVersion}; the scan requires ${required}`);
      }
      return { ...r, how };
    },
  };
}

