/**
 * `cairn admin` commands for the management point and the policy provider
 * (issue 4): clients, collections, deployments, boundaries, remote MPs.
 * Thin, like the rest of the CLI: each calls one admin API route and prints.
 */
import type { Command } from 'commander';
import { callAdmin } from './admin-client.ts';
import type { AdminConnection } from './admin-client.ts';
import type { ClientView } from '../site/services/clients.ts';

export interface CliPrinters {
  readonly conn: () => AdminConnection;
  readonly print: (json: boolean, value: unknown, text: () => string) => void;
  readonly table: (rows: readonly (readonly string[])[]) => string;
}

export function addClientCommands(admin: Command, p: CliPrinters): void {
  const client = admin.command('client').description('registered clients (management point)');
  client
    .command('list')
    .description('registered clients with their approval status')
    .option('--json', 'JSON output')
    .action(async (o: { json?: boolean }) => {
      const r = await callAdmin<{ clients: ClientView[] }>(p.conn(), 'GET', '/api/v1/clients');
      p.print(!!o.json, r.clients, () =>
        p.table([['NAME', 'CLIENT ID', 'STATUS', 'ADDRESSES', 'OS', 'LAST SEEN'], ...r.clients.map((c) => [c.name, c.clientId, c.status, c.ipAddresses.join(' '), `${c.osFamily} ${c.osVersion}`.trim(), c.lastSeenTime])]),
      );
    });
  for (const action of ['approve', 'revoke'] as const) {
    client
      .command(`${action} <client>`)
      .description(action === 'approve' ? 'approve a pending (or revoked) client, by name or client ID' : 'revoke a client: the MP refuses it everything from now on')
      .option('--json', 'JSON output')
      .action(async (name: string, o: { json?: boolean }) => {
        const r = await callAdmin<{ client: ClientView; before: string }>(p.conn(), 'POST', `/api/v1/clients/${encodeURIComponent(name)}/${action}`);
        p.print(!!o.json, r, () => `${r.client.name} (${r.client.clientId}): ${r.before} -> ${r.client.status}\n`);
      });
  }
}
