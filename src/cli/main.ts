/**
 * The `cairn` command line: one entry for every role and the admin CLI
 * (ARCHITECTURE.md, "One product, several roles"). Thin: parses arguments,
 * calls a role's start function or the admin API, prints, and turns errors
 * into `cairn: CODE: message` on stderr with exit code 1.
 */
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { describeError } from '../shared/errors.ts';
import { startSite } from '../site/site-server.ts';
import { runDpCommand, runDpImport } from './dp-command.ts';
import { runUpstreamCommand } from './upstream-command.ts';
import { runAgentCommand, runAgentTrigger } from './agent-command.ts';
import { readAgentUpdates } from './agent-updates.ts';
import { runCatalogImport } from './catalog-command.ts';
import { callAdmin, downloadAdmin, findAdminConnection } from './admin-client.ts';
import type { DpView } from '../site/services/distribution-points.ts';
import type { PackageStatusView, PackageView } from '../site/services/packages.ts';
import type { SettingView } from '../site/services/settings.ts';
import type { StoredStatusMessage } from '../datastore/status-messages.ts';
import { verifyPrestage } from '../content-library/prestage.ts';
import type { StateView } from '../site/services/state-messages.ts';
import { runMpCommand } from './mp-command.ts';
import { addBoundaryCommands, addClientCommands, addCollectionCommands, addDeployCommand, addMpCommands } from './mp-admin-commands.ts';
import { runSupCommand } from './sup-command.ts';
import { addComplianceCommands } from './compliance-commands.ts';
import type { UpdatePointView } from '../site/services/update-points.ts';
import type { SyncStatusView } from '../site/services/update-sync.ts';
import type { StoredUpdate } from '../datastore/updates.ts';

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('a port is an integer from 0 to 65535');
  return n;
}

function print(json: boolean, value: unknown, text: () => string): void {
  process.stdout.write(json ? JSON.stringify(value, null, 2) + '\n' : text());
}

function table(rows: readonly (readonly string[])[]): string {
  if (!rows.length) return '';
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}

