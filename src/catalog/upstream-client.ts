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
import http from 'node:http';
import https from 'node:https';
import { CairnError } from '../shared/errors.ts';
import { checkCategory, checkUpdate } from './catalog-input.ts';
import type { CatalogItem, Update } from './catalog.ts';
import type { CatalogChanges, CatalogSource } from './catalog-source.ts';
import { DEFAULT_PAGE_SIZE, isCatalogId, UPSTREAM_PREFIX } from '../upstream/protocol.ts';
import type { ChangesReply, ItemKind, PageReply } from '../upstream/protocol.ts';

export interface UpstreamClientOptions {
  readonly pageSize?: number;
  /** Per request; default 60 s. */
  readonly timeoutMs?: number;
  /**
   * Requests go through node:http with this agent (keep-alive sockets shared
   * by the scanner's thousands of simulated clients) instead of fetch.
   */
  readonly httpAgent?: http.Agent;
  readonly httpsAgent?: https.Agent;
  /** Validates each raw update (default `checkUpdate`); the scanner's cache keeps more of a rejected one. */
  readonly checkUpdate?: (raw: unknown) => CatalogItem<Update>;
  readonly signal?: AbortSignal;
}

interface Answer {
  readonly status: number;
  readonly text: string;
}

/** One GET through node:http(s) with a given agent; rejects as fetch does (connection errors, timeout). */
function getWithAgent(url: string, agents: { http?: http.Agent; https?: https.Agent }, signal: AbortSignal): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const mod = u.protocol === 'https:' ? https : http;
    const agent = u.protocol === 'https:' ? agents.https : agents.http;
    const req = mod.get(u, { ...(agent ? { agent } : {}), signal, headers: { accept: 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

async function getJson(base: string, route: string, timeoutMs: number, opts: UpstreamClientOptions = {}): Promise<unknown> {
  let res: Answer;
  try {
    const signal = opts.signal ? AbortSignal.any([opts.signal, AbortSignal.timeout(timeoutMs)]) : AbortSignal.timeout(timeoutMs);
    if (opts.httpAgent || opts.httpsAgent) {
      res = await getWithAgent(`${base}${route}`, { ...(opts.httpAgent ? { http: opts.httpAgent } : {}), ...(opts.httpsAgent ? { https: opts.httpsAgent } : {}) }, signal);
    } else {
      const r = await fetch(`${base}${route}`, { signal });
      res = { status: r.status, text: await r.text() };
    }
  } catch (err) {
    throw new CairnError('CAIRN_UPSTREAM_UNREACHABLE', `${base}: ${(err as Error).cause ? String((err as Error & { cause: unknown }).cause) : (err as Error).message}`, { cause: err });
  }
  let body: unknown;
  try {
    body = JSON.parse(res.text);
  } catch (err) {
    throw new CairnError('CAIRN_UPSTREAM_REJECTED', `${base}${route}: HTTP ${res.status} with a body that is not JSON`, { cause: err });
  }
  if (res.status < 200 || res.status > 299) {
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
      const page = parsePage(await getJson(base, `${UPSTREAM_PREFIX}/${kind}?${q}`, timeoutMs, opts), base);
      if (page.items.length) yield page.items.map(check);
      if (page.cursor !== null && page.cursor === cursor) throw new CairnError('CAIRN_UPSTREAM_REJECTED', `${base}: the cursor did not move`);
      cursor = page.cursor;
    }
  }

  return {
    url: base,
    async changesSince(anchor: string): Promise<CatalogChanges> {
      const q = new URLSearchParams({ anchor });
      const c = parseChanges(await getJson(base, `${UPSTREAM_PREFIX}/changes?${q}`, timeoutMs, opts), base);
      const since = c.full ? '' : anchor;
      return {
        anchor: c.anchor,
        full: c.full,
        totals: { categories: c.categories, updates: c.updates },
        rejectedAtSource: c.rejected,
        categoryPages: () => pages('categories', since, c.anchor, checkCategory),
        updatePages: () => pages('updates', since, c.anchor, opts.checkUpdate ?? checkUpdate),
      };
    },
  };
}
