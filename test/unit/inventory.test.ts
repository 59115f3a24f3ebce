/**
 * Inventories the scanner evaluates rules against: a dpkg status file with
 * the entries that trip a naive reader (not-installed and config-files
 * packages, held and half-configured ones, Multi-Arch: same packages for two
 * architectures, Architecture: all, continuation lines that look like
 * fields, epochs), os-release, a whole machine root, and the facts file's
 * inventory with its errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { parseFacts, readFactsFile } from '../../src/agent/facts.ts';
import { dpkgStatusNotInstalled, parseDpkgStatus, parseOsRelease, readLocalInventory } from '../../src/agent/scan/inventory.ts';
import { tempDir } from '../helpers/processes.ts';

const STATUS = `Package: libc6
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: same
Version: 2.36-9+deb12u4
Description: GNU C Library: Shared libraries
 Contains the standard libraries.
 Package: fake-from-description
 Version: 9.9

Package: libc6
Status: install ok installed
Architecture: i386
Multi-Arch: same
Version: 2.36-9+deb12u1

Package: tzdata
Status: install ok installed
Architecture: all
Version: 2024a-0+deb12u1

Package: removed-pkg
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1

Package: purged-pkg
Status: purge ok not-installed
Architecture: amd64

Package: held-pkg
Status: hold ok installed
Architecture: amd64
Version: 1:2.0-1

Package: broken-pkg
Status: install reinstreq half-configured
Architecture: amd64
Version: 3.0-1

Package: going-pkg
Status: deinstall ok installed
Architecture: amd64
Version: 0.5

Package: trig-pkg
Status: install ok triggers-pending
Architecture: amd64
Version: 4.0

Package: no-status
Architecture: amd64
Version: 1.0

Package: dpkg
Status: install ok installed
Architecture: amd64
Version: 1.21.22
`;

test('the dpkg status file gives every installed (package, architecture) with its version, as apt counts them', () => {
  const pkgs = parseDpkgStatus(STATUS);
  assert.deepEqual(
    pkgs.map((p) => `${p.name}:${p.arch}=${p.version}`),
    [
      'libc6:amd64=2.36-9+deb12u4',
      'libc6:i386=2.36-9+deb12u1',
      'tzdata:all=2024a-0+deb12u1',
      'held-pkg:amd64=1:2.0-1',
      'broken-pkg:amd64=3.0-1',
      'going-pkg:amd64=0.5',
      'trig-pkg:amd64=4.0',
      'dpkg:amd64=1.21.22',
    ],
  );
  assert.equal(dpkgStatusNotInstalled('install ok installed'), undefined);
  assert.match(dpkgStatusNotInstalled('deinstall ok config-files') ?? '', /config-files/);
  assert.match(dpkgStatusNotInstalled('install ok') ?? '', /not dpkg's/);
  assert.match(dpkgStatusNotInstalled(undefined) ?? '', /no Status/);
  // CRLF files and several blank lines between stanzas read the same.
  assert.deepEqual(parseDpkgStatus(STATUS.replace(/\n/g, '\r\n').replace(/\r\n\r\n/g, '\r\n\r\n\r\n')), pkgs);
  assert.deepEqual(parseDpkgStatus(''), []);
});

test('os-release values are unquoted and unescaped', () => {
  const r = parseOsRelease('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\nNAME=\'Debian\'\nX="a \\"b\\""\n# comment\nbad line\n');
  assert.deepEqual(r, { PRETTY_NAME: 'Debian GNU/Linux 12 (bookworm)', ID: 'debian', VERSION_ID: '12', NAME: 'Debian', X: 'a "b"' });
});

test('a machine root gives packages, OS and facts; a root without them is an empty machine, not an error', async () => {
  const dir = await tempDir('inventory');
  try {
    await fsp.mkdir(path.join(dir, 'var/lib/dpkg'), { recursive: true });
    await fsp.mkdir(path.join(dir, 'etc'), { recursive: true });
    await fsp.writeFile(path.join(dir, 'var/lib/dpkg/status'), STATUS);
    await fsp.writeFile(path.join(dir, 'etc/os-release'), 'ID=ubuntu\nVERSION_ID="24.04"\nVERSION_CODENAME=noble\n');
    await fsp.writeFile(path.join(dir, 'etc/hostname'), 'web-01\n');
    const m = await readLocalInventory(dir);
    assert.deepEqual(m.os, { family: 'ubuntu', version: '24.04' });
    assert.equal(m.packages?.length, 8);
    assert.deepEqual(m.facts, { hostname: 'web-01', architecture: 'amd64', 'os.id': 'ubuntu', 'os.version_id': '24.04', 'os.codename': 'noble' });

    const empty = await readLocalInventory(path.join(dir, 'nothing-here'));
    assert.deepEqual(empty, { facts: {}, packages: [] });
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test("this machine's inventory has its dpkg packages and os-release", { skip: (await fsp.stat('/var/lib/dpkg/status').catch(() => undefined)) ? false : 'no dpkg database on this machine' }, async () => {
  const m = await readLocalInventory();
  assert.ok((m.packages?.length ?? 0) > 10);
  assert.ok(m.packages!.some((p) => p.name === 'dpkg'));
  assert.ok(m.facts?.hostname);
  assert.ok(m.facts?.architecture);
});

const code = (c: string) => (err: unknown) => (err as { code?: string }).code === c;

test('a facts file entry may carry an inventory: a status file, packages, os and facts, shared by its clients', async () => {
  const dir = await tempDir('facts-inv');
  try {
    await fsp.writeFile(path.join(dir, 'status-web'), STATUS);
    const file = path.join(dir, 'facts.json');
    await fsp.writeFile(
      file,
      JSON.stringify({
        clients: [
          {
            name: 'WEB-{n}',
            count: 2,
            inventory: {
              dpkgStatus: 'status-web',
              packages: ['tzdata:all=2025a-0+deb12u1', { name: 'openssl', arch: 'amd64', version: '3.0.11-1~deb12u1' }],
              os: { family: 'debian', version: '12' },
              facts: { architecture: 'amd64' },
            },
          },
          { name: 'RING-{n}', count: 2, inventory: { facts: { ring: 'ring-{n}' } } },
          { name: 'BARE-{n}' },
        ],
      }),
    );
    const facts = readFactsFile(file, 5);
    const web = facts[0]!.machine!;
    assert.equal(facts[1]!.machine, web, 'clients of one entry share one machine object');
    assert.deepEqual(web.os, { family: 'debian', version: '12' });
    assert.deepEqual(web.facts, { architecture: 'amd64' });
    const pkgs = web.packages!.map((p) => `${p.name}:${p.arch}=${p.version}`);
    assert.ok(pkgs.includes('tzdata:all=2025a-0+deb12u1') && !pkgs.includes('tzdata:all=2024a-0+deb12u1'), 'a listed package replaces the status file one');
    assert.ok(pkgs.includes('openssl:amd64=3.0.11-1~deb12u1'));
    assert.equal(pkgs.length, 9);
    assert.deepEqual([facts[2]!.machine!.facts, facts[3]!.machine!.facts], [{ ring: 'ring-1' }, { ring: 'ring-2' }]);
    assert.deepEqual(facts[2]!.machine!.packages, []);
    assert.equal(facts[4]!.machine, undefined, 'no inventory, no machine');
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test('a bad inventory in a facts file is refused with CAIRN_AGENT_FACTS_INVALID naming the entry and field', () => {
  const one = (inventory: unknown): string => JSON.stringify({ clients: [{ name: 'A-{n}', count: 1 }, { name: 'B-{n}', inventory }] });
  for (const [inventory, field] of [
    ['x', /clients\[1\]\.inventory must be an object/],
    [{ dpkgStatus: '/nonexistent/status' }, /clients\[1\]\.inventory\.dpkgStatus: cannot read/],
    [{ packages: 'openssl' }, /clients\[1\]\.inventory\.packages must be a list/],
    [{ packages: ['openssl=1.0'] }, /packages\[0\] must be "name:arch=version"/],
    [{ packages: [{ name: 'Open SSL', arch: 'amd64', version: '1.0' }] }, /packages\[0\]: "Open SSL" is not a Debian package name/],
    [{ packages: ['openssl:amd64=abc'] }, /packages\[0\]: version .*does not start with digit/],
    [{ os: { version: '12' } }, /inventory\.os\.family/],
    [{ facts: { a: 1 } }, /inventory\.facts\.a must be a string/],
    [{ facts: { a: '{nope}' } }, /inventory\.facts\.a: unknown template/],
    [{ package: [] }, /inventory\.package is not a field/],
  ] as const) {
    assert.throws(
      () => parseFacts(one(inventory), 2),
      (err: unknown) => code('CAIRN_AGENT_FACTS_INVALID')(err) && field.test((err as Error).message),
      JSON.stringify(inventory),
    );
  }
});
