/**
 * The change journal of a catalog folder (docs/catalog.md, "Catalog folder"):
 * `categories.ndjson` and `updates/*.ndjson`, one JSON item per line. For
 * every item it knows the hash of its line and the sequence number of its
 * last change; for every item present now, where its line is (file, offset,
 * length). Pages are read from the files by position, so memory holds the
 * index (a few hundred bytes per item) but never the catalog's contents.
 *
 * It owns the state folder (`index.ndjson`, the catalog ID and every item's
 * hash and sequence), which makes anchors survive a restart. Losing it only
 * costs clients one full sync: a new catalog ID is made and old anchors are
 * answered with everything.
 *
 * A refresh re-reads only files whose size, mtime or inode changed, so a
 * no-change sync costs a `stat` per file. It must never serve a line that is
 * not the one it indexed: a page re-hashes each line and answers
 * CAIRN_CATALOG_CHANGED when a file changed under it.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { CairnError } from '../shared/errors.ts';
import type { ComponentLog } from '../shared/cmtrace-log.ts';
import type { ItemKind } from './protocol.ts';

export const CATEGORIES_FILE = 'categories.ndjson';
export const UPDATES_FOLDER = 'updates';
const INDEX_FILE = 'index.ndjson';

interface Entry {
  readonly kind: ItemKind;
  readonly id: string;
  readonly hash: string;
  readonly seq: number;
  readonly file: string;
  readonly offset: number;
  readonly length: number;
}

interface FileState {
  readonly size: number;
  readonly mtimeMs: number;
  readonly ino: number;
}

/** Calls `fn` for each line of `file` with its byte offset; streams, so a file of any size is read in bounded memory. */
export async function forEachLine(file: string, fn: (line: Buffer, offset: number) => void): Promise<void> {
  let carry: Buffer = Buffer.alloc(0);
  let carryStart = 0;
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) {
    const buf: Buffer = carry.length ? Buffer.concat([carry, chunk as Buffer]) : (chunk as Buffer);
    let start = 0;
    for (let nl = buf.indexOf(10, start); nl !== -1; nl = buf.indexOf(10, start)) {
      fn(buf.subarray(start, nl), carryStart + start);
      start = nl + 1;
    }
    carry = Buffer.from(buf.subarray(start));
    carryStart += start;
  }
  if (carry.length) fn(carry, carryStart);
}

const hashLine = (line: Buffer): string => createHash('sha1').update(line).digest('base64');

export class CatalogIndex {
  readonly #dir: string;
  readonly #stateDir: string;
  readonly #log: ComponentLog;
  #catalogId = '';
  #seq = 0;
  /** Every item ever seen, by `<kind>:<id>`: its line's hash and the sequence of its last change. */
  readonly #known = new Map<string, { hash: string; seq: number }>();
  /** Items present now, by `<kind>:<id>`. */
  readonly #entries = new Map<string, Entry>();
  readonly #files = new Map<string, FileState>();
  /** Rejected lines per file. */
  readonly #rejected = new Map<string, number>();
  #sorted: Record<ItemKind, Entry[]> | undefined;
  #refreshing: Promise<void> | undefined;

  private constructor(dir: string, stateDir: string, log: ComponentLog) {
    this.#dir = dir;
    this.#stateDir = stateDir;
    this.#log = log;
  }

