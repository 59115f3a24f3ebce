/**
 * Opens the site database on one of two engines through one query layer
 * (Kysely): SQLite (better-sqlite3, WAL) for the embedded default, PostgreSQL
 * for sites that outgrow it. The engine is chosen by the URL:
 * `sqlite:<path>` or `postgres://…` / `postgresql://…`.
 */
import fs from 'node:fs';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import pg from 'pg';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import { CairnError } from '../shared/errors.ts';
import type { Database } from './schema.ts';

export const ENGINES = ['sqlite', 'postgres'] as const;
export type Engine = (typeof ENGINES)[number];

export interface SiteDatabase {
  readonly engine: Engine;
  readonly db: Kysely<Database>;
  /** Where it is, with any password hidden, for logs. */
  readonly display: string;
  destroy(): Promise<void>;
}

export function engineOf(url: string): Engine {
  if (url.startsWith('sqlite:')) return 'sqlite';
  if (/^postgres(ql)?:\/\//.test(url)) return 'postgres';
  throw new CairnError('CAIRN_DATABASE_URL_INVALID', url.replace(/:[^:@/]*@/, ':***@'));
}

/** Prepared statements kept per connection, by their SQL; the least recently used goes first. */
export const STATEMENT_CACHE_SIZE = 500;

/**
 * Kysely's SQLite driver prepares every statement anew, and preparing costs
 * about as much as running a small query (half the SQL time of the MP's
 * policy requests). The driver runs one query at a time on its one
 * connection, so a statement can be handed out again as soon as the previous
 * query returned; SQLite re-prepares a cached statement by itself when the
 * schema changes.
 */
export function withStatementCache(conn: SQLite.Database): SQLite.Database {
  const cache = new Map<string, SQLite.Statement>();
  const prepare = conn.prepare.bind(conn);
  conn.prepare = ((sql: string) => {
    const cached = cache.get(sql);
    if (cached && !cached.busy) {
      cache.delete(sql);
      cache.set(sql, cached);
      return cached;
    }
    const stmt = prepare(sql);
    cache.set(sql, stmt);
    if (cache.size > STATEMENT_CACHE_SIZE) cache.delete(cache.keys().next().value as string);
    return stmt;
  }) as typeof conn.prepare;
  return conn;
}

export function openDatabase(url: string): SiteDatabase {
  const engine = engineOf(url);
  if (engine === 'sqlite') {
    const file = url.slice('sqlite:'.length);
    if (file !== ':memory:') fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    const dialect = new SqliteDialect({
      database: async () => {
        const conn = new SQLite(file);
        conn.pragma('journal_mode = WAL');
        conn.pragma('synchronous = NORMAL');
        conn.pragma('busy_timeout = 5000');
        conn.pragma('foreign_keys = ON');
        return withStatementCache(conn);
      },
    });
    const db = new Kysely<Database>({ dialect });
    return { engine, db, display: `sqlite:${file}`, destroy: () => db.destroy() };
  }
  // BIGINT counts and sums come back from pg as strings; our counts fit a double.
  pg.types.setTypeParser(20, (v) => Number(v));
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  // An idle connection that the server drops (restart, admin command) must not
  // crash the site: the pool replaces it on the next query.
  pool.on('error', (err) => process.stderr.write(`cairn: PostgreSQL connection lost: ${err.message}\n`));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return { engine, db, display: url.replace(/:[^:@/]*@/, ':***@'), destroy: () => db.destroy() };
}
