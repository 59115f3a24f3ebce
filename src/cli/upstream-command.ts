/**
 * `cairn upstream`: runs an upstream update catalog server in the foreground
 * (ARCHITECTURE.md, "One product, several roles"). It says where it listens
 * and stops cleanly on SIGINT or SIGTERM; it never exits the process itself.
 */
import path from 'node:path';
import { startUpstream } from '../upstream/upstream-server.ts';
import { untilStopSignal } from './until-signal.ts';

export interface UpstreamCommandOptions {
  readonly catalog: string;
  readonly port: number;
  readonly host?: string;
  readonly state?: string;
}

export async function runUpstreamCommand(opts: UpstreamCommandOptions): Promise<void> {
  const up = await startUpstream({ catalogDir: opts.catalog, port: opts.port, logEcho: true, ...(opts.host ? { host: opts.host } : {}), ...(opts.state ? { stateDir: opts.state } : {}) });
  process.stdout.write(`Cairn upstream listening on ${up.url} (catalog ${path.resolve(opts.catalog)})\n`);
  await untilStopSignal();
  await up.close();
}
