/**
 * A remote management point (`cairn mp`; spec 00, "management point";
 * docs/adr/0006-mp-server.md): the client routes of ADR 0005 on their own
 * host and port, reading and writing the site database directly (as the
 * product's MP does), signing assignment lists with a copy of the site
 * signing key, and writing relayed `.SMX`/`.SVF` files and policy provider
 * triggers into its own outboxes, from where the MP file dispatch moves them
 * to the site server (src/mp/mp-file-dispatch.ts).
 *
 * It never migrates the site database (the site does) and refuses to start
 * on a database without the MP's tables.
 */
import path from 'node:path';
import Fastify from 'fastify';
import { createComponentLog } from '../shared/cmtrace-log.ts';
import { listenUrl } from '../shared/listen.ts';
import { CairnError } from '../shared/errors.ts';
import { openDatabase } from '../datastore/engine.ts';
import { dropPolicyTrigger } from '../site/components/policypv/policy-triggers.ts';
import { managementPoint } from './management-point.ts';
import { createMpLogs } from './mp-logs.ts';
import { MpFileDispatch } from './mp-file-dispatch.ts';
import type { DispatchKind } from './mp-dispatch-receiver.ts';
import { loadSiteSigningKey } from './site-signing-key.ts';
import { MP_PREFIX } from './state-relay.ts';

export interface MpOptions {
  readonly dataDir: string;
  readonly port: number;
  readonly host?: string;
  readonly name: string;
  /** The site server's base URL (its admin API address), where the file dispatch posts. */
  readonly siteUrl: string;
  /** The key `cairn admin mp add NAME` printed. */
  readonly key: string;
  /** A copy of the site's `site-signing.key`. */
  readonly siteKeyFile: string;
  readonly databaseUrl: string;
  readonly echo?: boolean;
}

export interface RunningMp {
  readonly url: string;
  readonly outboxes: Readonly<Record<DispatchKind, string>>;
  readonly dispatch: MpFileDispatch;
  close(): Promise<void>;
}

export function mpOutboxes(dataDir: string): Record<DispatchKind, string> {
  const root = path.join(path.resolve(dataDir), 'outboxes');
  // The seed's name for the state-message outbox; the others in the same spirit.
  return { state: path.join(root, 'StateMsg.box'), status: path.join(root, 'statmgr.box'), policypv: path.join(root, 'policypv.box') };
}

export async function startMp(opts: MpOptions): Promise<RunningMp> {
  const data = path.resolve(opts.dataDir);
  const logs = path.join(data, 'logs');
  const log = createComponentLog({ dir: logs, name: 'MP_Control', component: 'SMS_MP_CONTROL_MANAGER', echo: opts.echo ?? false });
  const signingKey = loadSiteSigningKey(opts.siteKeyFile);
  const database = openDatabase(opts.databaseUrl);
  let siteCode: string;
  try {
    await database.db.selectFrom('ClientRegistration').select('ResourceID').limit(1).execute();
    // Migration 0010: the change counter every request reads with the client's row (ADR 0013).
    await database.db.selectFrom('ChangeCounters').select('Counter').limit(1).execute();
    const site = await database.db.selectFrom('Sites').select('SiteCode').orderBy('SiteCode').executeTakeFirst();
    if (!site) throw new Error('no site row');
    siteCode = site.SiteCode;
  } catch (err) {
    await database.destroy();
    throw new CairnError('CAIRN_CONFIG_MISSING', `the database ${database.display} is not a site database with the management point's tables (start the site first): ${(err as Error).message}`);
  }
  const outboxes = mpOutboxes(data);
  const dispatch = new MpFileDispatch({ siteUrl: opts.siteUrl, mpName: opts.name, key: opts.key, outboxes, logDir: logs, ...(opts.echo ? { echo: true } : {}) });
  const app = Fastify({ logger: false });
  app.setNotFoundHandler(async (_request, reply) => reply.code(404).send({ code: 'CAIRN_NOT_FOUND', message: 'no such route' }));
  await app.register(managementPoint, {
    prefix: MP_PREFIX,
    db: database.db,
    siteCode,
    signingKey,
    logs: createMpLogs(logs, opts.echo ?? false),
    relay: { statesysIncoming: outboxes.state, statmsgs: outboxes.status, onStateFile: () => dispatch.wake(), onStatusFile: () => dispatch.wake() },
    onClientChanged: async (resourceId) => {
      await dropPolicyTrigger(outboxes.policypv, String(resourceId), 'CLI', `registered at ${opts.name}`);
      dispatch.wake();
    },
  });
  const url = await listenUrl(app, opts.port, opts.host ?? '127.0.0.1');
  dispatch.start();
  log.info(`Management point ${opts.name} listening on ${url} for site ${siteCode}; database ${database.display}; site signing key ${signingKey.fingerprint}; dispatching to ${opts.siteUrl}.`);
  return {
    url,
    outboxes,
    dispatch,
    async close() {
      await app.close();
      await dispatch.stop();
      await database.destroy();
    },
  };
}
