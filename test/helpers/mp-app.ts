/**
 * The MP plugin mounted in-process on a fresh SQLite site database, for
 * tests that call its routes with `app.inject`: site CS1, a site signing
 * key, logs and relay folders under a new temporary folder.
 */
import path from 'node:path';
import Fastify from 'fastify';
import type { FastifyInstance } from 'fastify';
import { openDatabase } from '../../src/datastore/engine.ts';
import type { SiteDatabase } from '../../src/datastore/engine.ts';
import { migrateToLatest } from '../../src/datastore/migrate.ts';
import { ensureSite } from '../../src/datastore/site-control.ts';
import { managementPoint } from '../../src/mp/management-point.ts';
import { createMpLogs } from '../../src/mp/mp-logs.ts';
import { ensureSiteSigningKey } from '../../src/mp/site-signing-key.ts';
import type { SiteSigningKey } from '../../src/mp/site-signing-key.ts';
import { tempDir } from './processes.ts';

export interface TestMp {
  readonly dir: string;
  readonly db: SiteDatabase;
  readonly app: FastifyInstance;
  readonly siteKey: SiteSigningKey;
}

export async function mountTestMp(prefix: string, onClientChanged: (resourceId: number) => Promise<void> = async () => undefined): Promise<TestMp> {
  const dir = await tempDir(prefix);
  const db = openDatabase(`sqlite:${path.join(dir, 'site.db')}`);
  await migrateToLatest(db.db, db.engine);
  await ensureSite(db.db, 'CS1', 'test');
  const siteKey = ensureSiteSigningKey(path.join(dir, 'site-signing.key')).key;
  const app = Fastify();
  await app.register(managementPoint, {
    prefix: '/mp',
    db: db.db,
    siteCode: 'CS1',
    signingKey: siteKey,
    logs: createMpLogs(path.join(dir, 'logs')),
    relay: { statesysIncoming: path.join(dir, 'smx'), statmsgs: path.join(dir, 'svf') },
    onClientChanged,
  });
  return { dir, db, app, siteKey };
}
