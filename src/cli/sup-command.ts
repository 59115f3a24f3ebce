/**
 * `cairn sup`: runs a software update point in the foreground (issue 5,
 * part 3). It says where it listens and stops cleanly on SIGINT or SIGTERM;
 * it never exits the process itself.
 */
import path from 'node:path';
import { CairnError } from '../shared/errors.ts';
import { startSup } from '../sup/sup-server.ts';
import { untilStopSignal } from './until-signal.ts';

export interface SupCommandOptions {
  readonly data: string;
  readonly port: number;
  readonly key: string;
  readonly host?: string;
  readonly name?: string;
  readonly upstream?: string;
  readonly apt?: string;
}

export async function runSupCommand(o: SupCommandOptions): Promise<void> {
  if (o.upstream && o.apt) throw new CairnError('CAIRN_REQUEST_INVALID', 'give at most one of --upstream URL and --apt DIR');
  const upstream = o.upstream ?? (o.apt ? `apt:${path.resolve(o.apt)}` : undefined);
  const sup = await startSup({
    dataDir: o.data,
    port: o.port,
    key: o.key,
    logEcho: true,
    ...(o.host ? { host: o.host } : {}),
    ...(o.name ? { name: o.name } : {}),
    ...(upstream ? { upstream } : {}),
  });
  process.stdout.write(`Cairn software update point listening on ${sup.url} (catalog store ${path.join(path.resolve(o.data), 'sup.db')})\n`);
  await untilStopSignal();
  await sup.close();
}
