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
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { checkUpdate } from '../../catalog/catalog-input.ts';
import type { CatalogItem, Category, Update } from '../../catalog/catalog.ts';
import { createUpstreamClient } from '../../catalog/upstream-client.ts';
import { CairnError, describeError, isCairnError } from '../../shared/errors.ts';
import { buildPage, indexRaw, PAGE_CURSOR_HEADER, PAGE_MEDIA_TYPE, PAGE_SHA256_HEADER, readPage } from '../../sup/catalog-pack.ts';
import type { PageEntry } from '../../sup/catalog-pack.ts';
import { MAX_PAGE_SIZE, parseAnchor, UPSTREAM_PREFIX } from '../../upstream/protocol.ts';

/**
 * An update as the cache holds it: its entry in a catalog page (ID, revision,
 * title, the packages its rules need, what it supersedes, or why it is bad)
 * and its body, unparsed until a scan evaluates it (`readBody`).
 */
export type CachedUpdate = PageEntry;

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
  /** Updates the update point's pages mark invalid (kept as bad). */
  readonly invalidAtUpdatePoint: number;
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

/** Fetches of one catalog kept on disk as they arrived before the catalog is rewritten as one. */
export const MAX_SEGMENTS = 8;

/** Bumped whenever what the cache files hold changes: a cache of another format is fetched again. */
const CACHE_FORMAT = 2;

interface Segment {
  /** `page-….ndjson` (a catalog page, `catalog-pack.ts`) or `categories-….json` (a JSON array of categories). */
  readonly file: string;
  /** SHA-256 (hex) of the file's bytes. */
  readonly sha256: string;
}

interface StateFile {
  readonly format: number;
  readonly catalogId: string;
  readonly contentVersion: number;
  /** How many fetches the segments hold (a rewrite makes it 1). */
  readonly fetches: number;
  readonly segments: readonly Segment[];
}

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');
const SEGMENT_RE = /^(page-[0-9a-z-]+\.ndjson|categories-[0-9a-z-]+\.json)$/;

/** Validates a raw update and, when it fails, keeps what the scan can still report about it (the fallback for a plain JSON page). */
function checkAndIndex(raw: unknown): { item: CatalogItem<Update>; entry: ReturnType<typeof indexRaw> } {
  const item = checkUpdate(raw);
  return { item, entry: indexRaw(raw, item) };
}

/** Applies one entry to maps being built; a valid update never goes back to a lower revision. */
function applyUpdate(updates: Map<string, CachedUpdate>, next: CachedUpdate): void {
  const cur = updates.get(next.id);
  if (cur && cur.bad === null && next.bad === null && next.revision < cur.revision) return;
  updates.set(next.id, next);
}

async function writeAtomic(file: string, data: string | Buffer): Promise<void> {
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  await fsp.writeFile(tmp, data);
  await fsp.rename(tmp, file);
}

interface Answer {
  readonly status: number;
  readonly type: string;
  readonly headers: Readonly<Record<string, string>>;
  /** The body, read after the headers (so the next page can be asked for meanwhile). */
  readonly body: Promise<Buffer>;
}

/**
 * One GET through node:http(s), with the keep-alive agent given or Node's
 * global one (keep-alive too): pages are megabytes, and node:http reads them
 * with less work than fetch. Rejects on connection errors and timeouts.
 */
async function getBytes(url: string, accept: string, agent: http.Agent | undefined, signal: AbortSignal): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const mod = u.protocol === 'https:' ? https : http;
    const req = mod.get(u, { ...(agent && u.protocol === 'http:' ? { agent } : {}), signal, headers: { accept } }, (res) => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') headers[k] = v;
      const body = new Promise<Buffer>((ok, fail) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => ok(Buffer.concat(chunks)));
        res.on('error', fail);
        res.on('aborted', () => fail(new Error('the answer was cut short')));
      });
      body.catch(() => undefined);
      resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'] ?? '', headers, body });
    });
    req.on('error', reject);
  });
}

/** One page of updates as fetched: the bytes to keep, its entries, and what validation at the client found (plain JSON pages only). */
interface FetchedPage {
  readonly bytes: Buffer;
  readonly sha256: string;
  readonly entries: readonly CachedUpdate[];
  readonly rejected: number;
  readonly unusable: number;
}

