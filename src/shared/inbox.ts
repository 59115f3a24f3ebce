/**
 * Inboxes: real folders in which one component drops a file to ask another
 * for work (spec 40, "Files dropped into inboxes").
 *
 * A file is written under a hidden temporary name and renamed into place, so a
 * reader never sees half a file. Readers list files by extension, handle each
 * idempotently, commit, and only then delete the file (ARCHITECTURE.md,
 * "Inboxes"): a crash at any point leaves the file to be handled again.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

/** Writes `name` into `dir` atomically (temporary name, then rename). */
export async function writeInboxFile(dir: string, name: string, data: string | Uint8Array): Promise<string> {
  if (name.includes('/') || name.startsWith('.')) throw new Error(`invalid inbox file name ${JSON.stringify(name)}`);
  await fsp.mkdir(dir, { recursive: true });
  const tmp = path.join(dir, `.${name}.${randomBytes(4).toString('hex')}.tmp`);
  await fsp.writeFile(tmp, data);
  const final = path.join(dir, name);
  await fsp.rename(tmp, final);
  return final;
}

/** Lists the ready files in `dir` with extension `ext` (case-insensitive), oldest name first. */
export async function listInboxFiles(dir: string, ext: string): Promise<string[]> {
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const suffix = `.${ext.toLowerCase()}`;
  return names.filter((n) => !n.startsWith('.') && n.toLowerCase().endsWith(suffix)).sort();
}

/** Deletes an inbox file after its work is committed; a file already gone is fine (idempotent). */
export async function removeInboxFile(file: string): Promise<void> {
  await fsp.rm(file, { force: true });
}

/**
 * Watches an inbox folder and calls `onArrival` when something lands in it.
 * fs.watch can miss events (and does not exist on every file system), so the
 * component loop that owns the watcher also rescans on a timer.
 */
export function watchInbox(dir: string, onArrival: () => void): () => void {
  fs.mkdirSync(dir, { recursive: true });
  let watcher: fs.FSWatcher | undefined;
  try {
    watcher = fs.watch(dir, { persistent: false }, (_event, name) => {
      if (!name || !String(name).startsWith('.')) onArrival();
    });
    watcher.on('error', () => {
      watcher?.close();
      watcher = undefined;
    });
  } catch {
    watcher = undefined;
  }
  return () => watcher?.close();
}
