/** The SQLite prepared-statement cache (src/datastore/engine.ts): reuse, a busy statement never shared, a bounded size. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import SQLite from 'better-sqlite3';
import { STATEMENT_CACHE_SIZE, withStatementCache } from '../../src/datastore/engine.ts';

test('the same SQL gets the same prepared statement; different SQL a different one', () => {
  const conn = withStatementCache(new SQLite(':memory:'));
  try {
    conn.exec('CREATE TABLE t (a INTEGER)');
    const a = conn.prepare('INSERT INTO t (a) VALUES (?)');
    assert.equal(conn.prepare('INSERT INTO t (a) VALUES (?)'), a);
    a.run(1);
    conn.prepare('INSERT INTO t (a) VALUES (?)').run(2);
    assert.deepEqual(conn.prepare('SELECT a FROM t ORDER BY a').all(), [{ a: 1 }, { a: 2 }]);
    assert.notEqual(conn.prepare('SELECT a FROM t ORDER BY a DESC'), conn.prepare('SELECT a FROM t ORDER BY a'));
  } finally {
    conn.close();
  }
});

test('a statement still iterating is not handed out again', () => {
  const conn = withStatementCache(new SQLite(':memory:'));
  try {
    conn.exec('CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1), (2), (3)');
    const sql = 'SELECT a FROM t ORDER BY a';
    const first = conn.prepare(sql);
    const rows = first.iterate();
    assert.deepEqual(rows.next().value, { a: 1 });
    assert.equal(first.busy, true);
    const second = conn.prepare(sql);
    assert.notEqual(second, first);
    assert.deepEqual(second.all(), [{ a: 1 }, { a: 2 }, { a: 3 }]);
    assert.deepEqual([...rows], [{ a: 2 }, { a: 3 }]);
  } finally {
    conn.close();
  }
});

test('the cache holds at most its size; the least recently used goes first', () => {
  const conn = withStatementCache(new SQLite(':memory:'));
  try {
    const keep = conn.prepare('SELECT 0');
    const firstOther = conn.prepare('SELECT 1');
    for (let i = 2; i <= STATEMENT_CACHE_SIZE; i++) {
      conn.prepare(`SELECT ${i}`);
      // Used again now and then, 'SELECT 0' stays the most recently used.
      if (i % 100 === 0) assert.equal(conn.prepare('SELECT 0'), keep);
    }
    assert.equal(conn.prepare('SELECT 0'), keep);
    assert.notEqual(conn.prepare('SELECT 1'), firstOther, 'the least recently used was evicted');
  } finally {
    conn.close();
  }
});

test('a cached statement still works after the schema changed', () => {
  const conn = withStatementCache(new SQLite(':memory:'));
  try {
    conn.exec('CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1)');
    const before = conn.prepare('SELECT a FROM t WHERE a = ?');
    assert.deepEqual(before.all(1), [{ a: 1 }]);
    conn.exec('ALTER TABLE t ADD COLUMN b TEXT DEFAULT \'x\'; CREATE INDEX t_a ON t (a)');
    const after = conn.prepare('SELECT a FROM t WHERE a = ?');
    assert.equal(after, before);
    assert.deepEqual(after.all(1), [{ a: 1 }]);
  } finally {
    conn.close();
  }
});
