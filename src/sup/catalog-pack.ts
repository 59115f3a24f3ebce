/**
 * Catalog pages for scanners (docs/adr/0011-catalog-pages.md): a page of
 * updates as an index the scanner can read without parsing every update,
 * followed by the updates' bodies, kept unparsed until a scan evaluates them.
 * Built by the update point once per page (`sup-server.ts`), or by the
 * scanner itself from a plain JSON page of an upstream that does not build
 * them (`catalog-cache.ts`); the scanner keeps the bytes it received as its
 * disk cache. No I/O here.
 *
 * A page is NDJSON, UTF-8:
 *
 *   {"format":"cairn-catalog-page/1","guids":[G0,G1,…],"updates":[…]}\n
 *   <body 1>\n
 *   <body 2>\n
 *   …
 *
 * `guids` lists the page's classification and product GUIDs once; `updates`
 * is flat (no array per update, which a reader of 60,000 updates would have
 * to allocate and collect), ten values per update:
 * `id, revision, title, articleId, classification, products, supersedes,
 *  needs, bad, bodyBytes`, where
 * - `classification` is an index into `guids` (-1 for none), `products` an
 *   index or an array of indexes;
 * - `supersedes` is 0 for none, otherwise an array of update IDs;
 * - `needs` is the package names, separated by one space, one of which must
 *   be installed for either of the update's rules to hold (the scanner
 *   evaluates the update only on a machine with one of them), or null when
 *   its rules can hold without any package (evaluated on every machine);
 * - `bad` is null for an update that passed validation where the page was
 *   built, otherwise `"<code>: <reason>"` (reported unknown everywhere; it
 *   then has no classification, products, supersedes or needs);
 * - `bodyBytes` is the length in bytes of its body (the update's JSON, one
 *   line).
 *
 * The body stays authoritative: when a scan first evaluates an update it
 * parses and validates the body and checks that its ID, revision and needed
 * packages are those of the index; a body that fails is reported unknown
 * with the reason (issue 6, part 9).
 */
import { checkUpdate } from '../catalog/catalog-input.ts';
import type { CatalogItem, Update } from '../catalog/catalog.ts';
import { requiredPackages } from '../catalog/rules.ts';

/** The media type a scanner asks for in `Accept` on `GET /upstream/v1/updates`; other clients get the plain JSON page. */
export const PAGE_MEDIA_TYPE = 'application/vnd.cairn.catalog-page+ndjson';
/** Response headers of a built page: its SHA-256 (hex) and the next cursor ('' after the last page). */
export const PAGE_SHA256_HEADER = 'x-cairn-page-sha256';
export const PAGE_CURSOR_HEADER = 'x-cairn-page-cursor';
export const PAGE_FORMAT = 'cairn-catalog-page/1';

const GUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** One update of a page: its index entry and where its body lies. */
export interface PageEntry {
  readonly id: string;
  readonly revision: number;
  readonly title: string;
  readonly articleId: string;
  readonly classification: string;
  readonly products: readonly string[];
  readonly supersedes: readonly string[];
  /** Package names separated by one space; null: evaluated on every machine. */
  readonly needs: string | null;
  /** `"<code>: <reason>"` when the update failed validation where the page was built. */
  readonly bad: string | null;
  /** The page's bytes and the body's range in them. */
  readonly page: Buffer;
  readonly start: number;
  readonly end: number;
}

/** Values per update in the flat index. */
const FIELDS = 10;
const NONE: readonly string[] = Object.freeze([]);

/** Packages one of which must be installed for either rule of `u` to hold; null when there is no such set. */
export function neededPackages(u: Update): string | null {
  const a = requiredPackages(u.isApplicable);
  if (!a) return null;
  const i = requiredPackages(u.isInstalled);
  if (!i) return null;
  return [...new Set([...a, ...i])].sort().join(' ');
}

/** The index entry of one update as the catalog holds it (`raw`), validated here; `body` is its JSON text. */
export function indexRaw(raw: unknown, item: CatalogItem<Update> = checkUpdate(raw)): Omit<PageEntry, 'page' | 'start' | 'end'> | undefined {
  if (item.ok) {
    const u = item.value;
    return { id: u.id, revision: u.revision, title: u.title, articleId: u.articleId, classification: u.classification, products: u.products, supersedes: u.supersedes, needs: neededPackages(u), bad: null };
  }
  const id = item.id.toLowerCase();
  if (!GUID_RE.test(id)) return undefined;
  const o = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
  return {
    id,
    revision: typeof o.revision === 'number' && Number.isSafeInteger(o.revision) && o.revision > 0 ? o.revision : 0,
    title: typeof o.title === 'string' ? o.title.slice(0, 1000) : '',
    articleId: typeof o.articleId === 'string' ? o.articleId.slice(0, 100) : '',
    classification: '',
    products: [],
    supersedes: [],
    needs: null,
    bad: `${item.code}: ${item.reason}`,
  };
}

