/**
 * `cairn admin` commands for software-update compliance (issue 6): update
 * groups and their deployments, on-demand summarisation, the summary tasks
 * and the summarised compliance. Thin: each calls one admin API route and
 * prints.
 */
import type { Command } from 'commander';
import { callAdmin } from './admin-client.ts';
import type { CliPrinters } from './mp-admin-commands.ts';
import type { ComplianceView, SummaryTaskView, UpdateDeploymentView, UpdateGroupView } from '../site/services/compliance.ts';
import type { TaskRunResult } from '../site/components/summarizer/summarizer.ts';

const counts = (s: { compliant: number; nonCompliant: number; unknown: number; total: number } | null): string[] => (s ? [String(s.compliant), String(s.nonCompliant), String(s.unknown), String(s.total)] : ['-', '-', '-', '-']);

export function addComplianceCommands(admin: Command, p: CliPrinters): void {
  const ug = admin.command('update-group').description('update groups (lists of updates) and their deployments to collections');
  ug.command('create <name>')
    .description('create an empty update group')
    .option('--json', 'JSON output')
    .action(async (name: string, o: { json?: boolean }) => {
      const r = await callAdmin<UpdateGroupView>(p.conn(), 'POST', '/api/v1/update-groups', { name });
      p.print(!!o.json, r, () => `${r.name} (${r.id})\n`);
    });
  ug.command('add <name> <updateIds...>')
    .description("add updates (IDs from `cairn admin update list`) to a group")
    .option('--json', 'JSON output')
    .action(async (name: string, updates: string[], o: { json?: boolean }) => {
      const r = await callAdmin<{ group: UpdateGroupView; added: number }>(p.conn(), 'POST', `/api/v1/update-groups/${encodeURIComponent(name)}/updates`, { updates });
      p.print(!!o.json, r, () => `${r.group.name}: added ${r.added}, ${r.group.updates.length} update(s) in all\n`);
    });
  ug.command('deploy <name>')
    .description('deploy a group to a collection (what the assignment compliance evaluator measures); prints the deployment number and ID')
    .requiredOption('--collection <collection>', 'collection name or ID')
    .option('--json', 'JSON output')
    .action(async (name: string, o: { collection: string; json?: boolean }) => {
      const r = await callAdmin<{ deployment: UpdateDeploymentView; created: boolean }>(p.conn(), 'POST', `/api/v1/update-groups/${encodeURIComponent(name)}/deployments`, { collection: o.collection });
      p.print(!!o.json, r, () => `${r.deployment.assignmentId} ${r.deployment.deploymentId}${r.created ? '' : ' (already deployed)'}\n`);
    });
  ug.command('list')
    .description('update groups with their updates, deployments and last summary')
    .option('--json', 'JSON output')
    .action(async (o: { json?: boolean }) => {
      const r = await callAdmin<{ updateGroups: UpdateGroupView[] }>(p.conn(), 'GET', '/api/v1/update-groups');
      p.print(!!o.json, r.updateGroups, () =>
        p.table([['NAME', 'UPDATES', 'DEPLOYMENTS', 'COMPLIANT', 'NON-COMPLIANT', 'UNKNOWN', 'TOTAL'], ...r.updateGroups.map((g) => [g.name, String(g.updates.length), g.deployments.map((d) => `${d.assignmentId}→${d.collectionId}`).join(' ') || '-', ...counts(g.summary)])]),
      );
    });

  admin
    .command('summarize')
    .description('run summary tasks now and wait for them (without --task: update status, update group status, assignment compliance)')
    .option('--task <name>', 'one task, e.g. update-status, update-group-status, assignment-compliance')
    .option('--deployment <id>', 'the assignment compliance evaluator for this deployment only')
    .option('--group <name>', 'the update group status summarizer for this update group only')
    .option('--json', 'JSON output')
    .action(async (o: { task?: string; deployment?: string; group?: string; json?: boolean }) => {
      const r = await callAdmin<{ runs: TaskRunResult[] }>(p.conn(), 'POST', '/api/v1/summary-tasks/run', { ...(o.task ? { task: o.task } : {}), ...(o.deployment ? { deployment: o.deployment } : {}), ...(o.group ? { group: o.group } : {}) });
      p.print(!!o.json, r.runs, () => r.runs.map((x) => `task ${x.task} completed ${x.result === 'success' ? 'successfully' : 'with errors'} after running for ${(x.durationMs / 1000).toFixed(3)} seconds, with status ${x.rowsTouched}\n`).join(''));
    });

  admin
    .command('summary-tasks')
    .description('the summary tasks with their schedules, last runs and results')
    .option('--json', 'JSON output')
    .action(async (o: { json?: boolean }) => {
      const r = await callAdmin<{ summaryTasks: SummaryTaskView[] }>(p.conn(), 'GET', '/api/v1/summary-tasks');
      p.print(!!o.json, r.summaryTasks, () =>
        p.table([['TASK', 'SCHEDULE (S)', 'ON DEMAND', 'LAST START', 'LAST END', 'RESULT', 'ROWS', 'MS'], ...r.summaryTasks.map((t) => [t.name, String(t.scheduleSeconds), t.onDemand ? 'yes' : 'no', t.lastRunStart || '-', t.lastRunEnd || '-', t.lastRunResult || 'never run', String(t.lastRowsTouched), String(t.lastDurationMs)])]),
      );
    });

  admin
    .command('compliance')
    .description('summarised compliance (as of the last summary): every update, one update with its clients per state, one update group, one deployment, or one client\'s update states')
    .option('--update <id>', 'one update, with the clients in each state now')
    .option('--group <name>', 'one update group, with its updates')
    .option('--deployment <id>', 'one deployment (number or {guid})')
    .option('--client <name>', "one client's state for each update it reported (name or client ID)")
    .option('--limit <n>', 'with --update: clients listed per state; with --client: updates listed (default 100, at most 10000; the counts are always complete)')
    .option('--json', 'JSON output')
    .action(async (o: { update?: string; group?: string; deployment?: string; client?: string; limit?: string; json?: boolean }) => {
      const q = new URLSearchParams();
      if (o.update) q.set('update', o.update);
      if (o.group) q.set('group', o.group);
      if (o.deployment) q.set('deployment', o.deployment);
      if (o.client) q.set('client', o.client);
      if (o.limit) q.set('limit', o.limit);
      const r = await callAdmin<ComplianceView>(p.conn(), 'GET', `/api/v1/compliance?${q}`);
      p.print(!!o.json, r, () => {
        const updates = (list: Extract<ComplianceView, { kind: 'updates' }>['updates']) =>
          p.table([['UPDATE', 'TITLE', 'REQUIRED', 'INSTALLED', 'NOT REQUIRED', 'UNKNOWN', 'TOTAL', 'SUMMARY TIME'], ...list.map((u) => [u.updateId, u.title ?? '', String(u.required), String(u.installed), String(u.notRequired), String(u.unknown), String(u.total), u.summaryTime])]);
        if (r.kind === 'updates') {
          if (!r.clients) return updates(r.updates);
          const c = r.clients;
          const lists = (
            [
              ['required', c.required],
              ['installed', c.installed],
              ['not required', c.notRequired],
              ['unknown', c.unknown],
            ] as const
          ).map(([label, l]) => `\n${label}: ${l.count} client(s)${l.truncated ? `, the first ${l.clients.length} shown (--limit)` : ''}\n` + (l.clients.length ? p.table([['CLIENT', 'CLIENT ID', 'MESSAGE TIME'], ...l.clients.map((x) => [x.name || '-', x.clientId, x.messageTime ?? 'no state'])]) : ''));
          return updates(r.updates) + `\nclients per state now (${c.asOf}):` + lists.join('');
        }
        if (r.kind === 'client') {
          const c = r.client;
          const n = c.counts;
          return (
            `client ${c.name || '(no name)'} ${c.clientId}, ${c.registration ?? 'not registered'}; states now (${c.asOf})\n` +
            p.table([['REQUIRED', 'INSTALLED', 'NOT REQUIRED', 'UNKNOWN', 'NO STATE'], [String(n.required), String(n.installed), String(n.notRequired), String(n.unknown), String(n.noState)]]) +
            '\n' +
            p.table([['UPDATE', 'TITLE', 'ARTICLE', 'REVISION', 'STATE', 'MESSAGE TIME'], ...c.updates.map((u) => [u.updateId, u.title ?? '(not in the catalog)', u.articleId ?? '', u.revision === null ? '-' : String(u.revision), `${u.state} ${u.stateName ?? ''}`.trim(), u.messageTime])]) +
            (c.truncated ? `(the first ${c.updates.length} shown: --limit)\n` : '')
          );
        }
        const head = ['COMPLIANT', 'NON-COMPLIANT', 'UNKNOWN', 'TOTAL', 'SUMMARY TIME'];
        if (r.kind === 'group') return `update group ${r.group.name}\n` + p.table([head, [...counts(r.group.summary), r.group.summary?.summaryTime ?? 'not summarised yet']]) + '\n' + updates(r.updates);
        const d = r.deployment;
        return `deployment ${d.assignmentId} ${d.deploymentId}: update group ${d.group} to ${d.collectionId} (${d.collectionName})\n` + p.table([head, [...counts(d.summary), d.summary?.summaryTime ?? 'not summarised yet']]);
      });
    });
}
