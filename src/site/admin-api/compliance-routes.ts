/**
 * The admin API's routes for software-update compliance (issue 6, parts 5
 * to 7): update groups, their deployments, the summarised compliance, the
 * per-client detail and the summary tasks. Registered by `buildAdminApi` in the same fastify instance:
 * the token check, the audit line in `SMSProv.log` and the error handling are
 * the admin API's own. Transport only: decode, call a service, encode.
 */
import type { FastifyInstance } from 'fastify';
import { CairnError } from '../../shared/errors.ts';
import type { SiteContext } from '../site-context.ts';
import type { Summarizer } from '../components/summarizer/summarizer.ts';
import { addUpdatesToGroup, complianceView, createUpdateGroup, deployUpdateGroup, listSummaryTaskViews, listUpdateGroupViews, summarizeNow } from '../services/compliance.ts';
import { auditNote, bodyText, jsonBody } from './mp-admin-routes.ts';

export function registerComplianceRoutes(app: FastifyInstance, opts: { ctx: SiteContext; summarizer: Summarizer | undefined }): void {
  const { ctx } = opts;

  app.get('/api/v1/update-groups', async () => ({ updateGroups: await listUpdateGroupViews(ctx) }));

  app.post('/api/v1/update-groups', async (request, reply) => {
    const group = await createUpdateGroup(ctx, bodyText(jsonBody(request), 'name'));
    auditNote(request, `created update group ${group.name} (${group.id})`);
    return reply.code(201).send(group);
  });

  app.post<{ Params: { name: string } }>('/api/v1/update-groups/:name/updates', async (request) => {
    const result = await addUpdatesToGroup(ctx, request.params.name, jsonBody(request).updates);
    auditNote(request, `added ${result.added} update(s) to update group ${result.group.name} (now ${result.group.updates.length})`);
    return result;
  });

  app.post<{ Params: { name: string } }>('/api/v1/update-groups/:name/deployments', async (request, reply) => {
    const result = await deployUpdateGroup(ctx, request.params.name, bodyText(jsonBody(request), 'collection'));
    auditNote(request, `${result.created ? 'deployed' : 'already deployed'} update group ${result.deployment.group} to ${result.deployment.collectionId} (${result.deployment.collectionName}) as deployment ${result.deployment.assignmentId} ${result.deployment.deploymentId}`);
    return reply.code(result.created ? 201 : 200).send(result);
  });

  app.get<{ Querystring: { update?: string; group?: string; deployment?: string; client?: string; limit?: string } }>('/api/v1/compliance', async (request) => {
    const view = await complianceView(ctx, request.query);
    // Per-client detail names machines: say whose in the audit line.
    if (view.kind === 'client') auditNote(request, `read the update states of client ${view.client.name || '(no name)'} (${view.client.clientId})`);
    if (view.kind === 'updates' && view.clients) auditNote(request, `read the clients per state of update ${request.query.update}`);
    return view;
  });

  app.get('/api/v1/summary-tasks', async () => ({ summaryTasks: await listSummaryTaskViews(ctx) }));

  app.post('/api/v1/summary-tasks/run', async (request) => {
    if (!opts.summarizer) throw new CairnError('CAIRN_SUMMARY_TASK_FAILED', 'the summarizer does not run in this process');
    const b = jsonBody(request);
    const result = await summarizeNow(ctx, opts.summarizer, { task: b.task, deployment: b.deployment, group: b.group });
    auditNote(request, `ran ${result.runs.map((r) => `${r.task} (${r.result}, ${r.rowsTouched} rows, ${r.durationMs} ms)`).join('; ')}`);
    return result;
  });
}