export function createCatalogCache(opts: CatalogCacheOptions): CatalogCache {
  const dir = path.resolve(opts.dir);
  const pageSize = opts.pageSize ?? MAX_PAGE_SIZE;
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const catalogs = new Map<string, CachedCatalog>();
  /** Segment files of each catalog on disk, and how many fetches they hold. */
  const segmentsOf = new Map<string, { segments: Segment[]; fetches: number }>();
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
      if (state.format !== CACHE_FORMAT || state.catalogId !== catalogId || !Number.isSafeInteger(state.contentVersion) || !Number.isSafeInteger(state.fetches) || !Array.isArray(state.segments)) {
        throw new Error('state.json is malformed or of another format');
      }
      const categories = new Map<string, Category>();
      const updates = new Map<string, CachedUpdate>();
      // Read in parallel, applied in order.
      const files = await Promise.all(
        state.segments.map(async (seg) => {
          if (typeof seg?.file !== 'string' || !SEGMENT_RE.test(seg.file) || typeof seg.sha256 !== 'string') throw new Error('a segment entry is malformed');
          const bytes = await fsp.readFile(path.join(cdir, seg.file));
          if (sha256(bytes) !== seg.sha256) throw new Error(`${seg.file} does not match its hash`);
          return { seg, bytes };
        }),
      );
      for (const { seg, bytes } of files) {
        if (seg.file.endsWith('.json')) {
          // Validated when they arrived, and the hash says the file is what was written then.
          for (const c of JSON.parse(bytes.toString('utf8')) as Category[]) categories.set(c.id, c);
        } else {
          // The page's index only; the bodies stay unparsed until a scan evaluates them.
          for (const e of readPage(bytes)) applyUpdate(updates, e);
        }
      }
      segmentsOf.set(catalogId, { segments: [...state.segments], fetches: state.fetches });
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

  /** Writes one fetch (its categories and its pages, as received) and then the state file that names them. */
  async function persist(next: CachedCatalog, full: boolean, newCategories: readonly Category[], pages: readonly FetchedPage[]): Promise<void> {
    const cdir = path.join(dir, next.catalogId);
    await fsp.mkdir(cdir, { recursive: true });
    const old = segmentsOf.get(next.catalogId) ?? { segments: [], fetches: 0 };
    let segments = full ? [] : [...old.segments];
    let fetches = full ? 1 : old.fetches + 1;
    let cats = newCategories;
    let files = pages.filter((p) => p.entries.length).map((p) => ({ bytes: p.bytes, sha256: p.sha256 }));
    if (fetches > MAX_SEGMENTS) {
      // Rewrite the whole catalog as one fetch: its categories, and its updates in pages rebuilt from the entries' bodies.
      segments = [];
      fetches = 1;
      cats = [...next.categories.values()];
      const all = [...next.updates.values()];
      files = [];
      for (let k = 0; k < all.length; k += MAX_PAGE_SIZE) {
        const bytes = buildPage(all.slice(k, k + MAX_PAGE_SIZE).map((e) => ({ entry: e, body: e.page.subarray(e.start, e.end) })));
        files.push({ bytes, sha256: sha256(bytes) });
      }
    }
    const tag = `${String(next.contentVersion).padStart(12, '0')}-${randomBytes(4).toString('hex')}`;
    const writes: Promise<void>[] = [];
    if (cats.length) {
      const text = JSON.stringify(cats);
      const file = `categories-${tag}.json`;
      writes.push(writeAtomic(path.join(cdir, file), text));
      segments.push({ file, sha256: sha256(text) });
    }
    files.forEach((f, k) => {
      const file = `page-${tag}-${String(k).padStart(5, '0')}.ndjson`;
      writes.push(writeAtomic(path.join(cdir, file), f.bytes));
      segments.push({ file, sha256: f.sha256 });
    });
    await Promise.all(writes);
    const state: StateFile = { format: CACHE_FORMAT, catalogId: next.catalogId, contentVersion: next.contentVersion, fetches, segments };
    await writeAtomic(path.join(cdir, 'state.json'), JSON.stringify(state) + '\n');
    segmentsOf.set(next.catalogId, { segments, fetches });
    const kept = new Set(segments.map((x) => x.file));
    for (const x of old.segments) if (!kept.has(x.file)) await fsp.rm(path.join(cdir, x.file), { force: true }).catch(() => undefined);
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
    // The inner error may already start with the address ("http://…: socket hang up"): name it once.
    const detail = (isCairnError(err) && err.detail ? err.detail : describeError(err)).replace(/^https?:\/\/\S+?: /, '');
    return new CairnError('CAIRN_SCAN_UPDATE_POINT_UNREACHABLE', `${url}: ${detail}`, { cause: err });
  }

  /**
   * The pages of updates changed in (since, until]: built pages from an update
   * point (checked against their SHA-256, read by their index), or plain JSON
   * pages from a server that does not build them (`cairn upstream`, an older
   * update point), validated here and made into pages.
   */
  async function* updatePages(base: string, since: string, until: string, signal: AbortSignal | undefined): AsyncGenerator<FetchedPage> {
    const aborts = new Set<AbortController>();
    const ask = (cursor: string): { route: string; answer: Promise<Answer>; ac: AbortController } => {
      const q = new URLSearchParams({ since, until, limit: String(pageSize) });
      if (cursor) q.set('cursor', cursor);
      const route = `${UPSTREAM_PREFIX}/updates?${q}`;
      const ac = new AbortController();
      aborts.add(ac);
      const s = AbortSignal.any([ac.signal, AbortSignal.timeout(timeoutMs), ...(signal ? [signal] : [])]);
      const answer = getBytes(`${base}${route}`, `${PAGE_MEDIA_TYPE}, application/json;q=0.5`, opts.httpAgent, s);
      answer.catch(() => undefined);
      return { route, answer, ac };
    };
    const unreachable = (err: unknown): CairnError => new CairnError('CAIRN_UPSTREAM_UNREACHABLE', `${base}: ${(err as Error).cause ? String((err as Error & { cause: unknown }).cause) : (err as Error).message}`, { cause: err });
    let cursor = '';
    let pending = ask('');
    try {
      for (;;) {
        const { route } = pending;
        let res: Answer;
        try {
          res = await pending.answer;
        } catch (err) {
          throw unreachable(err);
        }
        let body: Buffer;
        if (res.status < 200 || res.status > 299) {
          let b = null as { code?: unknown; message?: unknown } | null;
          try {
            b = JSON.parse((await res.body).toString('utf8')) as typeof b;
          } catch {
            // Not JSON (or cut short): the status says enough.
          }
          const detail = `${base}${route}: HTTP ${res.status} ${typeof b?.code === 'string' ? b.code : ''} ${typeof b?.message === 'string' ? b.message : ''}`.trim();
          throw new CairnError(b?.code === 'CAIRN_CATALOG_CHANGED' ? 'CAIRN_CATALOG_CHANGED' : 'CAIRN_UPSTREAM_REJECTED', detail);
        }
        let next: string;
        if (res.type.startsWith(PAGE_MEDIA_TYPE)) {
          next = res.headers[PAGE_CURSOR_HEADER] ?? '';
          if (next && !/^\d{1,15}$/.test(next)) throw new CairnError('CAIRN_UPSTREAM_REJECTED', `${base}: a page's cursor is malformed`);
          if (next === cursor && next) throw new CairnError('CAIRN_UPSTREAM_REJECTED', `${base}: the cursor did not move`);
          // Ask for the next page now: the update point sends it while this one is checked and read.
          const following = next ? ask(next) : undefined;
          try {
            body = await res.body;
          } catch (err) {
            throw unreachable(err);
          }
          aborts.delete(pending.ac);
          const digest = sha256(body);
          if (digest !== res.headers[PAGE_SHA256_HEADER]) throw new CairnError('CAIRN_UPSTREAM_REJECTED', `${base}${route}: the page (${body.length} bytes) does not match its SHA-256 ${String(res.headers[PAGE_SHA256_HEADER]).slice(0, 64)}`);
          let entries: PageEntry[];
          try {
            entries = readPage(body);
          } catch (err) {
            throw new CairnError('CAIRN_UPSTREAM_REJECTED', `${base}${route}: the page is malformed: ${(err as Error).message}`);
          }
          if (entries.length) yield { bytes: body, sha256: digest, entries, rejected: 0, unusable: 0 };
          if (!following) return;
          cursor = next;
          pending = following;
          continue;
        }
        // A plain JSON page (a server that does not build pages): validated here, made into a page.
        try {
          body = await res.body;
        } catch (err) {
          throw unreachable(err);
        }
        aborts.delete(pending.ac);
        let page: { items?: unknown; cursor?: unknown } | null;
        try {
          page = JSON.parse(body.toString('utf8')) as typeof page;
        } catch {
          throw new CairnError('CAIRN_UPSTREAM_REJECTED', `${base}${route}: HTTP ${res.status} with a body that is neither a catalog page nor JSON`);
        }
        if (!page || !Array.isArray(page.items) || !(page.cursor === null || (typeof page.cursor === 'string' && /^\d{1,15}$/.test(page.cursor)))) {
          throw new CairnError('CAIRN_UPSTREAM_REJECTED', `${base}: a page is malformed`);
        }
        const parts: { entry: NonNullable<ReturnType<typeof indexRaw>>; body: string }[] = [];
        let rejected = 0;
        let unusable = 0;
        for (const raw of page.items as unknown[]) {
          const { item, entry } = checkAndIndex(raw);
          if (!entry) {
            unusable += 1;
            continue;
          }
          if (!item.ok) rejected += 1;
          parts.push({ entry, body: JSON.stringify(raw) });
        }
        next = page.cursor ?? '';
        if (parts.length || unusable) {
          const bytes = buildPage(parts);
          yield { bytes, sha256: sha256(bytes), entries: readPage(bytes), rejected, unusable };
        }
        if (!next) return;
        if (next === cursor) throw new CairnError('CAIRN_UPSTREAM_REJECTED', `${base}: the cursor did not move`);
        cursor = next;
        pending = ask(next);
      }
    } finally {
      // A page asked for ahead and not read (an error, or the caller stopped): not left running.
      for (const ac of aborts) ac.abort();
    }
  }

  /** One fetch of `url`'s changes since the catalog held for it. */
  async function fetchChanges(url: string, signal: AbortSignal | undefined): Promise<RefreshResult> {
    const base = url.replace(/\/+$/, '');
    const client = createUpstreamClient(url, {
      ...(opts.httpAgent ? { httpAgent: opts.httpAgent } : {}),
      pageSize,
      timeoutMs,
      ...(signal ? { signal } : {}),
    });
    const knownId = (await readLocations())[url];
    let held = knownId ? await load(knownId) : undefined;
    let heldAnchor = held ? `${held.catalogId}-${held.contentVersion}` : '';
    let changes = await client.changesSince(heldAnchor);
    let served = parseAnchor(changes.anchor);
    if (!served) throw new CairnError('CAIRN_SCAN_UPDATE_POINT_UNREACHABLE', `${url}: the /changes answer has no anchor`);
    if (served.catalogId !== held?.catalogId) {
      // Another catalog than we thought (a new location, or its store was replaced): ask again from the copy we may hold of it.
      const other = await load(served.catalogId);
      if (other) {
        held = other;
        heldAnchor = `${other.catalogId}-${other.contentVersion}`;
        changes = await client.changesSince(heldAnchor);
        served = parseAnchor(changes.anchor);
        if (!served || served.catalogId !== other.catalogId) throw new CairnError('CAIRN_SCAN_UPDATE_POINT_UNREACHABLE', `${url}: the catalog changed between two requests`);
      } else {
        held = undefined;
      }
    }
    const catalogId = served.catalogId;
    const full = changes.full || !held;
    const base0 = full ? undefined : held;
    const previousContentVersion = held?.contentVersion ?? 0;
    if (base0 && served.seq <= base0.contentVersion) {
      await rememberLocation(url, catalogId);
      return { catalog: base0, how: 'fetched', previousContentVersion, full: false, categoriesChanged: 0, updatesChanged: 0, rejected: 0, unusable: 0, invalidAtUpdatePoint: 0 };
    }
    const categories = new Map(base0?.categories ?? []);
    const updates = new Map(base0?.updates ?? []);
    const newCategories: Category[] = [];
    let unusable = 0;
    for await (const page of changes.categoryPages()) {
      for (const c of page) {
        if (!c.ok) {
          unusable += 1;
          continue;
        }
        categories.set(c.value.id, c.value);
        newCategories.push(c.value);
      }
    }
    const pages: FetchedPage[] = [];
    let updatesChanged = 0;
    let rejected = 0;
    let invalidAtUpdatePoint = 0;
    const since = changes.full ? '' : heldAnchor;
    for await (const page of updatePages(base, since, changes.anchor, signal)) {
      pages.push(page);
      rejected += page.rejected;
      unusable += page.unusable;
      for (const e of page.entries) {
        applyUpdate(updates, e);
        updatesChanged += 1;
      }
      if (!page.rejected) for (const e of page.entries) if (e.bad !== null) invalidAtUpdatePoint += 1;
    }
    const next: CachedCatalog = { catalogId, contentVersion: served.seq, categories, updates };
    await persist(next, full, newCategories, pages);
    catalogs.set(catalogId, next);
    await rememberLocation(url, catalogId);
    return { catalog: next, how: 'fetched', previousContentVersion, full, categoriesChanged: newCategories.length, updatesChanged, rejected, unusable, invalidAtUpdatePoint };
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
        return { catalog: held, how: 'cached', previousContentVersion: held.contentVersion, full: false, categoriesChanged: 0, updatesChanged: 0, rejected: 0, unusable: 0, invalidAtUpdatePoint: 0 };
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
