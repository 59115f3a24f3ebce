/**
 * Set-up shared by the scanner's tests against a real in-process update
 * point (`test/unit/scanner.test.ts`, `test/unit/scan-pages.test.ts`): the
 * catalog folder a `cairn upstream` serves, a sync of the update point from
 * it, and a Scanner.log read back as text lines.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createComponentLog, parseCmtraceLine } from '../../src/shared/cmtrace-log.ts';
import type { ComponentLog } from '../../src/shared/cmtrace-log.ts';
import type { SupClient } from '../../src/sup/sup-client.ts';
import { categories } from './catalog.ts';
import { waitFor } from './processes.ts';

/** Writes (or replaces, by renaming over it, as docs/catalog.md asks) an upstream catalog folder. */
export async function writeCatalogDir(dir: string, updates: Record<string, unknown>[], categoryCount: number): Promise<void> {
  await fsp.mkdir(path.join(dir, 'updates'), { recursive: true });
  await fsp.writeFile(path.join(dir, 'categories.ndjson'), categories(categoryCount).map((c) => JSON.stringify(c)).join('\n') + '\n');
  await fsp.writeFile(path.join(dir, 'updates', 'a.ndjson.tmp'), updates.map((u) => JSON.stringify(u)).join('\n') + '\n');
  await fsp.rename(path.join(dir, 'updates', 'a.ndjson.tmp'), path.join(dir, 'updates', 'a.ndjson'));
}

/** Syncs the update point from the upstream and waits for it; returns the content version it reached. */
export async function syncSup(client: SupClient, upstreamUrl: string): Promise<number> {
  const { syncId } = await client.startSync(upstreamUrl, false);
  const done = await waitFor('the update point sync', async () => {
    const st = await client.syncState();
    return st.syncId === syncId && st.state !== 'running' ? st : undefined;
  });
  assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
  return done.result!.contentVersion;
}

/** A Scanner component log in `<dir>/logs/<name>.log`, and its lines' text so far. */
export function scannerLog(dir: string, name: string): { log: ComponentLog; lines: () => string[] } {
  const log = createComponentLog({ dir: path.join(dir, 'logs'), name, component: 'Scanner' });
  return { log, lines: () => (fs.existsSync(log.file) ? fs.readFileSync(log.file, 'utf8').split('\n').filter(Boolean).map((l) => parseCmtraceLine(l)?.text ?? l) : []) };
}
