/**
 * Forward-only versioned migrations (STYLE.md, convention 7), run by Kysely's
 * Migrator in name order. Each migration gets the engine, because triggers
 * are written in each engine's own dialect. Unordered migrations are allowed
 * because independent features land from parallel branches with reserved
 * numbers (0002 package lifecycle, 0003 management point and state system,
 * 0004 update catalog, 0005 management point and policy provider, 0006 update sync, 0007 compliance, 0008 compliance reporting, 0010 the MP's change counter); each migration only adds its own tables.
 */
import { Migrator } from 'kysely';
import type { Kysely, Migration, MigrationProvider } from 'kysely';
import type { Engine } from './engine.ts';
import type { Database } from './schema.ts';
import * as m0001 from './migrations/0001-initial.ts';
import * as m0002 from './migrations/0002-package-lifecycle.ts';
import * as m0003 from './migrations/0003-state-system.ts';
import * as m0004 from './migrations/0004-update-catalog.ts';
import * as m0005 from './migrations/0005-management-point.ts';
import * as m0006 from './migrations/0006-update-sync.ts';
import * as m0007 from './migrations/0007-compliance.ts';
import * as m0008 from './migrations/0008-compliance-reporting.ts';
import * as m0010 from './migrations/0010-mp-change-counter.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- see 0001-initial.ts
type MigrationModule = { up(db: Kysely<any>, engine: Engine): Promise<void> };

const MIGRATIONS: Readonly<Record<string, MigrationModule>> = Object.freeze({
  '0001-initial': m0001,
  '0002-package-lifecycle': m0002,
  '0003-state-system': m0003,
  '0004-update-catalog': m0004,
  '0005-management-point': m0005,
  '0006-update-sync': m0006,
  '0007-compliance': m0007,
  '0008-compliance-reporting': m0008,
  '0010-mp-change-counter': m0010,
});

export const MIGRATION_NAMES = Object.keys(MIGRATIONS);

class StaticProvider implements MigrationProvider {
  readonly #engine: Engine;
  readonly #upTo: string | undefined;
  constructor(engine: Engine, upTo?: string) {
    this.#engine = engine;
    this.#upTo = upTo;
  }
  async getMigrations(): Promise<Record<string, Migration>> {
    const out: Record<string, Migration> = {};
    for (const [name, mod] of Object.entries(MIGRATIONS)) {
      out[name] = { up: (db) => mod.up(db, this.#engine) };
      if (name === this.#upTo) break;
    }
    return out;
  }
}

/** Brings the database to the latest schema (or up to `upTo`, for migration tests). */
export async function migrateToLatest(db: Kysely<Database>, engine: Engine, upTo?: string): Promise<string[]> {
  const migrator = new Migrator({ db, provider: new StaticProvider(engine, upTo), migrationTableName: 'CairnMigrations', migrationLockTableName: 'CairnMigrationsLock', allowUnorderedMigrations: true });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw error;
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
