/**
 * Generated catalogs in the catalog folder format (docs/catalog.md), for
 * tests and the sync benchmark: a company, a product family, `products`
 * products, two classifications, and numbered updates with package rules.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { startListening } from './processes.ts';

export const COMPANY = 'c0000000-0000-4000-8000-000000000001';
export const FAMILY = 'c0000000-0000-4000-8000-000000000002';
export const SECURITY = 'c0000000-0000-4000-8000-0000000000a1';
export const UPDATES = 'c0000000-0000-4000-8000-0000000000a2';
export const product = (p: number): string => `d0000000-0000-4000-8000-${String(p).padStart(12, '0')}`;
export const updateId = (n: number): string => `e0000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

export function categories(products = 4): object[] {
  return [
    { id: COMPANY, revision: 1, type: 'Company', name: 'Contoso' },
    { id: FAMILY, revision: 1, type: 'ProductFamily', name: 'Contoso Linux', parent: COMPANY },
    ...Array.from({ length: products }, (_, p) => ({ id: product(p), revision: 1, type: 'Product', name: `Contoso Linux ${p + 1}`, parent: FAMILY })),
    { id: SECURITY, revision: 1, type: 'UpdateClassification', name: 'Security Updates' },
    { id: UPDATES, revision: 1, type: 'UpdateClassification', name: 'Updates' },
  ];
}

/** Update number `n`: package `pkg-<n % 5000>` at version `1.<n>-1`, superseding update n - 5000 of the same package. */
export function update(n: number, revision = 1, products = 4): Record<string, unknown> {
  const pkg = `pkg-${n % 5000}`;
  const version = `1.${n}-1${n % 7 === 0 ? '~deb12u1' : ''}`;
  return {
    id: updateId(n),
    revision,
    title: `Update for ${pkg} ${version}${revision > 1 ? ` (revision ${revision})` : ''}`,
    description: `Brings ${pkg} to ${version}.`,
    articleId: `CSA-${n}`,
    classification: n % 3 === 0 ? SECURITY : UPDATES,
    products: [product(n % products)],
    severity: n % 3 === 0 ? 'Important' : 'Unspecified',
    cves: n % 3 === 0 ? [`CVE-2024-${10000 + n}`] : [],
    releaseDate: `2024-${String((n % 12) + 1).padStart(2, '0')}-01`,
    supersedes: n >= 5000 ? [updateId(n - 5000)] : [],
    isApplicable: { kind: 'package', name: pkg, installed: true, version: { op: 'lt', value: version } },
    isInstalled: { kind: 'package', name: pkg, installed: true, version: { op: 'ge', value: version } },
  };
}

/** Writes a catalog of updates `first..last` into `dir`, `perFile` updates per NDJSON file, streaming. */
export async function writeCatalog(dir: string, count: number, opts: { perFile?: number; first?: number } = {}): Promise<void> {
  const perFile = opts.perFile ?? 1000;
  const first = opts.first ?? 1;
  await fsp.mkdir(path.join(dir, 'updates'), { recursive: true });
  await fsp.writeFile(path.join(dir, 'categories.ndjson'), categories().map((c) => JSON.stringify(c)).join('\n') + '\n');
  for (let start = first; start < first + count; start += perFile) {
    const out = fs.createWriteStream(path.join(dir, 'updates', `${String(start).padStart(7, '0')}.ndjson`));
    for (let n = start; n < Math.min(start + perFile, first + count); n += 1) {
      if (!out.write(JSON.stringify(update(n)) + '\n')) await new Promise<void>((r) => out.once('drain', () => r()));
    }
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  }
}

export interface UpstreamProc {
  readonly url: string;
  readonly output: () => string;
  readonly pid: number;
  kill(): Promise<void>;
}

/** Starts a real `cairn upstream` process on a free port and waits until it listens. */
export async function startUpstreamProcess(catalogDir: string, extra: string[] = []): Promise<UpstreamProc> {
  return startListening(['upstream', '--catalog', catalogDir, '--port', '0', ...extra]);
}

export interface SupProc {
  readonly url: string;
  readonly dataDir: string;
  readonly output: () => string;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts a real `cairn sup` process with `key` on `port` (0: a free one) and waits until it listens. */
export async function startSupProcess(dataDir: string, key: string, port: number, name: string, extra: string[] = []): Promise<SupProc> {
  return { ...(await startListening(['sup', '--data', dataDir, '--port', String(port), '--key', key, '--name', name, ...extra])), dataDir };
}
