/**
 * `cairn dp`: runs the distribution point role in the foreground on its own
 * machine (ARCHITECTURE.md, one site-system role per process). It starts the
 * DP server, says where it listens and where its content library is, and
 * stops cleanly on SIGINT or SIGTERM. It owns nothing but the process's
 * signal handlers while it runs; it must never exit the process itself, so
 * that the CLI entry point decides the exit code.
 */
import path from 'node:path';
import { CONTENT_LIBRARY_FOLDER, startDp } from '../dp/dp-server.ts';
import { untilStopSignal } from './until-signal.ts';
import { createContentLibrary } from '../content-library/content-library.ts';
import { importPrestage } from '../content-library/prestage.ts';
import { createComponentLog } from '../shared/cmtrace-log.ts';
import { describeError } from '../shared/errors.ts';

export interface DpCommandOptions {
  /** Data folder holding ContentLib/, SMS_DP$/ and logs/. */
  readonly data: string;
  readonly port: number;
  /** Shared key, as given to `cairn dp-add` on the site. */
  readonly key: string;
  /** Interface to listen on; default every interface. */
  readonly host?: string;
  /** Name the DP reports in its status; default the host name. */
  readonly name?: string;
}

/** Runs until SIGINT or SIGTERM, then closes the server and resolves. */
export async function runDpCommand(opts: DpCommandOptions): Promise<void> {
  const dp = await startDp({
    dataDir: opts.data,
    port: opts.port,
    key: opts.key,
    logEcho: true,
    ...(opts.host !== undefined ? { host: opts.host } : {}),
    ...(opts.name !== undefined ? { name: opts.name } : {}),
  });
  process.stdout.write(`Cairn distribution point listening on ${dp.url} (content library ${path.join(path.resolve(opts.data), CONTENT_LIBRARY_FOLDER)})\n`);
  await untilStopSignal();
  await dp.close();
}

/** `cairn dp import FILE --data DIR`: verifies a prestaged content file and loads it into the DP's content library. */
export async function runDpImport(file: string, dataDir: string): Promise<{ contentId: string; files: number; bytes: number }> {
  const lib = createContentLibrary(path.join(path.resolve(dataDir), CONTENT_LIBRARY_FOLDER));
  const log = createComponentLog({ dir: path.join(path.resolve(dataDir), 'logs'), name: 'SMSDPProv', component: 'SMS_DP_PROVIDER', echo: false });
  try {
    const r = await importPrestage(lib, path.resolve(file));
    log.info(`Imported prestaged content '${r.contentId}' from ${path.resolve(file)} (${r.files} files, ${r.bytes} bytes new to the library)`);
    return r;
  } catch (err) {
    log.error(`Prestaged content file ${path.resolve(file)} was not imported: ${describeError(err)}`);
    throw err;
  }
}
