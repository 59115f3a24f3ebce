/**
 * Runs a datastore test on both engines: SQLite in a temporary file, and
 * PostgreSQL in a fresh database on the server named by CAIRN_TEST_PG_URL.
 * Without that variable the PostgreSQL case is skipped with a message, unless
 * CAIRN_REQUIRE_PG=1 (as in CI), where its absence fails the test.
 */
import { test } from 'node:test';
import path from 'node:path';
import fsp from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { openDatabase } from '../../src/datastore/engine.ts';
import type { SiteDatabase } from '../../src/datastore/engine.ts';
import { tempDir } from './processes.ts';

export async function withDatabase<T>(engine: 'sqlite' | 'postgres', fn: (db: SiteDatabase) => Promise<T>): Promise<T> {
  if (engine === 'sqlite') {
    const dir = await tempDir('db');
    const db = openDatabase(`sqlite:${path.join(dir, 'site.db')}`);
    try {
      return await fn(db);
    } finally {
      await db.destroy();
      await fsp.rm(dir, { recursive: true, force: true });
    }
  }
  const scratch = await createPgDatabase(process.env.CAIRN_TEST_PG_URL!);
  const db = openDatabase(scratch.url);
  try {
    return await fn(db);
  } finally {
    await db.destroy();
    await scratch.drop();
  }
}

/** A fresh, empty PostgreSQL database on the server of `base`, and how to drop it. */
export async function createPgDatabase(base: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `cairn_t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(base);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    },
  };
}

/** Declares `name` once per engine. */
export function engineTest(name: string, fn: (db: SiteDatabase) => Promise<void>): void {
  test(`${name} (sqlite)`, () => withDatabase('sqlite', fn));
  const pgUrl = process.env.CAIRN_TEST_PG_URL;
  if (!pgUrl && process.env.CAIRN_REQUIRE_PG === '1') {
    test(`${name} (postgres)`, () => {
      throw new Error('CAIRN_REQUIRE_PG=1 but CAIRN_TEST_PG_URL is not set');
    });
    return;
  }
  test(`${name} (postgres)`, { skip: pgUrl ? false : 'set CAIRN_TEST_PG_URL to run on PostgreSQL' }, () => withDatabase('postgres', fn));
}
