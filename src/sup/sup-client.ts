/**
 * The site's side of the update point's control calls (`protocol.ts`):
 * each request signed with the update point's key, each answer checked for
 * the update point's proof, so a process squatting on its address is not
 * mistaken for it. Errors are wrapped here: CAIRN_SUP_UNREACHABLE (no
 * connection), CAIRN_SUP_AUTH_FAILED (refused, or no valid proof),
 * CAIRN_SUP_REJECTED (an error answer or a malformed body).
 */
import { CairnError } from '../shared/errors.ts';
import { PROOF_HEADER, signRequest, verifyProof } from '../dp/protocol.ts';
import { SUP_PREFIX, SUP_SYNC_STATES } from './protocol.ts';
import type { SupStatus, SupSyncState } from './protocol.ts';

export interface SupClient {
  readonly url: string;
  status(): Promise<SupStatus>;
  /** Starts a sync from `source` ('' for the update point's own upstream), or joins the one running. */
  startSync(source: string, full: boolean): Promise<SupSyncState>;
  syncState(): Promise<SupSyncState>;
}

function parseState(v: unknown, where: string): SupSyncState {
  const o = v as Partial<SupSyncState> | null;
  if (!o || typeof o.syncId !== 'string' || !SUP_SYNC_STATES.includes(o.state as SupSyncState['state']) || typeof o.processed !== 'number' || typeof o.total !== 'number' || !Array.isArray(o.rejectedItems)) {
    throw new CairnError('CAIRN_SUP_REJECTED', `${where}: the sync state is malformed`);
  }
  return o as SupSyncState;
}

export function createSupClient(opts: { url: string; key: string; timeoutMs?: number }): SupClient {
  const base = new URL(opts.url);
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new CairnError('CAIRN_SUP_URL_INVALID', opts.url);
  const origin = base.origin;
  const prefix = base.pathname.replace(/\/+$/, '');
  const timeoutMs = opts.timeoutMs ?? 30_000;

  async function call(method: 'GET' | 'POST', route: string): Promise<unknown> {
    const pathWithQuery = `${prefix}${SUP_PREFIX}${route}`;
    const signed = signRequest(opts.key, method, pathWithQuery);
    let res: Response;
    try {
      res = await fetch(`${origin}${pathWithQuery}`, { method, headers: { authorization: signed.authorization, accept: 'application/json' }, signal: AbortSignal.timeout(timeoutMs) });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new CairnError('CAIRN_SUP_UNREACHABLE', `${origin}: ${cause?.code ?? cause?.message ?? (err as Error).message}`, { cause: err });
    }
    const text = await res.text().catch(() => '');
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = undefined;
    }
    const detail = (): string => {
      const b = body as { code?: unknown; message?: unknown } | undefined;
      return `${typeof b?.code === 'string' ? b.code : `HTTP ${res.status}`}: ${typeof b?.message === 'string' ? b.message : ''}`;
    };
    if (res.status === 401) throw new CairnError('CAIRN_SUP_AUTH_FAILED', `${origin} refused the request (${detail()})`);
    if (!verifyProof(opts.key, signed.nonce, res.status, res.headers.get(PROOF_HEADER) ?? undefined)) {
      throw new CairnError('CAIRN_SUP_AUTH_FAILED', `the answer from ${origin} (HTTP ${res.status}) carries no valid proof: it is not this update point, or it holds another key`);
    }
    if (!res.ok) throw new CairnError('CAIRN_SUP_REJECTED', `${origin}${route}: ${detail()}`);
    if (body === undefined) throw new CairnError('CAIRN_SUP_REJECTED', `${origin}${route}: the answer is not JSON`);
    return body;
  }

  return {
    url: `${origin}${prefix}`,
    async status() {
      const o = (await call('GET', '/status')) as Partial<SupStatus>;
      if (typeof o.name !== 'string' || typeof o.contentVersion !== 'number' || typeof o.upstream !== 'string' || typeof o.catalogId !== 'string') throw new CairnError('CAIRN_SUP_REJECTED', `${origin}: the status is malformed`);
      return o as SupStatus;
    },
    async startSync(source, full) {
      const q = new URLSearchParams({ source, full: full ? '1' : '0' });
      return parseState(await call('POST', `/sync?${q}`), origin);
    },
    async syncState() {
      return parseState(await call('GET', '/sync'), origin);
    },
  };
}
