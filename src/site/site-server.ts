/**
 * Starts a site: opens and migrates the site database, writes the bootstrap
 * files (`site.json` with the admin API address, `admin.token`), starts the
 * components (DB monitor, distribution manager, package transfer manager,
 * status manager, state system, policy provider), the admin API with the
 * in-process management point under `/mp`, and, for the all-in-one `cairn start`,
 * a distribution point of its own in the same process, registered
 * automatically. Components talk to that DP over HTTP like any other: nothing
 * works only when co-located.
 */
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { createComponentLog } from '../shared/cmtrace-log.ts';
import { listenUrl } from '../shared/listen.ts';
import { describeError } from '../shared/errors.ts';
import { startAgent } from '../agent/agent-host.ts';
import type { RunningAgent } from '../agent/agent-host.ts';
import { openDatabase } from '../datastore/engine.ts';
import type { SiteDatabase } from '../datastore/engine.ts';
import { migrateToLatest } from '../datastore/migrate.ts';
import { ensureSite, readSettings } from '../datastore/site-control.ts';
import { findDistributionPoint } from '../datastore/distribution-points.ts';
import { createContentLibrary } from '../content-library/content-library.ts';
import { startDp } from '../dp/dp-server.ts';
import { sitePaths } from './site-paths.ts';
import type { SitePaths } from './site-paths.ts';
import type { SiteContext } from './site-context.ts';
import { DbMonitor } from './components/smsdbmon/db-monitor.ts';
import { DistributionManager } from './components/distmgr/distribution-manager.ts';
import { PackageTransferManager } from './components/pkgxfermgr/package-transfer-manager.ts';
import { StatusManager } from './components/statmgr/status-manager.ts';
import { StateSystem } from './components/statesys/state-system.ts';
import { buildAdminApi } from './admin-api/admin-api.ts';
import { MP_PREFIX } from '../mp/state-relay.ts';
import { managementPoint } from '../mp/management-point.ts';
import { createMpLogs } from '../mp/mp-logs.ts';
import { mpDispatchReceiver } from '../mp/mp-dispatch-receiver.ts';
import { ensureSiteSigningKey } from '../mp/site-signing-key.ts';
import { PolicyProvider } from './components/policypv/policy-provider.ts';
import { Summarizer } from './components/summarizer/summarizer.ts';
import { dropPolicyTrigger } from './components/policypv/policy-triggers.ts';
import { addDistributionPoint } from './services/distribution-points.ts';
import { SyncManager } from './components/wsyncmgr/sync-manager.ts';
import { startSup } from '../sup/sup-server.ts';
import { findUpdatePoint, setUpdatePointUrl } from '../datastore/update-points.ts';
import { addUpdatePoint } from './services/update-points.ts';
import { defaultUpstream } from './default-upstream.ts';
import { getSyncStatus, setUpstreamSource } from '../datastore/updates.ts';

export interface SiteOptions {
  readonly dataDir: string;
  /** Admin API port; 0 picks a free one. Default 8340. */
  readonly port?: number;
  readonly host?: string;
  /** Site code, 3 characters; default `CS1`, kept in site.json after the first start. */
  readonly siteCode?: string;
  /** Start and register a DP in this process (all-in-one). */
  readonly localDp?: boolean;
  /** Port of the local DP; default admin port + 1 (0 when the admin port is 0). */
  readonly dpPort?: number;
  /** Database URL; default CAIRN_DATABASE_URL, then site.json's `databaseUrl`, then SQLite in the data folder. */
  readonly databaseUrl?: string;
  /** Start and register a software update point in this process (all-in-one). */
  readonly localSup?: boolean;
  /** Port of the local update point; default admin port + 2 (0 when the admin port is 0). */
  readonly supPort?: number;
  /**
   * On Debian or Ubuntu, make the machine's apt lists the site's upstream when
   * none was ever configured (issue 5, part 6). Default true, unless
   * CAIRN_NO_DEFAULT_UPSTREAM=1 (the test suite's sites).
   */
  readonly defaultUpstream?: boolean;
  /**
   * Run a client agent for this machine in-process (issue 4, part 4), data
   * in `<data>/agent`, registered and approved automatically. Default true;
   * tests that do not want a client turn it off (`cairn start --no-agent`).
   */
  readonly agent?: boolean;
}

export interface SiteJson {
  readonly siteCode: string;
  readonly siteName: string;
  readonly databaseUrl?: string;
  readonly adminUrl?: string;
  readonly localDpUrl?: string;
  readonly localSupUrl?: string;
}

export interface RunningSite {
  readonly adminUrl: string;
  readonly localDpUrl: string | undefined;
  readonly localSupUrl: string | undefined;
  readonly paths: SitePaths;
  readonly ctx: SiteContext;
  readonly database: SiteDatabase;
  /** The machine's own agent (`opts.agent`), or undefined. */
  readonly agent: { readonly name: string; readonly clientId: string; readonly dataDir: string } | undefined;
  close(): Promise<void>;
}

