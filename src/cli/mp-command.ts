/** `cairn mp`: runs a remote management point in the foreground until SIGINT/SIGTERM. */
import { startMp } from '../mp/mp-server.ts';
import type { MpOptions } from '../mp/mp-server.ts';
import { untilStopSignal } from './until-signal.ts';

export async function runMpCommand(opts: MpOptions): Promise<void> {
  const mp = await startMp(opts);
  process.stdout.write(`Management point ${opts.name} listening on ${mp.url}\n  outboxes: ${Object.values(mp.outboxes).join(', ')}\n`);
  await untilStopSignal();
  process.stdout.write('Stopping...\n');
  await mp.close();
}
