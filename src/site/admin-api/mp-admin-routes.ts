/**
 * The admin API's routes for the management point and the policy provider
 * (issue 4): clients, collections, deployments, boundaries, remote MPs.
 * Registered by `buildAdminApi` in the same fastify instance, so the token
 * check, the audit line in `SMSProv.log` and the error handling are the
 * admin API's own. Transport only: decode, call a service, encode.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { CairnError } from '../../shared/errors.ts';
import type { SiteContext } from '../site-context.ts';
import { listClientViews, setApproval } from '../services/clients.ts';

export interface MpAdminOptions {
  readonly ctx: SiteContext;
  /** Wakes the policy provider after a trigger file was dropped. */
  readonly wakePolicyProvider: () => void;
}

export function auditNote(request: FastifyRequest, text: string): void {
  (request as FastifyRequest & { auditNote?: string }).auditNote = text;
}

export function jsonBody(request: FastifyRequest): Record<string, unknown> {
  const b = request.body;
  if (b === undefined || b === null) return {};
  if (typeof b !== 'object' || Array.isArray(b)) throw new CairnError('CAIRN_REQUEST_INVALID', 'the body must be a JSON object');
  return b as Record<string, unknown>;
}

export function bodyText(o: Record<string, unknown>, key: string): string {
  const v = o[key];
  if (typeof v !== 'string' || !v || v.length > 256) throw new CairnError('CAIRN_REQUEST_INVALID', `${key} must be a non-empty string of at most 256 characters`);
  return v;
}

export function registerMpAdminRoutes(app: FastifyInstance, opts: MpAdminOptions): void {
  const { ctx } = opts;

  app.get('/api/v1/clients', async () => ({ clients: await listClientViews(ctx) }));

  for (const action of ['approve', 'revoke'] as const) {
    app.post<{ Params: { client: string } }>(`/api/v1/clients/:client/${action}`, async (request) => {
      const r = await setApproval(ctx, request.params.client, action === 'approve' ? 'approved' : 'revoked', opts.wakePolicyProvider);
      auditNote(request, `${action === 'approve' ? 'approved' : 'revoked'} client ${r.client.clientId} (${r.client.name}), was ${r.before}`);
      return r;
    });
  }
}