export function buildProgram(): Command {
  const program = new Command('cairn').description('Cairn site server: content distribution and software-update compliance').showHelpAfterError();

  program
    .command('start')
    .description('start the all-in-one site: site server, admin API and a distribution point of its own, on the embedded database')
    .option('--data <dir>', 'data folder', './cairn-data')
    .option('--port <n>', 'admin API port (0 picks a free port)', port, 8340)
    .option('--dp-port <n>', "the site's own distribution point port (default: admin port + 1)", port)
    .option('--no-local-dp', 'do not start a distribution point in this process')
    .option('--site-code <code>', 'site code for a new site', 'CS1')
    .option('--sup-port <n>', "the site's own software update point port (default: admin port + 2)", port)
    .option('--no-local-sup', 'do not start a software update point in this process')
    .option('--no-default-upstream', "on Debian/Ubuntu, do not make this machine's apt lists the upstream of a site that has none (also CAIRN_NO_DEFAULT_UPSTREAM=1)")
    .option('--agent', "run a client agent for this machine in-process, data in <data>/agent (the default)")
    .option('--no-agent', "do not run this machine's client agent")
    .action(async (o: { data: string; port: number; dpPort?: number; localDp: boolean; siteCode: string; supPort?: number; localSup: boolean; defaultUpstream: boolean; agent?: boolean }) => {
      const site = await startSite({
        dataDir: o.data,
        port: o.port,
        localDp: o.localDp,
        siteCode: o.siteCode,
        localSup: o.localSup,
        defaultUpstream: o.defaultUpstream,
        agent: o.agent !== false,
        ...(o.dpPort === undefined ? {} : { dpPort: o.dpPort }),
        ...(o.supPort === undefined ? {} : { supPort: o.supPort }),
      });
      process.stdout.write(
        `Cairn site ${site.ctx.siteCode} is running.\n` +
          `  admin API:        ${site.adminUrl}\n` +
          `  admin token:      ${site.paths.adminToken}\n` +
          (site.localDpUrl ? `  distribution point 'local': ${site.localDpUrl}\n` : '') +
          (site.localSupUrl ? `  software update point 'local': ${site.localSupUrl}\n` : '') +
          (site.agent ? `  client agent:     ${site.agent.name} (${site.agent.clientId}), data ${site.agent.dataDir}\n` : '') +
          `  database:         ${site.database.display}\n` +
          `  logs:             ${site.paths.logs}\n` +
          `Try: npx cairn admin dp list   (from this folder; elsewhere set CAIRN_URL and CAIRN_TOKEN)\n`,
      );
      const stop = () => {
        process.stdout.write('Stopping...\n');
        site.close().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });

  const dpRole = program
    .command('dp')
    .description('run a distribution point (or `cairn dp import` prestaged content into one)')
    .option('--data <dir>', 'data folder of the DP (its content library)')
    .option('--port <n>', 'port to listen on', port)
    .option('--key <key>', "the DP's key, printed by `cairn admin dp add`")
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--name <name>', 'name for logs')
    .action(async (o: { data?: string; port?: number; key?: string; host: string; name?: string }) => {
      // Checked here rather than as required options, so that `cairn dp import` does not need them.
      for (const [flag, value] of [['--data <dir>', o.data], ['--port <n>', o.port], ['--key <key>', o.key]] as const) {
        if (value === undefined) dpRole.error(`error: required option '${flag}' not specified`);
      }
      await runDpCommand({ data: o.data!, port: o.port!, key: o.key!, host: o.host, ...(o.name ? { name: o.name } : {}) });
    });
  dpRole
    .command('import <file>')
    .description("load a prestaged content file (from `cairn admin package export`) into a DP's content library; run it while the DP is stopped")
    .option('--data <dir>', 'data folder of the DP (required)')
    .option('--json', 'JSON output')
    .action(async (file: string, o: { data?: string; json?: boolean }) => {
      // `--data` also names an option of `cairn dp`, which commander may have taken.
      const data = o.data ?? (dpRole.opts() as { data?: string }).data;
      if (data === undefined) dpRole.error("error: required option '--data <dir>' not specified");
      const r = await runDpImport(file, data!);
      print(!!o.json, r, () => `Imported content ${r.contentId} (${r.files} files, ${r.bytes} bytes new to this library)\n`);
    });

  program
    .command('mp')
    .description('run a remote management point: client registration, policy, content location, and the relay, dispatching its files to the site server')
    .requiredOption('--data <dir>', 'data folder of the MP (outboxes, logs)')
    .requiredOption('--port <n>', 'port to listen on (0 picks a free port)', port)
    .requiredOption('--site <url>', "the site server's address (its admin API), e.g. http://site:8340")
    .requiredOption('--name <name>', 'the name the MP was registered with (`cairn admin mp add NAME`)')
    .requiredOption('--key <key>', 'the key `cairn admin mp add` printed')
    .requiredOption('--site-key <file>', "a copy of the site's site-signing.key")
    .option('--database <url>', 'the site database (default: CAIRN_DATABASE_URL)')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .action(async (o: { data: string; port: number; site: string; name: string; key: string; siteKey: string; database?: string; host: string }) => {
      const databaseUrl = o.database ?? process.env.CAIRN_DATABASE_URL;
      if (!databaseUrl) throw new InvalidArgumentError('give --database URL (or CAIRN_DATABASE_URL): the MP reads the site database');
      await runMpCommand({ dataDir: o.data, port: o.port, host: o.host, siteUrl: o.site, name: o.name, key: o.key, siteKeyFile: o.siteKey, databaseUrl });
    });

  const admin = program.command('admin').description('administer a site through its admin API (CAIRN_URL, CAIRN_TOKEN, or ./cairn-data)').option('--data <dir>', 'data folder of `cairn start`', './cairn-data');
  const conn = () => findAdminConnection((admin.opts() as { data: string }).data);

  const dp = admin.command('dp').description('distribution points');
  dp.command('add')
    .description("register a distribution point and print its key")
    .requiredOption('--name <name>', 'unique name')
    .requiredOption('--url <url>', 'base URL of the DP, e.g. http://127.0.0.1:8350')
    .option('--priority <n>', 'DP priority (lower sends first)', (v) => Number(v))
    .option('--json', 'JSON output')
    .action(async (o: { name: string; url: string; priority?: number; json?: boolean }) => {
      const r = await callAdmin<{ dp: DpView; key: string }>(conn(), 'POST', '/api/v1/distribution-points', { name: o.name, url: o.url, ...(o.priority === undefined ? {} : { priority: o.priority }) });
      print(!!o.json, r, () => `${r.key}\n`);
    });
  dp.command('list')
    .description('list distribution points')
    .option('--json', 'JSON output')
    .action(async (o: { json?: boolean }) => {
      const r = await callAdmin<{ distributionPoints: DpView[] }>(conn(), 'GET', '/api/v1/distribution-points');
      print(!!o.json, r.distributionPoints, () => table([['NAME', 'URL', 'PRIORITY'], ...r.distributionPoints.map((d) => [d.name, d.url, String(d.priority)])]));
    });

  const pkg = admin.command('package').description('packages');
  pkg
    .command('create')
    .description('create a package from a source folder and print its ID')
    .requiredOption('--name <name>', 'package name')
    .requiredOption('--source <dir>', 'source folder')
    .option('--description <text>', 'description')
    .option('--priority <p>', 'high, medium or low', 'medium')
    .option('--json', 'JSON output')
    .action(async (o: { name: string; source: string; description?: string; priority: string; json?: boolean }) => {
      const r = await callAdmin<PackageView>(conn(), 'POST', '/api/v1/packages', { name: o.name, source: path.resolve(o.source), priority: o.priority, ...(o.description ? { description: o.description } : {}) });
      print(!!o.json, r, () => `${r.packageId}\n`);
    });
  pkg
    .command('list')
    .description('list packages')
    .option('--json', 'JSON output')
    .action(async (o: { json?: boolean }) => {
      const r = await callAdmin<{ packages: PackageView[] }>(conn(), 'GET', '/api/v1/packages');
      print(!!o.json, r.packages, () => table([['ID', 'NAME', 'VERSION', 'SIZE KB', 'FILES', 'ERROR'], ...r.packages.map((p) => [p.packageId, p.name, `${p.storedVersion}/${p.sourceVersion}`, String(p.sizeKb), String(p.fileCount), p.lastError])]));
    });
  pkg
    .command('distribute <pkgId>')
    .description('distribute a package to distribution points')
    .requiredOption('--dp <name...>', 'distribution point name (repeatable)')
    .option('--json', 'JSON output')
    .action(async (pkgId: string, o: { dp: string[]; json?: boolean }) => {
      const r = await callAdmin<{ packageId: string; distributionPoints: string[] }>(conn(), 'POST', `/api/v1/packages/${encodeURIComponent(pkgId)}/distribute`, { distributionPoints: o.dp });
      print(!!o.json, r, () => `Distributing ${r.packageId} to ${r.distributionPoints.join(', ')}\n`);
    });
  pkg
    .command('update <pkgId>')
    .description("refresh a package's source: snapshot it as the next version and send what changed to every DP it is on")
    .option('--verify-all', 're-hash every source file, even those whose size, times and inode say they are unchanged')
    .option('--json', 'JSON output')
    .action(async (pkgId: string, o: { json?: boolean; verifyAll?: boolean }) => {
      const r = await callAdmin<{ packageId: string; sourceVersion: number }>(conn(), 'POST', `/api/v1/packages/${encodeURIComponent(pkgId)}/update`, o.verifyAll ? { verifyAll: true } : undefined);
      print(!!o.json, r, () => `Updating ${r.packageId} to source version ${r.sourceVersion}${o.verifyAll ? ' (every file re-hashed)' : ''}\n`);
    });
  pkg
    .command('redistribute <pkgId>')
    .description('send every file of a package to distribution points again, rewriting their copies')
    .requiredOption('--dp <name...>', 'distribution point name (repeatable)')
    .option('--json', 'JSON output')
    .action(async (pkgId: string, o: { dp: string[]; json?: boolean }) => {
      const r = await callAdmin<{ packageId: string; distributionPoints: string[] }>(conn(), 'POST', `/api/v1/packages/${encodeURIComponent(pkgId)}/redistribute`, { distributionPoints: o.dp });
      print(!!o.json, r, () => `Redistributing ${r.packageId} to ${r.distributionPoints.join(', ')}\n`);
    });
  pkg
    .command('remove <pkgId>')
    .description('remove a package from distribution points')
    .requiredOption('--dp <name...>', 'distribution point name (repeatable)')
    .option('--json', 'JSON output')
    .action(async (pkgId: string, o: { dp: string[]; json?: boolean }) => {
      const r = await callAdmin<{ packageId: string; distributionPoints: string[] }>(conn(), 'POST', `/api/v1/packages/${encodeURIComponent(pkgId)}/remove`, { distributionPoints: o.dp });
      print(!!o.json, r, () => `Removing ${r.packageId} from ${r.distributionPoints.join(', ')}\n`);
    });
  pkg
    .command('validate <pkgId>')
    .description("re-hash a package's content on distribution points (every DP it is on unless --dp is given)")
    .option('--dp <name...>', 'distribution point name (repeatable)')
    .option('--json', 'JSON output')
    .action(async (pkgId: string, o: { dp?: string[]; json?: boolean }) => {
      const r = await callAdmin<{ packageId: string; distributionPoints: string[] }>(conn(), 'POST', `/api/v1/packages/${encodeURIComponent(pkgId)}/validate`, o.dp ? { distributionPoints: o.dp } : {});
      print(!!o.json, r, () => `Validating ${r.packageId} on ${r.distributionPoints.join(', ')}\n`);
    });
  pkg
    .command('delete <pkgId>')
    .description('remove a package from every distribution point, then delete it')
    .option('--json', 'JSON output')
    .action(async (pkgId: string, o: { json?: boolean }) => {
      const r = await callAdmin<{ packageId: string; distributionPoints: number }>(conn(), 'DELETE', `/api/v1/packages/${encodeURIComponent(pkgId)}`);
      print(!!o.json, r, () => `Deleting ${r.packageId}: removing it from ${r.distributionPoints} distribution point(s) first\n`);
    });
  pkg
    .command('export <pkgId>')
    .description("write a package's stored content to a prestaged content file, to load into a DP with `cairn dp import`")
    .requiredOption('--out <file>', 'the file to write')
    .option('--version <n>', 'stored version (default: the latest)', (v) => Number(v))
    .option('--json', 'JSON output')
    .action(async (pkgId: string, o: { out: string; version?: number; json?: boolean }) => {
      const route = `/api/v1/packages/${encodeURIComponent(pkgId)}/prestage${o.version === undefined ? '' : `?version=${o.version}`}`;
      const bytes = await downloadAdmin(conn(), route, path.resolve(o.out));
      const { header } = await verifyPrestage(path.resolve(o.out));
      const r = { packageId: header.definition.packageId, contentId: header.definition.contentId, file: path.resolve(o.out), bytes, files: header.files.length };
      print(!!o.json, r, () => `Wrote ${r.contentId} to ${r.file} (${r.files} files, ${r.bytes} bytes; verified)\n`);
    });
  pkg
    .command('status <pkgId>')
    .description("a package's status at the site and on each DP")
    .option('--json', 'JSON output')
    .action(async (pkgId: string, o: { json?: boolean }) => {
      const r = await callAdmin<PackageStatusView>(conn(), 'GET', `/api/v1/packages/${encodeURIComponent(pkgId)}/status`);
      print(!!o.json, r, () => {
        const p = r.package;
        const head = `${p.packageId} ${p.name}: source version ${p.sourceVersion}, stored version ${p.storedVersion}, ${p.fileCount} files, ${p.sizeKb} KB${p.lastError ? `\n  last error: ${p.lastError}` : ''}\n` + (r.site ? `site: ${r.site.state} (version ${r.site.version})\n` : 'site: not yet processed\n');
        const validated = (d: PackageStatusView['distributionPoints'][number]): string => (d.validation ? `${d.validation.valid ? 'valid' : 'INVALID'} ${d.validation.time}` : '-');
        return head + table([['DP', 'STATUS', 'STATE', 'VERSION', 'VALIDATED', 'CONTENT URL', 'ERROR'], ...r.distributionPoints.map((d) => [d.dp, String(d.status), d.state, String(d.version), validated(d), d.contentUrl, d.lastError])]);
      });
    });

  const settings = admin.command('settings').description('site control settings');
  settings
    .command('list')
    .description('every setting with its value and default')
    .option('--json', 'JSON output')
    .action(async (o: { json?: boolean }) => {
      const r = await callAdmin<{ settings: SettingView[] }>(conn(), 'GET', '/api/v1/settings');
      print(!!o.json, r.settings, () => table([['NAME', 'VALUE', 'DEFAULT'], ...r.settings.map((x) => [x.name, String(x.value), String(x.default)])]));
    });
  settings
    .command('set <name> <value>')
    .description('change a setting (most apply at the next start; see docs/operations.md)')
    .option('--json', 'JSON output')
    .action(async (name: string, value: string, o: { json?: boolean }) => {
      const r = await callAdmin<SettingView>(conn(), 'PUT', `/api/v1/settings/${encodeURIComponent(name)}`, { value: Number(value) });
      print(!!o.json, r, () => `${r.name} = ${r.value}\n`);
    });

  admin
    .command('status-messages')
    .description('status messages, oldest first')
    .option('--package <pkgId>', 'only messages about this package')
    .option('--component <name>', 'only this component, e.g. SMS_DISTRIBUTION_MANAGER')
    .option('--id <n>', 'only this message ID')
    .option('--json', 'JSON output')
    .action(async (o: { package?: string; component?: string; id?: string; json?: boolean }) => {
      const q = new URLSearchParams();
      if (o.package) q.set('package', o.package);
      if (o.component) q.set('component', o.component);
      if (o.id) q.set('id', o.id);
      const r = await callAdmin<{ statusMessages: StoredStatusMessage[] }>(conn(), 'GET', `/api/v1/status-messages?${q}`);
      print(!!o.json, r.statusMessages, () =>
        table([['TIME', 'ID', 'SEV', 'COMPONENT', 'INSERTION STRINGS'], ...r.statusMessages.map((m) => [m.time, String(m.id), m.severity, m.component, m.istr.filter(Boolean).join(' | ')])]),
      );
    });

  admin
    .command('state')
    .description('state messages')
    .command('list')
    .description('latest state per client and topic, with friendly names')
    .option('--client <name>', 'only this client (NetBIOS name or client ID)')
    .option('--topic-type <n>', 'only this topic type, e.g. 500 (software updates)')
    .option('--json', 'JSON output')
    .action(async (o: { client?: string; topicType?: string; json?: boolean }) => {
      const q = new URLSearchParams();
      if (o.client) q.set('client', o.client);
      if (o.topicType) q.set('topicType', o.topicType);
      const r = await callAdmin<{ states: StateView[] }>(conn(), 'GET', `/api/v1/states?${q}`);
      print(!!o.json, r.states, () =>
        table([['CLIENT', 'TOPIC TYPE', 'TOPIC', 'STATE', 'SERIAL', 'MESSAGE TIME'], ...r.states.map((s) => [s.client || s.clientId, `${s.topicType} ${s.topicTypeName ?? ''}`.trim(), s.topicId, `${s.stateId} ${s.stateName ?? ''}`.trim(), String(s.serialNumber), s.messageTime])]),
      );
    });

  // Management point and policy provider (issue 4): src/cli/mp-admin-commands.ts.
  addClientCommands(admin, { conn, print, table });
  addCollectionCommands(admin, { conn, print, table });
  addDeployCommand(pkg, { conn, print, table });
  addBoundaryCommands(admin, { conn, print, table });
  addMpCommands(admin, { conn, print, table });
  // Software-update compliance (issue 6): src/cli/compliance-commands.ts.
  addComplianceCommands(admin, { conn, print, table });
  const sup = admin.command('sup').description('software update points (the first added syncs from upstream; the others are its replicas)');
  sup
    .command('add <name>')
    .description('register a software update point and print its key (for `cairn sup --key`)')
    .requiredOption('--url <url>', 'base URL of the update point, e.g. http://127.0.0.1:8530')
    .option('--json', 'JSON output')
    .action(async (name: string, o: { url: string; json?: boolean }) => {
      const r = await callAdmin<{ sup: UpdatePointView; key: string }>(conn(), 'POST', '/api/v1/update-points', { name, url: o.url });
      print(!!o.json, r, () => `${r.key}\n`);
    });
  sup
    .command('list')
    .description("the site's software update points in install order")
    .option('--json', 'JSON output')
    .action(async (o: { json?: boolean }) => {
      const r = await callAdmin<{ updatePoints: UpdatePointView[] }>(conn(), 'GET', '/api/v1/update-points');
      print(!!o.json, r.updatePoints, () =>
        table([['ORDER', 'NAME', 'ROLE', 'URL', 'CONTENT VERSION', 'LAST SYNC', 'RESULT', 'ERROR'], ...r.updatePoints.map((s) => [String(s.installOrder), s.name, s.role, s.url, String(s.contentVersion), s.lastSyncTime, s.lastSyncResult, s.lastSyncError])]),
      );
    });

  const sync = admin.command('sync').description('software update synchronisation (seed 004)');
  sync
    .command('now')
    .description('ask for a sync now (SyncNow); --full ignores the anchors and syncs everything')
    .option('--full', 'a full sync (FULL.SYN) rather than a delta one (SELF.SYN)')
    .option('--json', 'JSON output')
    .action(async (o: { full?: boolean; json?: boolean }) => {
      const r = await callAdmin<{ requested: string }>(conn(), 'POST', '/api/v1/sync', { full: !!o.full });
      print(!!o.json, r, () => `Requested a ${o.full ? 'full' : 'delta'} sync (SyncNow = ${r.requested}); follow it in wsyncmgr.log or with \`cairn admin sync status\`\n`);
    });
  const showStatus = (s: SyncStatusView): string =>
    [
      `site ${s.siteCode}, update source {${s.updateSourceId.toUpperCase()}}, content version ${s.contentVersion}`,
      `last sync:      ${s.lastSyncResult || 'never'}${s.lastSyncKind ? ` (${s.lastSyncKind}, on ${s.lastSyncTrigger})` : ''}`,
      `  started:      ${s.lastSyncStartTime || '-'}`,
      `  ended:        ${s.lastSyncEndTime || '-'}`,
      `  items changed: ${s.itemsChanged}; rejected: ${s.rejected}; expired: ${s.expired}`,
      ...(s.lastSyncError ? [`  error:        ${s.lastSyncError}`] : []),
      `alert:          ${s.alert ? 'ACTIVE (the last sync failed)' : 'none'}`,
      ...(s.syncRequested ? [`requested:      ${s.syncRequested} (not yet picked up)`] : []),
      `upstream:       ${s.upstream && s.upstream !== 'none' ? s.upstream : "(the first update point's own)"}`,
      `criteria:       ${s.criteria.products.length || s.criteria.classifications.length || s.criteria.languages.length ? `products ${s.criteria.products.join(', ') || 'all'}; classifications ${s.criteria.classifications.join(', ') || 'all'}; languages ${s.criteria.languages.join(', ') || 'all'}` : 'all updates'}`,
      `update points:  ${s.updatePoints.map((p) => `${p.name} (${p.role}, version ${p.contentVersion})`).join(', ') || 'none'}`,
      '',
    ].join('\n');
  sync
    .command('status')
    .description('the last sync: start, end, result, content version, items changed, alert')
    .option('--json', 'JSON output')
    .action(async (o: { json?: boolean }) => {
      const r = await callAdmin<SyncStatusView>(conn(), 'GET', '/api/v1/sync');
      print(!!o.json, r, () => showStatus(r));
    });
  sync
    .command('upstream [url]')
    .description("set the site's upstream: a cairn upstream URL, --apt DIR, or `none` (the first update point's own)")
    .option('--apt <dir>', 'a folder of apt lists, e.g. /var/lib/apt/lists')
    .option('--json', 'JSON output')
    .action(async (url: string | undefined, o: { apt?: string; json?: boolean }) => {
      if (!url === !o.apt) sync.error('error: give a URL (or `none`) or --apt DIR');
      const r = await callAdmin<SyncStatusView>(conn(), 'PUT', '/api/v1/sync/upstream', { upstream: o.apt ? `apt:${path.resolve(o.apt)}` : url });
      print(!!o.json, r, () => `Upstream is now ${r.upstream}\n`);
    });
  sync
    .command('criteria')
    .description('set the sync criteria (none given: every update); the next sync is a full one')
    .option('--product <name...>', 'product name or GUID (repeatable)')
    .option('--classification <name...>', "classification name or GUID, e.g. 'Security Updates' (repeatable)")
    .option('--language <code...>', 'language code (repeatable; kept for catalogs that carry languages)')
    .option('--json', 'JSON output')
    .action(async (o: { product?: string[]; classification?: string[]; language?: string[]; json?: boolean }) => {
      const r = await callAdmin<SyncStatusView>(conn(), 'PUT', '/api/v1/sync/criteria', { products: o.product ?? [], classifications: o.classification ?? [], languages: o.language ?? [] });
      print(!!o.json, r, () => showStatus(r));
    });

  admin
    .command('updates')
    .description('the update catalog')
    .command('list')
    .description('updates of the published catalog, by release date')
    .option('--classification <name>', "classification name or GUID, e.g. 'Security Updates'")
    .option('--product <name>', 'product name or GUID')
    .option('--title <text>', 'text in the title (case-insensitive)')
    .option('--superseded <yes|no>', 'only superseded updates (yes) or only current ones (no)')
    .option('--limit <n>', 'at most this many (default 1000)')
    .option('--json', 'JSON output')
    .action(async (o: { classification?: string; product?: string; title?: string; superseded?: string; limit?: string; json?: boolean }) => {
      const q = new URLSearchParams();
      for (const k of ['classification', 'product', 'title', 'superseded', 'limit'] as const) if (o[k] !== undefined) q.set(k, o[k]!);
      const r = await callAdmin<{ contentVersion: number; updates: StoredUpdate[] }>(conn(), 'GET', `/api/v1/updates?${q}`);
      print(!!o.json, r, () => table([['ID', 'ARTICLE', 'SEVERITY', 'RELEASED', 'TITLE'], ...r.updates.map((u) => [u.id, u.articleId, u.severity, u.releaseDate.slice(0, 10), u.title])]));
    });

  program
    .command('sup')
    .description('run a software update point: its own catalog store, synced when the site asks, served to replicas, child sites and clients')
    .requiredOption('--data <dir>', 'data folder of the update point (sup.db, logs/)')
    .requiredOption('--port <n>', 'port to listen on (0 picks a free port)', port)
    .requiredOption('--key <key>', 'the key `cairn admin sup add` printed')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--name <name>', 'name for logs')
    .option('--upstream <url>', 'upstream to sync from when the site names none (a cairn upstream URL)')
    .option('--apt <dir>', 'or: a folder of apt lists to sync from when the site names none')
    .action(async (o: { data: string; port: number; key: string; host: string; name?: string; upstream?: string; apt?: string }) => {
      await runSupCommand({ data: o.data, port: o.port, key: o.key, host: o.host, ...(o.name ? { name: o.name } : {}), ...(o.upstream ? { upstream: o.upstream } : {}), ...(o.apt ? { apt: o.apt } : {}) });
    });

  program
    .command('upstream')
    .description('serve an update catalog folder to sites over the incremental catalog protocol')
    .requiredOption('--catalog <dir>', 'catalog folder: categories.ndjson and updates/*.ndjson (docs/catalog.md)')
    .requiredOption('--port <n>', 'port to listen on (0 picks a free port)', port)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--state <dir>', 'change index and log folder (default: <catalog>/.cairn-upstream)')
    .action(async (o: { catalog: string; port: number; host: string; state?: string }) => {
      await runUpstreamCommand({ catalog: o.catalog, port: o.port, host: o.host, ...(o.state ? { state: o.state } : {}) });
    });

  const catalog = program.command('catalog').description('update catalog tools (internal; the update sync manager runs the same import)');
  catalog
    .command('import')
    .description("import an update catalog into a site's database, once")
    .option('--from <url>', 'a cairn upstream URL, e.g. http://127.0.0.1:8530')
    .option('--apt <dir>', 'a folder of apt lists, e.g. /var/lib/apt/lists')
    .option('--data <dir>', 'data folder of the site', './cairn-data')
    .option('--full', 'ignore the stored anchor and import everything')
    .option('--page-size <n>', 'items per page', (v) => Number(v))
    .option('--json', 'JSON output (progress goes to stderr)')
    .action(async (o: { from?: string; apt?: string; data: string; full?: boolean; pageSize?: number; json?: boolean }) => {
      await runCatalogImport({ data: o.data, full: !!o.full, json: !!o.json, ...(o.from ? { from: o.from } : {}), ...(o.apt ? { apt: o.apt } : {}), ...(o.pageSize ? { pageSize: o.pageSize } : {}) });
    });

  const agentRole = program
    .command('agent')
    .description('run the client agent for this machine, or N simulated clients (`cairn agent policy|report|scan --now` asks a running one)')
    .option('--mp <url>', 'base URL of the management point, e.g. http://127.0.0.1:8340')
    .option('--data <dir>', 'data folder of the agent (identity, store, cache, logs)')
    .option('--site-key-fingerprint <hex>', "trust the site signing key only if it has this SHA-256 fingerprint (else: trust on first use)")
    .option('--name <name>', 'machine name to register with (default: the host name)')
    .option('--simulate <n>', 'run N simulated clients in this process', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 100_000) throw new InvalidArgumentError('an integer from 1 to 100000');
      return n;
    })
    .option('--facts <file>', 'facts file of the simulated clients (JSON; docs/operations.md)')
    .option('--spread-seconds <n>', "spread simulated clients' first requests over this many seconds", (v) => Number(v))
    .option('--scan-page-size <n>', 'items per page the scanner asks of update points (default 5000, the largest; tests use small pages)', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 5000) throw new InvalidArgumentError('an integer from 1 to 5000');
      return n;
    })
    .action(async (o: { mp?: string; data?: string; siteKeyFingerprint?: string; name?: string; simulate?: number; facts?: string; spreadSeconds?: number; scanPageSize?: number }) => {
      for (const [flag, value] of [['--mp <url>', o.mp], ['--data <dir>', o.data]] as const) {
        if (value === undefined) agentRole.error(`error: required option '${flag}' not specified`);
      }
      if (o.simulate !== undefined && o.facts === undefined) agentRole.error("error: --simulate needs --facts <file>");
      await runAgentCommand({
        mp: o.mp!,
        data: o.data!,
        ...(o.siteKeyFingerprint === undefined ? {} : { siteKeyFingerprint: o.siteKeyFingerprint }),
        ...(o.name === undefined ? {} : { name: o.name }),
        ...(o.simulate === undefined ? {} : { simulate: o.simulate, facts: o.facts! }),
        ...(o.spreadSeconds === undefined ? {} : { spreadSeconds: o.spreadSeconds }),
        ...(o.scanPageSize === undefined ? {} : { scanPageSize: o.scanPageSize }),
      });
    });
  for (const what of ['policy', 'report', 'scan'] as const) {
    agentRole
      .command(what)
      .description(what === 'policy' ? 'ask the running agent of --data DIR for a policy poll now' : what === 'report' ? 'ask the running agent of --data DIR to send its state and status messages now' : 'ask the running agent of --data DIR for a compliance scan now (or the retry of a waiting scan)')
      .requiredOption('--now', 'now (the only mode)')
      .option('--data <dir>', 'data folder of the running agent')
      .action(async (o: { data?: string }) => {
        const data = o.data ?? (agentRole.opts() as { data?: string }).data;
        if (data === undefined) agentRole.error("error: required option '--data <dir>' not specified");
        const file = await runAgentTrigger(data!, what);
        process.stdout.write(`Asked the agent of ${path.resolve(data!)} for ${what === 'policy' ? 'a policy poll' : what === 'report' ? 'its reports' : 'a compliance scan'} (${file}).\n`);
      });
  }
  agentRole
    .command('updates')
    .description("this client's updates from its update store: the required ones (or every state with --all), with its last scan")
    .option('--data <dir>', 'data folder of the agent')
    .option('--client <name>', 'a simulated client of that agent, by name')
    .option('--all', 'every update state, not only the required ones')
    .option('--json', 'JSON output (docs/cli-json.md)')
    .action((o: { data?: string; client?: string; all?: boolean; json?: boolean }) => {
      const data = o.data ?? (agentRole.opts() as { data?: string }).data;
      if (data === undefined) agentRole.error("error: required option '--data <dir>' not specified");
      const r = readAgentUpdates(data!, { ...(o.client === undefined ? {} : { client: o.client }), all: !!o.all });
      print(!!o.json, r, () => {
        const scan = r.lastScan
          ? `last scan: job ${r.lastScan.jobId} ${r.lastScan.state}${r.lastScan.state === 'complete' ? ` at content version ${r.lastScan.contentVersion} from ${r.lastScan.updatePoint}` : ''}, ${r.lastScan.time}${r.lastScan.lastError ? ` (${r.lastScan.lastError})` : ''}`
          : 'last scan: none yet';
        const head = `${r.client} (${r.clientId})\n${scan}\nnext scheduled scan: ${r.nextScan ?? 'none'}\n`;
        return head + table([['UPDATE', 'TITLE', 'ARTICLE', 'STATE', 'REASON', 'TIME'], ...r.updates.map((u) => [u.updateId, u.title, u.articleId, u.state, u.reason, u.time])]);
      });
    });

  return program;
}

const program = buildProgram();
program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`cairn: ${describeError(err)}\n`);
  process.exit(1);
});
