/**
 * The database engines a benchmark runs on: a fresh SQLite file, or a
 * scratch PostgreSQL database created on the server of `CAIRN_TEST_PG_URL`
 * and dropped afterwards. Shared by bench/state-messages.ts and
 * bench/summarize.ts.
 */
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { openDatabase } from '../src/datastore/engine.ts';
import type { SiteDatabase } from '../src/datastore/engine.ts';

export interface Target {
  readonly name: string;
  open(): Promise<{ db: SiteDatabase; drop(): Promise<void> }>;
}

/** A new SQLite file under `dir` each time it is opened. */
export function sqliteTarget(dir: string): Target {
  let n = 0;
  return {
    name: 'SQLite',
    async open() {
      n += 1;
      const db = openDatabase(`sqlite:${path.join(dir, `bench-${n}.db`)}`);
      return { db, drop: () => db.destroy() };
    },
  };
}

/** A new PostgreSQL database on the server of `base` each time it is opened, dropped by `drop`. */
export function pgTarget(base: string): Target {
  return {
    name: 'PostgreSQL',
    async open() {
      const name = `cairn_b_${randomBytes(6).toString('hex')}`;
      const admin = new pg.Client({ connectionString: base });
      await admin.connect();
      await admin.query(`CREATE DATABASE ${name}`);
      const url = new URL(base);
      url.pathname = `/${name}`;
      const db = openDatabase(url.toString());
      return {
        db,
        async drop() {
          await db.destroy();
          await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
          await admin.end();
        },
      };
    },
  };
}
