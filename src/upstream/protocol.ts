/**
 * The upstream catalog protocol (docs/adr/0004-catalog-protocol.md): what
 * `cairn upstream` (and, later, every update point) answers, and what the
 * client in `src/catalog/upstream-client.ts` sends. Shared by both ends so
 * that they cannot drift apart. No I/O here.
 *
 *   GET /upstream/v1/changes?anchor=A
 *     → { catalogId, full, anchor: B, categories, updates, rejected }
 *   GET /upstream/v1/categories?since=A&until=B[&cursor=C][&limit=N]
 *   GET /upstream/v1/updates?since=A&until=B[&cursor=C][&limit=N]
 *     → { items: [...], cursor: C' | null }
 *
 * An anchor is `<catalogId>-<sequence>`: every change the upstream sees to
 * an item gives it the next sequence number, so "changed since A" is
 * "sequence above A's". A is empty, or from another catalog, for a full sync.
 */
import { CairnError } from '../shared/errors.ts';

export const UPSTREAM_PREFIX = '/upstream/v1';
export const ITEM_KINDS = ['categories', 'updates'] as const;
export type ItemKind = (typeof ITEM_KINDS)[number];

/** Items per page when the client asks for none. */
export const DEFAULT_PAGE_SIZE = 1000;
/** Most items one page may hold: bounds the memory of both ends. */
export const MAX_PAGE_SIZE = 5000;

export interface ChangesReply {
  readonly catalogId: string;
  /** True when the anchor sent was empty or not from this catalog: everything is "changed". */
  readonly full: boolean;
  /** The anchor to page up to now, and to send next time. */
  readonly anchor: string;
  /** How many categories and updates changed since the anchor sent (the pages will hold about that many). */
  readonly categories: number;
  readonly updates: number;
  /** Lines of the catalog files that are not a JSON object with a string `id` (never served). */
  readonly rejected: number;
}

export interface PageReply {
  /** The items as the catalog holds them; the client validates each one. */
  readonly items: readonly unknown[];
  /** Where the next page starts; null after the last page. */
  readonly cursor: string | null;
}

const CATALOG_ID_RE = /^[0-9a-f]{16}$/;
const ANCHOR_RE = /^([0-9a-f]{16})-(\d{1,15})$/;
const CURSOR_RE = /^\d{1,15}$/;

export interface Anchor {
  readonly catalogId: string;
  readonly seq: number;
}

export function formatAnchor(a: Anchor): string {
  return `${a.catalogId}-${a.seq}`;
}

/** Parses an anchor; empty means "none" (a full sync). Throws CAIRN_CATALOG_ANCHOR_INVALID when malformed. */
export function parseAnchor(text: unknown): Anchor | undefined {
  if (text === undefined || text === '') return undefined;
  const m = typeof text === 'string' ? ANCHOR_RE.exec(text) : null;
  if (!m) throw new CairnError('CAIRN_CATALOG_ANCHOR_INVALID', `'${String(text).slice(0, 60)}' is not <catalogId>-<sequence>`);
  return { catalogId: m[1]!, seq: Number(m[2]) };
}

export function parseCursor(text: unknown): number {
  if (text === undefined || text === '') return 0;
  if (typeof text !== 'string' || !CURSOR_RE.test(text)) throw new CairnError('CAIRN_CATALOG_ANCHOR_INVALID', `cursor '${String(text).slice(0, 60)}' is not a sequence number`);
  return Number(text);
}

export function parseLimit(text: unknown): number {
  if (text === undefined || text === '') return DEFAULT_PAGE_SIZE;
  const n = typeof text === 'string' && /^\d{1,6}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= MAX_PAGE_SIZE)) throw new CairnError('CAIRN_REQUEST_INVALID', `limit must be an integer from 1 to ${MAX_PAGE_SIZE}`);
  return n;
}

export function isCatalogId(v: unknown): v is string {
  return typeof v === 'string' && CATALOG_ID_RE.test(v);
}