/** Builds a page from index entries and their bodies (JSON text, or the bytes of one). */
export function buildPage(items: readonly { readonly entry: Omit<PageEntry, 'page' | 'start' | 'end'>; readonly body: string | Buffer }[]): Buffer {
  const bodies = items.map(({ body }) => {
    const b = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    // A body is one line; JSON text with line breaks between tokens is made compact.
    return b.includes(10) ? Buffer.from(JSON.stringify(JSON.parse(b.toString('utf8'))), 'utf8') : b;
  });
  const guids: string[] = [];
  const guidAt = new Map<string, number>();
  const g = (id: string): number => {
    let k = guidAt.get(id);
    if (k === undefined) {
      k = guids.length;
      guids.push(id);
      guidAt.set(id, k);
    }
    return k;
  };
  const flat: unknown[] = [];
  items.forEach(({ entry: e }, k) => {
    const products = e.products.map(g);
    flat.push(e.id, e.revision, e.title, e.articleId, e.classification ? g(e.classification) : -1, products.length === 1 ? products[0] : products, e.supersedes.length ? [...e.supersedes] : 0, e.needs, e.bad, bodies[k]!.length);
  });
  const parts: Buffer[] = [Buffer.from(`{"format":"${PAGE_FORMAT}","guids":${JSON.stringify(guids)},"updates":${JSON.stringify(flat)}}\n`, 'utf8')];
  for (const b of bodies) parts.push(b, NEWLINE);
  return Buffer.concat(parts);
}

const NEWLINE = Buffer.from('\n');

const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

/** Reads a page's index; throws an Error saying what is wrong with a page that is not one. The bodies are not parsed. */
export function readPage(page: Buffer): PageEntry[] {
  const nl = page.indexOf(10);
  if (nl < 0) throw new Error('the page has no index line');
  let head: { format?: unknown; guids?: unknown; updates?: unknown };
  try {
    head = JSON.parse(page.toString('utf8', 0, nl)) as typeof head;
  } catch {
    throw new Error('the index line is not JSON');
  }
  if (!head || head.format !== PAGE_FORMAT || !isStrings(head.guids) || !Array.isArray(head.updates) || head.updates.length % FIELDS !== 0) throw new Error(`the index is not of format ${PAGE_FORMAT}`);
  const guids = head.guids;
  const flat = head.updates as unknown[];
  // One products array per distinct value, shared by the page's entries.
  const productSets = new Map<string, readonly string[]>();
  const productsOf = (v: unknown): readonly string[] | undefined => {
    const key = typeof v === 'number' ? String(v) : Array.isArray(v) ? v.join(',') : undefined;
    if (key === undefined) return undefined;
    let ps = productSets.get(key);
    if (!ps) {
      const list = typeof v === 'number' ? [v] : (v as unknown[]);
      if (!list.every((x) => typeof x === 'number' && guids[x] !== undefined)) return undefined;
      ps = Object.freeze(list.map((x) => guids[x as number]!));
      productSets.set(key, ps);
    }
    return ps;
  };
  const out: PageEntry[] = [];
  let at = nl + 1;
  for (let f = 0; f < flat.length; f += FIELDS) {
    const id = flat[f];
    const revision = flat[f + 1];
    const title = flat[f + 2];
    const articleId = flat[f + 3];
    const cls = flat[f + 4];
    const products = productsOf(flat[f + 5]);
    const sup = flat[f + 6];
    const needs = flat[f + 7];
    const bad = flat[f + 8];
    const bytes = flat[f + 9];
    const classification = cls === -1 ? '' : typeof cls === 'number' ? guids[cls] : undefined;
    if (
      typeof id !== 'string' ||
      !GUID_RE.test(id) ||
      typeof revision !== 'number' ||
      typeof title !== 'string' ||
      typeof articleId !== 'string' ||
      classification === undefined ||
      products === undefined ||
      !(sup === 0 || isStrings(sup)) ||
      !(needs === null || typeof needs === 'string') ||
      !(bad === null || typeof bad === 'string') ||
      typeof bytes !== 'number' ||
      !Number.isSafeInteger(bytes) ||
      bytes < 0
    ) {
      throw new Error(`index entry ${out.length + 1} is malformed`);
    }
    const end = at + bytes;
    if (end >= page.length || page[end] !== 10) throw new Error(`the body of ${id} does not end where the index says`);
    out.push({ id, revision, title, articleId, classification, products, supersedes: sup === 0 ? NONE : sup, needs, bad, page, start: at, end });
    at = end + 1;
  }
  if (at !== page.length) throw new Error('the page has bytes after its last body');
  return out;
}

/**
 * The update of an entry, parsed and validated from its body, and checked
 * against the entry's index: what a scan evaluates. A failure is returned as
 * a rejected item (reported unknown with the reason), never thrown.
 */
export function readBody(e: PageEntry): CatalogItem<Update> {
  let raw: unknown;
  try {
    raw = JSON.parse(e.page.toString('utf8', e.start, e.end));
  } catch {
    return { ok: false, id: e.id, code: 'CAIRN_CATALOG_UPDATE_INVALID', reason: `${e.id}: its body in the catalog page is not JSON` };
  }
  const item = checkUpdate(raw);
  if (!item.ok) return item;
  const u = item.value;
  const needs = neededPackages(u);
  const same = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((x, k) => x === b[k]);
  if (u.id !== e.id || u.revision !== e.revision || needs !== e.needs || !same(u.supersedes, e.supersedes)) {
    return { ok: false, id: e.id, code: 'CAIRN_CATALOG_UPDATE_INVALID', reason: `${e.id}: its body (revision ${u.revision}) does not match its entry in the catalog page's index (revision ${e.revision})` };
  }
  return item;
}
