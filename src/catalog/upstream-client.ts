/**
 * The client of the upstream catalog protocol (src/upstream/protocol.ts,
 * docs/adr/0004-catalog-protocol.md): asks what changed since an anchor, then
 * pages through categories and updates, validating every item at the edge
 * (`catalog-input.ts`). One page is in memory at a time.
 *
 * Errors are wrapped where they happen: a connection failure is
 * CAIRN_UPSTREAM_UNREACHABLE, an error answer keeps the upstream's code when
 * it is CAIRN_CATALOG_CHANGED and is otherwise CAIRN_UPSTREAM_REJECTED.
 */
import { CairnError } from '../shared/errors.ts';
import { checkCategory, checkUpdate } from './catalog-input.ts';
import type { CatalogItem } from './catalog.ts';
import type { CatalogChanges, CatalogSource } from './catalog-source.ts';
import { DEFAULT_PAGE_SIZE, isCatalogId, UPSTREAM_PREFIX } from '../upstream/protocol.ts';
import type { ChangesReply, ItemKind, PageReply } from '../upstream/protocol.ts';

export interface UpstreamClientOptions {
  readonly pageSize?: number;
  /** Per request; default 60 s. */
  readonly timeoutMs?: number;
}

async function getJson(base: string, route: string, timeoutMs: number): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(`${base}${route}`, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw new CairnError('CAIRN_UPSTREAM_UNREACHABLE', `${base}: ${(err as Error).cause ? String((err as Error & { cause: unknown }).cause) : (err as Error).message}`, { cause: err });
  }
  let body: unknown;
  try {
    body = await res.json();
  } catch (err) {
    throw new CairnError('CAIRN_UPSTREAM_REJECTED', `${base}${route}: HTTP ${res.status} with a body that is not JSON`, { cause: err });
  }
  if (!res.ok) {
    const b = body as { code?: unknown; message?: unknown } | null;
    const detail = `${base}${route}: HTTP ${res.status} ${typeof b?.code === 'string' ? b.code : ''} ${typeof b?.message === 'string' ? b.message : ''}`.trim();
    throw new CairnError(b?.code === 'CAIRN_CATALOG_CHANGED' ? 'CAIRN_CATALOG_CHANGED' : 'CAIRN_UPSTREAM_REJECTED', detail);
  }
  return body;
}

function parseChanges(v: unknown, base: string): ChangesReply {
  const o = v as Partial<ChangesReply> | null;
  const count = (n: unknown) => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
  if (!o || !isCatalogId(o.catalogId) || typeof o.full !== 'boolean' || typeof o.anchor !== 'string' || !count(o.categories) || !count(o.updates) || !count(o.rejected)) {
    throw new CairnError('CAIRN_UPSTREAM_REJECTED', `${base}: the /changes answer is malformed`);
  }
  return o as ChangesReply;
}

function parsePage(v: unknown, base: string): PageReply {
  const o = v as Partial<PageReply> | null;
  if (!o || !Array.isArray(o.items) || !(o.cursor === null || (typeof o.cursor === 'string' && /^\d{1,15}$/.test(o.cursor)))) {
    throw new CairnError('CAIRN_UPSTREAM_REJECTED', `${base}: a page is malformed`);
  }
  return o as PageReply;
}

/** A catalog source over `cairn upstream` (or any server of the same protocol) at `url`. */
export function createUpstreamClient(url: string, opts: UpstreamClientOptions = {}): CatalogSource {
  const base = url.replace(/\/+$/, '');
  const pageSize = opts.pageSize ?? DEFAULT_PAGE_SIZE;
  const timeoutMs = opts.timeoutMs ?? 60_000;

  async function* pages<T>(kind: ItemKind, since: string, until: string, check: (raw: unknown) => CatalogItem<T>): AsyncGenerator<CatalogItem<T>[]> {
    let cursor: string | null = '';
    while (cursor !== null) {
      const q = new URLSearchParams({ since, until, limit: String(pageSize) });
      if (cursor) q.set('cursor', cursor);
      const page = parsePage(await getJson(base, `${UPSTREAM_PREFIX}/${kind}?${q}`, timeoutMs), base);
      if (page.items.length) yield page.items.map(check);
      if (page.cursor !== null && page.cursor === cursor) throw new CairnError('CAIRN_UPSTREAM_REJECTED', `${base}: the cursor did not move`);
      cursor = page.cursor;
    }
  }

  return {
    url: base,
    async changesSince(anchor: string): Promise<CatalogChanges> {
      const q = new URLSearchParams({ anchor });
      const c = parseChanges(await getJson(base, `${UPSTREAM_PREFIX}/changes?${q}`, timeoutMs), base);
      const since = c.full ? '' : anchor;
      return {
        anchor: c.anchor,
        full: c.full,
        totals: { categories: c.categories, updates: c.updates },
        rejectedAtSource: c.rejected,
        categoryPages: () => pages('categories', since, c.anchor, checkCategory),
        updatePages: () => pages('updates', since, c.anchor, checkUpdate),
      };
    },
  };
}
