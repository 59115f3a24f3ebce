/**
 * An apt repository index as an upstream (issue 5, "apt repositories";
 * docs/catalog.md, "Apt repositories as an upstream"): a folder of
 * `*_Packages[.gz|.xz|.lz4|…]` lists and their `InRelease`/`Release` files,
 * such as the machine's own `/var/lib/apt/lists`. Each (package,
 * architecture, version) becomes an update with deterministic IDs (UUIDv5),
 * products from the list's suite and component, a classification from the
 * suite, supersedence of older versions, and package rules.
 *
 * Lists are read through `apt-helper cat-file`, which undoes whatever
 * compression apt chose (on Debian 12 the lists are lz4), and parsed as a
 * stream, twice: a first pass keeps only (package, architecture, version)
 * to count the updates and find every version of each package (for
 * supersedence); the second builds the updates page by page. Memory holds
 * that version map, never a list's text.
 *
 * It never writes to the folder and never runs anything but apt-helper.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { CairnError } from '../shared/errors.ts';
import type { CatalogItem, Category, Update } from './catalog.ts';
import type { CatalogChanges, CatalogSource } from './catalog-source.ts';
import { compareParsedVersions, debianVersionError, parseDebianVersion } from './dpkg-version.ts';

export const APT_HELPER = '/usr/lib/apt/apt-helper';
/** Ours: the UUIDv5 namespace of every ID the apt source makes. */
export const APT_NAMESPACE = '6b1f2c9e-5d2a-4c1e-9a43-0c5e8d7b2f10';

const PACKAGES_RE = /(^|_)Packages(\.(gz|xz|lz4|bz2|zst))?$/;
const RELEASE_RE = /(^|_)(InRelease|Release)$/;
const PAGE_SIZE = 1000;

