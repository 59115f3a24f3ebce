/**
 * `cairn admin` commands for the management point and the policy provider
 * (issue 4): clients, collections, deployments, boundaries, remote MPs.
 * Thin, like the rest of the CLI: each calls one admin API route and prints.
 */
import type { Command } from 'commander';
import { callAdmin } from './admin-client.ts';
import type { AdminConnection } from './admin-client.ts';
import type { ClientView } from '../site/services/clients.ts';
import type { CollectionView, DeploymentView } from '../site/services/collections.ts';
import type { BoundaryGroupView } from '../datastore/boundaries.ts';
import type { MpView } from '../site/services/management-points.ts';

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

export function addCollectionCommands(admin: Command, p: CliPrinters): void {
  const col = admin.command('collection').description('collections of clients (policy targets)');
  col
    .command('create <name>')
    .description('create a named collection; prints its ID')
    .option('--json', 'JSON output')
    .action(async (name: string, o: { json?: boolean }) => {
      const r = await callAdmin<CollectionView>(p.conn(), 'POST', '/api/v1/collections', { name });
      p.print(!!o.json, r, () => `${r.collectionId}\n`);
    });
  col
    .command('add-member <collection> <client>')
    .description('add a client (name or client ID) as a direct member')
    .option('--json', 'JSON output')
    .action(async (collection: string, client: string, o: { json?: boolean }) => {
      const r = await callAdmin<{ collection: CollectionView; clientId: string }>(p.conn(), 'POST', `/api/v1/collections/${encodeURIComponent(collection)}/members`, { client });
      p.print(!!o.json, r, () => `${r.collection.collectionId} (${r.collection.name}): direct member ${r.clientId}\n`);
    });
  col
    .command('add-rule <collection>')
    .description('add a membership rule: exactly one of --ip-range, --subnet, --name-pattern')
    .option('--ip-range <a-b>', 'IPv4 range, e.g. 10.0.0.1-10.0.0.99')
    .option('--subnet <cidr>', 'IPv4 subnet, e.g. 10.1.0.0/16')
    .option('--name-pattern <glob>', 'client name pattern, e.g. WEB-*')
    .option('--json', 'JSON output')
    .action(async (collection: string, o: { ipRange?: string; subnet?: string; namePattern?: string; json?: boolean }, cmd: Command) => {
      const given = [o.ipRange && { type: 'iprange', value: o.ipRange }, o.subnet && { type: 'subnet', value: o.subnet }, o.namePattern && { type: 'name', value: o.namePattern }].filter(Boolean) as { type: string; value: string }[];
      if (given.length !== 1) cmd.error('error: give exactly one of --ip-range, --subnet, --name-pattern');
      const r = await callAdmin<{ collection: CollectionView }>(p.conn(), 'POST', `/api/v1/collections/${encodeURIComponent(collection)}/rules`, given[0]);
      p.print(!!o.json, r, () => `${r.collection.collectionId} (${r.collection.name}): ${r.collection.rules.map((x) => `${x.type} ${x.value}`).join(', ')}\n`);
    });
  col
    .command('list')
    .description('collections with their rules and member counts')
    .option('--json', 'JSON output')
    .action(async (o: { json?: boolean }) => {
      const r = await callAdmin<{ collections: CollectionView[] }>(p.conn(), 'GET', '/api/v1/collections');
      p.print(!!o.json, r.collections, () => p.table([['ID', 'NAME', 'MEMBERS', 'RULES'], ...r.collections.map((c) => [c.collectionId, c.name, String(c.memberCount), c.rules.map((x) => `${x.type} ${x.value}`).join(', ')])]));
    });
}

export function addDeployCommand(pkg: Command, p: CliPrinters): void {
  pkg
    .command('deploy <pkgId>')
    .description("make a package available to a collection's clients (a ContentDeployment policy)")
    .requiredOption('--collection <name>', 'collection name or ID, e.g. "All Clients"')
    .option('--json', 'JSON output')
    .action(async (pkgId: string, o: { collection: string; json?: boolean }) => {
      const r = await callAdmin<{ deployment: DeploymentView; created: boolean }>(p.conn(), 'POST', `/api/v1/packages/${encodeURIComponent(pkgId)}/deploy`, { collection: o.collection });
      p.print(!!o.json, r, () => `${r.created ? 'Deployed' : 'Already deployed'} package ${r.deployment.packageId} to collection ${r.deployment.collectionId}: deployment ${r.deployment.deploymentId}\n`);
    });
}

