/**
 * The admin API (the seeds' SMS Provider): the only way administrators change
 * anything. Token authentication on every route but `/api/v1/health`; every
 * call, allowed or refused, is audited in `SMSProv.log` with the caller's
 * address, the route and the outcome. Transport only: handlers decode the
 * request, call a service, and encode the answer; errors become
 * `{ code, message }` with the registry's HTTP status.
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import Fastify from 'fastify';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { PassThrough } from 'node:stream';
import { writePrestage } from '../../content-library/prestage.ts';
import type { ComponentLog } from '../../shared/cmtrace-log.ts';
import { CairnError, ERRORS, describeError, isCairnError } from '../../shared/errors.ts';
import { queryStatusMessages } from '../../datastore/status-messages.ts';
import type { SiteContext } from '../site-context.ts';
import {
  createPackage,
  deletePackage,
  distributePackage,
  listPackageViews,
  packageStatus,
  packageView,
  redistributePackage,
  removePackageFromDps,
  requirePackage,
  updatePackage,
  validatePackage,
} from '../services/packages.ts';
import { addDistributionPoint, listDpViews } from '../services/distribution-points.ts';
import { changeSetting, listSettings } from '../services/settings.ts';
import { MP_PREFIX } from '../../mp/state-relay.ts';
import { listStates } from '../services/state-messages.ts';
import { registerMpAdminRoutes } from './mp-admin-routes.ts';
import { addUpdatePoint, listUpdatePointViews } from '../services/update-points.ts';
import { changeCriteria, changeUpstream, listUpdateViews, requestSync, syncStatusView } from '../services/update-sync.ts';
import type { UpdateListQuery } from '../services/update-sync.ts';
import { registerComplianceRoutes } from './compliance-routes.ts';
import type { Summarizer } from '../components/summarizer/summarizer.ts';

export interface AdminApiOptions {
  readonly ctx: SiteContext;
  readonly token: string;
  readonly log: ComponentLog;
  /** Wakes the policy provider after an admin call dropped a trigger in `policypv.box` (issue 4). */
  readonly wakePolicyProvider?: () => void;
  /** Runs summary tasks on demand (issue 6); without it `POST /api/v1/summary-tasks/run` refuses. */
  readonly summarizer?: Summarizer;
}

function sameSecret(a: string, b: string): boolean {
  const x = createHash('sha256').update(a).digest();
  const y = createHash('sha256').update(b).digest();
  return timingSafeEqual(x, y);
}

function body(request: FastifyRequest): Record<string, unknown> {
  const b = request.body;
  if (b === undefined || b === null) return {};
  if (typeof b !== 'object' || Array.isArray(b)) throw new CairnError('CAIRN_REQUEST_INVALID', 'the body must be a JSON object');
  return b as Record<string, unknown>;
}

function str(o: Record<string, unknown>, key: string, required = true): string | undefined {
  const v = o[key];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string' || !v) throw new CairnError('CAIRN_REQUEST_INVALID', `${key} must be a non-empty string`);
  return v;
}