/** RFC 4122 version 5 UUID of `name` in `namespace`. */
export function uuidV5(name: string, namespace = APT_NAMESPACE): string {
  const ns = Buffer.from(namespace.replace(/-/g, ''), 'hex');
  const h = createHash('sha1').update(ns).update(name, 'utf8').digest();
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const hex = h.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export const aptUpdateId = (pkg: string, arch: string, version: string): string => uuidV5(`apt:${pkg}/${arch}/${version}`);
const categoryId = (type: string, name: string): string => uuidV5(`category:${type}:${name}`);

/** One `Packages` list and what its Release file says about it. */
export interface AptList {
  readonly file: string;
  readonly origin: string;
  readonly codename: string;
  /** The suite as in the `dists/` path, e.g. `bookworm-security`. */
  readonly suite: string;
  readonly component: string;
  readonly security: boolean;
  /** ISO 8601. */
  readonly date: string;
  readonly product: string;
}

async function releaseFields(file: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const text = await fsp.readFile(file, 'utf8');
  for (const line of text.split('\n')) {
    if (line.startsWith('-----BEGIN PGP SIGNATURE')) break;
    const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
    if (m && !(m[1]! in out)) out[m[1]!] = m[2]!.trim();
  }
  return out;
}

/** Finds the lists in `dir` and describes each from its file name and Release file. */
export async function findAptLists(dir: string): Promise<AptList[]> {
  let names: string[];
  try {
    names = (await fsp.readdir(dir)).sort();
  } catch (err) {
    throw new CairnError('CAIRN_CATALOG_FOLDER_INVALID', `${dir}: ${(err as Error).message}`);
  }
  const releases = names.filter((n) => RELEASE_RE.test(n));
  const lists: AptList[] = [];
  for (const name of names.filter((n) => PACKAGES_RE.test(n))) {
    // The Release file whose name prefix is the longest prefix of the list's (InRelease preferred).
    const rel = releases
      .map((r) => ({ r, prefix: r.replace(RELEASE_RE, '$1') }))
      .filter((x) => x.prefix && name.startsWith(x.prefix))
      .sort((a, b) => b.prefix.length - a.prefix.length || (a.r.endsWith('InRelease') ? -1 : 1))[0];
    const fields = rel ? await releaseFields(path.join(dir, rel.r)) : {};
    const base = name.replace(PACKAGES_RE, '');
    const dists = /_dists_(.*)$/.exec(rel ? rel.prefix.replace(/_$/, '') : base)?.[1];
    let suite: string;
    let component: string;
    if (rel && dists !== undefined) {
      suite = dists.replace(/_/g, '/');
      component = base.slice(rel.prefix.length).replace(/_?binary-[^_]+$/, '').replace(/_/g, '/') || 'main';
    } else {
      const m = /_dists_([^_]+)_(.+?)_binary-[^_]+$/.exec(base);
      suite = m?.[1] ?? (fields.Suite || 'unknown');
      component = m?.[2]?.replace(/_/g, '/') ?? 'main';
    }
    const origin = fields.Origin || name.split('_')[0] || 'apt';
    // Debian names its update suites' codenames `bookworm-updates`, `bookworm-security`: one family, `bookworm`.
    const codename = (fields.Codename || suite).replace(/[-/].*$/, '');
    const security = /security/i.test(`${suite} ${fields.Label ?? ''} ${fields.Suite ?? ''}`);
    const parsed = fields.Date ? Date.parse(fields.Date) : NaN;
    const date = new Date(Number.isNaN(parsed) ? (await fsp.stat(path.join(dir, name))).mtimeMs : parsed).toISOString();
    lists.push({ file: path.join(dir, name), origin, codename, suite, component, security, date, product: `${origin} ${suite}/${component}` });
  }
  return lists;
}

/** The uncompressed text of a list, as a stream: apt-helper when present, else plain or gzip by hand. */
function openList(file: string, aptHelper: string): Readable {
  if (fs.existsSync(aptHelper)) {
    const child = spawn(aptHelper, ['cat-file', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.once('close', (code) => {
      if (code) child.stdout.destroy(new CairnError('CAIRN_CATALOG_APT_UNREADABLE', `${file}: apt-helper exited with ${code}: ${err.trim().slice(0, 300)}`));
    });
    child.once('error', (e) => child.stdout.destroy(new CairnError('CAIRN_CATALOG_APT_UNREADABLE', `${file}: ${e.message}`)));
    return child.stdout;
  }
  if (file.endsWith('.gz')) return fs.createReadStream(file).pipe(createGunzip());
  if (/\.(xz|lz4|bz2|zst)$/.test(file)) throw new CairnError('CAIRN_CATALOG_APT_UNREADABLE', `${file}: compressed lists need ${aptHelper} (package apt)`);
  return fs.createReadStream(file);
}

/** A stanza with the fields the apt source uses. */
interface Stanza {
  package?: string;
  architecture?: string;
  version?: string;
  description?: string;
}

const FIELDS: Readonly<Record<string, keyof Stanza>> = { Package: 'package', Architecture: 'architecture', Version: 'version', Description: 'description' };

/**
 * Streams the stanzas of a list. Lines are found in the bytes and only the
 * values of the fields above are decoded, each into a string of its own: a
 * slice of a large decoded chunk would keep the whole chunk alive for as long
 * as the version map holds the slice.
 */
async function* stanzas(stream: Readable): AsyncGenerator<Stanza> {
  let cur: Stanza = {};
  let any = false;
  let carry: Buffer | undefined;
  const blank = (buf: Buffer, from: number, to: number): boolean => {
    for (let i = from; i < to; i += 1) if (buf[i] !== 32 && buf[i] !== 9) return false;
    return true;
  };
  const field = (buf: Buffer, from: number, to: number): void => {
    const c = buf[from];
    if (c === 32 || c === 9) return; // a continuation line
    const colon = buf.indexOf(58, from);
    if (colon < 0 || colon >= to) return;
    const len = colon - from;
    if (len !== 7 && len !== 11 && len !== 12) return;
    const key = FIELDS[buf.toString('latin1', from, colon)];
    if (!key) return;
    let vs = colon + 1;
    let ve = to;
    while (vs < ve && (buf[vs] === 32 || buf[vs] === 9)) vs += 1;
    while (ve > vs && (buf[ve - 1] === 32 || buf[ve - 1] === 9)) ve -= 1;
    cur[key] = buf.toString('utf8', vs, ve);
  };
  const line = (buf: Buffer, from: number, to: number): boolean => {
    if (to > from && buf[to - 1] === 13) to -= 1;
    if (blank(buf, from, to)) return any;
    any = true;
    field(buf, from, to);
    return false;
  };
  for await (const chunk of stream) {
    const buf: Buffer = carry ? Buffer.concat([carry, chunk as Buffer]) : (chunk as Buffer);
    let start = 0;
    for (let nl = buf.indexOf(10, start); nl !== -1; nl = buf.indexOf(10, start)) {
      const ended = line(buf, start, nl);
      start = nl + 1;
      if (ended) {
        yield cur;
        cur = {};
        any = false;
      }
    }
    carry = start < buf.length ? Buffer.from(buf.subarray(start)) : undefined;
  }
  if (carry) line(carry, 0, carry.length);
  if (any) yield cur;
}

/** Why a stanza cannot become an update, or undefined when it can. */
function stanzaError(s: Stanza): string | undefined {
  if (!s.package || !/^[a-z0-9][a-z0-9+.-]+$/.test(s.package)) return `Package '${s.package ?? ''}' is missing or not a Debian package name`;
  if (!s.architecture || !/^[a-z0-9][a-z0-9-]*$/.test(s.architecture)) return 'Architecture is missing or malformed';
  if (!s.version) return 'Version is missing';
  const v = debianVersionError(s.version);
  return v === undefined ? undefined : `Version ${v}`;
}

const stanzaId = (s: Stanza): string => `${s.package ?? '?'}/${s.architecture ?? '?'}/${s.version ?? '?'}`;


export interface AptSourceOptions {
  readonly aptHelper?: string;
  readonly pageSize?: number;
}

/** A catalog source over the apt lists in `dir`. */
export function createAptSource(dir: string, opts: AptSourceOptions = {}): CatalogSource {
  const aptHelper = opts.aptHelper ?? APT_HELPER;
  const pageSize = opts.pageSize ?? PAGE_SIZE;
  const url = `apt:${path.resolve(dir)}`;

  return {
    url,
    async changesSince(anchor: string): Promise<CatalogChanges> {
      const lists = await findAptLists(dir);
      // The anchor: the lists and Release files as apt left them. Same anchor, nothing to read.
      const h = createHash('sha1');
      for (const name of (await fsp.readdir(dir)).filter((n) => PACKAGES_RE.test(n) || RELEASE_RE.test(n)).sort()) {
        const st = await fsp.stat(path.join(dir, name));
        h.update(`${name}\0${st.size}\0${st.mtimeMs}\0${st.ino}\n`);
      }
      const newAnchor = `apt-${h.digest('hex').slice(0, 16)}`;
      if (anchor === newAnchor) {
        return { anchor, full: false, totals: { categories: 0, updates: 0 }, rejectedAtSource: 0, categoryPages: async function* () {}, updatePages: async function* () {} };
      }

      // Categories: company per origin, family per origin + codename, product per list, two classifications.
      const cats = new Map<string, Category>();
      const add = (type: Category['type'], name: string, parent?: string): string => {
        const id = categoryId(type, name);
        if (!cats.has(id)) cats.set(id, { id, revision: 1, type, name, ...(parent ? { parent } : {}) });
        return id;
      };
      const security = add('UpdateClassification', 'Security Updates');
      const plain = add('UpdateClassification', 'Updates');
      const productIds = lists.map((l) => add('Product', l.product, add('ProductFamily', `${l.origin} ${l.codename}`, add('Company', l.origin))));

      // Pass 1: every version of every (package, architecture), and in which lists. Kept compact
      // (two maps of small arrays): it is the only thing the source holds for the whole catalog.
      const versionsOf = new Map<string, string[]>();
      /** Lists of each not-yet-emitted `<package>/<arch>/<version>`; emitting deletes the entry. */
      const listsOf = new Map<string, number[]>();
      let total = 0;
      for (const [i, list] of lists.entries()) {
        for await (const s of stanzas(openList(list.file, aptHelper))) {
          // A malformed stanza is one item too: it is counted (and rejected) in pass 2.
          if (stanzaError(s)) {
            total += 1;
            continue;
          }
          const key = `${s.package}/${s.architecture}`;
          const vkey = `${key}/${s.version}`;
          const inLists = listsOf.get(vkey);
          if (inLists) {
            if (!inLists.includes(i)) inLists.push(i);
          } else {
            listsOf.set(vkey, [i]);
            const vs = versionsOf.get(key);
            if (vs) vs.push(s.version!);
            else versionsOf.set(key, [s.version!]);
            total += 1;
          }
        }
      }

      async function* updatePages(): AsyncGenerator<CatalogItem<Update>[]> {
        let page: CatalogItem<Update>[] = [];
        for (const list of lists) {
          for await (const s of stanzas(openList(list.file, aptHelper))) {
            const why = stanzaError(s);
            if (why) {
              page.push({ ok: false, id: stanzaId(s), code: 'CAIRN_CATALOG_UPDATE_INVALID', reason: `${path.basename(list.file)}: ${stanzaId(s)}: ${why}` });
            } else {
              const pkg = s.package!;
              const arch = s.architecture!;
              const version = s.version!;
              const vkey = `${pkg}/${arch}/${version}`;
              const lists0 = listsOf.get(vkey);
              if (!lists0) continue; // already emitted from an earlier list
              listsOf.delete(vkey);
              const mine = parseDebianVersion(version);
              const older = versionsOf.get(`${pkg}/${arch}`)!.filter((v) => compareParsedVersions(parseDebianVersion(v), mine) < 0);
              const inLists = lists0.sort((a, b) => a - b);
              const rule = (op: 'lt' | 'ge') => ({ kind: 'package' as const, name: pkg, arch, installed: true, version: { op, value: version } });
              page.push({
                ok: true,
                value: {
                  id: aptUpdateId(pkg, arch, version),
                  revision: 1,
                  title: `${pkg} ${version} (${arch})`,
                  description: s.description ?? '',
                  articleId: `${pkg}_${version}`,
                  classification: inLists.some((i) => lists[i]!.security) ? security : plain,
                  products: [...new Set(inLists.map((i) => productIds[i]!))],
                  severity: 'Unspecified',
                  cves: [],
                  releaseDate: lists[inLists[0]!]!.date,
                  supersedes: older.map((v) => aptUpdateId(pkg, arch, v)),
                  isApplicable: rule('lt'),
                  isInstalled: rule('ge'),
                },
              });
            }
            if (page.length >= pageSize) {
              yield page;
              page = [];
            }
          }
        }
        if (page.length) yield page;
      }

      return {
        anchor: newAnchor,
        full: true,
        totals: { categories: cats.size, updates: total },
        rejectedAtSource: 0,
        categoryPages: async function* () {
          yield [...cats.values()].map((value) => ({ ok: true as const, value }));
        },
        updatePages,
      };
    },
  };
}