  /** Opens the index of `dir`, loading its state and reading the catalog once. */
  static async open(dir: string, stateDir: string, log: ComponentLog): Promise<CatalogIndex> {
    const st = await fsp.stat(dir).catch(() => undefined);
    if (!st?.isDirectory()) throw new CairnError('CAIRN_CATALOG_FOLDER_INVALID', `${dir} is not a folder`);
    const index = new CatalogIndex(path.resolve(dir), path.resolve(stateDir), log);
    await fsp.mkdir(index.#stateDir, { recursive: true });
    await index.#load();
    await index.refresh();
    return index;
  }

  get catalogId(): string {
    return this.#catalogId;
  }

  get seq(): number {
    return this.#seq;
  }

  get rejected(): number {
    let n = 0;
    for (const v of this.#rejected.values()) n += v;
    return n;
  }

  async #load(): Promise<void> {
    const file = path.join(this.#stateDir, INDEX_FILE);
    if (!fs.existsSync(file)) {
      this.#catalogId = randomBytes(8).toString('hex');
      this.#log.info(`No change index in ${this.#stateDir}: starting catalog ${this.#catalogId}; every client's next sync is a full one`);
      return;
    }
    let first = true;
    await forEachLine(file, (line) => {
      if (!line.length) return;
      const v = JSON.parse(line.toString('utf8')) as unknown;
      if (first) {
        const h = v as { catalogId: string; seq: number };
        this.#catalogId = h.catalogId;
        this.#seq = h.seq;
        first = false;
        return;
      }
      const [key, hash, seq] = v as [string, string, number];
      this.#known.set(key, { hash, seq });
    });
    this.#log.info(`Loaded change index of catalog ${this.#catalogId}: ${this.#known.size} items, sequence ${this.#seq}`);
  }

  async #save(): Promise<void> {
    const file = path.join(this.#stateDir, INDEX_FILE);
    const tmp = `${file}.tmp`;
    const out = fs.createWriteStream(tmp);
    const write = (s: string): Promise<void> | undefined => (out.write(s) ? undefined : new Promise((r) => out.once('drain', () => r())));
    await write(JSON.stringify({ catalogId: this.#catalogId, seq: this.#seq }) + '\n');
    for (const [key, v] of this.#known) await write(JSON.stringify([key, v.hash, v.seq]) + '\n');
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
    await fsp.rename(tmp, file);
  }

  async #listFiles(): Promise<string[]> {
    const files: string[] = [];
    if (fs.existsSync(path.join(this.#dir, CATEGORIES_FILE))) files.push(CATEGORIES_FILE);
    let names: string[] = [];
    try {
      names = await fsp.readdir(path.join(this.#dir, UPDATES_FOLDER));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new CairnError('CAIRN_CATALOG_FOLDER_INVALID', `${this.#dir}/${UPDATES_FOLDER}: ${(err as Error).message}`);
    }
    for (const n of names.sort()) if (n.endsWith('.ndjson') && !n.startsWith('.')) files.push(`${UPDATES_FOLDER}/${n}`);
    return files;
  }

  /** Brings the index up to date with the folder. Concurrent callers share one refresh. */
  refresh(): Promise<void> {
    this.#refreshing ??= this.#refresh().finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  async #refresh(): Promise<void> {
    const files = await this.#listFiles();
    const present = new Set(files);
    let changedFiles = 0;
    let changedItems = 0;
    for (const gone of [...this.#files.keys()].filter((f) => !present.has(f))) {
      this.#dropFile(gone);
      changedFiles += 1;
    }
    for (const rel of files) {
      const abs = path.join(this.#dir, rel);
      const st = await fsp.stat(abs);
      const seen = this.#files.get(rel);
      if (seen && seen.size === st.size && seen.mtimeMs === st.mtimeMs && seen.ino === st.ino) continue;
      changedFiles += 1;
      this.#dropFile(rel);
      const kind: ItemKind = rel === CATEGORIES_FILE ? 'categories' : 'updates';
      let lineNo = 0;
      let rejected = 0;
      await forEachLine(abs, (line, offset) => {
        lineNo += 1;
        const text = line.toString('utf8').trim();
        if (!text) return;
        let id: unknown;
        try {
          id = (JSON.parse(text) as { id?: unknown } | null)?.id;
        } catch {
          id = undefined;
        }
        if (typeof id !== 'string' || !id) {
          rejected += 1;
          this.#log.warn(`Rejected ${rel} line ${lineNo}: not a JSON object with a string "id"`);
          return;
        }
        const key = `${kind}:${id.toLowerCase()}`;
        if (this.#entries.has(key)) {
          rejected += 1;
          this.#log.warn(`Rejected ${rel} line ${lineNo}: ${kind} ${id} is already in ${this.#entries.get(key)!.file}`);
          return;
        }
        const hash = hashLine(line);
        const known = this.#known.get(key);
        let seq: number;
        if (known && known.hash === hash) seq = known.seq;
        else {
          this.#seq += 1;
          seq = this.#seq;
          this.#known.set(key, { hash, seq });
          changedItems += 1;
        }
        this.#entries.set(key, { kind, id, hash, seq, file: rel, offset, length: line.length });
      });
      if (rejected) this.#rejected.set(rel, rejected);
      this.#files.set(rel, { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino });
    }
    if (changedFiles) {
      this.#sorted = undefined;
      if (changedItems) await this.#save();
      this.#log.info(`Catalog re-read: ${changedFiles} file(s) changed, ${changedItems} item(s) new or changed, sequence ${this.#seq}, ${this.#entries.size} items, ${this.rejected} line(s) rejected`);
    }
  }

  #dropFile(rel: string): void {
    for (const [key, e] of this.#entries) if (e.file === rel) this.#entries.delete(key);
    this.#files.delete(rel);
    this.#rejected.delete(rel);
  }

  #byKind(kind: ItemKind): Entry[] {
    if (!this.#sorted) {
      const sorted: Record<ItemKind, Entry[]> = { categories: [], updates: [] };
      for (const e of this.#entries.values()) sorted[e.kind].push(e);
      sorted.categories.sort((a, b) => a.seq - b.seq);
      sorted.updates.sort((a, b) => a.seq - b.seq);
      this.#sorted = sorted;
    }
    return this.#sorted[kind];
  }

  /** Index of the first entry with a sequence above `seq`. */
  #after(list: readonly Entry[], seq: number): number {
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (list[mid]!.seq <= seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** How many items of `kind` changed in (since, until]. */
  count(kind: ItemKind, since: number, until: number): number {
    const list = this.#byKind(kind);
    return this.#after(list, until) - this.#after(list, since);
  }

  /**
   * Up to `limit` items of `kind` changed in (max(since, cursor), until], as
   * their JSON text, in sequence order, and the cursor of the next page.
   */
  async page(kind: ItemKind, since: number, until: number, cursor: number, limit: number): Promise<{ items: string[]; cursor: number | null }> {
    const list = this.#byKind(kind);
    const from = this.#after(list, Math.max(since, cursor));
    const end = this.#after(list, until);
    const slice = list.slice(from, Math.min(end, from + limit));
    const items: string[] = [];
    const handles = new Map<string, fsp.FileHandle>();
    try {
      for (const e of slice) {
        let fh = handles.get(e.file);
        if (!fh) {
          fh = await fsp.open(path.join(this.#dir, e.file), 'r');
          handles.set(e.file, fh);
        }
        const buf = Buffer.alloc(e.length);
        const { bytesRead } = await fh.read(buf, 0, e.length, e.offset);
        if (bytesRead !== e.length || hashLine(buf) !== e.hash) throw new CairnError('CAIRN_CATALOG_CHANGED', `${e.file} changed while being served; sync again`);
        items.push(buf.toString('utf8').trim());
      }
    } finally {
      for (const fh of handles.values()) await fh.close();
    }
    const last = slice.at(-1);
    return { items, cursor: last && from + slice.length < end ? last.seq : null };
  }
}