function readSiteJson(file: string): Partial<SiteJson> {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<SiteJson>;
  } catch {
    return {};
  }
}

function writeFileAtomic(file: string, data: string, mode = 0o644): void {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, data, { mode });
  fs.renameSync(tmp, file);
}

export async function startSite(opts: SiteOptions): Promise<RunningSite> {
  const paths = sitePaths(opts.dataDir);
  fs.mkdirSync(paths.data, { recursive: true });
  const saved = readSiteJson(paths.siteJson);
  const siteCode = (saved.siteCode ?? opts.siteCode ?? 'CS1').toUpperCase();
  if (!/^[A-Z0-9]{3}$/.test(siteCode)) throw new Error(`site code ${siteCode} must be 3 letters or digits`);
  const databaseUrl = opts.databaseUrl ?? process.env.CAIRN_DATABASE_URL ?? saved.databaseUrl ?? `sqlite:${paths.sqlite}`;
  const provLog = createComponentLog({ dir: paths.logs, name: 'SMSProv', component: 'SMS Provider' });

  const database = openDatabase(databaseUrl);
  await migrateToLatest(database.db, database.engine);
  await ensureSite(database.db, siteCode, saved.siteName ?? `Cairn site ${siteCode}`);
  const settings = await readSettings(database.db);

  let token: string;
  try {
    token = fs.readFileSync(paths.adminToken, 'utf8').trim();
  } catch {
    token = randomBytes(32).toString('base64url');
    writeFileAtomic(paths.adminToken, `${token}\n`, 0o600);
  }

  const library = createContentLibrary(paths.contentLibrary);
  // ADR 0009: finish a chunk collection a stop cut short, before anything reads or adds content.
  await library.recover();
  const wakeDbmon = { fn: (): void => undefined };
  const ctx: SiteContext = Object.freeze({
    db: database.db,
    engine: database.engine,
    paths,
    siteCode,
    settings,
    library,
    wake: { dbmon: () => wakeDbmon.fn() },
  });

  const distmgr = new DistributionManager(ctx);
  const xfer = new PackageTransferManager(ctx, () => distmgr.wakeStatusThread());
  const statmgr = new StatusManager(ctx);
  const statesys = new StateSystem(ctx);
  const dbmon = new DbMonitor(ctx, (inbox) => {
    if (inbox === paths.distmgrBox) distmgr.wake();
    if (inbox === paths.pkgTransferMgrBox) xfer.wake();
    if (inbox === paths.wsyncmgrBox) wsyncmgr.wake();
    if (inbox === paths.policypvBox) policypv.wake();
  });
  const wsyncmgr = new SyncManager(ctx);
  wakeDbmon.fn = () => dbmon.wake();
  const policypv = new PolicyProvider(ctx);
  const summarizer = new Summarizer(ctx);

  const api = await buildAdminApi({ ctx, token, log: provLog, wakePolicyProvider: () => policypv.wake(), summarizer });
  // The site's HTTP server carries the in-process MP (ADR 0005; docs/adr/0006-mp-server.md), with the relay (ADR 0003).
  const signing = ensureSiteSigningKey(paths.siteSigningKey);
  if (signing.created) provLog.info(`Created the site signing key ${paths.siteSigningKey}; fingerprint ${signing.key.fingerprint}`);
  let relayKey: string;
  try {
    relayKey = fs.readFileSync(paths.relayKey, 'utf8').trim();
  } catch {
    relayKey = randomBytes(32).toString('base64url');
    writeFileAtomic(paths.relayKey, `${relayKey}\n`, 0o600);
  }
  const mpLogs = createMpLogs(paths.logs);
  // Set once the machine's own agent exists (below); its first registration is approved whatever mp.autoApprove says.
  let ownClientIds: ReadonlySet<string> = new Set();
  // Files from remote MPs' file dispatch (UC22), into the same inboxes.
  await api.register(mpDispatchReceiver, {
    prefix: MP_PREFIX,
    db: database.db,
    log: mpLogs.relay,
    inboxes: { state: paths.statesysIncoming, status: paths.statmsgs, policypv: paths.policypvBox },
    onFile: (kind) => (kind === 'state' ? statesys.wake() : kind === 'status' ? statmgr.wake() : policypv.wake()),
  });
  await api.register(managementPoint, {
    prefix: MP_PREFIX,
    db: database.db,
    siteCode,
    signingKey: signing.key,
    logs: mpLogs,
    relay: {
      key: relayKey,
      statesysIncoming: paths.statesysIncoming,
      statmsgs: paths.statmsgs,
      onStateFile: () => statesys.wake(),
      onStatusFile: () => statmgr.wake(),
    },
    onClientChanged: async (resourceId) => {
      await dropPolicyTrigger(paths.policypvBox, String(resourceId), 'CLI', 'registered');
      policypv.wake();
    },
    siteOwnClientIds: () => ownClientIds,
  });
  const host = opts.host ?? '127.0.0.1';
  const adminUrl = await listenUrl(api, opts.port ?? 8340, host);
  const port = Number(new URL(adminUrl).port);

  let localDp: { url: string; close(): Promise<void> } | undefined;
  if (opts.localDp) {
    const existing = await findDistributionPoint(database.db, { name: 'local' });
    const key = existing?.SharedKey ?? randomBytes(32).toString('base64url');
    const dpPort = opts.dpPort ?? (port === 0 || opts.port === 0 ? 0 : port + 1);
    localDp = await startDp({ dataDir: paths.localDp, port: dpPort, host, key, name: 'local' });
    if (!existing) {
      await addDistributionPoint(ctx, { name: 'local', url: localDp.url, key });
      provLog.info(`Registered this site's own distribution point 'local' at ${localDp.url}`);
    } else if (existing.URL !== localDp.url) {
      await database.db.updateTable('DistributionPoints').set({ URL: localDp.url }).where('DPID', '=', existing.DPID).execute();
      provLog.info(`This site's own distribution point 'local' moved to ${localDp.url}`);
    }
  }

  let localSup: { url: string; close(): Promise<void> } | undefined;
  if (opts.localSup) {
    const existing = await findUpdatePoint(database.db, { name: 'local' });
    const key = existing?.SharedKey ?? randomBytes(32).toString('base64url');
    const supPort = opts.supPort ?? (port === 0 || opts.port === 0 ? 0 : port + 2);
    localSup = await startSup({ dataDir: paths.localSup, port: supPort, host, key, name: 'local' });
    if (!existing) {
      await addUpdatePoint(ctx, { name: 'local', url: localSup.url, key });
      provLog.info(`Registered this site's own software update point 'local' at ${localSup.url}`);
    } else if (existing.URL !== localSup.url) {
      await setUpdatePointUrl(database.db, existing.SUPID, localSup.url);
      provLog.info(`This site's own software update point 'local' moved to ${localSup.url}`);
    }
  }
  // Issue 5, part 6: on Debian or Ubuntu a site that never had an upstream syncs the machine's own apt lists.
  if ((opts.defaultUpstream ?? true) && process.env.CAIRN_NO_DEFAULT_UPSTREAM !== '1' && !(await getSyncStatus(database.db, siteCode)).upstreamSource) {
    const apt = defaultUpstream();
    if (apt) {
      await setUpstreamSource(database.db, siteCode, apt);
      provLog.info(`Configured ${apt} (this machine's apt lists) as the site's update upstream; \`cairn admin sync upstream\` changes it`);
    }
  }

  writeFileAtomic(
    paths.siteJson,
    JSON.stringify({ ...saved, siteCode, siteName: saved.siteName ?? `Cairn site ${siteCode}`, adminUrl, ...(localDp ? { localDpUrl: localDp.url } : {}), ...(localSup ? { localSupUrl: localSup.url } : {}) }, null, 2) + '\n',
  );
  provLog.info(`SMS Provider (admin API) listening on ${adminUrl}; site ${siteCode}; database ${database.display}`);

  // The machine's own client agent, in-process, against this site's MP (issue 4, part 4; docs/operations.md).
  let agent: RunningAgent | undefined;
  if (opts.agent !== false) {
    const agentDir = path.join(paths.data, 'agent');
    agent = startAgent({
      mpUrl: adminUrl,
      dataDir: agentDir,
      // The key is this process's own: pinned as given, never trusted on first use.
      siteKeyFingerprint: signing.key.fingerprint,
      onFatal: (err) => provLog.error(`This machine's client agent stopped: ${describeError(err)}; the site goes on without it.`),
    });
    const first = agent.clients[0]!;
    ownClientIds = new Set([first.clientId]);
    provLog.info(`Started this machine's client agent ${first.name} (${first.clientId}); data and logs in ${agentDir}.`);
  }

  statmgr.start();
  statesys.start();
  dbmon.start();
  distmgr.start();
  xfer.start();
  policypv.start();
  summarizer.start();
  // Last: its first sync (a first start's, on the schedule) runs in the background and never delays start-up.
  wsyncmgr.start();

  let closed = false;
  return {
    adminUrl,
    localDpUrl: localDp?.url,
    localSupUrl: localSup?.url,
    paths,
    ctx,
    database,
    agent: agent ? { name: agent.clients[0]!.name, clientId: agent.clients[0]!.clientId, dataDir: path.join(paths.data, 'agent') } : undefined,
    async close() {
      if (closed) return;
      closed = true;
      // The agent first: its requests in flight end now rather than at the API's close.
      await agent?.close();
      await api.close();
      await wsyncmgr.stop();
      await xfer.stop();
      await distmgr.stop();
      await dbmon.stop();
      await statmgr.stop();
      await statesys.stop();
      await policypv.stop();
      await summarizer.stop();
      await localDp?.close();
      await localSup?.close();
      await database.destroy();
    },
  };
}
