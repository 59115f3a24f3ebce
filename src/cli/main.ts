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
import { runDpCommand } from './dp-command.ts';
import { runUpstreamCommand } from './upstream-command.ts';
import { runCatalogImport } from './catalog-command.ts';
import { callAdmin, findAdminConnection } from './admin-client.ts';
import type { DpView } from '../site/services/distribution-points.ts';
import type { PackageStatusView, PackageView } from '../site/services/packages.ts';
import type { StoredStatusMessage } from '../datastore/status-messages.ts';

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
    .action(async (o: { data: string; port: number; dpPort?: number; localDp: boolean; siteCode: string }) => {
      const site = await startSite({ dataDir: o.data, port: o.port, localDp: o.localDp, siteCode: o.siteCode, ...(o.dpPort === undefined ? {} : { dpPort: o.dpPort }) });
      process.stdout.write(
        `Cairn site ${site.ctx.siteCode} is running.\n` +
          `  admin API:        ${site.adminUrl}\n` +
          `  admin token:      ${site.paths.adminToken}\n` +
          (site.localDpUrl ? `  distribution point 'local': ${site.localDpUrl}\n` : '') +
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

  program
    .command('dp')
    .description('run a distribution point')
    .requiredOption('--data <dir>', 'data folder of the DP (its content library)')
    .requiredOption('--port <n>', 'port to listen on', port)
    .requiredOption('--key <key>', "the DP's key, printed by `cairn admin dp add`")
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--name <name>', 'name for logs')
    .action(async (o: { data: string; port: number; key: string; host: string; name?: string }) => {
      await runDpCommand({ data: o.data, port: o.port, key: o.key, host: o.host, ...(o.name ? { name: o.name } : {}) });
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
    .command('status <pkgId>')
    .description("a package's status at the site and on each DP")
    .option('--json', 'JSON output')
    .action(async (pkgId: string, o: { json?: boolean }) => {
      const r = await callAdmin<PackageStatusView>(conn(), 'GET', `/api/v1/packages/${encodeURIComponent(pkgId)}/status`);
      print(!!o.json, r, () => {
        const p = r.package;
        const head = `${p.packageId} ${p.name}: source version ${p.sourceVersion}, stored version ${p.storedVersion}, ${p.fileCount} files, ${p.sizeKb} KB${p.lastError ? `\n  last error: ${p.lastError}` : ''}\n` + (r.site ? `site: ${r.site.state} (version ${r.site.version})\n` : 'site: not yet processed\n');
        return head + table([['DP', 'STATUS', 'STATE', 'VERSION', 'CONTENT URL', 'ERROR'], ...r.distributionPoints.map((d) => [d.dp, String(d.status), d.state, String(d.version), d.contentUrl, d.lastError])]);
      });
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

  return program;
}

const program = buildProgram();
program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`cairn: ${describeError(err)}\n`);
  process.exit(1);
});
