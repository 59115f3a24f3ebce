/** The apt upstream: fixture lists in every compression with tricky versions, and this machine's own lists. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { aptUpdateId, createAptSource, findAptLists, uuidV5 } from '../../src/catalog/apt-source.ts';
import type { Update } from '../../src/catalog/catalog.ts';
import type { CatalogChanges } from '../../src/catalog/catalog-source.ts';
import { parseUpdate } from '../../src/catalog/catalog-input.ts';
import { evaluateRule } from '../../src/catalog/rules.ts';
import { ROOT } from '../helpers/processes.ts';

const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'apt');
const hasAptHelper = fs.existsSync('/usr/lib/apt/apt-helper');

async function drain(c: CatalogChanges): Promise<{ updates: Update[]; bad: string[]; categories: string[] }> {
  const out = { updates: [] as Update[], bad: [] as string[], categories: [] as string[] };
  for await (const page of c.categoryPages()) for (const it of page) if (it.ok) out.categories.push(`${it.value.type}:${it.value.name}`);
  for await (const page of c.updatePages()) for (const it of page) {
      if (it.ok) out.updates.push(it.value);
      else out.bad.push(it.id);
    }
  return out;
}

test('UUIDv5 matches the RFC 4122 example, so apt update IDs are the same on every site', () => {
  // RFC 4122 / Python uuid.uuid5(NAMESPACE_DNS, 'python.org').
  assert.equal(uuidV5('python.org', '6ba7b810-9dad-11d1-80b4-00c04fd430c8'), '886313e1-3b8a-5372-9b90-0c9aee199e5d');
  assert.equal(aptUpdateId('openssl', 'amd64', '3.0.11-1~deb12u2'), aptUpdateId('openssl', 'amd64', '3.0.11-1~deb12u2'));
});

test('apt lists are described from their file names and Release files: suite, component, security', async () => {
  const lists = await findAptLists(FIXTURES);
  assert.deepEqual(
    lists.map((l) => [l.product, l.security, l.codename, l.date.slice(0, 10)]).sort(),
    [
      ['Debian bookworm-security/updates/main', true, 'bookworm', '2026-07-14'],
      ['Debian bookworm-updates/main', false, 'bookworm', '2026-07-13'],
      ['Debian bookworm/contrib', false, 'bookworm', '2026-07-11'],
      ['Debian bookworm/main', false, 'bookworm', '2026-07-11'],
    ],
  );
});

test('fixture lists (plain, gz, xz, lz4) become one update per package, architecture and version, with dpkg supersedence', { skip: hasAptHelper ? false : 'apt-helper is not installed' }, async () => {
  const source = createAptSource(FIXTURES, { pageSize: 4 });
  const changes = await source.changesSince('');
  assert.equal(changes.full, true);
  assert.deepEqual(changes.totals, { categories: 8, updates: 13 }, '11 updates and 2 malformed stanzas');
  const { updates, bad, categories } = await drain(changes);
  assert.deepEqual(bad.sort(), ['broken/amd64/abc', 'noversion/amd64/?']);
  assert.equal(updates.length, 11);
  assert.ok(categories.includes('Company:Debian') && categories.includes('ProductFamily:Debian bookworm') && categories.includes('UpdateClassification:Security Updates'));
  const by = (title: string) => updates.find((u) => u.title === title)!;
  for (const u of updates) assert.deepEqual(parseUpdate(JSON.parse(JSON.stringify(u))), u, `${u.title} is a valid catalog update`);

  const u10 = by('libc6 2.36-9+deb12u10 (amd64)');
  assert.equal(u10.id, aptUpdateId('libc6', 'amd64', '2.36-9+deb12u10'));
  assert.equal(u10.classification, by('openssl 3.0.11-1~deb12u2 (amd64)').classification, 'both from the security suite');
  assert.notEqual(u10.classification, by('libc6 2.36-9+deb12u4 (amd64)').classification);
  assert.deepEqual(new Set(u10.supersedes), new Set([aptUpdateId('libc6', 'amd64', '2.36-9+deb12u1'), aptUpdateId('libc6', 'amd64', '2.36-9+deb12u4')]), 'u10 is newer than u4 (digit runs compare as numbers)');
  assert.deepEqual(by('libc6 2.36-9+deb12u4 (amd64)').supersedes, [aptUpdateId('libc6', 'amd64', '2.36-9+deb12u1')]);
  assert.deepEqual(by('openssl 3.0.11-1~deb12u2 (amd64)').supersedes, [aptUpdateId('openssl', 'amd64', '3.0.11-1~deb12u1')]);
  assert.deepEqual(by('epochy 1:1.0-1 (amd64)').supersedes, [aptUpdateId('epochy', 'amd64', '0.9-1')], 'the epoch wins over a higher-looking upstream');
  assert.deepEqual(by('epochy 0.9-1 (amd64)').supersedes, []);
  assert.deepEqual(by('tilde-pkg 2.0-1 (amd64)').supersedes, [aptUpdateId('tilde-pkg', 'amd64', '2.0~rc1-1')], '~rc1 sorts before the release');
  const tz = by('tzdata 2024a-0+deb12u1 (all)');
  assert.equal(tz.products.length, 2, 'the same version in two suites is one update in two products');
  assert.equal(tz.description, 'time zone and daylight-saving time data');

  // The rules, on a machine with libc6 u4 installed.
  const machine = { packages: [{ name: 'libc6', arch: 'amd64', version: '2.36-9+deb12u4' }] };
  const state = (u: Update) => (evaluateRule(u.isApplicable, machine) ? (evaluateRule(u.isInstalled, machine) ? 'installed' : 'required') : evaluateRule(u.isInstalled, machine) ? 'installed' : 'not required');
  assert.equal(state(u10), 'required');
  assert.equal(state(by('libc6 2.36-9+deb12u4 (amd64)')), 'installed');
  assert.equal(state(by('libc6 2.36-9+deb12u1 (amd64)')), 'installed');
  assert.equal(state(by('openssl 3.0.11-1~deb12u2 (amd64)')), 'not required');

  // Unchanged lists: the same anchor answers "nothing changed" without reading a list.
  const again = await source.changesSince(changes.anchor);
  assert.equal(again.full, false);
  assert.deepEqual(again.totals, { categories: 0, updates: 0 });
  assert.deepEqual((await drain(again)).updates, []);
});

const REAL = '/var/lib/apt/lists';
const realLists = fs.existsSync(REAL) ? fs.readdirSync(REAL).filter((n) => /_Packages(\.\w+)?$/.test(n)) : [];

test("this machine's own apt lists become a catalog", { skip: !hasAptHelper ? 'apt-helper is not installed' : realLists.length ? false : `no Packages lists in ${REAL} (run apt-get update)` }, async () => {
  const source = createAptSource(REAL);
  const changes = await source.changesSince('');
  let ok = 0;
  let bad = 0;
  const ids = new Set<string>();
  for await (const page of changes.updatePages()) {
    assert.ok(page.length <= 1000, 'pages are bounded');
    for (const it of page) {
      if (!it.ok) {
        bad += 1;
        continue;
      }
      ok += 1;
      ids.add(it.value.id);
    }
  }
  assert.ok(ok > 0, 'some updates');
  assert.equal(ok + bad, changes.totals.updates);
  assert.equal(ids.size, ok, 'IDs are unique');
  assert.ok(bad <= ok / 1000, `few malformed stanzas (${bad})`);
});