export async function buildAdminApi(opts: AdminApiOptions): Promise<FastifyInstance> {
  const { ctx, log } = opts;
  const app = Fastify({ logger: false, bodyLimit: 1024 * 1024 });

  app.addHook('onRequest', async (request, reply) => {
    if (request.url === '/api/v1/health') return;
    // The MP relay mounted beside the admin API authenticates its own requests (docs/adr/0003-state-relay.md).
    if (request.url.startsWith(`${MP_PREFIX}/`)) return;
    const header = request.headers.authorization;
    const token = header?.startsWith('Bearer ') ? header.slice(7) : undefined;
    if (!token || !sameSecret(token, opts.token)) {
      const code = token ? 'CAIRN_AUTH_INVALID' : 'CAIRN_AUTH_MISSING';
      log.warn(`Audit: refused ${request.method} ${request.url} from ${request.ip}: ${code}`);
      await reply.code(401).send({ code, message: ERRORS[code].message });
    }
  });

  app.addHook('onResponse', async (request, reply) => {
    if (request.url === '/api/v1/health' || reply.statusCode === 401 || request.url.startsWith(`${MP_PREFIX}/`)) return;
    const outcome = (request as FastifyRequest & { auditNote?: string }).auditNote;
    log.info(`Audit: User admin (${request.ip}) called ${request.method} ${request.url}: ${reply.statusCode}${outcome ? `, ${outcome}` : ''}`);
  });

  app.setErrorHandler(async (err: unknown, request, reply: FastifyReply) => {
    if (isCairnError(err)) {
      (request as FastifyRequest & { auditNote?: string }).auditNote = err.code;
      return reply.code(err.status).send(err.toJSON());
    }
    const e = err as { statusCode?: number; message?: string };
    if (e.statusCode && e.statusCode < 500) return reply.code(e.statusCode).send({ code: 'CAIRN_REQUEST_INVALID', message: e.message ?? 'bad request' });
    log.error(`Unexpected error in ${request.method} ${request.url}: ${describeError(err)}`);
    return reply.code(500).send({ code: 'CAIRN_INTERNAL', message: ERRORS.CAIRN_INTERNAL.message });
  });
  app.setNotFoundHandler(async (_request, reply) => reply.code(404).send({ code: 'CAIRN_NOT_FOUND', message: ERRORS.CAIRN_NOT_FOUND.message }));

  const note = (request: FastifyRequest, text: string) => {
    (request as FastifyRequest & { auditNote?: string }).auditNote = text;
  };

  app.get('/api/v1/health', async () => ({ ok: true, siteCode: ctx.siteCode }));

  app.get('/api/v1/distribution-points', async () => ({ distributionPoints: await listDpViews(ctx) }));

  app.post('/api/v1/distribution-points', async (request, reply) => {
    const b = body(request);
    const priority = b.priority === undefined ? undefined : Number(b.priority);
    if (priority !== undefined && (!Number.isInteger(priority) || priority < 0)) throw new CairnError('CAIRN_REQUEST_INVALID', 'priority must be a non-negative integer');
    const result = await addDistributionPoint(ctx, { name: str(b, 'name')!, url: str(b, 'url')!, ...(priority === undefined ? {} : { priority }) });
    note(request, `added distribution point ${result.dp.name} (${result.dp.url})`);
    return reply.code(201).send(result);
  });

  app.get('/api/v1/settings', async () => ({ settings: await listSettings(ctx) }));

  app.put<{ Params: { name: string } }>('/api/v1/settings/:name', async (request) => {
    const result = await changeSetting(ctx, request.params.name, body(request).value);
    note(request, `set ${result.name} to ${result.value}`);
    return result;
  });

  app.get('/api/v1/packages', async () => ({ packages: await listPackageViews(ctx) }));

  app.post('/api/v1/packages', async (request, reply) => {
    const b = body(request);
    const priority = str(b, 'priority', false);
    if (priority !== undefined && !['high', 'medium', 'low'].includes(priority)) throw new CairnError('CAIRN_REQUEST_INVALID', 'priority must be high, medium or low');
    const pkg = await createPackage(ctx, {
      name: str(b, 'name')!,
      source: str(b, 'source')!,
      ...(typeof b.description === 'string' ? { description: b.description } : {}),
      ...(priority ? { priority: priority as 'high' | 'medium' | 'low' } : {}),
    });
    log.info(`Processed insert instance notification: SMS_Package.PackageID="${pkg.PkgID}"`);
    note(request, `created package ${pkg.PkgID} (${pkg.Name}) from ${pkg.Source}`);
    return reply.code(201).send(packageView(pkg));
  });

  app.get<{ Params: { id: string } }>('/api/v1/packages/:id', async (request) => packageView(await requirePackage(ctx, request.params.id)));

  app.post<{ Params: { id: string } }>('/api/v1/packages/:id/distribute', async (request) => {
    const b = body(request);
    const dps = b.distributionPoints;
    if (!Array.isArray(dps) || !dps.every((d) => typeof d === 'string' && d)) throw new CairnError('CAIRN_REQUEST_INVALID', 'distributionPoints must be a list of DP names');
    const result = await distributePackage(ctx, request.params.id, dps as string[]);
    note(request, `distributing ${result.packageId} to ${result.distributionPoints.join(', ')}`);
    return result;
  });

  app.get<{ Params: { id: string } }>('/api/v1/packages/:id/status', async (request) => packageStatus(ctx, request.params.id));

  /** `distributionPoints` from a body: a list of names; optional ones may be absent. */
  const dpList = (request: FastifyRequest, required: boolean): string[] => {
    const dps = body(request).distributionPoints;
    if (dps === undefined && !required) return [];
    if (!Array.isArray(dps) || !dps.every((d) => typeof d === 'string' && d)) throw new CairnError('CAIRN_REQUEST_INVALID', 'distributionPoints must be a list of DP names');
    return dps as string[];
  };

  // A prestaged content file of a stored version, streamed (issue 3, prestaged content).
  app.get<{ Params: { id: string }; Querystring: { version?: string } }>('/api/v1/packages/:id/prestage', async (request, reply) => {
    const pkg = await requirePackage(ctx, request.params.id);
    const version = request.query.version === undefined ? pkg.StoredPkgVersion : Number(request.query.version);
    if (!Number.isSafeInteger(version) || version < 1) throw new CairnError('CAIRN_REQUEST_INVALID', 'version must be a stored version (a positive integer)');
    const contentId = `${pkg.PkgID}.${version}`;
    if (!(await ctx.library.getContent(contentId))) throw new CairnError('CAIRN_PACKAGE_NOT_FOUND', `version ${version} of ${pkg.PkgID} is not stored`);
    const body = new PassThrough();
    writePrestage(ctx.library, contentId, body).then(
      () => body.end(),
      (err: unknown) => {
        log.error(`Export of ${contentId} failed: ${describeError(err)}`);
        body.destroy(err as Error);
      },
    );
    note(request, `exported ${contentId} as prestaged content`);
    return reply.header('content-type', 'application/octet-stream').header('content-disposition', `attachment; filename="${contentId}.pkgx"`).send(body);
  });

  app.post<{ Params: { id: string } }>('/api/v1/packages/:id/update', async (request) => {
    const verifyAll = body(request).verifyAll;
    if (verifyAll !== undefined && typeof verifyAll !== 'boolean') throw new CairnError('CAIRN_REQUEST_INVALID', 'verifyAll must be true or false');
    const result = await updatePackage(ctx, request.params.id, { verifyAll: verifyAll === true });
    log.info(`Processed method RefreshPkgSource: SMS_Package.PackageID="${result.packageId}", new source version ${result.sourceVersion}`);
    note(request, `refreshing the source of ${result.packageId} (source version ${result.sourceVersion}${verifyAll === true ? ', every file re-hashed' : ''})`);
    return result;
  });

  app.post<{ Params: { id: string } }>('/api/v1/packages/:id/redistribute', async (request) => {
    const result = await redistributePackage(ctx, request.params.id, dpList(request, true));
    note(request, `redistributing ${result.packageId} to ${result.distributionPoints.join(', ')}`);
    return result;
  });

  app.post<{ Params: { id: string } }>('/api/v1/packages/:id/remove', async (request) => {
    const result = await removePackageFromDps(ctx, request.params.id, dpList(request, true));
    note(request, `removing ${result.packageId} from ${result.distributionPoints.join(', ')}`);
    return result;
  });

  app.post<{ Params: { id: string } }>('/api/v1/packages/:id/validate', async (request) => {
    const result = await validatePackage(ctx, request.params.id, dpList(request, false));
    note(request, `validating ${result.packageId} on ${result.distributionPoints.join(', ')}`);
    return result;
  });

  app.delete<{ Params: { id: string } }>('/api/v1/packages/:id', async (request) => {
    const result = await deletePackage(ctx, request.params.id);
    log.info(`Processed delete instance notification: SMS_Package.PackageID="${result.packageId}"`);
    note(request, `deleting package ${result.packageId} (on ${result.distributionPoints} distribution point(s))`);
    return result;
  });

  app.get<{ Querystring: { package?: string; component?: string; id?: string; limit?: string } }>('/api/v1/status-messages', async (request) => {
    const q = request.query;
    const messageId = q.id === undefined ? undefined : Number(q.id);
    const limit = q.limit === undefined ? undefined : Number(q.limit);
    if (messageId !== undefined && !Number.isInteger(messageId)) throw new CairnError('CAIRN_REQUEST_INVALID', 'id must be an integer');
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 1 || limit > 100000)) throw new CairnError('CAIRN_REQUEST_INVALID', 'limit must be 1-100000');
    if (q.package) await requirePackage(ctx, q.package);
    const messages = await queryStatusMessages(ctx.db, {
      ...(q.package ? { packageId: q.package } : {}),
      ...(q.component ? { component: q.component } : {}),
      ...(messageId !== undefined ? { messageId } : {}),
      ...(limit !== undefined ? { limit } : {}),
    });
    return { statusMessages: messages };
  });

  app.get<{ Querystring: { client?: string; topicType?: string; limit?: string } }>('/api/v1/states', async (request) => ({ states: await listStates(ctx, request.query) }));

  // Clients, collections, deployments, boundaries and remote MPs (issue 4; src/site/admin-api/mp-admin-routes.ts).
  registerMpAdminRoutes(app, { ctx, wakePolicyProvider: opts.wakePolicyProvider ?? (() => undefined) });
  // Software update points and the update sync (issue 5; seed 004).
  app.get('/api/v1/update-points', async () => ({ updatePoints: await listUpdatePointViews(ctx) }));

  app.post('/api/v1/update-points', async (request, reply) => {
    const b = body(request);
    const result = await addUpdatePoint(ctx, { name: str(b, 'name')!, url: str(b, 'url')! });
    note(request, `added software update point ${result.sup.name} (${result.sup.url}), install order ${result.sup.installOrder}`);
    return reply.code(201).send(result);
  });

  app.get('/api/v1/sync', async () => syncStatusView(ctx));

  app.post('/api/v1/sync', async (request) => {
    const full = body(request).full;
    if (full !== undefined && typeof full !== 'boolean') throw new CairnError('CAIRN_REQUEST_INVALID', 'full must be true or false');
    const result = await requestSync(ctx, full === true);
    // Seed 004: what SMSProv.log shows for SyncNow.
    log.info('ExecMethodAsync : SMS Provider SMS_SoftwareUpdate::SyncNow');
    note(request, `requested a ${full === true ? 'full' : 'delta'} update sync (SyncNow = ${result.requested})`);
    return result;
  });

  app.put('/api/v1/sync/upstream', async (request) => {
    const result = await changeUpstream(ctx, str(body(request), 'upstream')!);
    note(request, `set the update sync upstream to ${result.upstream}`);
    return result;
  });

  app.put('/api/v1/sync/criteria', async (request) => {
    const b = body(request);
    const result = await changeCriteria(ctx, { products: b.products, classifications: b.classifications, languages: b.languages });
    note(request, `set the update sync criteria (${result.criteria.products.length} products, ${result.criteria.classifications.length} classifications, ${result.criteria.languages.length} languages); next sync is full`);
    return result;
  });

  app.get<{ Querystring: UpdateListQuery }>('/api/v1/updates', async (request) => listUpdateViews(ctx, request.query));

  // Update groups, deployments, compliance and summary tasks (issue 6; src/site/admin-api/compliance-routes.ts).
  registerComplianceRoutes(app, { ctx, summarizer: opts.summarizer });

  return app;
}