export function addBoundaryCommands(admin: Command, p: CliPrinters): void {
  const group = admin.command('boundary-group').description('boundary groups (content location)');
  group
    .command('create <name>')
    .description('create a boundary group')
    .option('--json', 'JSON output')
    .action(async (name: string, o: { json?: boolean }) => {
      const r = await callAdmin<BoundaryGroupView>(p.conn(), 'POST', '/api/v1/boundary-groups', { name });
      p.print(!!o.json, r, () => `${r.name}\n`);
    });
  group
    .command('add-dp <group> <dp>')
    .description('let the clients in a boundary group use a DP')
    .option('--json', 'JSON output')
    .action(async (name: string, dp: string, o: { json?: boolean }) => {
      const r = await callAdmin<{ group: BoundaryGroupView }>(p.conn(), 'POST', `/api/v1/boundary-groups/${encodeURIComponent(name)}/distribution-points`, { dp });
      p.print(!!o.json, r, () => `${r.group.name}: ${r.group.distributionPoints.join(', ')}\n`);
    });
  const boundary = admin.command('boundary').description('boundaries (IPv4 subnets and ranges)');
  boundary
    .command('add <group>')
    .description('add a boundary to a group: exactly one of --subnet, --range')
    .option('--subnet <cidr>', 'e.g. 10.1.0.0/16')
    .option('--range <a-b>', 'e.g. 10.1.0.1-10.1.0.99')
    .option('--json', 'JSON output')
    .action(async (name: string, o: { subnet?: string; range?: string; json?: boolean }, cmd: Command) => {
      if (!!o.subnet === !!o.range) cmd.error('error: give exactly one of --subnet, --range');
      const r = await callAdmin<{ group: BoundaryGroupView }>(p.conn(), 'POST', `/api/v1/boundary-groups/${encodeURIComponent(name)}/boundaries`, o.subnet ? { type: 'subnet', value: o.subnet } : { type: 'range', value: o.range });
      p.print(!!o.json, r, () => `${r.group.name}: ${r.group.boundaries.map((b) => `${b.type} ${b.value}`).join(', ')}\n`);
    });
  boundary
    .command('list')
    .description('boundary groups with their boundaries and DPs')
    .option('--json', 'JSON output')
    .action(async (o: { json?: boolean }) => {
      const r = await callAdmin<{ boundaryGroups: BoundaryGroupView[] }>(p.conn(), 'GET', '/api/v1/boundary-groups');
      p.print(!!o.json, r.boundaryGroups, () => p.table([['GROUP', 'BOUNDARIES', 'DPS'], ...r.boundaryGroups.map((g) => [g.name, g.boundaries.map((b) => `${b.type} ${b.value}`).join(', '), g.distributionPoints.join(', ')])]));
    });
}

export function addMpCommands(admin: Command, p: CliPrinters): void {
  const mp = admin.command('mp').description('remote management points');
  mp.command('add <name>')
    .description('register a remote MP and print the key its file dispatch signs with (`cairn mp --key`)')
    .option('--json', 'JSON output')
    .action(async (name: string, o: { json?: boolean }) => {
      const r = await callAdmin<{ mp: MpView; key: string }>(p.conn(), 'POST', '/api/v1/management-points', { name });
      p.print(!!o.json, r, () => `${r.key}\n`);
    });
  mp.command('list')
    .description('remote MPs')
    .option('--json', 'JSON output')
    .action(async (o: { json?: boolean }) => {
      const r = await callAdmin<{ managementPoints: MpView[] }>(p.conn(), 'GET', '/api/v1/management-points');
      p.print(!!o.json, r.managementPoints, () => p.table([['NAME', 'REGISTERED', 'LAST SEEN'], ...r.managementPoints.map((m) => [m.name, m.createdTime, m.lastSeenTime])]));
    });
}
