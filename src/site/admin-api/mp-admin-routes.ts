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
import { addMember, addRule, createCollection, deployPackage, listCollectionViews, listDeploymentViews } from '../services/collections.ts';
import { addBoundaryToGroup, addDpToGroup, createBoundaryGroup, listBoundaryGroupViews } from '../services/boundaries.ts';
import { addManagementPoint, listMpViews } from '../services/management-points.ts';

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

  const wake = opts.wakePolicyProvider;

  app.get('/api/v1/collections', async () => ({ collections: await listCollectionViews(ctx) }));

  app.post('/api/v1/collections', async (request, reply) => {
    const c = await createCollection(ctx, bodyText(jsonBody(request), 'name'), wake);
    auditNote(request, `created collection ${c.collectionId} (${c.name})`);
    return reply.code(201).send(c);
  });

  app.post<{ Params: { collection: string } }>('/api/v1/collections/:collection/members', async (request) => {
    const r = await addMember(ctx, request.params.collection, bodyText(jsonBody(request), 'client'), wake);
    auditNote(request, `${r.added ? 'added' : 'already had'} direct member ${r.clientId} in collection ${r.collection.collectionId} (${r.collection.name})`);
    return r;
  });

  app.post<{ Params: { collection: string } }>('/api/v1/collections/:collection/rules', async (request) => {
    const b = jsonBody(request);
    const r = await addRule(ctx, request.params.collection, bodyText(b, 'type'), bodyText(b, 'value'), wake);
    auditNote(request, `${r.added ? 'added' : 'already had'} rule ${String(b.type)} ${String(b.value)} in collection ${r.collection.collectionId} (${r.collection.name})`);
    return r;
  });

  app.get('/api/v1/deployments', async () => ({ deployments: await listDeploymentViews(ctx) }));

  app.post<{ Params: { id: string } }>('/api/v1/packages/:id/deploy', async (request, reply) => {
    const r = await deployPackage(ctx, request.params.id, bodyText(jsonBody(request), 'collection'), wake);
    auditNote(request, `${r.created ? 'deployed' : 'already deployed'} ${r.deployment.packageId} to collection ${r.deployment.collectionId} (deployment ${r.deployment.deploymentId})`);
    return reply.code(r.created ? 201 : 200).send(r);
  });

  app.get('/api/v1/boundary-groups', async () => ({ boundaryGroups: await listBoundaryGroupViews(ctx) }));

  app.post('/api/v1/boundary-groups', async (request, reply) => {
    const g = await createBoundaryGroup(ctx, bodyText(jsonBody(request), 'name'));
    auditNote(request, `created boundary group ${g.name}`);
    return reply.code(201).send(g);
  });

  app.post<{ Params: { group: string } }>('/api/v1/boundary-groups/:group/boundaries', async (request) => {
    const b = jsonBody(request);
    const r = await addBoundaryToGroup(ctx, request.params.group, bodyText(b, 'type'), bodyText(b, 'value'));
    auditNote(request, `${r.added ? 'added' : 'already had'} boundary ${String(b.type)} ${String(b.value)} in boundary group ${r.group.name}`);
    return r;
  });

  app.post<{ Params: { group: string } }>('/api/v1/boundary-groups/:group/distribution-points', async (request) => {
    const dp = bodyText(jsonBody(request), 'dp');
    const r = await addDpToGroup(ctx, request.params.group, dp);
    auditNote(request, `${r.added ? 'added' : 'already had'} distribution point ${dp} in boundary group ${r.group.name}`);
    return r;
  });

  app.get('/api/v1/management-points', async () => ({ managementPoints: await listMpViews(ctx) }));

  app.post('/api/v1/management-points', async (request, reply) => {
    const r = await addManagementPoint(ctx, bodyText(jsonBody(request), 'name'));
    auditNote(request, `registered remote management point ${r.mp.name} (key issued)`);
    return reply.code(201).send(r);
  });
}
